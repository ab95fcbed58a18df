"""What the console adds to the API application: its sessions and its templates."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2
from starlette.requests import Request

from export_center import __version__
from export_center.runtime.container import Services
from export_center.service.console import views
from export_center.service.console.sessions import SessionStore
from export_center.service.context import ApiContext

HERE: Final = Path(__file__).resolve().parent
TEMPLATES: Final = HERE / "templates"
STATIC: Final = HERE / "static"
STATIC_URL: Final = "/console/static"


@dataclass(frozen=True)
class Console:
    services: Services
    api: ApiContext
    sessions: SessionStore
    templates: jinja2.Environment

    @classmethod
    def open(cls, services: Services, api: ApiContext) -> Console:
        return cls(services, api, SessionStore(services.store), _templates())


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # A file's URL names its content, so a browser never keeps an old script after an upgrade.
    versions = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in STATIC.iterdir()
        if p.is_file()
    }

    def static(name: str) -> str:
        return f"{STATIC_URL}/{name}?v={versions[name]}"

    env.globals.update(
        static=static,
        version=__version__,
        idem=lambda: secrets.token_urlsafe(16),  # a fresh Idempotency-Key per rendered form
    )
    env.filters.update(when=views.when, size=views.size)
    return env


def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console
