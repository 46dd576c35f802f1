"""The daemon: startup() → main_loop() (a short tick) → shutdown(). Signal handlers only set flags."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError

from retouchd import __version__, instancelock
from retouchd.archive import Committer
from retouchd.exceptions import ConfigError
from retouchd.fsops import ensure_dir
from retouchd.handover import Handover
from retouchd.instancelock import file_identity, sqlite_file
from retouchd.intake import Intake, IntakeThread
from retouchd.logging import protect_log_stream
from retouchd.monitor import Monitor
from retouchd.mounts import ensure_inbox_dir, missing_share
from retouchd.notify import Notifier
from retouchd.pool import Identity, Pool, slot_devices
from retouchd.recovery import Recovery
from retouchd.rules import RuleFolders, RuleSet, load_rules, rule_folders
from retouchd.settings import Settings
from retouchd.settle import IgnoreMatcher, SettleTracker
from retouchd.shares import Shares, all_folders
from retouchd.sidecarwait import SidecarWaits
from retouchd.steps import preflight
from retouchd.store import Store, open_store, set_path_map, utcnow
from retouchd.watcher import Watcher

log = structlog.get_logger("retouchd.daemon")
TICK = 0.1
HOST_HEARTBEAT = 5.0
HANDLED = (signal.SIGINT, signal.SIGTERM)
DB_WARNING_EVERY = 60.0
EXIT_RUNTIME = 3


class Daemon(Recovery, Handover, Shares):
    def __init__(self, settings: Settings, rules: RuleSet, *, once: bool = False,
                 settings_loader: Callable[[], Settings] | None = None) -> None:
        self.settings, self.rules, self.once = settings, rules, once
        self.should_exit = self.force_exit = self.reload_requested = False
        self.identity = Identity(host=settings.host_id)
        self.notifier = Notifier(settings.notify_socket)
        self.tracker = SettleTracker(settings.watch.settle_time, quiet_time=settings.watch.quiet_time)
        self.ignore = IgnoreMatcher(settings.watch.ignore)
        self.sidecars = SidecarWaits(settings.watch.sidecar_wait)
        self.store: Store | None = None
        self.pool: Pool | None = None
        self.watcher: Watcher | None = None
        self.web: Any = None
        self.alerts: Any = None
        self._last_status = self._last_watchdog = self._last_sweep = self._last_host = self._last_mounts = 0.0
        self.unmounted: dict[str, str] = {}
        self._scanned_once = False
        self._last_db_warning = -DB_WARNING_EVERY
        self._registered = False
        self.exit_code = 0
        self._db_file: Path | None = None
        self._db_inode: tuple[int, int] | None = None
        self._lock_fd: int | None = None
        self.folders: dict[str, RuleFolders] = {}
        self.settings_loader = settings_loader
        self.db_trouble: str | None = None
        """The last database error while it persists; shown by `retouchd status`."""
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
        protect_log_stream()
        with self.capture_signals():
            try:
                self.startup()
                while not self.should_exit:
                    try:
                        self.main_loop()
                        self.db_trouble = None
                    except DBAPIError as exc:  # busy or unreachable database: wait, keep every file
                        self._database_trouble(exc)
                        time.sleep(1.0)
                    if self.once and self.idle():
                        self._say_waiting()
                        break
                    time.sleep(TICK)
            finally:
                self.shutdown()
        return self.exit_code

    def _database_trouble(self, exc: Exception) -> None:
        """Say it once a minute (not once a tick), and keep it for `status`."""
        self.db_trouble = str(exc).splitlines()[0]
        now = time.monotonic()
        if now - self._last_db_warning >= DB_WARNING_EVERY:
            self._last_db_warning = now
            log.warning("database unavailable; retrying (said again in a minute if it persists)",
                        error=self.db_trouble)

    # -- phases --------------------------------------------------------------------------------------------
    def _wire(self, rules: RuleSet) -> None:
        """Check and create everything `rules` need, then switch to them; on any error nothing changes."""
        folders = rule_folders(self.settings, rules)
        for rule in rules.rules:
            for options in rule.steps:
                preflight(options, dict(self.settings.engines))
        unmounted: dict[str, str] = {}
        for name, f in folders.items():
            share = missing_share(self.settings.root, all_folders(f))
            if share is not None:
                unmounted[name] = f"{share} does not exist; is the share mounted? (it is never created)"
                continue
            try:
                ensure_inbox_dir(f.inbox)
                for path in (f.outbox, f.archive, f.failed, f.review):
                    ensure_dir(path)
            except OSError as exc:
                raise ConfigError(f"rule {name!r}: cannot create the folder {exc.filename or f.inbox}: "
                                  f"{exc.strerror or exc}; create it or fix its permissions, or change the rule's "
                                  "folders") from None
        watcher = Watcher([(name, f.inbox) for name, f in folders.items()], mode=self.settings.watch.mode,
                          poll_interval=self.settings.watch.poll_interval,
                          rescan_interval=self.settings.watch.rescan_interval, ignore=self.ignore)
        assert self.store is not None
        self.rules, self.folders = rules, folders
        self.committer = Committer(self.store, folders, file_mode=self.settings.file_mode,
                                   retry_backoff=self.settings.workers.retry_backoff, fault=self._fault,
                                   lease_seconds=self.settings.workers.lease_seconds,
                                   give_up=lambda: self.pool is not None and self.pool.force.is_set(),
                                   outage=self._outage,
                                   confirm_time=0.0 if self.once else self.settings.watch.quiet_time)
        self.intake = Intake(self.store, {r.name: r for r in rules.rules if r.enabled}, folders,
                             max_attempts=self.settings.workers.max_attempts, sidecars=self.sidecars,
                             fail=self.committer.to_failed, owner=self.identity.key,
                             claim_stale=self.settings.workers.lease_seconds, claim_sightings=not self._sole_user())
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = watcher
        self.unmounted = unmounted
        for name, reason in self.unmounted.items():
            self.pause_inbox(name, reason)

    def _sole_user(self) -> bool:
        """Whether this daemon is the only one that can use its database: a SQLite file in the state folder
        whose lock it holds (PostgreSQL, or a SQLite file elsewhere, may be shared by several daemons)."""
        return self._db_file is not None and self._db_file.parent == self.settings.state.absolute()

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
        sqlite = settings.db_url.startswith("sqlite")
        lock = instancelock.lock_path(settings.state, None if sqlite else settings.host_id)
        self._lock_fd = instancelock.acquire(lock)
        set_path_map(settings.path_map)
        self.store = open_store(settings.db_url)
        self._db_file = sqlite_file(self.store.engine)
        self._db_inode = file_identity(self._db_file)
        if not sqlite:
            instancelock.refuse_live_twin(self.store, self.identity.host, HOST_HEARTBEAT)
        self._wire(self.rules)
        self.recover(startup=True)
        self._clean_work()
        self.monitor.serve_metrics()
        if settings.web_port is not None:
            from retouchd.web.server import WebThread

            self.web = WebThread(settings, self.rules, self.store, self.folders)
            self.web.start()
        devices = slot_devices(settings)
        self.pool = Pool(settings, self.rules, self.store, self.committer, self.identity, devices)
        self.pool.held.update(self.unmounted)
        self.pool.on_result = self.monitor.on_result
        if settings.notify:
            self._start_alerts()
        self.store.register_host(self.identity.key, self.identity.host, self.identity.pid, __version__, devices)
        self._registered = True
        self.pool.start()
        self._fault("after-pool-start")
        self.monitor.start()
        assert self.watcher is not None
        self.watcher.start()
        log.info("retouchd started", root=str(settings.root.absolute()), rules=[r.name for r in self.rules.rules],
                 slots=devices, database=self.store.engine.url.render_as_string(hide_password=True))
        self.notifier.send(ready=1, status=f"watching {len(self.folders)} inbox(es) with {len(devices)} slot(s)")

    def _start_alerts(self) -> None:
        """Apprise notifications: failures and new review items as they happen, a summary once a day."""
        from retouchd.alerts import Alerts, DailySchedule, summary_text
        from retouchd.store.reviews import claim_summary_day, release_summary_day
        from retouchd.store.stats import review_stats

        assert self.store is not None and self.pool is not None
        store, host = self.store, self.identity.host
        schedule = DailySchedule(self.settings.notify_summary_at, lambda day: claim_summary_day(store, day, host),
                                 lambda day: release_summary_day(store, day))
        self.alerts = Alerts(self.settings.notify,
                             lambda: summary_text(review_stats(store.engine, since=utcnow() - timedelta(days=1))),
                             schedule)
        monitor_hook, alerts_hook = self.pool.on_result, self.alerts.on_result

        def both(job: Any, result: Any, outcome: str) -> None:
            monitor_hook(job, result, outcome)
            alerts_hook(job, result, outcome)

        self.pool.on_result = both
        self.alerts.start()

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
        for job_id, lease, error in self.pool.take_recoveries():
            self._recover_one(job_id, lease, refund=False, error=error)
        self.pool.wake.clear()
        now = time.monotonic()
        if self.unmounted and now - self._last_mounts > 2.0:
            self._last_mounts = now
            self._check_mounts()
        if now - self._last_sweep > self.settings.workers.lease_seconds / 2:
            self._last_sweep = now
            self.recover(startup=False)
        self._heartbeat(now)

    def _heartbeat(self, now: float) -> None:
        assert self.pool is not None
        usec = self.settings.watchdog_usec
        if usec and now - self._last_watchdog > usec / 2e6:
            self._last_watchdog = now
            self.notifier.send(watchdog=1)
        self._check_db_file()  # every tick (one stat): a deleted database must stop intake before it takes a file
        if now - self._last_host > HOST_HEARTBEAT:
            self._last_host = now
            assert self.store is not None
            self.store.touch_host(self.identity.key)
        if self.notifier.enabled and now - self._last_status > 5:
            self._last_status = now
            done = sum(self.pool.outcomes.values())
            self.notifier.send(status=f"{self.pool.busy()} running, {len(self.tracker)} settling, {done} finished")

    def _check_db_file(self) -> None:
        """A SQLite file deleted (or replaced) under the running daemon: the open handle writes into an
        unlinked inode and all history would be gone at the next start. Stop at once, leave every file."""
        if self._db_file is None or file_identity(self._db_file) == self._db_inode:
            return
        log.error("the database file was deleted or replaced while retouchd ran; stopping without finishing "
                  "jobs (every file stays where it is). Restore it from a backup, then start retouchd again",
                  path=str(self._db_file))
        self.exit_code = EXIT_RUNTIME
        self.should_exit = self.force_exit = True

    def idle(self) -> bool:
        assert self.store is not None and self.pool is not None
        return (self._scanned_once and len(self.tracker) == 0 and self.offers.in_flight() == 0
                and self.pool.busy() == 0
                and self.store.count_claimable(self.pool.claim_rules()) == 0)

    def _say_waiting(self) -> None:
        """`run --once` ends with jobs held back for later: say so, or a cron user never learns of them."""
        assert self.store is not None and self.pool is not None
        count, first = self.store.waiting(self.pool.rule_names())
        if count:
            log.warning("jobs wait to be retried later; run again after the time given", jobs=count,
                        first_at=first.isoformat(timespec="seconds") if first else None)
        paused = sorted(set(self.pool.rule_names()) - set(self.pool.claim_rules()))
        held = self.store.count_claimable(paused, queued_only=True) if paused else 0
        if held:
            log.warning("jobs wait in paused inboxes; resume them in the web interface", jobs=held, rules=paused)

    def reload(self) -> None:
        """SIGHUP: re-read the settings file's `rule_files` (other settings need a restart) and the rules;
        on any error keep the old rules and say why."""
        old = (self.rules, self.folders, self.committer, self.intake, self.watcher)
        try:
            files = self.rules.files
            if self.settings_loader is not None:
                files = tuple(self.settings_loader().rule_files) or None  # type: ignore[assignment]
            rules = load_rules(files)
            self._wire(rules)
            assert self.watcher is not None
            self.watcher.start()
        except Exception as exc:  # a bad reload must never stop the daemon
            if self.watcher is not old[4] and self.watcher is not None:
                with contextlib.suppress(Exception):
                    self.watcher.stop()
            self.rules, self.folders, self.committer, self.intake, self.watcher = old
            log.error("rules not reloaded; keeping the old ones", error=str(exc).splitlines()[0] if str(exc) else
                      type(exc).__name__)
            return
        if old[4] is not None:
            old[4].stop()
        assert self.pool is not None
        self.pool.rules, self.pool.committer = rules, self.committer
        self.tracker.keep_only({name: folders.inbox for name, folders in self.folders.items()})
        if self.web is not None:
            self.web.use_rules(rules, self.folders)
        log.info("rules reloaded", rules=[r.name for r in rules.rules], files=[str(f) for f in rules.files])

    def shutdown(self) -> None:
        """Undo whatever start-up got to, in order; each part runs even if an earlier one fails."""
        self.notifier.send(stopping=1, status="draining")
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.stop()
        self.offers.stop()
        if self.pool is not None:
            timeout = 0.0 if self.force_exit else self.settings.workers.drain_timeout
            log.info("stopping: draining in-flight jobs", running=self.pool.busy(), timeout=timeout)
            cut = self.pool.stop(timeout, lambda: self.force_exit)
            if cut:
                log.info("requeued jobs cut short by shutdown", jobs=[job.id for job in cut])
        if self.store is not None:
            try:
                if self.pool is not None:
                    self.recover(startup=False)
                if self._registered:
                    self.store.touch_host(self.identity.key, stopped=True)
            except Exception as exc:  # the database is gone: the next start-up recovers
                log.warning("could not record the stop in the database", error=str(exc).splitlines()[0])
        self.monitor.stop()
        if self.web is not None:
            self.web.stop()
        if self.alerts is not None:
            self.alerts.stop()
        instancelock.release(self._lock_fd)
        self._lock_fd = None
        log.info("retouchd stopped")
