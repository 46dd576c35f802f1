"""The daemon's recovery sweep: jobs whose lease holder is gone are taken over and finished (SPEC §6)."""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING

import structlog

from retouchd import instancelock
from retouchd.archive import Committer, lease_dead
from retouchd.exceptions import LeaseLost

if TYPE_CHECKING:
    from retouchd.pool import Identity, Pool
    from retouchd.rules import RuleFolders
    from retouchd.settings import Settings
    from retouchd.store import Store

log = structlog.get_logger("retouchd.daemon")


class Recovery:
    """Part of Daemon (a mixin): the sweep at start-up, every half lease, and at shutdown."""

    settings: Settings
    store: Store | None
    pool: Pool | None
    identity: Identity
    folders: dict[str, RuleFolders]
    committer: Committer

    def recover(self, *, startup: bool) -> None:
        """Take over and finish (or requeue) jobs whose lease holder is gone; never a lease this process
        holds, however late its heartbeat."""
        assert self.store is not None
        held = self.pool.holds if self.pool is not None else (lambda lease: False)
        me = self.identity
        is_dead = lease_dead(me.host, me.pid, me.instance, instancelock.pid_alive, held)
        for job in self.store.stale_leases(is_dead):
            if job.rule in self.folders:
                # Our own crash is not the file's fault; another host's death counts the attempt.
                self._recover_one(job.id, job.lease_owner, refund=job.host == self.identity.host, error=None)

    def _recover_one(self, job_id: int, seen: str | None, *, refund: bool, error: str | None) -> None:
        """Take the job over from the lease `seen` (only if that is still its lease), then finish it."""
        assert self.store is not None
        lease = f"{self.identity.owner(0)}:recovery-{uuid.uuid4().hex[:8]}"
        try:
            job = self.store.take_over(job_id, seen, lease, self.settings.workers.lease_seconds)
            if job is None:
                return  # renewed or taken over meanwhile: not ours to touch
            outcome = self.committer.recover(job, lease, refund=refund, error=error)
        except LeaseLost as exc:
            log.warning("recovery stopped: the job was taken over meanwhile", job_id=job_id, error=str(exc))
            return
        except Exception as exc:  # the next sweep tries again; the daemon keeps running
            log.warning("recovery failed; will try again", job_id=job_id, error=str(exc).splitlines()[0])
            return
        log.info("recovered interrupted job", job_id=job.id, rule=job.rule, path=job.source_path, outcome=outcome)

    def _clean_work(self) -> None:
        for leftover in self.settings.work.glob(f"{self.identity.host}-*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
