"""Who may use the web interface, as an ASGI middleware in front of every route.

- `web_token` set: a request carries it as `Authorization: Bearer TOKEN`, or carries the session cookie the
  login form sets (HttpOnly, SameSite=Strict). A POST authenticated by the cookie must also carry the CSRF
  token of the page (`X-CSRF-Token` header), which a page on another site cannot read or send.
- no token (loopback only): the Host header must name the loopback interface (no DNS rebinding), and every
  POST carries the CSRF token of the page, which forces a browser's CORS preflight that we never grant.
- Bodies over MAX_BODY bytes are refused with 413 before they are read.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "retouchd_session"
MAX_BODY = 64 * 1024
OPEN_PATHS = ("/login", "/static/")
LOOPBACK_NAMES = ("localhost",)


def is_loopback(address: str) -> bool:
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(address: str, token: str | None) -> str | None:
    """The one-line refusal for an exposed interface without a token, or None when the setting is safe."""
    if token or is_loopback(address):
        return None
    return (f"refusing to serve the web interface on {address} without web_token; set web_token "
            "(16+ characters) or keep web_address = 127.0.0.1 behind a reverse proxy")


class Guard:
    def __init__(self, token: str | None) -> None:
        self.token = token
        key = (token or secrets.token_hex(32)).encode()
        self.session = hmac.new(key, b"retouchd-session", hashlib.sha256).hexdigest()
        self.csrf = hmac.new(key, b"retouchd-csrf", hashlib.sha256).hexdigest()

    def token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def cookie_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.session.encode())

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookie(headers: dict[str, str]) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is the same as none
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


async def _reply(send: Send, status: int, message: str, *, location: str | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if location:
        headers.append((b"location", location.encode()))
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="retouchd"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path, method = scope["path"], scope["method"]
        host = headers.get("host", "")
        host = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        if self.guard.token is None and not is_loopback(host):
            await _reply(send, 403, "this interface answers on the loopback address only (no web_token set)")
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await _reply(send, 413, f"request body too large (at most {MAX_BODY} bytes)")
            return
        scope["state"] = {**scope.get("state", {}), "csrf": self.guard.csrf}
        bearer = headers.get("authorization", "")
        by_token = bearer.lower().startswith("bearer ") and self.guard.token_ok(bearer[7:].strip())
        if bearer and not by_token:
            await _reply(send, 401, "wrong token")
            return
        by_cookie = self.guard.cookie_ok(_cookie(headers))
        open_path = path == "/login" or path.startswith("/static/")
        if self.guard.token is not None and not (by_token or by_cookie or open_path):
            if method == "GET" and not path.startswith(("/api/", "/jobs/", "/events")):
                await _reply(send, 303, "log in first", location="/login")
            else:
                await _reply(send, 401, "authentication required: send Authorization: Bearer TOKEN or log in")
            return
        if method not in ("GET", "HEAD") and not by_token and path != "/login" \
                and not self.guard.csrf_ok(headers.get("x-csrf-token")):
            await _reply(send, 403, "missing or wrong X-CSRF-Token (reload the page)")
            return
        await self.app(scope, _capped(receive, send), send)


def _capped(receive: Receive, send: Send) -> Receive:
    """A body sent without Content-Length (chunked) is cut off at MAX_BODY."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise BodyTooLarge
        return message

    return wrapped


class BodyTooLarge(Exception):
    """Raised while reading a chunked body that grew past MAX_BODY; answered with 413."""
