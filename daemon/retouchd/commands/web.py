"""`retouchd web`: the web interface on its own, reading (and steering through) the database."""

from __future__ import annotations

from retouchd.rules import RuleSet
from retouchd.settings import Settings


def run_web(settings: Settings, rules: RuleSet, port: int | None) -> None:
    from retouchd.daemon import rule_folders
    from retouchd.store import open_store
    from retouchd.web.server import serve_forever

    if port is not None:
        settings.web_port = port
    store = open_store(settings.db_url)
    serve_forever(settings, rules, store, rule_folders(settings, rules))
