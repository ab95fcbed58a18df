"""The HTTP edge: what every request meets before any route, parser or authentication.

Two pure ASGI middlewares (docs/security.md, "HTTP edge"):

:class:`BodyLimit`
    Request bodies are bounded (``service.max_request_bytes``) before anything reads them:
    a declared ``Content-Length`` over the limit is answered 413 at once, without reading a byte
    of the body and before authentication; a chunked body (no length) is counted while it is
    read and cut off at the limit with the same 413. Without it one unauthenticated POST could
    make the server buffer and parse hundreds of megabytes before its 401.

:class:`ErrorEnvelope`
    Every error answer carries the error body of export-center.md §6. Our handlers already
    write it; this catches the answers the framework writes itself as text (Starlette's 400 for
    a malformed ``Range``, its 416) and rewrites them, status and headers kept.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from export_center.errors import BadInputError, PayloadTooLargeError, error_class_for_status
from export_center.runs.clock import utcnow
from export_center.service.schemas import ErrorBody, timestamp

__all__ = ["BodyLimit", "ErrorEnvelope", "error_body"]

# Text the framework wrote, kept as the message: one line, bounded.
_MAX_MESSAGE = 300


def error_body(scope: Scope, status: int, code: str, message: str) -> bytes:
    """The error envelope as bytes, with the request's trace id."""
    trace = str((scope.get("state") or {}).get("trace_id") or "")
    body = ErrorBody(
        code=code, message=message, details=[], trace_id=trace, timestamp=timestamp(utcnow())
    )
    return orjson.dumps(body.model_dump(by_alias=True))


async def _answer(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    body = error_body(scope, status, code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class BodyTooLarge(HTTPException):
    """Raised from inside ``receive``: an HTTPException, so that the framework's body parsing
    passes it on as it is (it turns other exceptions into a 400) and the API's handler answers
    it with the error body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes")


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` before they are parsed or authenticated."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = Headers(scope=scope).getlist("content-length")
        if declared:
            value = declared[0].strip()
            if len(declared) > 1 or not (value.isascii() and value.isdigit()):
                await _answer(
                    scope, send, 400, BadInputError.code, "malformed Content-Length header"
                )
                return
            if int(value) > limit:
                await _answer(
                    scope,
                    send,
                    413,
                    PayloadTooLargeError.code,
                    f"request body of {int(value)} bytes is over the limit of {limit} bytes",
                )
                return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except BodyTooLarge as e:
            # Read outside the framework's handlers (a streaming reader): answer here.
            if started:
                raise
            await _answer(scope, send, 413, PayloadTooLargeError.code, str(e.detail))


class ErrorEnvelope:
    """Rewrite error answers that are not JSON into the error body (status and headers kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                ctype = Headers(raw=message.get("headers", [])).get("content-type", "")
                # An HTML answer is a page for a person (the web console's error pages): kept.
                if status >= 400 and not ctype.startswith(("application/json", "text/html")):
                    held["start"] = message
                    return
                await send(message)
                return
            if message["type"] != "http.response.body" or "start" not in held:
                await send(message)
                return
            if sum(map(len, chunks)) < 64 * 1024:
                chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = held.pop("start")
            status = int(start["status"])
            text = b"".join(chunks).decode("utf-8", "replace").strip()
            message_text = " ".join(text.split())[:_MAX_MESSAGE] or _phrase(status)
            body = error_body(scope, status, error_class_for_status(status).code, message_text)
            headers = MutableHeaders(raw=list(start.get("headers", [])))
            headers["content-type"] = "application/json"
            headers["content-length"] = str(len(body))
            await send({**start, "headers": headers.raw})
            await send(
                {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
            )

        await self.app(scope, receive, rewrite)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
