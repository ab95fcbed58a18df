"""The console's routes: pages, form posts, live fragments and the relay to the API.

Each handler reads the session, asks the REST API (in-process, as the signed-in user: see
bridge.py) and renders what it answered. Evidence statistics and air-gap generations have no
API resource; their pages read the same services as ``stella evidence stats`` and ``stella
airgap status``, for the session's tenant, after the same scope check the API makes for reads.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from export_center.errors import (
    AuthenticationError,
    BadInputError,
    ExportCenterError,
    ForbiddenError,
    NotFoundError,
)
from export_center.planner.profiles import PROFILE_NAME, ProfileKind
from export_center.runs.states import STATUSES, TERMINAL
from export_center.service.auth import (
    SCOPE_DOWNLOAD,
    SCOPE_PROFILES,
    SCOPE_READ,
    SCOPE_RUN,
    Principal,
)
from export_center.service.console import views
from export_center.service.console.bridge import ApiAnswer, ApiCaller
from export_center.service.console.context import Console, get_console
from export_center.service.console.forms import (
    INCLUDES,
    CsrfRefused,
    Form,
    ProfileForm,
    json_object,
    read_form,
)
from export_center.service.console.sessions import LIFETIME, Session
from export_center.service.schemas import (
    EventPublic,
    ProfilePage,
    ProfilePublic,
    RunPage,
    RunPublic,
)

COOKIE: Final = "stella_console"
SIGN_IN_COOKIE: Final = "stella_console_signin"
PREFIX: Final = "/console"
PAGE_SIZE: Final = 25
# Pages load only from this server: the browser refuses anything else, even injected markup.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Run ids are uuids; anything that could change an API path's meaning is not one.
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_NOTICES: Final = {
    "signed-out": "You are signed out.",
    "session-ended": "Your session has ended (signed out, expired, or the token no longer "
    "works): sign in again.",
    "profile-created": "Profile {name} created (revision 1).",
    "revision-created": "Profile {name}: revision {rev} saved.",
    "revision-same": "Profile {name}: nothing changed; revision {rev} stays the newest.",
    "archived": "Profile {name} archived: no new revisions or runs; its bundles stay.",
    "cancel-requested": "Cancel requested: a pending run stops at once, a running one within "
    "seconds, and nothing is published.",
}


class SignInRequired(Exception):
    """No live session: pages redirect to sign-in, fragments and relays answer 401."""


class ApiRefused(Exception):
    """The API refused what the page asked: the page shows its error."""

    def __init__(self, answer: ApiAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in user of one request: their session, and who the API says they are."""

    session: Session
    principal: Principal
    cookie: str

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def subject(self) -> str:
        return self.principal.subject

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(sorted(self.principal.scopes))

    @property
    def csrf(self) -> str:
        return self.session.csrf

    # What to offer. Only offered: the API decides, and refuses what the token lacks.
    @property
    def can_manage(self) -> bool:
        return SCOPE_PROFILES in self.principal.scopes

    @property
    def can_run(self) -> bool:
        return SCOPE_RUN in self.principal.scopes

    @property
    def can_download(self) -> bool:
        return SCOPE_DOWNLOAD in self.principal.scopes

    def caller(self, request: Request) -> ApiCaller:
        return ApiCaller(request, self.session.credential, self.session.tenant)


async def current_user(request: Request) -> ConsoleUser:
    """The session's user, re-verified as the API verifies every request.

    Raises:
        SignInRequired: no session, an ended one, or a credential that no longer works (the
            session is then deleted).
    """
    console = get_console(request)
    cookie = request.cookies.get(COOKIE, "")
    session = await run_in_threadpool(console.sessions.load, cookie) if cookie else None
    if session is None:
        raise SignInRequired()
    header = f"Bearer {session.credential}"
    auth = console.api.auth
    try:
        principal = auth.authenticate_cached(header, session.tenant)
        if principal is None:
            principal = await run_in_threadpool(auth.authenticate, header, session.tenant)
    except (AuthenticationError, ForbiddenError, BadInputError) as e:
        await run_in_threadpool(console.sessions.delete, cookie)
        raise SignInRequired() from e
    request.state.principal = principal  # the request log names the tenant
    user = ConsoleUser(session, principal, cookie)
    request.state.console_user = user  # error pages keep the navigation
    return user


UserDep = Annotated[ConsoleUser, Depends(current_user)]


def _is_fragment(request: Request) -> bool:
    return request.url.path.startswith(f"{PREFIX}/api/") or bool(
        request.headers.get("x-console-fragment")
    )


