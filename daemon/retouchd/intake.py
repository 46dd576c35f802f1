"""Intake: a stable file becomes a queued job, once per content (SPEC §6.2).

The sha256 of the bytes decides: a second copy of content the rule already has is archived as a duplicate,
a queued file that was renamed keeps its job, and a file whose twin is still in flight waits for it. A newer
version of a queued file (it was appended to after intake) replaces the job's content: one path, one job.
Files are read beneath the inbox only (beneath.py); a link, FIFO or device node is recorded once as a
failed job, and a file that stays unreadable is failed as "permission denied" after a few looks.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path

import structlog

from retouchd import beneath
from retouchd.exceptions import TransientError, UnsafePathError
from retouchd.fsops import safe_join, unique_path
from retouchd.rules import Rule, RuleFolders
from retouchd.settle import Candidate
from retouchd.sidecars import find_sidecar, is_sidecar
from retouchd.sidecarwait import SidecarWaits, needs_sidecar
from retouchd.store import ACTIVE, Job, JobState, Store
from retouchd.store.fenced import keeping

log = structlog.get_logger("retouchd.intake")


class Outcome(StrEnum):
    QUEUED = "queued"
    KNOWN = "known"
    MOVED = "moved"
    DUPLICATE = "duplicate"
    WAIT = "wait"
    SKIPPED = "skipped"
    REFUSED = "refused"


FailFn = Callable[[Job, str, str, str | None, str | None], None]
"""Committer.to_failed: move a job's file to failed/ with its reason and mark the job failed."""

CLAIM_STALE = 120.0
"""Seconds after which another host may take over a sighting whose claimant has not queued it, when the
daemon does not say (it passes its job lease: a host killed between claiming and queueing holds its sightings
no longer than it would hold its jobs)."""

UNREADABLE_LOOKS = 5
"""Looks (one per settle time) at a file we may not read before it is failed as "permission denied"."""


