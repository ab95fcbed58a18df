"""The one place outbound HTTP clients are built, and the two rules every request they send obeys.

1. ``--offline`` (or ``STELLA_OFFLINE=1``, which the CLI reads as that option's default): no
   request at all; the first one fails with :class:`~export_center.errors.OfflineViolationError`
   (exit code 5) naming the host, before a connection is opened. Loopback is refused too:
   offline means no HTTP at all, which is what an operator on a disconnected machine wants to be
   sure of (a loopback port can be a tunnel).
2. TLS, or plain HTTP to a loopback host only.

Every client that leaves the process (the OCI registry client for pulls, pushes and the
service's automatic push, the Trivy push, the REST client ``stella --server`` uses) is built or
wrapped here, so both rules hold for each request it sends, not just the first: redirects and the
registry token flow (a ``WWW-Authenticate: Bearer realm=...`` URL chosen by the server) are
requests too, and a server must not be able to steer credentials, tokens or bundle bytes onto
the network in clear text. The check is an httpx request hook: it runs before a connection is
opened, for the first request and for every redirect httpx follows.

Loopback means ``localhost`` or an address in ``127.0.0.0/8`` / ``::1``: a test or a registry
on the same machine, never a network hop. There is deliberately no switch to allow plain HTTP
elsewhere (docs/security.md, "Registry ↔ client"): a registry on another host gets a
certificate.

tests/cli/test_cli_conventions.py checks that no other module builds an ``httpx.Client``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import httpx

from export_center.errors import InsecureTransportError, OfflineViolationError

__all__ = [
    "check_url",
    "go_offline",
    "guard",
    "http_client",
    "is_loopback",
    "is_offline",
    "new_client",
    "refuse_plain_http",
]

# Set by the CLI for one command (``--offline``); a process-wide flag rather than a context
# variable because worker threads must see it too.
_offline = False


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (a ``:port`` or ``[...]`` is allowed)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_offline() -> bool:
    """Whether network access is forbidden (``--offline``)."""
    return _offline


def go_offline() -> Callable[[], None]:
    """Forbid network access in this process; returns the function that restores the state
    before (the CLI calls it when the command ends, so that tests running many commands in one
    process do not leak the flag)."""
    global _offline
    before = _offline
    _offline = True

    def restore() -> None:
        global _offline
        _offline = before

    return restore


def _refusal(host: str, what: str, instead: str) -> OfflineViolationError:
    return OfflineViolationError(
        f"network access to {host} refused: --offline is set ({what})",
        hint=f"drop --offline (and STELLA_OFFLINE) to reach it, or {instead}",
    )


def _refuse_when_offline(request: httpx.Request) -> None:
    if is_offline():
        raise _refusal(
            request.url.host,
            f"{request.method} {request.url.copy_with(query=None)}",
            "use a local copy: a bundle file or directory, or an OCI layout (oci:DIR)",
        )


def check_url(url: httpx.URL | str, what: str = "request") -> None:
    """Refuse ``url`` unless it is HTTPS, or plain HTTP to a loopback host.

    Raises:
        InsecureTransportError: any other scheme, or plain HTTP to another host.
    """
    u = httpx.URL(url) if isinstance(url, str) else url
    if u.scheme == "https":
        return
    if u.scheme == "http" and is_loopback(u.host):
        return
    if u.scheme != "http":
        raise InsecureTransportError(f"{what}: refusing the URL scheme {u.scheme!r} ({u})")
    raise InsecureTransportError(
        f"{what}: refusing plain HTTP to {u.host}: only loopback hosts (localhost, "
        "127.0.0.0/8, ::1) are reached without TLS",
        hint="use https://",
    )


def refuse_plain_http(request: httpx.Request) -> None:
    """The httpx request hook: :func:`check_url` on every request, redirects included.

    Raises:
        InsecureTransportError: as :func:`check_url`.
    """
    check_url(request.url, f"{request.method} {request.url.host}")


def guard(client: httpx.Client) -> httpx.Client:
    """Put both rules on ``client`` (once; a client a caller built, e.g. a test's) and return it."""
    hooks = client.event_hooks
    requests = [
        h for h in hooks.get("request", []) if h not in (_refuse_when_offline, refuse_plain_http)
    ]
    client.event_hooks = {**hooks, "request": [_refuse_when_offline, refuse_plain_http, *requests]}
    return client


def http_client(**kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` (same keyword arguments) under both rules, for every request it sends,
    redirects included. A client for one server (``base_url``: the API client of ``--server``)
    is refused at once when offline, before the command does any work.

    Raises:
        OfflineViolationError: offline, and ``base_url`` names the server; or (from its
            requests) offline.
        InsecureTransportError: (from its requests) plain HTTP to a host that is not loopback.
    """
    base_url = kwargs.get("base_url")
    if base_url and is_offline():
        url = httpx.URL(str(base_url))
        raise _refusal(url.host, f"the server {url}", "work in-process (without --server)")
    return guard(httpx.Client(**kwargs))


def new_client(*, timeout: float = 60.0) -> httpx.Client:
    """An :func:`http_client` that follows redirects (each one checked)."""
    return http_client(timeout=timeout, follow_redirects=True)