class ConsoleRoute(APIRoute):
    """Routes whose errors are pages (or a redirect to sign-in), never JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return _signed_out(request)
            except ApiRefused as e:
                return error_page(request, e.answer.status, views.ShownError.of_answer(e.answer))
            except ExportCenterError as e:
                shown = views.ShownError(e.code, e.message, e.hint)
                return error_page(request, e.http_status, shown)
            except RequestValidationError as e:
                first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid"}
                where = ".".join(str(p) for p in first.get("loc", ())) or "(request)"
                shown = views.ShownError(
                    BadInputError.code, f"invalid request: {where}: {first.get('msg')}"
                )
                return error_page(request, 400, shown)

        return route


router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)


# ---- rendering ---------------------------------------------------------------------------------


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    user: ConsoleUser | None = None,
    nav: str | None = None,
    **context: Any,
) -> HTMLResponse:
    console = get_console(request)
    html = console.templates.get_template(template).render(
        user=user, nav=nav, notice=_notice(request), **context
    )
    return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)


def _notice(request: Request) -> str | None:
    text = _NOTICES.get(request.query_params.get("notice", ""))
    if text is None:
        return None
    name = request.query_params.get("name", "")
    rev = request.query_params.get("rev", "")
    return text.format(
        name=name if PROFILE_NAME.match(name) else "",
        rev=rev if rev.isdigit() else "",
    )


_TITLES: Final = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    410: "Gone",
    413: "Too large",
    429: "Quota used up",
}


def error_page(request: Request, status: int, error: views.ShownError) -> Response:
    if _is_fragment(request):
        return Response(
            f"{error.code}: {error.message}", status_code=status, media_type="text/plain"
        )
    user: ConsoleUser | None = getattr(request.state, "console_user", None)
    back = request.headers.get("referer") or ""
    return render(
        request,
        "error.html",
        status=status,
        user=user,
        http_status=status,  # render() keeps ``status`` for the response itself
        title=_TITLES.get(status, "Something went wrong"),
        error=error,
        back=back if back.startswith("/console/") else None,
    )


def _signed_out(request: Request) -> Response:
    if _is_fragment(request):
        return Response("sign in again", status_code=401, media_type="text/plain")
    query = {"notice": "session-ended"} if request.cookies.get(COOKIE) else {}
    if request.method == "GET":
        query["next"] = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"{PREFIX}/sign-in?{urlencode(query)}", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def _see(path: str, **query: str) -> RedirectResponse:
    suffix = f"?{urlencode(query)}" if query else ""
    return RedirectResponse(f"{path}{suffix}", status_code=303)


def _segment(value: str) -> str:
    """A run id or profile name fit to go into an API path.

    Raises:
        NotFoundError: it cannot name anything (and might change the path's meaning).
    """
    if not _SEGMENT.match(value):
        raise NotFoundError(f"no run or profile {value!r}")
    return quote(value, safe="")


def _ok(answer: ApiAnswer) -> ApiAnswer:
    if not answer.ok:
        raise ApiRefused(answer)
    return answer


async def _submitted(request: Request, user: ConsoleUser) -> Form:
    form = await read_form(request)
    form.check_csrf(user.csrf)
    return form


def _idempotency(form: Form) -> dict[str, str]:
    # A key per rendered form: a double click or a resubmitted page starts one run, not two.
    key = form.get("idem")
    return {"Idempotency-Key": f"console-{key}"} if re.fullmatch(r"[\w-]{8,64}", key) else {}


# ---- sign-in and sign-out ----------------------------------------------------------------------


def _safe_next(value: str) -> str:
    # Only a path of this console: never another site (an open redirect), never the relay.
    path = value.split("?", 1)[0]
    if (
        value.startswith(f"{PREFIX}/")
        and "\\" not in value
        and value.isprintable()  # browsers drop tabs and newlines inside a URL
        and not value.startswith(f"{PREFIX}/api/")
        # No dot segments, typed or encoded: the browser would resolve them out of /console.
        and not any(s in (".", "..") for s in path.lower().replace("%2e", ".").split("/"))
    ):
        return value
    return f"{PREFIX}/runs"


@router.get("", response_class=RedirectResponse)
@router.get("/", response_class=RedirectResponse)
async def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/runs", status_code=303)


def _sign_in_form(
    request: Request,
    *,
    status: int = 200,
    error: views.ShownError | None = None,
    next_: str = "",
    tenant: str = "",
) -> HTMLResponse:
    # Login CSRF: the form carries a value that must match a SameSite=Strict cookie set here.
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        status=status,
        csrf=token,
        next=_safe_next(next_),
        tenant=tenant,
        error=error,
        lifetime_hours=int(LIFETIME.total_seconds() // 3600),
    )
    _set_cookie(request, response, SIGN_IN_COOKIE, token)
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str = "") -> HTMLResponse:
    return _sign_in_form(request, next_=next)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    console = get_console(request)
    form = await read_form(request)
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    try:
        form.check_csrf(expected)
    except CsrfRefused as e:
        return _sign_in_form(request, status=403, error=views.ShownError(e.code, e.message, e.hint))
    credential = form.get("token").strip()
    tenant = form.get("tenant").strip() or None
    try:
        principal = await run_in_threadpool(
            console.api.auth.authenticate, f"Bearer {credential}", tenant
        )
    except ExportCenterError as e:
        return _sign_in_form(
            request,
            status=e.http_status,
            error=views.ShownError(e.code, e.message, e.hint),
            next_=form.get("next"),
            tenant=tenant or "",
        )
    cookie, _ = await run_in_threadpool(
        console.sessions.create, credential, tenant=principal.tenant, subject=principal.subject
    )
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    _set_cookie(request, response, COOKIE, cookie)
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, user: UserDep) -> Response:
    await _submitted(request, user)
    await run_in_threadpool(get_console(request).sessions.delete, user.cookie)
    response = _see(f"{PREFIX}/sign-in", notice="signed-out")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# ---- runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilters:
    status: str
    profile: str
    offset: int

    def query(self, *, offset: int | None = None) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if self.status:
            out.append(("status", self.status))
        if self.profile:
            out.append(("profile", self.profile))
        out.append(("offset", self.offset if offset is None else offset))
        return out


def _filters(
    status: Annotated[str, Query(max_length=16)] = "",
    profile: Annotated[str, Query(max_length=64)] = "",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> RunFilters:
    return RunFilters(status, profile, offset)


FiltersDep = Annotated[RunFilters, Depends(_filters)]


async def _run_page(caller: ApiCaller, filters: RunFilters) -> RunPage:
    answer = await caller.call("GET", "/runs", query=[*filters.query(), ("limit", PAGE_SIZE)])
    return RunPage.model_validate(_ok(answer).json())


async def _profiles(caller: ApiCaller) -> list[ProfilePublic]:
    answer = await caller.call(
        "GET", "/profiles", query=[("includeArchived", "true"), ("limit", 500)]
    )
    return ProfilePage.model_validate(_ok(answer).json()).items


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(request: Request, user: UserDep, filters: FiltersDep) -> Response:
    caller = user.caller(request)
    page = await _run_page(caller, filters)
    profiles = await _profiles(caller)
    base = f"{PREFIX}/runs"
    older = filters.offset + PAGE_SIZE
    return render(
        request,
        "runs.html",
        user=user,
        nav="runs",
        page=page,
        profiles=profiles,
        statuses=STATUSES,
        filters=filters,
        rows_url=f"{base}/rows?{urlencode(filters.query())}",
        next_url=f"{base}?{urlencode(filters.query(offset=older))}" if page.next else None,
        prev_url=f"{base}?{urlencode(filters.query(offset=max(0, filters.offset - PAGE_SIZE)))}"
        if filters.offset
        else None,
    )


@router.get("/runs/rows", response_class=HTMLResponse)
async def run_rows(request: Request, user: UserDep, filters: FiltersDep) -> Response:
    """The rows of the runs table alone: what the page's script polls for live status."""
    page = await _run_page(user.caller(request), filters)
    html = get_console(request).templates.get_template("_run_rows.html").render(page=page)
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.post("/runs")
async def start_run(request: Request, user: UserDep) -> Response:
    form = await _submitted(request, user)
    body: dict[str, Any] = {"profile": form.get("profile")}
    if form.get("revision").isdigit():
        body["revision"] = int(form.get("revision"))
    answer = await user.caller(request).call("POST", "/runs", body=body, headers=_idempotency(form))
    run_id = str(_ok(answer).json()["id"])
    return _see(f"{PREFIX}/runs/{quote(run_id, safe='')}")


@dataclass(frozen=True)
class _RunView:
    run: RunPublic
    context: dict[str, Any]


async def _run_view(request: Request, user: ConsoleUser, run_id: str) -> _RunView:
    caller = user.caller(request)
    path = f"/runs/{_segment(run_id)}"
    run = RunPublic.model_validate(_ok(await caller.call("GET", path)).json())
    context: dict[str, Any] = {
        "run": run,
        "terminal": run.status.value in TERMINAL,
        "run_error": views.ShownError.of_run(run),
    }
    if run.status.value == "succeeded" and run.artifact is not None:
        files = views.downloads(run)
        context.update(
            downloads=files,
            verify_command=views.verify_command(run, files),
            manifest=views.manifest_summary(await caller.call("GET", f"{path}/manifest")),
            provenance=views.provenance_summary(await caller.call("GET", f"{path}/provenance")),
            manifest_href=views.relay(run.links.manifest),
            provenance_href=views.relay(run.links.provenance),
        )
    return _RunView(run, context)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, user: UserDep, run_id: str) -> Response:
    # Only a run the API shows to this tenant has its event log read (as the SSE route reads
    # it); the page's script follows on from the last event shown.
    path = f"/runs/{_segment(run_id)}"
    visible = RunPublic.model_validate(_ok(await user.caller(request).call("GET", path)).json())
    services = get_console(request).services
    events = [
        EventPublic.of(e)
        for e in await run_in_threadpool(services.repo.events_after, visible.id, 0)
    ]
    last = events[-1].seq if events else 0
    # The state shown is read after the events: never older than the last event shown, so
    # the events that follow only ever move the page forward.
    view = await _run_view(request, user, run_id)
    run = view.run
    # The stream stays open until the page has shown the run's final event: a run that ended
    # between the two reads above still gets its last event (and the details it brings).
    ended = any(e.type in TERMINAL for e in events)
    return render(
        request,
        "run.html",
        user=user,
        nav="runs",
        live=not ended,
        events=[{"type": e.type, "at": e.at, "text": views.describe_event(e)} for e in events],
        events_url=views.relay(f"{run.links.events}?after={last}"),
        summary_url=f"{PREFIX}/runs/{quote(run.id, safe='')}/summary",
        progress_label=views.progress_label(run),
        **view.context,
    )


