"""The board's web application (Starlette + Jinja): pages, sign-in, actions, live updates, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from allocator.hospital import Hospital
from streams.board.auth import USER_ID, PasswordStore
from streams.board.feed import BoardFeed
from streams.board.metrics import BoardMetrics
from streams.board.settings import BoardSettings
from streams.board.state import parse_time

log = logging.getLogger(__name__)
audit_log = logging.getLogger("wardflow.board.audit")

HERE = Path(__file__).parent
ACTIONS = ("confirm", "reassign", "reject")
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                 b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
                                 b"object-src 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer makes browsers send `Origin: null` on form posts
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Pure ASGI middleware (streams SSE untouched): security headers on every response, no caching of pages."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope.get("path", "").startswith("/static/")

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in dict(SECURITY_HEADERS)]
                headers += SECURITY_HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)


class SignInLimiter:
    """At most `limit` failed sign-ins per user id in `window_s`; then that id waits out the window."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}

    def blocked(self, user: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(user, []) if now - t < self.window_s]
        self._failures[user] = recent
        return len(recent) >= self.limit

    def failed(self, user: str) -> None:
        self._failures.setdefault(user, []).append(time.monotonic())

    def succeeded(self, user: str) -> None:
        self._failures.pop(user, None)


def _fmt_time(value: str | None) -> str:
    t = parse_time(value)
    return t.strftime("%a %H:%M") if t else ""


