"""A root with jobs in every state, made through the real intake and commit code (no worker process)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from retouchd.archive import Committer
from retouchd.fsops import ensure_dir
from retouchd.intake import Intake, Outcome
from retouchd.pipeline import TaskResult
from retouchd.rules import load_rules, rule_folders
from retouchd.settings import load_settings
from retouchd.store import Job, JobState, open_store, transition, utcnow

from conftest import photo

RULES = """
[[rule]]
name = "shop"
inbox = "shop"
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]

[[rule]]
name = "scans"
inbox = "scans"
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]
"""

OWNER = "testhost:1:abc:0"


class Farm:
    def __init__(self, root: Path, rules_text: str = RULES, **settings: Any) -> None:
        root.mkdir(parents=True, exist_ok=True)
        rules_file = root / "rules.toml"
        rules_file.write_text(rules_text)
        self.root = root
        self.settings = load_settings(env=False, root=root, rule_files=[rules_file], **settings)
        self.rules = load_rules([rules_file])
        self.store = open_store(self.settings.db_url)
        self.folders = rule_folders(self.settings, self.rules)
        for f in self.folders.values():
            for path in (f.inbox, f.outbox, f.archive, f.failed, f.review):
                ensure_dir(path)
        ensure_dir(self.settings.work)
        self.committer = Committer(self.store, self.folders, retry_backoff=0)
        self.intake = Intake(self.store, {r.name: r for r in self.rules.rules}, self.folders, max_attempts=3)
        self.seed = 0

    def drop(self, rule: str, name: str, *, size: tuple[int, int] = (48, 32)) -> Path:
        """A new image (unique content) in the rule's inbox."""
        self.seed += 1
        path = self.folders[rule].inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(size[0], size[1], seed=self.seed)).save(path)
        return path

    def queued(self, rule: str, name: str, *, size: tuple[int, int] = (48, 32)) -> Job:
        path = self.drop(rule, name, size=size)
        assert self.intake.offer(rule, path) is Outcome.QUEUED
        job = self.store.find(rule, hashlib.sha256(path.read_bytes()).hexdigest())
        assert job is not None
        return job

    def finished(self, rule: str, name: str, *, review: bool = False, seconds: float = 1.0,
                 variant: str | None = None, size: tuple[int, int] = (48, 32)) -> Job:
        """A job whose result went to the outbox (or review/) and whose original is archived."""
        queued = self.queued(rule, name, size=size)
        if variant is not None:
            with self.store.session() as s:
                s.get(Job, queued.id).variant = variant  # type: ignore[union-attr]
        job = self._claim(queued.id)
        tmp = self.settings.work / f"testhost-{job.id}.tmp"
        shutil.copyfile(job.source_path, tmp)
        with Image.open(tmp) as im:
            im.resize((im.width * 2, im.height * 2)).save(tmp, format="PNG")
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        result = TaskResult(ok=True, tmp_path=str(tmp), output_name=Path(name).name, output_sha256=digest,
                            review=review,
                            steps=[{"op": "upscale", "seconds": seconds, "metrics": {"tiles": 4, "model": "lanczos"}}])
        self.committer.success(job, OWNER, result)
        final = self.store.get(job.id)
        assert final is not None
        return final

    def _claim(self, job_id: int) -> Job:
        """Claim this job (a slot would take the oldest queued one)."""
        with self.store.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            transition(job, JobState.RUNNING)
            job.lease_owner, job.host, job.device = OWNER, "testhost", "cpu"
            job.lease_expires = utcnow() + timedelta(seconds=60)
            return job

    def failed(self, rule: str, name: str) -> Job:
        job = self._claim(self.queued(rule, name).id)
        self.committer.failure(job, OWNER, TaskResult(ok=False, error="not an image (test)", error_step="decode",
                                                      permanent=True, steps=[{"op": "decode", "seconds": 0.5}]))
        final = self.store.get(job.id)
        assert final is not None
        return final