@router.get("/runs/{run_id}/summary", response_class=HTMLResponse)
async def run_summary(request: Request, user: UserDep, run_id: str) -> Response:
    """The run page's details alone (error, downloads, manifest, provenance): what the page's
    script fetches when the run ends, instead of reloading."""
    view = await _run_view(request, user, run_id)
    template = get_console(request).templates.get_template("_run_details.html")
    return HTMLResponse(template.render(user=user, **view.context), headers=_PAGE_HEADERS)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(request: Request, user: UserDep, run_id: str) -> Response:
    await _submitted(request, user)
    path = f"/runs/{_segment(run_id)}"
    _ok(await user.caller(request).call("POST", f"{path}/cancel"))
    return _see(f"{PREFIX}{path}", notice="cancel-requested")


# ---- profiles ----------------------------------------------------------------------------------


@router.get("/profiles", response_class=HTMLResponse)
async def profiles_page(
    request: Request, user: UserDep, offset: Annotated[int, Query(ge=0, le=10**9)] = 0
) -> Response:
    query = [("includeArchived", "true"), ("offset", offset), ("limit", 100)]
    answer = await user.caller(request).call("GET", "/profiles", query=query)
    page = ProfilePage.model_validate(_ok(answer).json())
    return render(
        request,
        "profiles.html",
        user=user,
        nav="profiles",
        page=page,
        next_url=f"{PREFIX}/profiles?offset={offset + 100}" if page.next else None,
        prev_url=f"{PREFIX}/profiles?offset={max(0, offset - 100)}" if offset else None,
    )


