"""The web interface: a Starlette application over the job database (pages, JSON API, live events, images).

Everything it serves comes from this package (templates/, static/); nothing is fetched at run time. Images
are served only by job id: the file is the one the database names, never a path taken from the request.
"""

from __future__ import annotations

import asyncio
import io
import json
import mimetypes
import os
import stat
import threading
import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from retouchd.commands.status.data import reader, status_data
from retouchd.rules import RuleSet
from retouchd.settings import Settings
from retouchd.steering import ActionError, Steering
from retouchd.store import JobState, Store
from retouchd.store.stats import review_stats, state_totals
from retouchd.web import queries
from retouchd.web.security import COOKIE, MAX_BODY, BodyTooLarge, Guard, SecurityMiddleware

HERE = Path(__file__).parent
EVENT_INTERVAL = 2.0
STATUS_TTL = 1.0
BROWSER_IMAGES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/avif", "image/bmp"})
SESSION_SECONDS = 30 * 86400


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def when(value: datetime | None) -> str:
    """A time on a page: the server's local time, to the second (the database keeps UTC)."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def dumps(data: Any) -> str:
    return json.dumps(data, default=_default, ensure_ascii=False)


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def _int(value: str | None, default: int | None = None) -> int | None:
    return int(value) if value is not None and value.isdigit() else default


class Web:
    """The application's state and its endpoints (sync ones run in Starlette's thread pool)."""

    def __init__(self, settings: Settings, rules: RuleSet, store: Store, folders: dict[str, Any]) -> None:
        self.settings, self.rules, self.store = settings, rules, store
        self.engine = reader(settings.db_url)
        self.steering = Steering(settings, rules, store, folders)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["when"] = when
        self.guard = Guard(settings.web_token)
        self._status_lock = threading.Lock()
        self._status_cache: tuple[float, dict[str, Any] | None] = (0.0, None)

    def use_rules(self, rules: RuleSet, folders: dict[str, Any]) -> None:
        """The daemon reloaded its rules (SIGHUP): new inboxes can be paused, removed rules leave the pages.
        One assignment each: a request in flight sees the old or the new rule set, never a mix."""
        self.steering = Steering(self.settings, rules, self.store, folders)
        self.rules = rules
        self._status_cache = (0.0, None)

    def rule_names(self) -> list[str]:
        return [r.name for r in self.rules.rules]

    # -- JSON API ------------------------------------------------------------------------------------------
    def api_jobs(self, request: Request) -> Response:
        q = request.query_params
        limit = _int(q.get("limit"), 100) or 100
        jobs = queries.list_jobs(self.engine, state=q.get("state"), rule=q.get("rule"), review=q.get("review"),
                                 search=q.get("q"), before=_int(q.get("before")), limit=limit)
        return JSON(jobs)

    def api_job(self, request: Request) -> Response:
        data = queries.job_detail(self.engine, request.path_params["job_id"])
        if data is None:
            return JSON({"error": "no such job"}, status_code=404)
        return JSON(data)

    async def api_action(self, request: Request) -> Response:
        job_id, action = request.path_params["job_id"], request.path_params["action"]
        reason: Any = ""
        if action == "reject":
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                return JSON({"error": 'send JSON like {"reason": "halo around the logo"}'}, status_code=400)
            reason = body.get("reason") if isinstance(body, dict) else None
            if not isinstance(reason, str):
                return JSON({"error": 'send JSON like {"reason": "halo around the logo"}'}, status_code=400)
        handlers = {"approve": self.steering.approve, "retry": self.steering.retry, "cancel": self.steering.cancel}
        try:
            if action == "reject":
                await run_in_threadpool(self.steering.reject, job_id, reason)
            elif action in handlers:
                await run_in_threadpool(handlers[action], job_id)
            else:
                return JSON({"error": f"unknown action {action!r}"}, status_code=404)
        except ActionError as exc:
            return JSON({"error": str(exc)}, status_code=exc.status)
        except OSError as exc:
            return JSON({"error": f"file operation failed: {exc.strerror or exc}; try again"}, status_code=503)
        self._status_cache = (0.0, None)  # the next dashboard refresh shows the change
        data = await run_in_threadpool(queries.job_detail, self.engine, job_id)
        return JSON(data)

    def api_inbox(self, request: Request) -> Response:
        rule, action = request.path_params["rule"], request.path_params["action"]
        try:
            if action == "pause":
                self.steering.pause(rule)
            elif action == "resume":
                self.steering.resume(rule)
            else:
                return JSON({"error": f"unknown action {action!r}"}, status_code=404)
        except ActionError as exc:
            return JSON({"error": str(exc)}, status_code=exc.status)
        self._status_cache = (0.0, None)
        return JSON(next(i for i in queries.inboxes(self.engine, [rule])))

    def api_inboxes(self, request: Request) -> Response:
        return JSON(queries.inboxes(self.engine, self.rule_names()))

    def api_stats(self, request: Request) -> Response:
        return JSON(review_stats(self.engine))

    def status(self) -> dict[str, Any]:
        """The dashboard's data; every open dashboard shares one computation per STATUS_TTL."""
        with self._status_lock:
            at, data = self._status_cache
            if data is None or time.monotonic() - at > STATUS_TTL:
                totals = state_totals(self.engine)  # one scan of the jobs for the queue and the stats
                data = status_data(self.engine, self.settings.state, totals)
                queued = {rule: counts.get(JobState.QUEUED, 0) for rule, counts in data["queue"].items()}
                data["inboxes"] = queries.inboxes(self.engine, self.rule_names(), queued)
                data["stats"] = review_stats(self.engine, totals=totals)
                self._status_cache = (time.monotonic(), data)
            return data

    def api_status(self, request: Request) -> Response:
        return JSON(self.status())

    async def events(self, request: Request) -> Response:
        """Server-sent events: the dashboard's data every EVENT_INTERVAL seconds (`?once=1`: one event)."""
        once = request.query_params.get("once") == "1"

        async def stream() -> AsyncIterator[str]:
            while True:
                data = await run_in_threadpool(self.status)
                yield f"event: status\ndata: {dumps(data)}\n\n"
                if once or await request.is_disconnected():
                    return
                await asyncio.sleep(EVENT_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # -- images, by job id only ----------------------------------------------------------------------------
    def image(self, request: Request) -> Response:
        paths = queries.paths_of(self.engine, request.path_params["job_id"])
        which = request.path_params["which"]
        if paths is None or which not in ("before", "after", "mask"):
            return JSON({"error": "no such image"}, status_code=404)
        path = dict(zip(("before", "after", "mask"), paths, strict=True))[which]
        try:
            st = os.lstat(path) if path else None
        except OSError:
            st = None
        if path is None or st is None or not stat.S_ISREG(st.st_mode):  # never a symlink, FIFO or folder
            return JSON({"error": f"the {which} image of this job is not available"}, status_code=404)
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        headers = {"Cache-Control": "private, max-age=60", "Content-Disposition": "inline"}
        if media not in BROWSER_IMAGES:  # TIFF, HEIC, …: a full-resolution JPEG the browser can show
            preview = self._as_jpeg(path)
            if preview is None:
                return JSON({"error": f"the {which} image cannot be shown in a browser"}, status_code=415)
            return Response(preview, media_type="image/jpeg", headers=headers)
        return FileResponse(path, media_type=media, headers=headers)

    def _as_jpeg(self, path: str) -> bytes | None:
        from PIL import Image, ImageOps

        from retouchd.images import _input_formats

        limit = self.settings.limits.max_input_pixels
        try:
            with Image.open(path, formats=_input_formats()) as im:
                if im.width * im.height > limit:
                    return None
                rgb = ImageOps.exif_transpose(im).convert("RGB")
                buffer = io.BytesIO()
                rgb.save(buffer, format="JPEG", quality=92)
                return buffer.getvalue()
        except (OSError, ValueError, Image.DecompressionBombError):
            return None

    # -- pages ---------------------------------------------------------------------------------------------
    def page(self, request: Request, name: str, **context: Any) -> Response:
        context.update(rules=self.rule_names(), csrf=self.guard.csrf, auth=self.guard.token is not None)
        return self.templates.TemplateResponse(request, name, context)

    def dashboard(self, request: Request) -> Response:
        initial = dumps(self.status()).replace("<", "\\u003c")  # safe inside a <script> element
        return self.page(request, "dashboard.html", initial=initial)

    def history(self, request: Request) -> Response:
        q = request.query_params
        jobs = queries.list_jobs(self.engine, state=q.get("state"), rule=q.get("rule"), review=q.get("review"),
                                 search=q.get("q"), before=_int(q.get("before")), limit=100)
        return self.page(request, "history.html", jobs=jobs, q=dict(q))

    def job_page(self, request: Request) -> Response:
        job = queries.job_detail(self.engine, request.path_params["job_id"])
        if job is None:
            return self.page(request, "missing.html", what=f"job {request.path_params['job_id']}")
        return self.page(request, "job.html", job=job)

    def review_page(self, request: Request) -> Response:
        jobs = queries.list_jobs(self.engine, review="pending", rule=request.query_params.get("rule"), limit=200)
        return self.page(request, "review.html", jobs=list(reversed(jobs)))

    def failures(self, request: Request) -> Response:
        jobs = queries.list_jobs(self.engine, state="failed", rule=request.query_params.get("rule"), limit=200)
        return self.page(request, "failures.html", jobs=jobs)

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.page(request, "login.html", error=None)
        body = await request.body()
        given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        if self.guard.token is None:
            return RedirectResponse("/", status_code=303)
        if not self.guard.token_ok(given):
            response = self.page(request, "login.html", error="wrong token")
            response.status_code = 401
            return response
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, self.guard.session, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response


async def _too_large(request: Request, exc: Exception) -> Response:
    return JSON({"error": f"request body too large (at most {MAX_BODY} bytes)"}, status_code=413)


def create_app(settings: Settings, rules: RuleSet, store: Store, folders: dict[str, Any]) -> Starlette:
    web = Web(settings, rules, store, folders)
    routes = [
        Route("/", web.dashboard),
        Route("/history", web.history),
        Route("/review", web.review_page),
        Route("/failures", web.failures),
        Route("/jobs/{job_id:int}", web.job_page),
        Route("/jobs/{job_id:int}/{which:str}", web.image),
        Route("/login", web.login, methods=["GET", "POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/events", web.events),
        Route("/api/jobs", web.api_jobs),
        Route("/api/jobs/{job_id:int}", web.api_job),
        Route("/api/jobs/{job_id:int}/{action:str}", web.api_action, methods=["POST"]),
        Route("/api/inboxes", web.api_inboxes),
        Route("/api/inboxes/{rule:str}/{action:str}", web.api_inbox, methods=["POST"]),
        Route("/api/stats", web.api_stats),
        Route("/api/status", web.api_status),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={BodyTooLarge: _too_large})
    app.add_middleware(SecurityMiddleware, guard=web.guard)
    app.state.web = web
    return app
