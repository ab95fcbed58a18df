"""A small synchronous client of the REST API (what ``stella export ... --server`` uses).

Errors from the server come back as the package's own errors, found by their code
(:func:`export_center.errors.error_class`), so the CLI maps them to the same exit codes as
in-process runs. Event streams reconnect with ``Last-Event-ID``; downloads resume with ``Range``
+ ``If-Range`` and are checked against the archive's SHA-256 before they get their final name.

It imports neither the web framework nor the server's packages: the CLI works against a
server without them.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from export_center.errors import (
    ConflictError,
    ServiceUnavailableError,
    VerificationError,
    error_class,
    error_class_for_status,
)
from export_center.netpolicy import check_url, guard, http_client

API_BASE = "/api/export"
# The final events of a run's stream (export_center.runs.states.FINAL_EVENTS; the client does
# not import the server's packages).
FINAL = frozenset({"succeeded", "failed", "cancelled", "expired"})


#: The archive's sidecars the API serves (``GET /runs/{id}/download<suffix>``).
SIDECAR_SUFFIXES = (".sha256", ".sig")
_MAX_SIDECAR_BYTES = 64 * 1024


@dataclass(frozen=True)
class Sidecar:
    """A sidecar of a downloaded archive: saved at ``path``, or not, and why."""

    suffix: str
    path: Path | None
    reason: str | None = None


@dataclass(frozen=True)
class SseEvent:
    id: int | None
    type: str
    data: dict[str, Any]


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = orjson.loads(resp.read())
        code, message = str(body.get("code", "")), str(body.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        code, message = "", resp.reason_phrase
    # The code names the class (and so the CLI's exit code); the status stands in when the
    # answer carries no code of ours (a proxy's error page).
    cls = error_class(code) or error_class_for_status(resp.status_code)
    text = f"server answered {resp.status_code} {code}: {message}".replace("  ", " ")
    if resp.status_code == 429:
        text += f" (retry after {resp.headers.get('Retry-After', '?')} s)"
    raise cls.reported(text)


def parse_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Events of a ``text/event-stream`` (comments and ``retry`` skipped)."""
    event_id: int | None = None
    event_type = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                try:
                    payload = orjson.loads("\n".join(data))
                except orjson.JSONDecodeError:
                    payload = {"raw": "\n".join(data)}
                yield SseEvent(event_id, event_type, payload if isinstance(payload, dict) else {})
            event_id, event_type, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        # ASCII digits only: str.isdigit() is also true for '²', which int() refuses.
        if field == "id" and value.isascii() and value.isdigit() and len(value) <= 18:
            event_id = int(value)
        elif field == "event":
            event_type = value
        elif field == "data":
            data.append(value)