def _new_profile_form(
    request: Request,
    user: ConsoleUser,
    form: ProfileForm,
    *,
    status: int = 200,
    error: views.ShownError | None = None,
) -> HTMLResponse:
    return render(
        request,
        "profile_new.html",
        status=status,
        user=user,
        nav="profiles",
        form=form,
        error=error,
        kinds=[k.value for k in ProfileKind],
        includes=INCLUDES,
    )


@router.get("/profiles/new", response_class=HTMLResponse)
async def new_profile_page(request: Request, user: UserDep) -> Response:
    return _new_profile_form(request, user, ProfileForm())


@router.post("/profiles")
async def create_profile(request: Request, user: UserDep) -> Response:
    form = await _submitted(request, user)
    fields = ProfileForm.of(form)
    try:
        body = fields.body()
    except BadInputError as e:
        return _new_profile_form(
            request, user, fields, status=400, error=views.ShownError(e.code, e.message, e.hint)
        )
    answer = await user.caller(request).call(
        "POST", "/profiles", body=body, headers=_idempotency(form)
    )
    if not answer.ok:
        # The API's own refusal, field paths and all, above the form as it was typed.
        return _new_profile_form(
            request, user, fields, status=answer.status, error=views.ShownError.of_answer(answer)
        )
    return _see(f"{PREFIX}/profiles", notice="profile-created", name=fields.name)