def create_board_app(settings: BoardSettings, hospitals: dict[str, Hospital],
                     metrics: BoardMetrics | None = None) -> Starlette:
    metrics = metrics or BoardMetrics()
    feed = BoardFeed(settings, hospitals, metrics)
    store = PasswordStore(settings.board_password_file)
    limiter = SignInLimiter()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["clock"] = _fmt_time
    templates.env.globals["status_label"] = {"available": "available", "occupied": "occupied", "held": "held",
                                             "dirty": "dirty", "cleaning": "cleaning", "blocked": "blocked",
                                             "closed": "closed"}
    trusted = {h.strip() for h in settings.board_proxy_trusted.split(",") if h.strip()}
    first_hid = sorted(hospitals)[0]
    secret = settings.board_session_secret.get_secret_value() if settings.board_session_secret else None
    if secret is None:
        secret = secrets.token_urlsafe(32)
        log.warning("board_session_secret is not set: a random key is used, so sign-ins end when the board restarts")

    # ----------------------------------------------------------------- helpers
    def current_user(request: Request) -> str | None:
        if settings.board_auth == "proxy":
            client = request.client.host if request.client else ""
            user = request.headers.get(settings.board_proxy_header, "").strip()
            if client in trusted and USER_ID.match(user):
                return user
            return None
        session_user = request.session.get("user")
        expires = request.session.get("expires", 0)
        if session_user and time.time() < expires:
            return str(session_user)
        return None

    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return token

    def csrf_ok(request: Request, form: Any) -> bool:
        token = request.session.get("csrf") or ""
        sent = str(form.get("csrf", ""))
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            return False
        return bool(token) and hmac.compare_digest(token, sent)

    def audit(**entry: Any) -> None:
        entry = {"at": datetime.now(UTC).isoformat(), **entry}
        line = json.dumps(entry, sort_keys=True)
        audit_log.info("%s", line)
        if settings.board_audit_log:
            settings.board_audit_log.parent.mkdir(parents=True, exist_ok=True)
            with open(settings.board_audit_log, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def board_for(hid: str):
        board = feed.boards.get(hid)
        if board is None:
            return None
        return board

    def render(request: Request, name: str, hid: str, status: int = 200, **ctx: Any) -> Response:
        user = current_user(request)
        board = feed.boards[hid]
        fragment = request.headers.get("x-board-fragment") == "1"
        context = {"hid": hid, "hospital": board.hospital, "hospitals": sorted(hospitals), "user": user,
                   "may_act": user is not None and user in board.hospital.clinicians, "csrf": csrf_token(request),
                   "auth": settings.board_auth, "overview": board.overview(), "caught_up": feed.caught_up.is_set(),
                   "fragment": fragment, "path": request.url.path, **ctx}
        return templates.TemplateResponse(request, f"{name}.html", context, status_code=status)

    def need_reader(request: Request) -> Response | None:
        if settings.board_read_requires_sign_in and current_user(request) is None:
            if request.headers.get("x-board-fragment") == "1":
                return PlainTextResponse("sign in", status_code=401)
            if settings.board_auth == "proxy":
                return PlainTextResponse("not signed in: the board expects the authenticating proxy's user header",
                                         status_code=401)
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return None

    # ----------------------------------------------------------------- pages
    async def home(request: Request) -> Response:
        return RedirectResponse(f"/h/{first_hid}/", status_code=303)

    async def overview(request: Request) -> Response:
        hid = request.path_params["hid"]
        if hid not in hospitals:
            return PlainTextResponse("unknown hospital", status_code=404)
        if (r := need_reader(request)) is not None:
            return r
        return render(request, "overview", hid, page="overview")

    async def unit(request: Request) -> Response:
        hid, code = request.path_params["hid"], request.path_params["unit"]
        board = board_for(hid)
        if board is None or code not in {u.code for u in board.hospital.units}:
            return PlainTextResponse("unknown hospital or unit", status_code=404)
        if (r := need_reader(request)) is not None:
            return r
        return render(request, "unit", hid, page="unit", unit=board.unit_page(code),
                      beds_free=board.available_beds())

    async def queue(request: Request) -> Response:
        hid = request.path_params["hid"]
        board = board_for(hid)
        if board is None:
            return PlainTextResponse("unknown hospital", status_code=404)
        if (r := need_reader(request)) is not None:
            return r
        return render(request, "queue", hid, page="queue", items=board.queue_items(), beds_free=board.available_beds())

    refusals = {
        "unlisted": "You are not on this hospital's list of clinicians who may act. Nothing was sent; the attempt "
                    "is logged.",
        "stale": "That decision is no longer waiting for this action (the board has moved on). Nothing was sent.",
        "bed": "That bed is not available now. Choose an available bed. Nothing was sent.",
    }

    async def refused(request: Request) -> Response:
        """Where a refused action lands (after a redirect, so a reload never re-sends the form)."""
        hid, code = request.path_params["hid"], request.path_params["code"]
        if hid not in hospitals or code not in refusals:
            return PlainTextResponse("not found", status_code=404)
        if (r := need_reader(request)) is not None:
            return r
        return render(request, "refused", hid, page="refused", why=refusals[code])

    async def state_json(request: Request) -> Response:
        hid = request.path_params["hid"]
        board = board_for(hid)
        if board is None:
            return PlainTextResponse("unknown hospital", status_code=404)
        if (r := need_reader(request)) is not None:
            return r
        return Response(json.dumps(board.snapshot(), sort_keys=True), media_type="application/json")

    # ----------------------------------------------------------------- sign-in
    def safe_next(value: str | None) -> str:
        return value if value and value.startswith("/h/") and "//" not in value and "\\" not in value else "/"

    async def login(request: Request) -> Response:
        if settings.board_auth == "proxy":
            return RedirectResponse("/", status_code=303)
        error = None
        nxt = safe_next(request.query_params.get("next"))
        if request.method == "POST":
            form = await request.form()
            nxt = safe_next(str(form.get("next", "")))
            user, password = str(form.get("user", "")).strip(), str(form.get("password", ""))
            if not csrf_ok(request, form):
                metrics.sign_ins.labels(outcome="refused_csrf").inc()
                error = "The form had expired; please sign in again."
            elif not USER_ID.match(user) or limiter.blocked(user):
                metrics.sign_ins.labels(outcome="refused").inc()
                error = "Sign-in refused. Wait a few minutes after repeated failures."
            elif await asyncio.to_thread(store.check, user, password):
                limiter.succeeded(user)
                request.session.clear()
                request.session.update(user=user, expires=time.time() + settings.board_session_hours * 3600,
                                       csrf=secrets.token_urlsafe(32))
                metrics.sign_ins.labels(outcome="ok").inc()
                audit(who=user, what="sign_in", outcome="ok", client=request.client.host if request.client else None)
                return RedirectResponse(nxt if nxt != "/" else f"/h/{first_hid}/", status_code=303)
            else:
                limiter.failed(user)
                metrics.sign_ins.labels(outcome="failed").inc()
                audit(who=user, what="sign_in", outcome="failed", client=request.client.host if request.client else None)
                error = "Unknown user or wrong password."
        return templates.TemplateResponse(request, "login.html", {"csrf": csrf_token(request), "error": error,
                                                                  "next": nxt, "user": None, "page": "login"},
                                          status_code=200 if error is None else 401)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if csrf_ok(request, form):
            user = current_user(request)
            request.session.clear()
            if user:
                audit(who=user, what="sign_out", outcome="ok")
        return RedirectResponse("/login", status_code=303)

    # ----------------------------------------------------------------- actions
    async def act(request: Request) -> Response:
        hid = request.path_params["hid"]
        board = board_for(hid)
        if board is None:
            return PlainTextResponse("unknown hospital", status_code=404)
        form = await request.form()
        user = current_user(request)
        action, decision_id = str(form.get("action", "")), str(form.get("decision_id", ""))
        bed_id = str(form.get("bed_id", "")) or None
        back = safe_next(str(form.get("next", "")))
        client = request.client.host if request.client else None
        record = dict(who=user, what=action, hospital=hid, decision_id=decision_id, bed_id=bed_id, client=client)
        if user is None:
            metrics.actions.labels(action=action if action in ACTIONS else "other", outcome="refused_signed_out").inc()
            audit(**record, outcome="refused_signed_out")
            return PlainTextResponse("sign in first", status_code=401)
        if not csrf_ok(request, form):
            metrics.actions.labels(action=action if action in ACTIONS else "other", outcome="refused_csrf").inc()
            audit(**record, outcome="refused_csrf")
            return PlainTextResponse("refused: the form is stale or was not sent by the board (CSRF); reload the page",
                                     status_code=403)
        if user not in board.hospital.clinicians:
            metrics.actions.labels(action=action if action in ACTIONS else "other", outcome="refused_unlisted").inc()
            audit(**record, outcome="refused_unlisted")
            return RedirectResponse(f"/h/{hid}/refused/unlisted", status_code=303)
        item = next((q for q in board.queue.values() if q.decision_id == decision_id and q.decision_id), None)
        if action not in ACTIONS or item is None or action not in item.actions():
            metrics.actions.labels(action=action if action in ACTIONS else "other", outcome="refused_stale").inc()
            audit(**record, outcome="refused_stale")
            return RedirectResponse(f"/h/{hid}/refused/stale", status_code=303)
        if action == "reassign" and (bed_id is None or bed_id not in
                                     {b for beds in board.available_beds().values() for b in beds}):
            metrics.actions.labels(action=action, outcome="invalid").inc()
            audit(**record, outcome="invalid_bed")
            return RedirectResponse(f"/h/{hid}/refused/bed", status_code=303)
        now = datetime.now(UTC)
        clock = parse_time(board.clock)
        occurred = max(now, clock) if clock is not None else now  # never before the hospital clock (replays, demo)
        body = {"event_id": f"board-{uuid.uuid4()}", "hospital_id": hid, "occurred_at": occurred.isoformat(),
                "decision_id": decision_id, "action": action, "clinician_id": user,
                "reason": "Entered on the bed board."}
        if action == "reassign":
            body["bed_id"] = bed_id
        await feed.publish_override(hid, body)
        metrics.actions.labels(action=action, outcome="published").inc()
        audit(**record, outcome="published", event_id=body["event_id"], occurred_at=body["occurred_at"])
        return RedirectResponse(back if back != "/" else f"/h/{hid}/queue", status_code=303)

    # ----------------------------------------------------------------- live, health, metrics
    async def events(request: Request) -> Response:
        if settings.board_read_requires_sign_in and current_user(request) is None:
            return PlainTextResponse("sign in", status_code=401)
        queue = feed.broadcaster.subscribe()
        metrics.clients.set(feed.broadcaster.clients)

        async def stream():
            try:
                yield {"event": "hello", "data": "1"}
                while True:
                    hid = await queue.get()
                    yield {"event": "change", "data": hid}
            finally:
                feed.broadcaster.unsubscribe(queue)
                metrics.clients.set(feed.broadcaster.clients)

        return EventSourceResponse(stream(), ping=15)

    async def healthz(request: Request) -> Response:
        if feed.failed:
            return PlainTextResponse(f"failed: {feed.failed}", status_code=503)
        ok = feed.caught_up.is_set()
        return PlainTextResponse("ok" if ok else "catching up", status_code=200 if ok else 503)

    async def metrics_view(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def favicon(request: Request) -> Response:
        return RedirectResponse("/static/favicon.svg", status_code=301)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await feed.start()
        try:
            yield
        finally:
            await feed.stop()

    routes = [
        Route("/", home), Route("/h/{hid}/", overview), Route("/h/{hid}/units/{unit}", unit),
        Route("/h/{hid}/queue", queue), Route("/h/{hid}/state.json", state_json),
        Route("/h/{hid}/act", act, methods=["POST"]), Route("/h/{hid}/refused/{code}", refused),
        Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"]),
        Route("/events", events), Route("/healthz", healthz), Route("/metrics", metrics_view),
        Route("/favicon.ico", favicon), Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders),
                  Middleware(SessionMiddleware, secret_key=secret, session_cookie="wardflow_board",
                             max_age=int(settings.board_session_hours * 3600), same_site="strict",
                             https_only=settings.board_secure_cookies)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.feed = feed
    app.state.metrics = metrics
    return app
