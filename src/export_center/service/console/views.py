"""What the console's templates show, made from what the API answered: typed summaries of a
run's manifest and provenance, its error, its events, its downloads and the verify command."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from export_center.bundle.manifest import ExportManifest
from export_center.errors import error_class
from export_center.service._http import BASE
from export_center.service.console.bridge import ApiAnswer
from export_center.service.schemas import EventPublic, RunPublic

T = TypeVar("T")

#: Where the console relays the API's GET resources (bridge.py).
RELAY = "/console/api"
# Links of a run that are not files to download (the rest are: the archive and its sidecars).
_NOT_DOWNLOADS = frozenset({"self", "events", "cancel", "manifest", "provenance"})


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


@dataclass(frozen=True)
class ShownError:
    """An error as a page shows it: code, message, what to do, and each bad field."""

    code: str
    message: str
    hint: str | None = None
    fields: tuple[FieldProblem, ...] = ()
    trace_id: str = ""
    meaning: str | None = None  # what the code means (the error class's summary)

    @classmethod
    def of_answer(cls, answer: ApiAnswer) -> ShownError:
        body = answer.error()
        hints = [str(d["hint"]) for d in body.details if "hint" in d]
        fields = tuple(
            FieldProblem(str(d["field"]), str(d.get("message", "")))
            for d in body.details
            if "field" in d
        )
        return cls(
            code=body.code,
            message=body.message,
            hint="; ".join(hints) or None,
            fields=fields,
            trace_id=body.trace_id,
        )

    @classmethod
    def of_run(cls, run: RunPublic) -> ShownError | None:
        if run.error is None:
            return None
        return cls(
            code=run.error.code,
            message=run.error.message or "",
            hint=run.error.hint,
            meaning=code_meaning(run.error.code),
        )


def code_meaning(code: str) -> str | None:
    """The first line of the docstring of the error class behind ``code`` (None if unknown)."""
    cls = error_class(code)
    doc = (cls.__doc__ or "").strip() if cls is not None else ""
    return doc.splitlines()[0] if doc else None


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A summary, or why there is none."""

    value: T | None = None
    error: ShownError | None = None
    sections: tuple[str, ...] = ()


def manifest_summary(answer: ApiAnswer) -> Loaded[ExportManifest]:
    if not answer.ok:
        return Loaded(error=ShownError.of_answer(answer))
    try:
        manifest = ExportManifest.model_validate_json(answer.body)
    except ValidationError as e:
        return Loaded(error=_unreadable("manifest", e))
    present = manifest.sections().model_dump(exclude_none=True)
    return Loaded(value=manifest, sections=tuple(sorted(present)))


class _Lenient(BaseModel):
    # Provenance is an in-toto statement: read the fields shown, ignore the rest.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Subject(_Lenient):
    name: str
    digest: dict[str, str]


class _Dependency(_Lenient):
    name: str = ""
    uri: str = ""
    digest: dict[str, str] = Field(default_factory=dict)


class _BuildDefinition(_Lenient):
    build_type: str = Field(alias="buildType")
    resolved_dependencies: list[_Dependency] = Field(
        default_factory=list, alias="resolvedDependencies"
    )


class _Builder(_Lenient):
    id: str


class _RunDetails(_Lenient):
    builder: _Builder


class _Predicate(_Lenient):
    build_definition: _BuildDefinition = Field(alias="buildDefinition")
    run_details: _RunDetails = Field(alias="runDetails")


class _Statement(_Lenient):
    subject: list[_Subject]
    predicate_type: str = Field(alias="predicateType")
    predicate: _Predicate


@dataclass(frozen=True)
class Dependency:
    name: str
    sha256: str


@dataclass(frozen=True)
class ProvenanceSummary:
    predicate_type: str
    builder: str
    build_type: str
    subjects: tuple[str, ...]
    dependencies: tuple[Dependency, ...] = field(default=())


