"""The inbox boundary (SPEC §6.3, §6.5): only complete, regular files that live inside the inbox are taken."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest

from retouchd import beneath, pipeline
from retouchd.archive import Committer
from retouchd.exceptions import DecodeError, TransientError, UnsafePathError
from retouchd.intake import Intake, IntakeThread, Outcome
from retouchd.rules import RuleFolders, default_rule_file, load_rules
from retouchd.settle import Candidate
from retouchd.store import Job, JobState, Store, open_store, utcnow

from conftest import cli, db_rows, files_under, save_image, sha256, wait_for

SLOW_SETTLE = {"RETOUCHD_WATCH__SETTLE_TIME": "2.0",  # the default; the writers pause 0.3 s
               "RETOUCHD_WATCH__QUIET_TIME": "10"}  # the held-open writer pauses 4 s


def _store(tmp_path: Path) -> Store:
    (tmp_path / "state").mkdir(exist_ok=True)
    return open_store(f"sqlite:///{tmp_path / 'state' / 'db.sqlite'}")


def _folders(tmp_path: Path) -> RuleFolders:
    folders = RuleFolders(*(tmp_path / name for name in ("inbox", "outbox", "archive", "failed", "review")))
    for path in (folders.inbox, folders.outbox, folders.archive, folders.failed, folders.review):
        path.mkdir(parents=True, exist_ok=True)
    return folders


def _intake(tmp_path: Path) -> tuple[Intake, Store, RuleFolders]:
    rule = load_rules([default_rule_file()]).rules[0]
    store, folders = _store(tmp_path), _folders(tmp_path)
    committer = Committer(store, {rule.name: folders})
    intake = Intake(store, {rule.name: rule}, {rule.name: folders}, max_attempts=3, fail=committer.to_failed)
    return intake, store, folders


# -- item 1: partial files --------------------------------------------------------------------------------------

def test_reopen_append_and_pausing_writers_are_processed_once(root: Path, tmp_path: Path, daemon) -> None:
    """A writer that reopens the file for each chunk (0.3 s apart) and one that holds the file open through a
    4 s pause are each processed once, complete: one job, one output, nothing in failed/."""
    originals = {name: save_image(tmp_path / "src" / name, 160, 120, seed=i)
                 for i, name in enumerate(["chunked.png", "paused.png"])}
    proc = daemon(env=SLOW_SETTLE)
    inbox = root / "inbox" / "upscale"

    def reopen_append() -> None:
        data = originals["chunked.png"].read_bytes()
        step = len(data) // 8 + 1
        for i in range(0, len(data), step):
            with open(inbox / "chunked.png", "ab") as fh:
                fh.write(data[i:i + step])
            time.sleep(0.3)

    def pausing() -> None:
        data = originals["paused.png"].read_bytes()
        with open(inbox / "paused.png", "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(4.0)
            fh.write(data[len(data) // 2:])

    writers = [threading.Thread(target=reopen_append), threading.Thread(target=pausing)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    wait_for(lambda: len(db_rows(root)) >= 2 and all(r["state"] in ("archived", "failed") for r in db_rows(root)),
             timeout=150)  # generous: a loaded machine; the pausing writer's close is what it waits for
    time.sleep(1.5)  # a late fragment would show up as another row here
    rows = db_rows(root)
    states = sorted((r["rel_path"], r["state"]) for r in rows)
    assert states == [("chunked.png", "archived"), ("paused.png", "archived")]
    for row in rows:
        assert row["sha256"] == sha256(originals[row["rel_path"]])
        assert sha256(Path(row["archive_path"])) == row["sha256"]
    assert sorted(p.name for p in files_under(root / "outbox")) == ["chunked.png", "paused.png"]
    assert files_under(root / "failed") == []
    assert proc.stop() == 0


def test_newer_sighting_supersedes_the_queued_job(tmp_path: Path) -> None:
    """A file appended to after it was queued keeps one job, which takes the final content."""
    intake, store, folders = _intake(tmp_path)
    full = save_image(tmp_path / "full.png", 64, 48).read_bytes()
    path = folders.inbox / "b.png"
    path.write_bytes(full[:100])
    assert intake.offer("upscale", path) is Outcome.QUEUED
    with open(path, "ab") as fh:
        fh.write(full[100:])
    assert intake.offer("upscale", path) is Outcome.MOVED
    jobs = store.in_states([JobState.QUEUED, JobState.FAILED])
    assert [(j.rel_path, j.sha256, j.size) for j in jobs] == [("b.png", sha256(path), len(full))]


def test_changed_since_it_looked_settled_waits(tmp_path: Path) -> None:
    """Intake does not queue a file whose size or mtime moved since the tracker judged it settled."""
    intake, store, folders = _intake(tmp_path)
    path = save_image(folders.inbox / "c.png")
    st = os.stat(path)
    with open(path, "ab") as fh:
        fh.write(b"more")
    assert intake.offer("upscale", path, (st.st_size, st.st_mtime_ns)) is Outcome.WAIT
    assert store.in_states([JobState.QUEUED]) == []


def test_truncated_while_still_growing_is_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A "truncated" decode of a file that grew since it was read is "still being written" (retried), while
    a truncated file that holds still is a permanent failure."""
    inbox = tmp_path / "inbox"
    data = save_image(tmp_path / "full.png", 64, 48).read_bytes()
    path = inbox / "t.png"
    inbox.mkdir()
    path.write_bytes(data[: len(data) // 2])
    real_decode = pipeline.decode

    def growing(raw: bytes, **kwargs: object) -> object:
        with open(path, "ab") as fh:
            fh.write(data[len(data) // 2:])
        return real_decode(raw, **kwargs)  # type: ignore[arg-type]

    task = pipeline.Task(rule="r", source=str(path), steps=[], output={}, work_dir=str(tmp_path), inbox=str(inbox))
    still = pipeline.run_task(task)
    assert not still.ok and still.error and still.error.startswith("truncated") and still.permanent
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(pipeline, "decode", growing)
    result = pipeline.run_task(task)
    assert not result.ok and not result.permanent and "still being written" in (result.error or "")
    with pytest.raises(DecodeError):
        real_decode(data[:100], max_pixels=10**6)


def test_polled_writer_pausing_past_the_settle_time_is_not_failed(root: Path, tmp_path: Path, daemon) -> None:
    """On a polled share (no close events) a writer that pauses longer than the settle time gets its half
    file taken; it does not decode, but it changed less than quiet_time ago, so it is looked at again
    instead of failed, and the completed file supersedes: one job, one output, nothing in failed/."""
    originals = {name: save_image(tmp_path / "src" / name, 160, 120, seed=i)
                 for i, name in enumerate(["held.png", "reopened.png", "empty.png"])}
    proc = daemon(env={"RETOUCHD_WATCH__MODE": "poll", "RETOUCHD_WATCH__SETTLE_TIME": "0.8",
                       "RETOUCHD_WATCH__QUIET_TIME": "12"})
    inbox = root / "inbox" / "upscale"

    def held_open() -> None:
        data = originals["held.png"].read_bytes()
        with open(inbox / "held.png", "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(4.0)
            fh.write(data[len(data) // 2:])

    def reopened() -> None:
        data = originals["reopened.png"].read_bytes()
        for part in (data[:200], data[200:]):
            with open(inbox / "reopened.png", "ab") as fh:
                fh.write(part)
            time.sleep(4.0)

    def empty_first() -> None:  # created, then nothing for 4 s, then the whole image
        (inbox / "empty.png").touch()
        time.sleep(4.0)
        (inbox / "empty.png").write_bytes(originals["empty.png"].read_bytes())

    writers = [threading.Thread(target=w) for w in (held_open, reopened, empty_first)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    wait_for(lambda: len(db_rows(root)) >= 3 and all(r["state"] in ("archived", "failed") for r in db_rows(root)),
             timeout=150)
    rows = db_rows(root)
    assert sorted((r["rel_path"], r["state"]) for r in rows) == [
        ("empty.png", "archived"), ("held.png", "archived"), ("reopened.png", "archived")]
    for row in rows:
        assert row["sha256"] == sha256(originals[row["rel_path"]])
    assert sorted(p.name for p in files_under(root / "outbox")) == ["empty.png", "held.png", "reopened.png"]
    assert files_under(root / "failed") == []
    assert proc.stop() == 0


def test_undecodable_input_fails_once_it_held_still_for_the_confirm_time(tmp_path: Path) -> None:
    """An input that does not decode and changed recently is requeued (attempt given back) until it has held
    still for the confirm time; one that is that old already is failed at once, with its reason."""
    intake, store, folders = _intake(tmp_path)
    broken = folders.inbox / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n half a file")
    assert intake.offer("upscale", broken) is Outcome.QUEUED
    result = pipeline.TaskResult(ok=False, error="truncated PNG: the file ends early", error_step="decode",
                                 undecodable=True)
    committer = Committer(store, {"upscale": folders}, confirm_time=30.0)
    job = store.claim("me:1:x:0", "me", "cpu", 60, ["upscale"])
    assert job is not None and committer.failure(job, "me:1:x:0", result) == JobState.QUEUED
    again = store.get(job.id)
    assert again is not None and again.attempts == 0 and again.not_before is not None
    wait = (again.not_before - utcnow()).total_seconds()
    assert 25 < wait <= 30
    assert broken.exists() and files_under(folders.failed) == []
    old = time.time() - 31
    os.utime(broken, (old, old))  # held still for longer than the confirm time
    with store.session() as s:  # its look-again time has come
        row = s.get(Job, job.id)
        assert row is not None
        row.not_before = None
    job = store.claim("me:1:x:0", "me", "cpu", 60, ["upscale"])
    assert job is not None and committer.failure(job, "me:1:x:0", result) == JobState.FAILED
    assert [p.name for p in files_under(folders.failed)] == ["broken.png", "broken.png.error.json"]


# -- items 2, 3, 5: FIFOs, devices, links -------------------------------------------------------------------------

def test_fifo_and_device_are_never_read(tmp_path: Path) -> None:
    """Opening a FIFO (no writer) or a device node returns at once with a reason instead of blocking or
    reading forever."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(beneath.NotRegularError, match="FIFO"):
        beneath.hash_file(tmp_path, fifo)
    with pytest.raises(beneath.NotRegularError, match="device"):
        beneath.hash_file(None, Path("/dev/zero"))
    assert time.monotonic() - started < 5


def test_folder_swapped_for_symlink_moves_nothing_from_outside(tmp_path: Path) -> None:
    """A job's folder replaced by a symlink to an outside folder: failing the job never moves or reads the
    outside file of the same name."""
    intake, store, folders = _intake(tmp_path)
    (folders.inbox / "sub").mkdir()
    (folders.inbox / "sub" / "victim.png").write_bytes(b"not an image at all")
    assert intake.offer("upscale", folders.inbox / "sub" / "victim.png") is Outcome.QUEUED
    job = store.claim("me:1:x:0", "me", "cpu", 60, ["upscale"])
    assert job is not None
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = save_image(outside / "victim.png")
    before = sha256(victim)
    shutil.rmtree(folders.inbox / "sub")
    os.symlink(outside, folders.inbox / "sub")
    with pytest.raises(UnsafePathError):
        beneath.read_file(folders.inbox, folders.inbox / "sub" / "victim.png", 1000)
    with pytest.raises(UnsafePathError):
        beneath.move_out(folders.inbox, folders.inbox / "sub" / "victim.png", tmp_path / "moved.png")
    Committer(store, {"upscale": folders}).to_failed(job, "me:1:x:0", "corrupt", "decode", None)
    assert victim.exists() and sha256(victim) == before
    assert files_under(folders.failed) == []
    assert store.get(job.id).state == JobState.FAILED  # type: ignore[union-attr]


def test_links_and_fifos_are_failed_once_with_a_reason(tmp_path: Path) -> None:
    """A symlink and a FIFO with image names are each recorded once as a failed job; the link itself is
    moved to failed/ (its target outside is untouched), nothing is followed or read."""
    intake, store, folders = _intake(tmp_path)
    outside = save_image(tmp_path / "outside.png")
    before = sha256(outside)
    os.symlink(outside, folders.inbox / "link.png")
    os.mkfifo(folders.inbox / "pipe.png")
    for name in ("link.png", "pipe.png"):
        assert intake.offer("upscale", folders.inbox / name) is Outcome.REFUSED
    failed = {j.rel_path: j for j in store.in_states([JobState.FAILED])}
    assert set(failed) == {"link.png", "pipe.png"}
    assert "symbolic link" in (failed["link.png"].error or "") and "FIFO" in (failed["pipe.png"].error or "")
    assert os.path.islink(folders.failed / "link.png") and os.readlink(folders.failed / "link.png") == str(outside)
    assert stat.S_ISFIFO(os.lstat(folders.failed / "pipe.png").st_mode)
    assert (folders.failed / "link.png.error.json").exists()
    assert sha256(outside) == before and not os.path.lexists(folders.inbox / "link.png")


def test_daemon_fails_fifo_and_keeps_taking_files(root: Path, tmp_path: Path, daemon) -> None:
    """A FIFO swapped in for a settling file neither blocks the daemon nor stops later files; SIGTERM
    still stops it."""
    proc = daemon()
    inbox = root / "inbox" / "upscale"
    (inbox / "swap.png").write_bytes(b"\x89PNG partial")
    os.unlink(inbox / "swap.png")
    os.mkfifo(inbox / "swap.png")
    save_image(tmp_path / "after.png")
    shutil.copy(tmp_path / "after.png", inbox / "after.png")
    wait_for(lambda: sorted((r["rel_path"], r["state"]) for r in db_rows(root))
             == [("after.png", "archived"), ("swap.png", "failed")], timeout=60)
    row = next(r for r in db_rows(root) if r["rel_path"] == "swap.png")
    assert "FIFO" in row["error"]
    assert proc.stop() == 0


# -- item 4: hard links ---------------------------------------------------------------------------------------------

def test_hard_linked_original_is_archived_as_a_copy(root: Path, tmp_path: Path, daemon) -> None:
    """A file hard-linked into the inbox is archived as its own copy: changing the outside file later does
    not change the archived original."""
    outside = save_image(tmp_path / "outside.png", 64, 48, seed=3)
    before = sha256(outside)
    proc = daemon()
    os.link(outside, root / "inbox" / "upscale" / "hl.png")
    wait_for(lambda: [r["state"] for r in db_rows(root)] == ["archived"], timeout=60)
    archived = Path(db_rows(root)[0]["archive_path"])
    assert os.stat(archived).st_ino != os.stat(outside).st_ino
    assert os.stat(outside).st_nlink == 1 and sha256(outside) == before
    with open(outside, "ab") as fh:
        fh.write(b"changed")
    assert sha256(archived) == before
    assert proc.stop() == 0


# -- item 6: long names, item 10: unreadable files -------------------------------------------------------------

def test_names_of_255_bytes_are_processed_and_failed_with_short_derived_names(root: Path, tmp_path: Path,
                                                                               daemon) -> None:
    """A 255-byte name is taken (no sidecar lookup error); names derived from it (error report, temp files)
    are shortened to fit, and the names used are recorded."""
    good, bad = "g" * 251 + ".png", "b" * 251 + ".png"
    proc = daemon()
    inbox = root / "inbox" / "upscale"
    save_image(tmp_path / "src.png")
    shutil.copy(tmp_path / "src.png", inbox / good)
    (inbox / bad).write_bytes(b"not an image, just text\n")
    wait_for(lambda: sorted(r["state"] for r in db_rows(root)) == ["archived", "failed"], timeout=60)
    rows = {r["rel_path"]: r for r in db_rows(root)}
    assert Path(rows[good]["output_path"]).exists() and Path(rows[good]["archive_path"]).name == good
    failed = Path(rows[bad]["failed_path"])
    assert failed.exists() and "not an image" in rows[bad]["error"]
    reports = [p for p in files_under(root / "failed") if p.name.endswith(".error.json")]
    assert len(reports) == 1 and len(os.fsencode(reports[0].name)) <= 255
    assert not [line for line in proc.log_lines() if "too long" in str(line)]
    assert proc.stop() == 0


def test_unreadable_file_fails_after_bounded_looks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the daemon may not read is looked at a few times, then recorded as failed "permission denied"
    (shown in status), not retried forever."""
    intake, store, folders = _intake(tmp_path)
    path = save_image(folders.inbox / "locked.png")

    def denied(root: Path | None, p: Path) -> tuple[str, os.stat_result]:
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(beneath, "hash_file", denied)
    outcomes = [intake.offer("upscale", path) for _ in range(5)]
    assert outcomes == [Outcome.WAIT] * 4 + [Outcome.REFUSED]
    [job] = store.in_states([JobState.FAILED])
    assert job.error and job.error.startswith("permission denied")
    assert (folders.failed / "locked.png").exists() and not path.exists()


# -- items 7, 8: inbox outages and unmounted shares -----------------------------------------------------------------

def test_missing_absolute_inbox_is_paused_never_created(root: Path, tmp_path: Path, daemon) -> None:
    """An absolute inbox that does not exist (share not mounted) is paused with "is the share mounted?" and
    never created; once it appears it is resumed and its files are processed."""
    share = tmp_path / "nas" / "photos"
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname = "nas"\ninbox = "{share}"\nsteps = [{{ op = "upscale", scale = 2 }}]\n')
    proc = daemon("--rules", str(rules))
    wait_for(lambda: [line for line in proc.log_lines()
                      if line.get("event") == "inbox paused" and "share mounted" in line.get("reason", "")])
    time.sleep(1.0)
    assert not share.exists() and not share.parent.exists()
    share.mkdir(parents=True)  # the share is mounted
    save_image(share / "n.png")
    wait_for(lambda: [r["state"] for r in db_rows(root)] == ["archived"], timeout=60)
    assert (root / "outbox" / "nas" / "n.png").exists()
    assert proc.stop() == 0


def test_file_gone_with_its_inbox_stays_queued(tmp_path: Path) -> None:
    """A job whose file vanished together with its inbox (unmounted, replaced) waits in the queue instead of
    failing as "disappeared"; without an outage it fails as before."""
    intake, store, folders = _intake(tmp_path)
    for name in ("a.png", "b.png"):
        save_image(folders.inbox / name, seed=len(name) + ord(name[0]))
        assert intake.offer("upscale", folders.inbox / name) is Outcome.QUEUED
    vanished = pipeline.TaskResult(ok=False, error="the file disappeared from the inbox", vanished=True)
    away = Committer(store, {"upscale": folders}, outage=lambda rule: True)
    here = Committer(store, {"upscale": folders})
    first = store.claim("me:1:x:0", "me", "cpu", 60, ["upscale"])
    assert first is not None and away.failure(first, "me:1:x:0", vanished) == JobState.QUEUED
    assert store.get(first.id).attempts == 0  # type: ignore[union-attr]
    second = store.claim("me:1:x:0", "me", "cpu", 60, ["upscale"])
    assert second is not None and second.id != first.id
    assert here.failure(second, "me:1:x:0", vanished) == JobState.FAILED


def test_original_gone_with_its_inbox_is_not_marked_archived(tmp_path: Path) -> None:
    """A finished job whose original vanished with its inbox is not marked archived without an archive path:
    archiving waits (transient) and, once the inbox is back, moves the original as usual."""
    intake, store, folders = _intake(tmp_path)
    original = save_image(folders.inbox / "a.png")
    data = original.read_bytes()
    assert intake.offer("upscale", original) is Outcome.QUEUED
    away = Committer(store, {"upscale": folders}, outage=lambda rule: True)
    job = store.claim("me:1:x:0", "me", "cpu", 60, ["upscale"])
    assert job is not None
    tmp = tmp_path / "out.tmp"
    tmp.write_bytes(data)
    result = pipeline.TaskResult(ok=True, tmp_path=str(tmp), output_name="a.png", output_sha256=sha256(tmp))
    shutil.move(folders.inbox, tmp_path / "unmounted")
    with pytest.raises(TransientError):
        away.success(job, "me:1:x:0", result)
    row = store.get(job.id)
    assert row is not None and row.state == JobState.DONE and row.archive_path is None
    shutil.move(tmp_path / "unmounted", folders.inbox)
    away.archive(job.id, "me:1:x:0")
    row = store.get(job.id)
    assert row is not None and row.state == JobState.ARCHIVED and row.archive_path is not None
    assert Path(row.archive_path).read_bytes() == data and not original.exists()


def test_offers_run_off_the_main_thread(tmp_path: Path) -> None:
    """A slow offer (hashing a huge file) does not hold up the caller; its result is collected later, and
    the same path is not offered twice meanwhile."""
    release = threading.Event()
    seen: list[str] = []

    def slow(candidate: Candidate) -> Outcome:
        seen.append(threading.current_thread().name)
        release.wait(30)
        return Outcome.QUEUED

    offers = IntakeThread(slow)
    candidate = Candidate("r", tmp_path / "big.png", 1, 1)
    started = time.monotonic()
    assert offers.submit(candidate) and not offers.submit(candidate)
    assert offers.results() == [] and offers.in_flight() == 1
    assert time.monotonic() - started < 1.0
    release.set()
    assert wait_for(offers.results, timeout=10) == [(candidate, Outcome.QUEUED)]
    assert seen == ["intake"] and offers.in_flight() == 0
    offers.stop()


# -- item 13: several hosts ---------------------------------------------------------------------------------------

def test_only_one_host_reads_a_new_sighting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three daemons see the same new file: only the one that claims the sighting hashes it; the others
    find its job; a stale claim (its owner gone) is taken over."""
    intake, store, folders = _intake(tmp_path)
    path = save_image(folders.inbox / "shared.png")
    st = os.stat(path)
    reads: list[str] = []
    real = beneath.hash_file

    def counting(root: Path | None, p: Path) -> tuple[str, os.stat_result]:
        reads.append(p.name)
        return real(root, p)

    monkeypatch.setattr(beneath, "hash_file", counting)
    hosts = [Intake(store, intake.rules, intake.folders, max_attempts=3, owner=f"h{i}:1:x") for i in range(3)]
    seen = (st.st_size, st.st_mtime_ns)
    assert [h.offer("upscale", path, seen) for h in hosts] == [Outcome.QUEUED, Outcome.KNOWN, Outcome.KNOWN]
    assert reads == ["shared.png"]
    other = save_image(folders.inbox / "orphan.png", seed=5)
    st2 = os.stat(other)
    assert hosts[1]._claim("upscale", other, (st2.st_size, st2.st_mtime_ns))  # then host 1 dies
    assert hosts[2].offer("upscale", other, (st2.st_size, st2.st_mtime_ns)) is Outcome.WAIT
    monkeypatch.setattr("retouchd.intake.CLAIM_STALE", 0.0)
    assert hosts[2].offer("upscale", other, (st2.st_size, st2.st_mtime_ns)) is Outcome.QUEUED


def test_a_dead_hosts_sighting_claim_lasts_no_longer_than_its_lease(tmp_path: Path) -> None:
    """A host killed between claiming a sighting and queueing it: the others take the file over once the
    claim is older than the job lease they were given (the daemon passes workers.lease_seconds), not after
    the 120 s default; a fresh claim still holds."""
    intake, store, folders = _intake(tmp_path)
    path = save_image(folders.inbox / "claimed.png")
    st = os.stat(path)
    seen = (st.st_size, st.st_mtime_ns)
    dead = Intake(store, intake.rules, intake.folders, max_attempts=3, owner="dead:1:x", claim_stale=1.0)
    alive = Intake(store, intake.rules, intake.folders, max_attempts=3, owner="alive:1:x", claim_stale=1.0)
    assert dead._claim("upscale", path, seen)  # then it is killed
    assert alive.offer("upscale", path, seen) is Outcome.WAIT
    time.sleep(1.2)
    assert alive.offer("upscale", path, seen) is Outcome.QUEUED


def test_the_daemon_passes_its_lease_as_the_claim_staleness(root: Path) -> None:
    from retouchd.daemon import Daemon
    from retouchd.rules import load_rules
    from retouchd.settings import load_settings
    from retouchd.store import open_store

    settings = load_settings(root=root, env=False).model_copy(deep=True)
    settings.workers.lease_seconds = 7.0
    d = Daemon(settings, load_rules())
    settings.state.mkdir(parents=True, exist_ok=True)
    d.store = open_store(settings.db_url)
    try:
        d._wire(load_rules())
        assert d.intake.claim_stale == 7.0
    finally:
        d.store.engine.dispose()


def test_a_new_file_is_read_twice_hash_and_decode(root: Path, tmp_path: Path, daemon) -> None:
    """The daemon's own count of inbox reads (status file): a polled file is hashed once and decoded once,
    2× its size; the original is archived without a third read."""
    proc = daemon(env={"RETOUCHD_WATCH__MODE": "poll", "RETOUCHD_WATCH__SETTLE_TIME": "0.3"})
    staged = save_image(tmp_path / "a.png", 320, 240)
    size = staged.stat().st_size
    os.rename(staged, root / "inbox" / "upscale" / "a.png")
    wait_for(lambda: [r["state"] for r in db_rows(root)] == ["archived"], timeout=60)
    time.sleep(5)  # every poll sees the file until it is archived; two status rounds after that

    def counted() -> int:
        return sum(json.loads(p.read_text())["inbox_bytes_read"] for p in (root / "state").glob("daemon-*.json"))

    assert counted() == 2 * size
    assert proc.stop() == 0


def test_daemon_creates_rule_inboxes_with_the_inbox_group_and_mode(root: Path, daemon) -> None:
    """`inbox/` at 2775 owned by another group (as systemd/retouchd.tmpfiles makes it): the rule inbox the
    daemon creates is 2775 with that group, so the group that drops files can write there."""
    inbox = root / "inbox"
    inbox.mkdir()
    os.chown(inbox, -1, 100)  # tests run as root: any group will do
    os.chmod(inbox, 0o2775)
    proc = daemon()
    wait_for((inbox / "upscale").is_dir, timeout=60)
    st = os.stat(inbox / "upscale")
    assert (oct(stat.S_IMODE(st.st_mode)), st.st_gid) == (oct(0o2775), 100)
    assert proc.stop() == 0


def test_doctor_says_a_missing_share_is_not_created(root: Path, tmp_path: Path) -> None:
    """`doctor` reports a missing absolute inbox as an unmounted share, not "created at start"."""
    share = tmp_path / "nas" / "photos"
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname = "nas"\ninbox = "{share}"\nsteps = [{{ op = "upscale", scale = 2 }}]\n')
    out = cli("doctor", "--root", str(root), "--rules", str(rules)).stdout
    assert f"{share} does not exist; is the share mounted?" in out and f"{share} (missing; created" not in out
    assert not share.parent.exists()
