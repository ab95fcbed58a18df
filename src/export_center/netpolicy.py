"""The one HTTP policy of every outbound client: TLS, or plain HTTP to a loopback host only.

Every client that leaves the process (the OCI registry client for pulls, pushes and the
service's automatic push, the Trivy push, the REST client ``stella --server`` uses) is built or
wrapped here, so the rule holds for each request it sends, not just the first: redirects and the
registry token flow (a ``WWW-Authenticate: Bearer realm=...`` URL chosen by the server) are
requests too, and a server must not be able to steer credentials, tokens or bundle bytes onto
the network in clear text. The check is an httpx request hook: it runs before a connection is
opened, for the first request and for every redirect httpx follows.

Loopback means ``localhost`` or an address in ``127.0.0.0/8`` / ``::1``: a test or a registry
on the same machine, never a network hop. There is deliberately no switch to allow plain HTTP
elsewhere (docs/security.md, "Registry ↔ client"): a registry on another host gets a
certificate.
"""

from __future__ import annotations

import ipaddress

import httpx

from export_center.errors import InsecureTransportError

__all__ = ["check_url", "guard", "is_loopback", "new_client", "refuse_plain_http"]


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
    """Add the policy to ``client`` (once) and return it."""
    hooks = client.event_hooks
    requests = list(hooks.get("request", []))
    if refuse_plain_http not in requests:
        client.event_hooks = {**hooks, "request": [refuse_plain_http, *requests]}
    return client


def new_client(*, timeout: float = 60.0) -> httpx.Client:
    """An httpx client under the policy (redirects followed, each one checked)."""
    return guard(httpx.Client(timeout=timeout, follow_redirects=True))