class ApiClient:
    def __init__(
        self,
        server: str,
        *,
        token: str | None,
        tenant: str | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {"User-Agent": "stella-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if tenant:
            headers["X-Stella-Tenant"] = tenant
        if http is None:
            # The token goes with every request: TLS, or plain HTTP to loopback only.
            check_url(server, "--server")
            http = http_client(base_url=server.rstrip("/"), timeout=timeout)
        http.headers.update(headers)
        guard(http)
        self._http = http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, API_BASE + path, **kwargs)
        except httpx.TransportError as e:
            raise ServiceUnavailableError(
                f"cannot reach the server {self._http.base_url}: {e}"
            ) from e
        _raise_for(resp)
        return orjson.loads(resp.content) if resp.content else None

    # ---- profiles ------------------------------------------------------------------------

    def list_profiles(self, *, include_archived: bool = False) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._call(
                "GET",
                "/profiles",
                params={"offset": offset, "limit": 200, "includeArchived": include_archived},
            )
            items.extend(page["items"])
            if not page.get("next"):
                return items
            offset += len(page["items"])

    def get_profile(self, name: str, revision: int | None = None) -> dict[str, Any]:
        params = {"revision": revision} if revision else None
        result: dict[str, Any] = self._call("GET", f"/profiles/{name}", params=params)
        return result

    def create_profile(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            "/profiles",
            json={"name": name, "spec": dict(spec)},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return result

    def revise_profile(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            f"/profiles/{name}/revisions",
            json={"spec": dict(spec)},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return result

    def archive_profile(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/profiles/{name}/archive")
        return result

    # ---- policies ------------------------------------------------------------------------

    def list_policies(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._call("GET", "/policies", params={"offset": offset, "limit": 200})
            items.extend(page["items"])
            if not page.get("next"):
                return items
            offset += len(page["items"])

    def get_policy(
        self, name: str, *, version: int | None = None, digest: str | None = None
    ) -> dict[str, Any]:
        params = {k: v for k, v in (("version", version), ("digest", digest)) if v is not None}
        result: dict[str, Any] = self._call("GET", f"/policies/{name}", params=params or None)
        return result

    def policy_versions(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/policies/{name}/versions")
        return result

    def upload_policy(self, name: str, content: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            "/policies",
            json={"name": name, "content": content},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return result

    # ---- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        profile: str,
        *,
        revision: int | None = None,
        as_of: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"profile": profile}
        if revision is not None:
            body["revision"] = revision
        if as_of is not None:
            body["asOf"] = as_of
        result: dict[str, Any] = self._call(
            "POST",
            "/runs",
            json=body,
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
        )
        return result

    def get_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/runs/{run_id}")
        return result

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/runs/{run_id}/cancel")
        return result

    def plan(self, profile: str, *, revision: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"profile": profile}
        if revision is not None:
            body["revision"] = revision
        result: dict[str, Any] = self._call("POST", "/plan", json=body)
        return result

    def events(
        self, run_id: str, *, last_event_id: int | None = None, reconnects: int = 20
    ) -> Iterator[SseEvent]:
        """The run's events until a final one, reconnecting (with Last-Event-ID) on drops."""
        last = last_event_id
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                with self._http.stream(
                    "GET",
                    f"{API_BASE}/runs/{run_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=60.0),
                ) as resp:
                    if resp.status_code == 204:
                        return
                    _raise_for(resp)
                    for event in parse_sse(resp.iter_lines()):
                        failures = 0
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.type in FINAL:
                            return
            except httpx.TransportError as e:
                failures += 1
                if failures > reconnects:
                    raise ServiceUnavailableError(f"event stream lost: {e}") from e
                time.sleep(min(5.0, 0.5 * failures))

    def download(
        self,
        run_id: str,
        out_dir: Path,
        *,
        progress: Callable[[int, int], None] = lambda _done, _total: None,
        retries: int = 10,
        chunk_size: int = 1 << 20,
    ) -> Path:
        """Download the run's bundle into ``out_dir``, resuming a partial ``.part`` file.

        Raises:
            RunNotReadyError/ConflictError: the run has no bundle (yet).
            VerificationError: the downloaded bytes do not hash to the advertised SHA-256.
        """
        run = self.get_run(run_id)
        artifact = run.get("artifact")
        if not artifact:
            raise ConflictError(f"run {run_id} is {run.get('status')}: no bundle to download")
        name, sha256, size = str(artifact["name"]), str(artifact["sha256"]), int(artifact["bytes"])
        if "/" in name or name.startswith("."):
            raise VerificationError("download", f"server named the bundle {name!r}")
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / name
        part = out_dir / f"{name}.part"
        etag = f'"{sha256}"'
        failures = 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            if have >= size:
                break
            headers = {"If-Range": etag, "Range": f"bytes={have}-"} if have else {}
            try:
                with self._http.stream(
                    "GET", f"{API_BASE}/runs/{run_id}/download", headers=headers
                ) as resp:
                    _raise_for(resp)
                    if resp.headers.get("ETag") not in (None, etag):
                        raise VerificationError(
                            "download", f"ETag {resp.headers.get('ETag')} is not {etag}"
                        )
                    mode = "ab" if resp.status_code == 206 else "wb"
                    done = have if mode == "ab" else 0
                    with part.open(mode) as fh:
                        for chunk in resp.iter_bytes(chunk_size):
                            fh.write(chunk)
                            done += len(chunk)
                            progress(done, size)
            except httpx.TransportError as e:
                failures += 1
                if failures > retries:
                    raise ServiceUnavailableError(f"download interrupted: {e}") from e
                time.sleep(min(5.0, 0.5 * failures))
        digest = hashlib.sha256()
        with part.open("rb") as fh:
            for block in iter(lambda: fh.read(chunk_size), b""):
                digest.update(block)
        if digest.hexdigest() != sha256 or part.stat().st_size != size:
            with contextlib.suppress(OSError):
                part.unlink()
            raise VerificationError(
                "sha256",
                f"downloaded {name} hashes to {digest.hexdigest()}, the server said {sha256}",
                hint="the partial file was removed; download again",
            )
        part.replace(target)
        return target

    def download_sidecars(self, run_id: str, archive: Path, sha256: str) -> list[Sidecar]:
        """Save the run's ``.sha256`` and ``.sig`` next to the downloaded ``archive``.

        A sidecar the server does not have (404) is not saved, with the server's reason; the
        ``.sha256`` must name ``archive`` with ``sha256`` (the digest the download was checked
        against). Each file is written whole or not at all.

        Raises:
            VerificationError: the ``.sha256`` sidecar disagrees with the archive, or a sidecar
                is implausibly large.
            ServiceUnavailableError: the server cannot be reached.
        """
        saved: list[Sidecar] = []
        for suffix in SIDECAR_SUFFIXES:
            name = archive.name + suffix
            try:
                resp = self._http.get(f"{API_BASE}/runs/{run_id}/download{suffix}")
            except httpx.TransportError as e:
                raise ServiceUnavailableError(f"cannot reach the server: {e}") from e
            if resp.status_code == 404:
                try:
                    message = str(orjson.loads(resp.content).get("message", ""))
                except (orjson.JSONDecodeError, AttributeError):
                    message = resp.reason_phrase
                saved.append(Sidecar(suffix, None, f"the server has no {name}: {message}"))
                continue
            _raise_for(resp)
            data = resp.content
            if len(data) > _MAX_SIDECAR_BYTES:
                raise VerificationError("sidecar", f"{name}: {len(data)} bytes, too large")
            if suffix == ".sha256" and data != f"{sha256}  {archive.name}\n".encode():
                raise VerificationError(
                    "sidecar", f"{name} does not say {sha256} for {archive.name}"
                )
            target = archive.with_name(name)
            part = target.with_name(f".{name}.part")
            part.write_bytes(data)
            part.replace(target)
            saved.append(Sidecar(suffix, target))
        return saved