async def _profile(request: Request, user: ConsoleUser, name: str) -> ProfilePublic:
    answer = await user.caller(request).call("GET", f"/profiles/{_segment(name)}")
    return ProfilePublic.model_validate(_ok(answer).json())


def _revise_form(
    request: Request,
    user: ConsoleUser,
    profile: ProfilePublic,
    spec_text: str,
    *,
    status: int = 200,
    error: views.ShownError | None = None,
) -> HTMLResponse:
    return render(
        request,
        "profile_revise.html",
        status=status,
        user=user,
        nav="profiles",
        profile=profile,
        spec_text=spec_text,
        error=error,
    )


@router.get("/profiles/{name}/revise", response_class=HTMLResponse)
async def revise_page(request: Request, user: UserDep, name: str) -> Response:
    profile = await _profile(request, user, name)
    text = orjson.dumps(profile.spec, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return _revise_form(request, user, profile, text)


@router.post("/profiles/{name}/revisions")
async def revise_profile(request: Request, user: UserDep, name: str) -> Response:
    form = await _submitted(request, user)
    profile = await _profile(request, user, name)
    text = form.get("spec")
    try:
        spec = json_object(text, "Profile")
    except BadInputError as e:
        shown = views.ShownError(e.code, e.message, e.hint)
        return _revise_form(request, user, profile, text, status=400, error=shown)
    answer = await user.caller(request).call(
        "POST",
        f"/profiles/{_segment(name)}/revisions",
        body={"spec": spec},
        headers=_idempotency(form),
    )
    if not answer.ok:
        shown = views.ShownError.of_answer(answer)
        return _revise_form(request, user, profile, text, status=answer.status, error=shown)
    saved = ProfilePublic.model_validate(answer.json())
    notice = "revision-created" if answer.status == 201 else "revision-same"
    return _see(f"{PREFIX}/profiles", notice=notice, name=saved.name, rev=str(saved.revision))


@router.post("/profiles/{name}/archive")
async def archive_profile(request: Request, user: UserDep, name: str) -> Response:
    await _submitted(request, user)
    _ok(await user.caller(request).call("POST", f"/profiles/{_segment(name)}/archive"))
    return _see(f"{PREFIX}/profiles", notice="archived", name=name)


# ---- evidence and air-gap generations ----------------------------------------------------------


@router.get("/evidence", response_class=HTMLResponse)
async def evidence_page(request: Request, user: UserDep) -> Response:
    user.principal.require(SCOPE_READ)
    store = get_console(request).services.store
    rows = await run_in_threadpool(store.stats, user.tenant)
    sequence = await run_in_threadpool(store.current_sequence, user.tenant)
    totals = {
        "records": sum(r.records for r in rows),
        "withdrawn": sum(r.withdrawn for r in rows),
        "bytes": sum(r.bytes for r in rows),
        "sources": len({r.source for r in rows}),
    }
    return render(
        request,
        "evidence.html",
        user=user,
        nav="evidence",
        rows=rows,
        totals=totals,
        sequence=sequence,
    )


@router.get("/airgap", response_class=HTMLResponse)
async def airgap_page(request: Request, user: UserDep) -> Response:
    from export_center.importer import generations

    user.principal.require(SCOPE_READ)
    store = get_console(request).services.store
    # As `stella airgap status` and `stella airgap list --tenant`: the installed generation of
    # each live mirror stream, and every import (newest first here).
    installed = await run_in_threadpool(generations.installed, store, user.tenant)
    history = await run_in_threadpool(generations.history, store, user.tenant)
    sequence = await run_in_threadpool(store.current_sequence, user.tenant)
    return render(
        request,
        "airgap.html",
        user=user,
        nav="airgap",
        history=sorted(history, key=lambda g: g.id, reverse=True),
        installed=installed,
        sequence=sequence,
    )


# ---- the relay and the rest --------------------------------------------------------------------


@router.api_route("/api/{path:path}", methods=["GET", "HEAD"])
async def relay(request: Request, user: UserDep, path: str) -> Response:
    """``GET /api/export/<path>`` as the signed-in user, streamed through: a run's events,
    its archive and sidecars (byte ranges included), its manifest and provenance."""
    response = user.caller(request).forward(path, request)
    if response is None:
        raise NotFoundError(f"no API resource {path!r}")
    return response


@router.get("/{rest:path}", response_class=HTMLResponse)
async def not_found(request: Request, rest: str) -> Response:
    raise NotFoundError(f"the console has no page {PREFIX}/{rest}")


__all__ = ["COOKIE", "CSP", "Console", "router"]
