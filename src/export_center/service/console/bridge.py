"""The console's way to the REST API: in-process ASGI calls made as the signed-in user.

The console does not re-implement what the API does. A page that lists runs, a form that creates
a profile, a link that downloads an archive: each becomes a request to ``/api/export/...``
carrying the session's own bearer credential and tenant, handed to the same application object
(middleware, authentication, scopes, tenant filtering, validation, idempotency, quotas, error
envelope). What the user can do in the console is what their token can do through the API,
because it *is* the API that answers; nothing crosses a network or leaves the process.

Two shapes of call:

- :meth:`ApiCaller.call` collects a (small, JSON) answer for a page to render;
- :meth:`ApiCaller.forward` streams the answer to the browser as it comes: server-sent events,
  archives with byte ranges, the manifest as signed. Only ``GET`` and ``HEAD`` are forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import orjson
from pydantic import ValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from export_center.errors import error_class_for_status
from export_center.service._http import BASE
from export_center.service.schemas import ErrorBody

log = logging.getLogger(__name__)

# Request headers a forwarded download or event stream needs from the browser.
_FORWARDED_HEADERS: Final = ("range", "if-range", "if-none-match", "last-event-id", "accept")


@dataclass(frozen=True)
class ApiAnswer:
    """What the API answered to one collected call."""

    status: int
    headers: Headers
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.body)

    def error(self) -> ErrorBody:
        """The error envelope of a refusal (one made up from the status if the body is not)."""
        try:
            return ErrorBody.model_validate_json(self.body)
        except ValidationError:
            return ErrorBody(
                code=error_class_for_status(self.status).code,
                message=self.body.decode("utf-8", "replace")[:300] or f"HTTP {self.status}",
                details=[],
                trace_id="",
                timestamp="",
            )


#: The API resources the relay forwards: runs and what hangs off them (events, downloads,
#: manifest, provenance). Nothing else of the API (its interactive docs, for one, load
#: scripts from a CDN) is served from the console's paths.
_RELAYED: Final = frozenset({"runs"})


def _clean_path(path: str) -> str | None:
    """``BASE/path`` when ``path`` is a plain relative path (no dot segments, no empty ones)
    below one of the relayed resources."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") or "\\" in p for p in parts):
        return None
    if parts[0] not in _RELAYED:
        return None
    return f"{BASE}/{path}"


class ApiCaller:
    """Calls the API application in-process with one user's credential and tenant."""

    def __init__(self, request: Request, credential: str, tenant: str) -> None:
        self._app: ASGIApp = request.app
        self._outer = request.scope
        self._auth = [
            (b"authorization", f"Bearer {credential}".encode()),
            (b"x-stella-tenant", tenant.encode()),
        ]
        # One trace id for the page and the API calls it made: the logs join them.
        trace = str((request.scope.get("state") or {}).get("trace_id") or "")
        if trace:
            self._auth.append((b"x-request-id", trace.encode()))

    def _scope(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, Any]] | str | None,
        headers: list[tuple[bytes, bytes]],
    ) -> Scope:
        outer = self._outer
        if isinstance(query, str):
            query_string = query.encode("latin-1")
        else:
            query_string = urlencode(
                [(k, str(v)) for k, v in query or () if v is not None]
            ).encode()
        host = [(k, v) for k, v in outer.get("headers", []) if k == b"host"]
        return {
            "type": "http",
            "asgi": outer.get("asgi", {"version": "3.0"}),
            "http_version": outer.get("http_version", "1.1"),
            "method": method,
            "scheme": outer.get("scheme", "http"),
            "server": outer.get("server"),
            "client": outer.get("client"),
            "root_path": outer.get("root_path", ""),
            "path": path,
            "raw_path": path.encode(),
            "query_string": query_string,
            "headers": host + self._auth + headers,
            "extensions": {},
            "state": {},
        }

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, Any]] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApiAnswer:
        """One API request (``path`` below ``/api/export``) and its whole answer."""
        data = b"" if body is None else orjson.dumps(body)
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if body is not None:
            extra += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ]
        scope = self._scope(method, f"{BASE}{path}", query, extra)
        sent = False
        finished = asyncio.Event()
        start: Message | None = None
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    finished.set()

        try:
            await self._app(scope, receive, send)
        except Exception:
            # Starlette re-raises an unexpected error after its handler has answered 500 with
            # the error envelope (and logged it): that answer is the API's, show it.
            if start is None:
                raise
        finished.set()
        if start is None:
            raise RuntimeError(f"the API gave no answer to {method} {path}")
        return ApiAnswer(int(start["status"]), Headers(raw=start["headers"]), b"".join(chunks))

    def forward(self, path: str, request: Request) -> Response | None:
        """A response that streams the API's answer to ``GET``/``HEAD`` ``BASE/path``;
        None when ``path`` is not a plain relative path."""
        target = _clean_path(path)
        if target is None or request.method not in ("GET", "HEAD"):
            return None
        headers = [
            (k, v) for k, v in request.scope.get("headers", []) if k.decode() in _FORWARDED_HEADERS
        ]
        scope = self._scope(request.method, target, request.url.query, headers)
        return _Forwarded(self._app, scope)


class _Forwarded(Response):
    """Runs the API for ``scope`` when Starlette sends this response, passing its messages
    straight through (so event streams and large archives are never buffered)."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        super().__init__(status_code=200)
        self._app = app
        self._scope = scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_through(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The console's origin must never run what it relays (a manifest is data).
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
            await send(message)

        await self._app(self._scope, receive, send_through)
