"""Paused inboxes: a rule whose share is not mounted (or that a person paused) takes and claims nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from retouchd.fsops import ensure_dir
from retouchd.mounts import missing_share

if TYPE_CHECKING:
    from retouchd.pool import Pool
    from retouchd.rules import RuleFolders
    from retouchd.settings import Settings
    from retouchd.watcher import Watcher

log = structlog.get_logger("retouchd.daemon")


def all_folders(f: RuleFolders) -> list[Path]:
    return [f.inbox, f.outbox, f.archive, f.failed, f.review]


class Shares:
    """Part of Daemon (a mixin): hold and release a rule's inbox; resume a rule whose share came back."""

    settings: Settings
    watcher: Watcher | None
    pool: Pool | None
    folders: dict[str, RuleFolders]
    unmounted: dict[str, str]

    def pause_inbox(self, rule: str, reason: str) -> None:
        """Take nothing from the rule's inbox and claim none of its jobs until resume_inbox(rule)."""
        assert self.watcher is not None
        self.watcher.hold(rule, reason)
        if self.pool is not None:
            self.pool.held.add(rule)

    def resume_inbox(self, rule: str) -> None:
        assert self.watcher is not None
        self.watcher.release(rule)
        if self.pool is not None:
            self.pool.held.discard(rule)

    def _outage(self, rule: str) -> bool:
        return self.watcher is not None and self.watcher.outage(rule)

    def _check_mounts(self) -> None:
        """Resume a rule whose absolute folders (a share) have appeared; never create them."""
        for name in list(self.unmounted):
            if missing_share(self.settings.root, all_folders(self.folders[name])) is None:
                for path in all_folders(self.folders[name]):
                    ensure_dir(path)
                del self.unmounted[name]
                log.info("share folders present; resuming", rule=name)
                self.resume_inbox(name)

