"""HTML forms in, API request bodies out.

The console does not validate profiles: it turns the form into the JSON body the REST API takes
and lets the API refuse it, with the same messages and field paths an API client gets. It only
checks what the API cannot see, the form itself: its CSRF token, that "More fields" is a JSON
object, that the body is a urlencoded form of sane size.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request

from export_center.errors import BadInputError, ForbiddenError, PayloadTooLargeError

# A profile body is a few KiB; a form larger than this is not one of ours.
MAX_FORM_BYTES: Final = 256 * 1024
_MAX_FIELDS: Final = 200


class CsrfRefused(ForbiddenError):
    """A form without this session's CSRF token (or with another one)."""

    def __init__(self) -> None:
        super().__init__(
            "the form's CSRF token is missing or is not this session's: it was refused",
            hint="reload the page and submit the form again",
        )


@dataclass(frozen=True)
class Form:
    """A submitted form: the last value of each field, and every value of repeated ones."""

    pairs: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str = "") -> str:
        values = self.all(name)
        return values[-1] if values else default

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def check_csrf(self, expected: str) -> None:
        """Raises: CsrfRefused: the ``csrf`` field is absent or does not match."""
        given = self.get("csrf")
        if not given or not expected or not hmac.compare_digest(given, expected):
            raise CsrfRefused()


async def read_form(request: Request) -> Form:
    """The urlencoded body of a form post.

    Raises:
        BadInputError: another content type, or a body that is not a form.
        PayloadTooLargeError: a body over ``MAX_FORM_BYTES``.
    """
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadInputError(
            f"expected a form post (application/x-www-form-urlencoded), not {kind!r}"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLargeError(f"form over {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as e:
        raise BadInputError(f"the form could not be read: {e}") from e
    return Form(tuple(pairs))


# ---- profiles ----------------------------------------------------------------------------------

INCLUDES: Final = ("advisories", "vex", "sboms", "findings")
DEFAULT_INCLUDE: Final = ("advisories", "sboms", "vex")


@dataclass(frozen=True)
class ProfileForm:
    """The fields of the new-profile form, as typed (re-shown when the API refuses them)."""

    name: str = ""
    kind: str = "json:raw"
    include: tuple[str, ...] = DEFAULT_INCLUDE
    sources: str = ""
    ecosystems: str = ""
    compression: str = "zstd"
    level: str = ""
    signing_key: str = ""
    schedule: str = ""
    retention_days: str = ""
    retention_count: str = ""
    extra: str = ""

    @classmethod
    def of(cls, form: Form) -> ProfileForm:
        return cls(
            name=form.get("name").strip(),
            kind=form.get("kind", "json:raw"),
            include=tuple(form.all("include")),
            sources=form.get("sources"),
            ecosystems=form.get("ecosystems"),
            compression=form.get("compression", "zstd"),
            level=form.get("level").strip(),
            signing_key=form.get("signing_key").strip(),
            schedule=form.get("schedule").strip(),
            retention_days=form.get("retention_days").strip(),
            retention_count=form.get("retention_count").strip(),
            extra=form.get("extra"),
        )

    def body(self) -> dict[str, Any]:
        """The body of ``POST /api/export/profiles``.

        Raises:
            BadInputError: "More fields" is not a JSON object (the one thing only we check).
        """
        kind, _, variant = self.kind.partition(":")
        spec: dict[str, Any] = {"kind": kind, "variant": variant, "include": list(self.include)}
        selectors = {
            key: items
            for key, text in (("sources", self.sources), ("ecosystems", self.ecosystems))
            if (items := _items(text))
        }
        if selectors:
            spec["selectors"] = selectors
        compression: dict[str, Any] = {"algorithm": self.compression}
        if self.level:
            compression["level"] = _number(self.level)
        spec["compression"] = compression
        if self.signing_key:
            spec["signing"] = {"key": self.signing_key}
        if self.schedule:
            spec["schedule"] = self.schedule
        retention = {
            key: _number(text)
            for key, text in (("days", self.retention_days), ("count", self.retention_count))
            if text
        }
        if retention:
            spec["retention"] = retention
        if self.extra.strip():
            spec = merge(spec, json_object(self.extra, "More fields"))
        return {"name": self.name, "spec": spec}


def _items(text: str) -> list[str]:
    return [item for part in text.replace("\n", ",").split(",") if (item := part.strip())]


def _number(text: str) -> int | str:
    # A number when it is one; otherwise as typed, so that the API names the field it refuses.
    return int(text) if text.isdigit() else text


def json_object(text: str, what: str) -> dict[str, Any]:
    """Raises: BadInputError: ``text`` is not a JSON object."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise BadInputError(f"{what}: not JSON ({e})") from e
    if not isinstance(value, dict):
        raise BadInputError(f"{what}: expected a JSON object {{...}}, not {type(value).__name__}")
    return value


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: objects field by field, anything else replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
