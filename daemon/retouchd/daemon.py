"""The daemon: startup() → main_loop() (a short tick) → shutdown(). Signal handlers only set flags."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import FrameType

import structlog
from sqlalchemy.exc import DBAPIError

from retouchd import __version__
from retouchd.archive import Committer, lease_dead
from retouchd.exceptions import ConfigError, RetouchdError
from retouchd.fsops import ensure_dir
from retouchd.intake import Intake, IntakeThread, Outcome
from retouchd.monitor import Monitor
from retouchd.mounts import ensure_inbox_dir, missing_share
from retouchd.notify import Notifier
from retouchd.pool import Identity, Pool, slot_devices
from retouchd.rules import RuleFolders, RuleSet, folders_for, load_rules
from retouchd.settings import Settings
from retouchd.settle import Candidate, IgnoreMatcher, SettleTracker
from retouchd.steps import build_step
from retouchd.store import JobState, Store, open_store, set_path_map, utcnow
from retouchd.watcher import Watcher

log = structlog.get_logger("retouchd.daemon")
TICK = 0.1
HOST_HEARTBEAT = 5.0
HANDLED = (signal.SIGINT, signal.SIGTERM)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rule_folders(settings: Settings, rules: RuleSet) -> dict[str, RuleFolders]:
    return {
        rule.name: folders_for(rule, inbox=settings.inbox, outbox=settings.outbox, archive=settings.archive,
                               failed=settings.failed, review=settings.review)
        for rule in rules.rules if rule.enabled
    }


def _all(f: RuleFolders) -> list[Path]:
    return [f.inbox, f.outbox, f.archive, f.failed, f.review]


class Daemon:
    def __init__(self, settings: Settings, rules: RuleSet, *, once: bool = False) -> None:
        self.settings, self.rules, self.once = settings, rules, once
        self.should_exit = self.force_exit = self.reload_requested = False
        self.identity = Identity(host=settings.host_id)
        self.notifier = Notifier(settings.notify_socket)
        self.tracker = SettleTracker(settings.watch.settle_time, quiet_time=settings.watch.quiet_time)
        self.ignore = IgnoreMatcher(settings.watch.ignore)
        self.store: Store | None = None
        self.pool: Pool | None = None
        self.watcher: Watcher | None = None
        self._last_status = self._last_watchdog = self._last_sweep = self._last_host = self._last_mounts = 0.0
        self.unmounted: dict[str, str] = {}
        self._scanned_once = False
        self.monitor = Monitor(self)
        self.offers = IntakeThread(self._offer)

    # -- signals -------------------------------------------------------------------------------------------
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    def handle_reload(self, sig: int, frame: FrameType | None) -> None:
        self.reload_requested = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self.handle_reload)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self) -> int:
        with self.capture_signals():
            self.startup()
            try:
                while not self.should_exit:
                    try:
                        self.main_loop()
                    except DBAPIError as exc:  # busy or unreachable database: wait, keep every file
                        log.warning("database unavailable; retrying", error=str(exc).splitlines()[0])
                        time.sleep(1.0)
                    if self.once and self.idle():
                        break
                    time.sleep(TICK)
            finally:
                self.shutdown()
        return 0

    # -- phases --------------------------------------------------------------------------------------------
    def _wire(self, rules: RuleSet) -> None:
        folders = rule_folders(self.settings, rules)
        for rule in rules.rules:
            for options in rule.steps:
                build_step(options).preflight(dict(self.settings.engines))
        self.unmounted = {}
        for name, f in folders.items():
            share = missing_share(self.settings.root, _all(f))
            if share is not None:
                self.unmounted[name] = f"{share} does not exist; is the share mounted? (it is never created)"
                continue
            ensure_inbox_dir(f.inbox)
            for path in (f.outbox, f.archive, f.failed, f.review):
                ensure_dir(path)
        self.rules, self.folders = rules, folders
        assert self.store is not None
        self.committer = Committer(self.store, folders, file_mode=self.settings.file_mode,
                                   retry_backoff=self.settings.workers.retry_backoff, fault=self._fault,
                                   outage=self._outage)
        self.intake = Intake(self.store, {r.name: r for r in rules.rules if r.enabled}, folders,
                             max_attempts=self.settings.workers.max_attempts, fail=self.committer.to_failed,
                             owner=self.identity.key)
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = Watcher([(name, f.inbox) for name, f in folders.items()], mode=self.settings.watch.mode,
                               poll_interval=self.settings.watch.poll_interval,
                               rescan_interval=self.settings.watch.rescan_interval, ignore=self.ignore)
        for name, reason in self.unmounted.items():
            self.pause_inbox(name, reason)

    # -- paused inboxes (a share that is not mounted; a user's pause uses the same two calls) --------------
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
            if missing_share(self.settings.root, _all(self.folders[name])) is None:
                for path in _all(self.folders[name]):
                    ensure_dir(path)
                del self.unmounted[name]
                log.info("share folders present; resuming", rule=name)
                self.resume_inbox(name)

    def _fault(self, point: str) -> None:
        """Test-only: die abruptly at `point`, or fail there as a full disk would (`enospc-<point>`)."""
        if self.settings.fault_point == point:
            os._exit(87)
        if self.settings.fault_point == f"enospc-{point}":
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

    def startup(self) -> None:
        settings = self.settings
        if missing_share(settings.root, [settings.inbox]) is None:
            ensure_inbox_dir(settings.inbox)
        ensure_dir(settings.work)
        set_path_map(settings.path_map)
        self.store = open_store(settings.db_url)
        self._wire(self.rules)
        self.recover(startup=True)
        self._clean_work()
        self.monitor.serve_metrics()
        devices = slot_devices(settings)
        self.pool = Pool(settings, self.rules, self.store, self.committer, self.identity, devices)
        self.pool.held.update(self.unmounted)
        self.pool.on_result = self.monitor.on_result
        self.store.register_host(self.identity.key, self.identity.host, self.identity.pid, __version__, devices)
        self.pool.start()
        self.monitor.start()
        assert self.watcher is not None
        self.watcher.start()
        log.info("retouchd started", root=str(settings.root.absolute()), rules=[r.name for r in self.rules.rules],
                 slots=devices, database=self.store.engine.url.render_as_string(hide_password=True))
        self.notifier.send(ready=1, status=f"watching {len(self.folders)} inbox(es) with {len(devices)} slot(s)")

    def recover(self, *, startup: bool) -> None:
        """Requeue or finish jobs whose owner died; finish commits that were cut short."""
        assert self.store is not None
        is_dead = lease_dead(self.identity.host, self.identity.pid, self.identity.instance, _pid_alive)
        for job in self.store.stale_running(is_dead):
            if job.rule not in self.folders:
                continue
            try:
                # Our own crash is not the file's fault; another host's death counts the attempt.
                outcome = self.committer.recover_running(job, refund=job.host == self.identity.host)
            except OSError as exc:
                log.warning("recovery failed; will try again", job_id=job.id, error=str(exc))
                continue
            log.info("recovered interrupted job", job_id=job.id, rule=job.rule, path=job.source_path, outcome=outcome)
        # Output published but original not archived: a crash, or an archive error (disk full) to retry.
        # Outside start-up only jobs left alone for a lease period, so as not to race a slot that is
        # archiving right now.
        settled = utcnow() - timedelta(seconds=self.settings.workers.lease_seconds)
        for job in self.store.in_states([JobState.DONE, JobState.REVIEW]):
            ours_at_startup = startup and job.host == self.identity.host
            if job.rule not in self.folders or (job.updated_at > settled and not ours_at_startup):
                continue
            try:
                self.committer.archive(job.id)
                log.info("finished archiving", job_id=job.id, rule=job.rule, path=job.source_path)
            except Exception as exc:
                if startup and not isinstance(exc, OSError):
                    raise
                log.warning("archiving failed; will try again", job_id=job.id, rule=job.rule, error=str(exc))

    def _clean_work(self) -> None:
        for leftover in self.settings.work.glob(f"{self.identity.host}-*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def main_loop(self) -> None:
        assert self.watcher is not None and self.pool is not None and self.store is not None
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        sightings, present = self.watcher.poll()
        for renewed in self.watcher.take_renewed():
            self.tracker.forget_under(renewed)
        self._scanned_once = True
        for s in sightings:
            self.tracker.observe(s.rule, s.path, s.st, closed=s.closed, written=s.written)
        if present is not None:
            self.tracker.prune_taken(present)
        self._collect()
        ready = self.tracker.ready()
        if ready:
            self._take(ready)
        for job_id, error in self.pool.take_recoveries():
            job = self.store.get(job_id)
            try:
                if job is not None and job.state == JobState.RUNNING:
                    self.committer.recover_running(job, refund=False, error=error)
            except Exception as exc:  # the sweep tries again later; the daemon keeps running
                log.warning("recovery failed; will try again", job_id=job_id, error=str(exc))
        self.pool.wake.clear()
        now = time.monotonic()
        if self.unmounted and now - self._last_mounts > 2.0:
            self._last_mounts = now
            self._check_mounts()
        if now - self._last_sweep > self.settings.workers.lease_seconds / 2:
            self._last_sweep = now
            self.recover(startup=False)
        self._heartbeat(now)

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

    def _heartbeat(self, now: float) -> None:
        assert self.pool is not None
        usec = self.settings.watchdog_usec
        if usec and now - self._last_watchdog > usec / 2e6:
            self._last_watchdog = now
            self.notifier.send(watchdog=1)
        if now - self._last_host > HOST_HEARTBEAT:
            self._last_host = now
            assert self.store is not None
            self.store.touch_host(self.identity.key)
        if self.notifier.enabled and now - self._last_status > 5:
            self._last_status = now
            done = sum(self.pool.outcomes.values())
            self.notifier.send(status=f"{self.pool.busy()} running, {len(self.tracker)} settling, {done} finished")

    def idle(self) -> bool:
        assert self.store is not None and self.pool is not None
        return (self._scanned_once and len(self.tracker) == 0 and self.offers.in_flight() == 0
                and self.pool.busy() == 0
                and self.store.count_claimable(self.pool.rule_names()) == 0)

    def reload(self) -> None:
        try:
            rules = load_rules(self.rules.files)
            assert self.pool is not None
            self._wire(rules)
            self.pool.rules, self.pool.committer = rules, self.committer
            assert self.watcher is not None
            self.watcher.start()
        except ConfigError as exc:
            log.error("rules not reloaded; keeping the old ones", error=str(exc))
            return
        log.info("rules reloaded", rules=[r.name for r in rules.rules])

    def shutdown(self) -> None:
        self.notifier.send(stopping=1, status="draining")
        if self.watcher is not None:
            self.watcher.stop()
        self.offers.stop()
        if self.pool is not None:
            timeout = 0.0 if self.force_exit else self.settings.workers.drain_timeout
            log.info("stopping: draining in-flight jobs", running=self.pool.busy(), timeout=timeout)
            cut = self.pool.stop(timeout, lambda: self.force_exit)
            if cut:
                log.info("requeued jobs cut short by shutdown", jobs=[job.id for job in cut])
            self.recover(startup=False)
        if self.store is not None:
            with contextlib.suppress(DBAPIError):
                self.store.touch_host(self.identity.key, stopped=True)
        self.monitor.stop()
        log.info("retouchd stopped")

