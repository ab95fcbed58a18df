"""The one place outbound HTTP clients are built, and the ``--offline`` switch they obey.

The tool reaches the network for three things only: OCI registries (pull and push,
:mod:`export_center.oci.registry`, :mod:`export_center.distribution`), and the REST API of
another instance (``--server``, :mod:`export_center.client`). All three build their
``httpx.Client`` with :func:`http_client`, so ``--offline`` (or ``STELLA_OFFLINE=1``, which
the CLI reads as that option's default) is enforced here and nowhere else: the first request
of any client fails with :class:`~export_center.errors.OfflineViolationError` (exit code 5),
naming the host, before a connection is opened. Loopback hosts are refused too: offline means
no HTTP at all, which is what an operator on a disconnected machine wants to be sure of (a
loopback port can be a tunnel).

tests/core/test_outbound.py checks that no other module builds an ``httpx.Client``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from export_center.errors import OfflineViolationError

__all__ = ["go_offline", "http_client", "is_offline"]

# Set by the CLI for one command (``--offline``); a process-wide flag rather than a context
# variable because worker threads must see it too.
_offline = False


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


def http_client(**kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` (same keyword arguments) whose every request, redirects included,
    is refused while the process is offline. A client for one server (``base_url``: the API
    client of ``--server``) is refused at once, before the command does any work.

    Raises:
        OfflineViolationError: offline, and ``base_url`` names the server; or (from its
            requests) offline.
    """
    base_url = kwargs.get("base_url")
    if base_url and is_offline():
        url = httpx.URL(str(base_url))
        raise _refusal(url.host, f"the server {url}", "work in-process (without --server)")
    hooks = dict(kwargs.pop("event_hooks", None) or {})
    hooks["request"] = [_refuse_when_offline, *hooks.get("request", [])]
    return httpx.Client(event_hooks=hooks, **kwargs)
