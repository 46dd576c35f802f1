"""The job store: every database read and write the daemon makes, each in its own short transaction.

After a claim, every change to a job is fenced by its lease (SPEC §6.9): the row is read with
`lease_owner = <this claim's lease>` in the WHERE clause and locked (FOR UPDATE on PostgreSQL, the write lock
taken by BEGIN IMMEDIATE on SQLite) before it is changed, so a claimant that lost its lease (paused past its
expiry, then taken over) gets LeaseLost and changes nothing. Recovery takes a lease over the same way
(`take_over`), conditional on the lease it saw still being the one in the row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from retouchd.exceptions import LeaseLost, StoreError
from retouchd.store import fenced
from retouchd.store.overview import live_hosts
from retouchd.store.schema import Duplicate, Host, Job, SightingClaim
from retouchd.store.states import LEASED, JobState, printable, transition, utcnow


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._factory = sessionmaker(engine, expire_on_commit=False)

        self.reader = engine.execution_options(retouchd_read_only=True)
        """The engine for reads: on SQLite a deferred transaction that never takes the write lock."""
        self._reader = sessionmaker(self.reader, expire_on_commit=False)
        self._claims = threading.local()
        """Per claiming thread (a slot): whether its last claim found a job."""

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._factory.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session: on SQLite a deferred transaction that never takes the write lock."""
        with self._reader.begin() as session:
            yield session

    def _owned(self, session: Session, job_id: int, owner: str | None) -> Job:
        """The job row, locked; with `owner`, only while that lease still holds it (else LeaseLost)."""
        query = select(Job).where(Job.id == job_id).with_for_update()
        if owner is not None:
            query = query.where(Job.lease_owner == owner, Job.state.in_(list(LEASED)))
        job = session.scalars(query).first()
        if job is not None:
            return job
        current = session.get(Job, job_id)
        if current is None:
            raise StoreError(f"job {job_id} does not exist")
        raise LeaseLost(f"job {job_id}: lease held by {current.lease_owner!r} ({current.state}), not {owner!r}")

    # -- intake --------------------------------------------------------------------------------------------
    def get(self, job_id: int) -> Job | None:
        with self.read() as s:
            return s.get(Job, job_id)

    def find(self, rule: str, content_key: str) -> Job | None:
        with self.read() as s:
            return s.scalars(select(Job).where(Job.rule == rule, Job.content_key == content_key)).first()

    def enqueue(self, **fields: Any) -> tuple[Job, bool]:
        """Insert a queued job; if (rule, content_key) exists, return that one and False."""
        try:
            return fenced.enqueue(self.engine, fields), True
        except IntegrityError:
            existing = self.find(fields["rule"], fields["content_key"])
            if existing is None:
                raise
            return existing, False

    def move_source(self, job_id: int, source: str, rel: str, sidecar: str | None) -> None:
        """A queued job's file was renamed inside the inbox (or came back after vanishing)."""
        with self.session() as s:
            job = self._owned(s, job_id, None)
            job.source_path, job.rel_path, job.sidecar_path = source, rel, sidecar
            if job.state == JobState.FAILED:
                transition(job, JobState.QUEUED)
            job.updated_at = utcnow()

    def queued_at(self, rule: str, source: str) -> Job | None:
        """The queued or running job whose file is `source` (a newer sighting of the same path)."""
        return fenced.queued_at(self.engine, self.reader, rule, source)

    def supersede(self, job_id: int, **fields: Any) -> bool:
        """Point a still-queued job at its file's newer content (one path, one job); False if it was
        claimed meanwhile or the new content already has a job of its own (the old row is then dropped)."""
        with self.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.state != JobState.QUEUED:
                return False
            taken = s.scalars(select(Job.id).where(Job.rule == job.rule, Job.content_key == fields["content_key"],
                                                   Job.id != job_id)).first()
            if taken is not None:
                s.delete(job)
                return False
            for name, value in fields.items():
                setattr(job, name, value)
            job.attempts, job.error, job.not_before, job.updated_at = 0, None, None, utcnow()
            return True

    def refuse(self, **fields: Any) -> tuple[Job, bool]:
        """Record an inbox entry refused at intake (a link, FIFO, device) as a job about to fail; like
        enqueue, (existing job, False) if this very entry was recorded before."""
        now = utcnow()
        return self._insert_once(Job(state=JobState.RUNNING, attempts=1, created_at=now, updated_at=now,
                                     started_at=now, lease_expires=now + timedelta(seconds=60), **fields))

    def _insert_once(self, job: Job) -> tuple[Job, bool]:
        """Insert `job`; if its (rule, content_key) is taken, return that job and False."""
        rule, content_key = job.rule, job.content_key  # read before a failed flush can touch the object
        try:
            with self.session() as s:
                s.add(job)
            return job, True
        except IntegrityError:
            existing = self.find(rule, content_key)
            if existing is None:
                raise
            return existing, False

    def claim_sighting(self, key: str, owner: str, stale_after: float) -> bool:
        """Claim a sighting before reading the file (several hosts see the same new file): True for the first
        claimant, for its own renewals, and for anyone once the claim is older than `stale_after` seconds."""
        now = utcnow()
        try:
            with self.session() as s:
                s.add(SightingClaim(key=key, owner=owner, claimed_at=now))
            return True
        except IntegrityError:
            pass
        with self.session() as s:
            claim = s.get(SightingClaim, key)
            if claim is None:
                return False  # released between the two statements: the next look claims it
            if claim.owner != owner and claim.claimed_at > now - timedelta(seconds=stale_after):
                return False
            result = s.execute(update(SightingClaim).where(SightingClaim.key == key,
                                                           SightingClaim.claimed_at == claim.claimed_at)
                               .values(owner=owner, claimed_at=now))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def set_sidecar(self, job_id: int, owner: str, sidecar: str) -> None:
        with self.session() as s:
            self._owned(s, job_id, owner).sidecar_path = sidecar

    def add_duplicate(self, job_id: int, source: str, archive_path: str) -> None:
        with self.session() as s:
            s.add(Duplicate(job_id=job_id, source_path=source, archive_path=archive_path, created_at=utcnow()))

    # -- claiming and leases -------------------------------------------------------------------------------
    def claim(self, owner: str, host: str, device: str, lease_seconds: float, rules: Sequence[str],
              exclude: Collection[int] = ()) -> Job | None:
        """Take the oldest claimable job under the lease `owner` (unique per claim: it fences the attempt),
        other than the jobs in `exclude`; never one of an inbox a person paused. An idle poll does not take
        SQLite's write lock: a read looks first, unless this thread's last claim found a job (a busy queue:
        the look would cost a transaction per file and find one)."""
        if not rules:
            return None
        busy = getattr(self._claims, "busy", False)
        if not busy and fenced.count_claimable(self.reader, list(rules), queued_only=True, skip_paused=True) == 0:
            return None
        job = fenced.claim(self.engine, owner, host, device, lease_seconds, list(rules), exclude=list(exclude))
        self._claims.busy = job is not None
        return job

    def heartbeat(
        self, job_id: int, owner: str, lease_seconds: float, *, step: str | None = None, progress: float | None = None
    ) -> None:
        """Renew the lease; LeaseLost if this claim no longer holds the job."""
        fenced.heartbeat(self.engine, job_id, owner, lease_seconds, step=step, progress=progress)

    # -- the commit order: output → DB → archive -------------------------------------------------------------
    def plan_output(
        self, job_id: int, owner: str, *, output_path: str, output_sha256: str, tmp: str, steps: list[dict[str, Any]],
        lease_seconds: float = 60.0,
    ) -> None:
        """Announce the publish; renews the lease so that the holder has a full lease for the commit."""
        fenced.plan_output(self.engine, job_id, owner, output_path=output_path, output_sha256=output_sha256, tmp=tmp,
                           steps=steps, lease_seconds=lease_seconds)

    def finish(self, job_id: int, owner: str, *, review: bool, lease_seconds: float = 60.0,
               archive_path: str | None = None, sidecar_archive_path: str | None = None) -> Job:
        """Output published: done (or review). The lease stays with `owner` until the original is archived.
        `archive_path` (and the sidecar's) announce the original's move in the same transaction (what
        plan_archive does on its own), one commit fewer per file."""
        if not review:
            return fenced.finish(self.engine, job_id, owner, lease_seconds=lease_seconds, archive_path=archive_path,
                                 sidecar_archive_path=sidecar_archive_path)
        with self.session() as s:
            job = self._owned(s, job_id, owner)
            transition(job, JobState.REVIEW if review else JobState.DONE)
            if archive_path is not None:
                job.archive_path, job.sidecar_archive_path = archive_path, sidecar_archive_path
            job.output_tmp = None
            job.lease_expires = utcnow() + timedelta(seconds=lease_seconds)
            if review:
                from retouchd.store.reviews import mark_pending  # the review loop's own module

                mark_pending(s, job.id)
            return job

    def plan_archive(self, job_id: int, owner: str, archive_path: str, sidecar_archive_path: str | None) -> None:
        with self.session() as s:
            job = self._owned(s, job_id, owner)
            job.archive_path, job.sidecar_archive_path = archive_path, sidecar_archive_path

    def archived(self, job_id: int, owner: str, *, moved: bool = True) -> None:
        """The original is in the archive; `moved=False`: it was left where it was (gone or replaced), so no
        archive path (one announced with `finish`) names it."""
        fenced.archived(self.engine, job_id, owner, moved=moved)

    def take_over(self, job_id: int, seen_owner: str | None, owner: str, lease_seconds: float) -> Job | None:
        """Give a job whose lease `seen_owner` is dead to `owner`, only if that lease is still the one in
        the row (nobody renewed or took it meanwhile); None if it moved on."""
        expires = utcnow() + timedelta(seconds=lease_seconds)
        held = Job.lease_owner.is_(None) if seen_owner is None else Job.lease_owner == seen_owner
        with self.session() as s:
            done = s.execute(
                update(Job).where(Job.id == job_id, held, Job.state.in_(list(LEASED)))
                .values(lease_owner=owner, lease_expires=expires).execution_options(synchronize_session=False)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                return None
            return s.get(Job, job_id)

    # -- failures --------------------------------------------------------------------------------------------
    def requeue(
        self, job_id: int, owner: str, *, error: str | None, delay: float, refund: bool = False
    ) -> None:
        """Back to the queue; `refund` gives back the attempt when the job was interrupted, not at fault."""
        with self.session() as s:
            job = self._owned(s, job_id, owner)
            transition(job, JobState.QUEUED, error=error)
            if refund:
                job.attempts = max(0, job.attempts - 1)
            job.output_path = job.output_sha256 = job.output_tmp = None
            job.not_before = utcnow() + timedelta(seconds=delay) if delay > 0 else None

    def plan_failed(self, job_id: int, owner: str, failed_path: str, *, error: str | None = None,
                    step: str | None = None, traceback_id: str | None = None) -> None:
        """Announce the move to failed/ with its reason, so that a recovery can finish it with that reason."""
        with self.session() as s:
            job = self._owned(s, job_id, owner)
            job.failed_path = failed_path
            if error is not None:
                job.error, job.error_step, job.traceback_id = printable(error), step, traceback_id

    def fail(
        self, job_id: int, owner: str, *, error: str, step: str | None, traceback_id: str | None,
        steps: list[dict[str, Any]] | None = None,
    ) -> None:
        with self.session() as s:
            job = self._owned(s, job_id, owner)
            transition(job, JobState.FAILED, error=error)
            job.error_step, job.traceback_id = step, traceback_id
            job.output_path = job.output_sha256 = job.output_tmp = None
            if steps is not None:
                job.steps = steps

    def retry(self, job_id: int, source: str, rel: str, *, content: dict[str, Any] | None = None) -> Job:
        """A failed job back to the queue for the file at `source`; `content` (sha256, content_key, size,
        mtime) when the user changed the file in failed/: the job follows its new bytes, so that intake
        finds this job for it instead of queueing a second one. IntegrityError if another job has them."""
        with self.session() as s:
            job = self._owned(s, job_id, None)
            transition(job, JobState.QUEUED)
            job.source_path, job.rel_path = source, rel
            job.error = job.error_step = job.traceback_id = None
            for key, value in (content or {}).items():
                setattr(job, key, value)
            return job

    # -- recovery and queries --------------------------------------------------------------------------------
    def stale_leases(self, is_dead: Callable[[Job, datetime], bool]) -> list[Job]:
        """Running, done and review jobs (claimed, not yet archived) whose lease holder is gone."""
        now = utcnow()
        with self.read() as s:
            leased = s.scalars(select(Job).where(Job.state.in_(list(LEASED))).order_by(Job.id)).all()
            return [job for job in leased if is_dead(job, now)]

    def in_states(self, states: Sequence[JobState], *, limit: int | None = None) -> list[Job]:
        with self.read() as s:
            query = select(Job).where(Job.state.in_(list(states))).order_by(Job.id)
            if limit is not None:
                query = query.limit(limit)
            return list(s.scalars(query).all())

    def count_by_state(self) -> dict[str, int]:
        with self.read() as s:
            rows = s.execute(select(Job.state, func.count()).group_by(Job.state)).all()
            return {str(state): int(n) for state, n in rows}

    def count_claimable(self, rules: Sequence[str] | None = None, *, queued_only: bool = False) -> int:
        return fenced.count_claimable(self.reader, None if rules is None else list(rules), queued_only=queued_only)

    def waiting(self, rules: Sequence[str]) -> tuple[int, datetime | None]:
        """Queued jobs of `rules` held back until a later time (a retry's backoff, a file deferred while it
        was still being written): how many, and when the first may start."""
        now = utcnow()
        query = select(func.count(), func.min(Job.not_before)).where(
            Job.state == JobState.QUEUED, Job.not_before > now, Job.rule.in_(list(rules)))
        with self.read() as s:
            count, first = s.execute(query).one()
        return int(count or 0), first

    def history(
        self, *, since: datetime | None = None, states: Sequence[JobState] | None = None, limit: int = 200
    ) -> list[Job]:
        with self.read() as s:
            query = select(Job).order_by(Job.updated_at.desc(), Job.id.desc()).limit(limit)
            if since is not None:
                query = query.where(Job.updated_at >= since)
            if states:
                query = query.where(Job.state.in_(list(states)))
            return list(s.scalars(query).all())

    # -- hosts -------------------------------------------------------------------------------------------
    def register_host(self, host_key: str, host: str, pid: int, version: str, slots: list[str]) -> None:
        now = utcnow()
        with self.session() as s:
            s.merge(Host(id=host_key, host=host, pid=pid, version=version, slots=slots, started_at=now,
                         seen_at=now, stopped_at=None))

    def touch_host(self, host_key: str, *, stopped: bool = False) -> None:
        with self.session() as s:
            row = s.get(Host, host_key)
            if row is not None:
                row.seen_at = utcnow()
                if stopped:
                    row.stopped_at = row.seen_at

    def hosts(self, *, seen_within: float) -> list[Host]:
        """Daemons that reported within `seen_within` seconds and have not stopped."""
        with self.read() as s:
            return live_hosts(s, timedelta(seconds=seen_within), utcnow())
