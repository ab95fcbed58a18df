"""What the web console tests share: a gate that holds runs, and the tenants' tokens."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from export_center.exporter import ExportOutcome, run_export

# Enough records for the json:raw adapter to report progress before it finishes (every 200).
ACME_RECORDS = 450


class Gate:
    """Holds each run of a ``gated-*`` profile after its first progress report until the
    test lets one through: a run the browser can watch while it is still running."""

    def __init__(self) -> None:
        self._passes = threading.Semaphore(0)
        self._opened = threading.Event()

    def release(self, runs: int = 1) -> None:
        for _ in range(runs):
            self._passes.release()

    def open(self) -> None:
        self._opened.set()
        self.release(100)

    def export(self, *args: Any, progress: Callable[[int], None], **kwargs: Any) -> ExportOutcome:
        profile = args[2]
        if not profile.name.startswith("gated"):
            return run_export(*args, progress=progress, **kwargs)
        held = False

        def gated(n: int) -> None:
            nonlocal held
            progress(n)
            if not held and not self._opened.is_set():
                held = True
                # Bounded: a test that forgets to release fails on its own wait, not here.
                self._passes.acquire(timeout=120)

        return run_export(*args, progress=gated, **kwargs)


@dataclass(frozen=True)
class Tokens:
    acme: str  # every scope, tenant acme
    zeta: str  # every scope, tenant zeta
    reader: str  # export:read only, tenant acme
    multi: str  # every scope, tenants acme and zeta


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def form_csrf(html: str) -> str:
    """The CSRF token of the (first) form of a console page."""
    found = _CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


def sign_in_http(client: httpx.Client, token: str, next_: str = "") -> httpx.Response:
    """Sign in over plain HTTP as the sign-in form does (its CSRF token and cookie)."""
    form = client.get("/console/sign-in")
    assert form.status_code == 200
    return client.post(
        "/console/sign-in", data={"csrf": form_csrf(form.text), "token": token, "next": next_}
    )