def provenance_summary(answer: ApiAnswer) -> Loaded[ProvenanceSummary]:
    if not answer.ok:
        return Loaded(error=ShownError.of_answer(answer))
    try:
        st = _Statement.model_validate_json(answer.body)
    except ValidationError as e:
        return Loaded(error=_unreadable("provenance", e))
    build = st.predicate.build_definition
    return Loaded(
        value=ProvenanceSummary(
            predicate_type=st.predicate_type,
            builder=st.predicate.run_details.builder.id,
            build_type=build.build_type,
            subjects=tuple(s.name for s in st.subject),
            dependencies=tuple(
                Dependency(d.name or d.uri, d.digest.get("sha256", ""))
                for d in build.resolved_dependencies
            ),
        )
    )


def _unreadable(what: str, e: ValidationError) -> ShownError:
    first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"]) or "(document)"
    return ShownError(
        code="ERR_EXPORT_BAD_INPUT",
        message=f"the {what} cannot be summarised here ({where}: {first['msg']})",
        hint=f"open the {what} itself below",
    )


@dataclass(frozen=True)
class Download:
    name: str
    href: str
    label: str


def relay(api_path: str) -> str:
    """The console URL that relays an API path (``/api/export/...``)."""
    assert api_path.startswith(BASE + "/"), api_path
    return RELAY + api_path[len(BASE) :]


def downloads(run: RunPublic) -> list[Download]:
    """The archive first, then every sidecar the run resource links (``.sha256``, ``.sig``,
    whatever the API links next), each under the name it has beside the archive."""
    if run.artifact is None:
        return []
    name = run.artifact.name
    links: Mapping[str, Any] = run.links.model_dump(by_alias=True)
    out = [Download(name, relay(links["download"]), "archive")]
    for key, href in sorted(links.items()):
        if key in _NOT_DOWNLOADS or key == "download" or not isinstance(href, str):
            continue
        last = href.rsplit("/", 1)[-1]
        suffix = last[len("download") :] if last.startswith("download.") else f".{key}"
        out.append(Download(name + suffix, relay(href), key))
    return out


def verify_command(run: RunPublic, files: Sequence[Download]) -> str:
    """The commands that check the downloaded bundle offline, exactly as to type them."""
    assert run.artifact is not None
    archive = shlex.quote(run.artifact.name)
    lines = []
    if any(d.name == run.artifact.name + ".sha256" for d in files):
        lines.append(f"sha256sum -c {shlex.quote(run.artifact.name + '.sha256')}")
    # --tenant: the verifier also refuses a bundle of another tenant (a mix-up of downloads).
    lines.append(
        f"stella export verify {archive} --trust-roots trusted-keys.pem"
        f" --tenant {shlex.quote(run.tenant)}"
    )
    return "\n".join(lines)


def describe_event(event: EventPublic) -> str:
    """One line about an event (console.js ``describe`` says the same for live events)."""
    d = event.data
    error = d.get("error") if isinstance(d.get("error"), dict) else None
    match event.type:
        case "queued":
            return f"profile {d.get('profile')} r{d.get('revision')}"
        case "started":
            return f"attempt {d.get('attempt')}" + (" (taken over)" if d.get("takeover") else "")
        case "progress":
            return (
                f"{d.get('itemsCompleted')} of {d.get('itemsTotal')} items ({d.get('percent')} %)"
            )
        case "retrying" | "failed":
            return f"{error.get('code')}: {error.get('message') or ''}" if error else ""
        case "artifact_ready":
            return f"{d.get('name')} ({size(int(d.get('bytes') or 0))})"
        case "artifact_pushed":
            return str(d.get("ref", ""))
        case "artifact_push_failed":
            return f"{d.get('ref', '')}: {d.get('error', '')}"
        case "expired":
            return str(d.get("reason", ""))
        case _:
            return ""


def progress_label(run: RunPublic) -> str:
    p = run.progress
    if p.items_total > 0:
        return f"{p.items_completed} of {p.items_total} items · {round(p.percent)} %"
    return f"{round(p.percent)} %"


def size(n: int | float) -> str:
    """Bytes in binary units, as console.js writes them."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def when(value: object) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SSZ`` (UTC), or an em dash when there is none."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ")[:19] + "Z"
    iso = getattr(value, "isoformat", None)
    return when(iso()) if callable(iso) else str(value)