class Intake:
    def __init__(self, store: Store, rules: dict[str, Rule], folders: dict[str, RuleFolders], *,
                 max_attempts: int, sidecars: SidecarWaits | None = None, fail: FailFn | None = None,
                 owner: str | None = None, claim_stale: float | None = None, claim_sightings: bool = True) -> None:
        self.store, self.rules, self.folders, self.max_attempts = store, rules, folders, max_attempts
        self.claim_sightings = claim_sightings
        """False when no other daemon can share the database (SQLite in the state folder this daemon has
        locked): a sighting claim would be one write transaction per file that decides nothing."""
        self.claim_stale = claim_stale
        """Seconds after which a sighting claimed by another host that has not queued it is taken over
        (None: CLAIM_STALE)."""
        self.sidecars = sidecars or SidecarWaits(0.0)
        self.fail = fail
        self.owner = owner
        """This daemon (host:pid:instance): with several hosts, a sighting is claimed before it is read."""
        self._unreadable: dict[Path, int] = {}

    def offer(self, rule_name: str, path: Path, seen: tuple[int, int] | None = None) -> Outcome:
        """Queue (or match) the file at `path`; `seen` = (size, mtime_ns) when it was judged settled: a file
        that differs from that is still being written and waits."""
        rule = self.rules[rule_name]
        if is_sidecar(path.name):
            self.sidecars.saw_mask(rule.name, path)
            return Outcome.SKIPPED
        if not rule.matches(path.name):
            return Outcome.SKIPPED
        if needs_sidecar(rule) and find_sidecar(path) is None and self.sidecars.hold(rule.name, path):
            return Outcome.WAIT
        self.sidecars.release(path)
        inbox = self.folders[rule_name].inbox
        rel = path.relative_to(inbox)
        if seen is not None and self.owner is not None and self.claim_sightings \
                and not self._claim(rule.name, path, seen):
            earlier = self.store.queued_at(rule.name, str(path))
            return Outcome.KNOWN if earlier is not None else Outcome.WAIT  # another host is reading it
        try:
            digest, st = beneath.hash_file(inbox, path)
        except (FileNotFoundError, NotADirectoryError):
            return Outcome.SKIPPED
        except (beneath.NotRegularError, UnsafePathError) as exc:
            return self._refuse(rule, path, rel, str(exc))
        except PermissionError as exc:
            return self._unreadable_look(rule, path, rel, exc)
        except TransientError:
            return Outcome.WAIT
        except OSError as exc:
            log.warning("cannot read file; will look again", rule=rule.name, path=str(path), error=str(exc))
            return Outcome.WAIT
        self._unreadable.pop(path, None)
        if seen is not None and (st.st_size, st.st_mtime_ns) != seen:
            return Outcome.WAIT  # changed since it looked settled: still being written
        sidecar = find_sidecar(path)
        # The same photo with a different mask is different work: the mask's bytes are part of the content.
        if sidecar is None:
            content = digest
        else:
            content = hashlib.sha256(f"{digest}+{beneath.hash_file(inbox, sidecar)[0]}".encode()).hexdigest()
        key = f"{content}/{uuid.uuid4().hex}" if rule.reprocess else content
        fields = {"content_key": key, "sha256": digest, "size": st.st_size, "mtime": st.st_mtime,
                  "sidecar_path": str(sidecar) if sidecar else None}
        earlier = self.store.queued_at(rule.name, str(path))
        if earlier is not None and earlier.sha256 != digest:
            if earlier.state == JobState.RUNNING:
                return Outcome.WAIT  # its worker will see the change; decide once it is back in the queue
            if self.store.supersede(earlier.id, **fields):
                log.info("queued file changed; its job takes the new content", job_id=earlier.id, rule=rule.name,
                         path=str(path), size=st.st_size)
                return Outcome.MOVED
        job, created = self.store.enqueue(
            rule=rule.name, source_path=str(path), rel_path=str(rel),
            max_attempts=rule.max_attempts or self.max_attempts, variant=rule.variant_for(digest), **fields,
        )
        if created:  # debug: "job started" and the outcome's line say the rest at info (2 lines per file, not 3)
            log.debug("queued", job_id=job.id, rule=rule.name, path=str(path), size=st.st_size)
            return Outcome.QUEUED
        return self._existing(job, path, rel, sidecar)

    def _existing(self, job: Job, path: Path, rel: Path, sidecar: Path | None) -> Outcome:
        if job.source_path == str(path) and job.state not in (JobState.FAILED, JobState.ARCHIVED):
            return Outcome.KNOWN  # the job's own file, still in the inbox while it is being handled
        if job.state == JobState.QUEUED and not os.path.lexists(job.source_path):
            self.store.move_source(job.id, str(path), str(rel), str(sidecar) if sidecar else None)
            log.info("job follows its renamed file", job_id=job.id, rule=job.rule, path=str(path))
            return Outcome.MOVED
        if job.state == JobState.FAILED:
            # Dropping a file again after it failed is a request to try again (like `retouchd retry`).
            self.store.move_source(job.id, str(path), str(rel), str(sidecar) if sidecar else None)
            log.info("failed content dropped again; retrying", job_id=job.id, rule=job.rule, path=str(path))
            return Outcome.MOVED
        if job.state in ACTIVE or job.state in (JobState.DONE, JobState.REVIEW):
            return Outcome.WAIT  # its twin is in flight; decide once that settles
        return self._archive_duplicate(job, path, rel, sidecar)

    def _archive_duplicate(self, job: Job, path: Path, rel: Path, sidecar: Path | None) -> Outcome:
        root = self.folders[job.rule].archive / date.today().isoformat()
        target = unique_path(safe_join(root, rel))
        inbox = self.folders[job.rule].inbox
        how = beneath.move_out(inbox, path, target, job.sha256)
        if sidecar is not None and beneath.exists(inbox, sidecar):
            beneath.move_out(inbox, sidecar, unique_path(target.with_name(sidecar.name)), None)
        self.store.add_duplicate(job.id, str(path), str(target))
        log.info("duplicate content archived, not processed again", job_id=job.id, rule=job.rule,
                 path=str(path), archive_path=str(target), state=job.state, how=how)
        return Outcome.DUPLICATE

    def _claim(self, rule: str, path: Path, seen: tuple[int, int]) -> bool:
        assert self.owner is not None
        key = hashlib.sha256(f"{rule}\0{os.fsencode(path)!r}\0{seen[0]}\0{seen[1]}".encode()).hexdigest()
        stale = CLAIM_STALE if self.claim_stale is None else self.claim_stale
        return self.store.claim_sighting(key, self.owner, stale)

    def _unreadable_look(self, rule: Rule, path: Path, rel: Path, exc: OSError) -> Outcome:
        looks = self._unreadable[path] = self._unreadable.get(path, 0) + 1
        if looks < UNREADABLE_LOOKS:
            log.warning("cannot read file; will look again", rule=rule.name, path=str(path), error=str(exc),
                        look=looks, of=UNREADABLE_LOOKS)
            return Outcome.WAIT
        del self._unreadable[path]
        return self._refuse(rule, path, rel, f"permission denied: the daemon may not read {path.name}; "
                            "fix the file's permissions and drop it again", step="read")

    def _refuse(self, rule: Rule, path: Path, rel: Path, reason: str, step: str = "intake") -> Outcome:
        """Record an inbox entry that cannot be taken as one failed job, and move it (never followed)."""
        try:
            st = beneath.lstat(self.folders[rule.name].inbox, path)
        except (OSError, UnsafePathError):
            return Outcome.SKIPPED
        lease = f"{self.owner or 'intake'}:refuse:{uuid.uuid4().hex[:12]}"  # held while it is moved to failed/
        job, created = self.store.refuse(
            rule=rule.name, content_key=f"refused:{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{rel}"[:128],
            sha256="", source_path=str(path), rel_path=str(rel), sidecar_path=None, size=st.st_size,
            mtime=st.st_mtime, max_attempts=1, lease_owner=lease,
        )
        if not created:
            return Outcome.SKIPPED
        try:
            if self.fail is None:
                raise OSError("no failed/ folder wired")
            self.fail(job, lease, reason, step, None)
        except (OSError, UnsafePathError) as exc:
            self.store.fail(job.id, lease, error=f"{reason} (left in the inbox: {exc})", step=step, traceback_id=None)
            log.warning("file refused", job_id=job.id, rule=rule.name, path=str(path), error=reason)
        return Outcome.REFUSED


