"""Intake: a stable file becomes a queued job, once per content (SPEC §6.2).

The sha256 of the bytes decides: a second copy of content the rule already has is archived as a duplicate,
a queued file that was renamed keeps its job, and a file whose twin is still in flight waits for it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import date
from enum import StrEnum
from pathlib import Path

import structlog

from retouchd.fsops import move_verified, safe_join, sha256_file, unique_path
from retouchd.masks import find_sidecar, is_sidecar
from retouchd.rules import Rule, RuleFolders
from retouchd.sidecarwait import SidecarWaits, needs_sidecar
from retouchd.store import ACTIVE, Job, JobState, Store

log = structlog.get_logger("retouchd.intake")


class Outcome(StrEnum):
    QUEUED = "queued"
    KNOWN = "known"
    MOVED = "moved"
    DUPLICATE = "duplicate"
    WAIT = "wait"
    SKIPPED = "skipped"


class Intake:
    def __init__(self, store: Store, rules: dict[str, Rule], folders: dict[str, RuleFolders], *,
                 max_attempts: int, sidecars: SidecarWaits | None = None) -> None:
        self.store, self.rules, self.folders, self.max_attempts = store, rules, folders, max_attempts
        self.sidecars = sidecars or SidecarWaits(0.0)

    def offer(self, rule_name: str, path: Path) -> Outcome:
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
        try:
            st = os.lstat(path)
            digest = sha256_file(path)
        except FileNotFoundError:
            return Outcome.SKIPPED
        except OSError as exc:
            log.warning("cannot read file; will look again", rule=rule.name, path=str(path), error=str(exc))
            return Outcome.WAIT
        sidecar = find_sidecar(path)
        # The same photo with a different mask is different work: the mask's bytes are part of the content.
        content = digest if sidecar is None else hashlib.sha256(f"{digest}+{sha256_file(sidecar)}".encode()).hexdigest()
        key = f"{content}/{uuid.uuid4().hex}" if rule.reprocess else content
        job, created = self.store.enqueue(
            rule=rule.name, content_key=key, sha256=digest, source_path=str(path), rel_path=str(rel),
            sidecar_path=str(sidecar) if sidecar else None, size=st.st_size, mtime=st.st_mtime,
            max_attempts=rule.max_attempts or self.max_attempts, variant=rule.variant_for(digest),
        )
        if created:
            log.info("queued", job_id=job.id, rule=rule.name, path=str(path), size=st.st_size)
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
        move_verified(path, target, job.sha256)
        if sidecar is not None and sidecar.exists():
            move_verified(sidecar, unique_path(target.with_name(sidecar.name)), None)
        self.store.add_duplicate(job.id, str(path), str(target))
        log.info("duplicate content archived, not processed again", job_id=job.id, rule=job.rule,
                 path=str(path), archive_path=str(target), state=job.state)
        return Outcome.DUPLICATE
