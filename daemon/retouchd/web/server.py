"""Serving the web interface with uvicorn: in a thread of `retouchd run` (like the metrics endpoint), or in
the foreground for `retouchd web`. The socket is bound here first, so a taken port is one clear error."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from retouchd.exceptions import ConfigError
from retouchd.rules import RuleFolders, RuleSet
from retouchd.settings import Settings
from retouchd.store import Store
from retouchd.web.security import check_bind

log = structlog.get_logger("retouchd.web")


def bind(address: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"cannot serve the web interface on {address}:{port} ({exc.strerror or exc}); "
                          "choose another web_port or stop the program that uses it") from None
    sock.set_inheritable(False)
    return sock


def _server(settings: Settings, rules: RuleSet, store: Store, folders: dict[str, RuleFolders],
            port: int) -> tuple[Any, socket.socket, str]:
    refusal = check_bind(settings.web_address, settings.web_token)
    if refusal is not None:
        raise ConfigError(refusal)
    import uvicorn

    from retouchd.web.app import create_app

    sock = bind(settings.web_address, port)
    app = create_app(settings, rules, store, folders)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    bound = sock.getsockname()[1]
    host = settings.web_address if settings.web_address not in ("0.0.0.0", "::") else "localhost"
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound}/"
    return uvicorn.Server(config), sock, url


def use_rules(server: Any, rules: RuleSet, folders: dict[str, RuleFolders]) -> None:
    """Give the running interface the rules the daemon (or `retouchd web`) has just reloaded."""
    server.config.app.state.web.use_rules(rules, folders)


class WebThread:
    """The interface inside the daemon; `stop()` ends it."""

    def __init__(self, settings: Settings, rules: RuleSet, store: Store, folders: dict[str, RuleFolders]) -> None:
        assert settings.web_port is not None
        self.server, self.sock, self.url = _server(settings, rules, store, folders, settings.web_port)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="retouchd-web", daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        log.info("serving the web interface", url=self.url)
        return self.url

    def use_rules(self, rules: RuleSet, folders: dict[str, RuleFolders]) -> None:
        use_rules(self.server, rules, folders)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


def serve_forever(settings: Settings, rules: RuleSet, store: Store, folders: dict[str, RuleFolders],
                  reload: Callable[[], tuple[RuleSet, dict[str, RuleFolders]]] | None = None) -> None:
    """`retouchd web`: the interface in the foreground until Ctrl-C / SIGTERM; SIGHUP re-reads the rules
    with `reload` (on any error the old ones stay, and the log says why)."""
    port = settings.web_port if settings.web_port is not None else 8750
    server, sock, url = _server(settings, rules, store, folders, port)

    def on_hangup(_signum: int, _frame: Any) -> None:
        assert reload is not None
        try:
            new_rules, new_folders = reload()
        except Exception as exc:  # a bad rule file never stops the interface
            log.error("rules not reloaded; keeping the old ones", error=str(exc).splitlines()[0] if str(exc) else
                      type(exc).__name__)
            return
        use_rules(server, new_rules, new_folders)
        log.info("rules reloaded", rules=[r.name for r in new_rules.rules])

    previous = signal.signal(signal.SIGHUP, on_hangup) if reload is not None else None
    log.info("serving the web interface", url=url, token=settings.web_token is not None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)