class IntakeThread:
    """Runs offers on one background thread, so that hashing a large file (up to limits.max_file_bytes) or
    archiving a duplicate never holds up the main tick (and with it the systemd watchdog ping)."""

    def __init__(self, offer: Callable[[Candidate], Outcome]) -> None:
        self._offer = offer
        self._todo: queue.SimpleQueue[Candidate | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[Candidate, Outcome]] = queue.SimpleQueue()
        self._busy: set[Path] = set()
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with keeping():  # the per-file enqueue reuses one SQLite connection (store.fenced)
            while (candidate := self._todo.get()) is not None:
                try:
                    outcome = self._offer(candidate)
                except BaseException:  # the offer maps every error to an outcome; this is a last resort
                    log.exception("intake failed on a file; it will be looked at again", path=str(candidate.path))
                    outcome = Outcome.WAIT
                self._done.put((candidate, outcome))

    def submit(self, candidate: Candidate) -> bool:
        """Queue an offer; False if the same path is still being offered."""
        if candidate.path in self._busy:
            return False
        self._busy.add(candidate.path)
        self._todo.put(candidate)
        return True

    def in_flight(self) -> int:
        return len(self._busy)

    def results(self) -> list[tuple[Candidate, Outcome]]:
        out: list[tuple[Candidate, Outcome]] = []
        while True:
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                return out
            self._busy.discard(item[0].path)
            out.append(item)

    def stop(self, timeout: float = 10.0) -> None:
        self._todo.put(None)
        self._thread.join(timeout)
