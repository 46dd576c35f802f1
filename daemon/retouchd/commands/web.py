"""`retouchd web`: the web interface on its own, reading (and steering through) the database."""

from __future__ import annotations

from collections.abc import Callable

from retouchd.rules import RuleSet, rule_folders
from retouchd.settings import Settings


def run_web(settings: Settings, rules: RuleSet, port: int | None,
            settings_loader: Callable[[], Settings] | None = None) -> None:
    from retouchd.exceptions import ConfigError
    from retouchd.rules import RuleFolders, load_rules
    from retouchd.store import open_store
    from retouchd.web.security import check_bind
    from retouchd.web.server import serve_forever

    if port is not None:
        settings.web_port = port
    refusal = check_bind(settings.web_address, settings.web_token)
    if refusal is not None:  # before the database is opened or created
        raise ConfigError(refusal)
    store = open_store(settings.db_url)

    def reload() -> tuple[RuleSet, dict[str, RuleFolders]]:
        """SIGHUP, as for `retouchd run`: the settings file's `rule_files` again, then the rules."""
        files = tuple(settings_loader().rule_files) if settings_loader is not None else rules.files
        new = load_rules(files or None)
        return new, rule_folders(settings, new)

    serve_forever(settings, rules, store, rule_folders(settings, rules), reload)
