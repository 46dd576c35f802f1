"""The daemon hands settled files to the intake thread and collects what became of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.exc import DBAPIError

from retouchd.exceptions import RetouchdError
from retouchd.intake import Intake, IntakeThread, Outcome
from retouchd.settle import Candidate, SettleTracker

if TYPE_CHECKING:
    from retouchd.pool import Pool
    from retouchd.rules import RuleFolders
    from retouchd.settings import Settings
    from retouchd.store import Store

log = structlog.get_logger("retouchd.daemon")


class Handover:
    """Part of Daemon (a mixin): settled files → the intake thread (within the queue bound) → outcomes."""

    settings: Settings
    store: Store | None
    pool: Pool | None
    folders: dict[str, RuleFolders]
    intake: Intake
    offers: IntakeThread
    tracker: SettleTracker
    _fault: Callable[[str], None]

    def _take(self, ready: list[Candidate]) -> None:
        """Hand settled files to the intake thread, as far as the queue bound allows."""
        assert self.store is not None
        try:
            room = self.settings.workers.queue_bound - self.store.count_claimable() - self.offers.in_flight()
        except DBAPIError:
            for candidate in ready:
                self.tracker.requeue(candidate)
            raise
        for candidate in ready:
            if room <= 0 or not self.offers.submit(candidate):
                self.tracker.requeue(candidate)
                continue
            room -= 1

    def _offer(self, candidate: Candidate) -> Outcome:
        """Runs on the intake thread: every error becomes an outcome (look again, or leave the file be)."""
        folders = self.folders.get(candidate.rule)
        if folders is None or folders.inbox not in candidate.path.parents:
            return Outcome.SKIPPED  # handed over just before a reload dropped or moved its rule
        try:
            outcome = self.intake.offer(candidate.rule, candidate.path, (candidate.size, candidate.mtime_ns))
            if outcome is Outcome.QUEUED:
                self._fault("after-queue")
            return outcome
        except RetouchdError as exc:
            log.warning("cannot take file", rule=candidate.rule, path=str(candidate.path), error=str(exc))
            return Outcome.SKIPPED
        except (OSError, DBAPIError) as exc:
            log.warning("cannot take file yet", rule=candidate.rule, path=str(candidate.path),
                        error=str(exc).splitlines()[0])
            return Outcome.WAIT
        except Exception:  # one odd file must never stop the daemon
            log.exception("file skipped after an internal error; touch or rename it to try again",
                          rule=candidate.rule, path=str(candidate.path))
            return Outcome.SKIPPED

    def _collect(self) -> None:
        assert self.pool is not None
        for candidate, outcome in self.offers.results():
            if outcome is Outcome.WAIT:
                self.tracker.requeue(candidate)
            else:
                self.tracker.mark_taken(candidate)
            if outcome in (Outcome.QUEUED, Outcome.MOVED):
                self.pool.wake.set()
