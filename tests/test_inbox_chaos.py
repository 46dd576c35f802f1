"""Randomized: files, folders, FIFOs and symlinks swapped in the inbox while the daemon runs; nothing outside
the inbox is read, moved or written (SPEC §6.5), and the daemon neither hangs nor stops.

"Nothing read" is watched, not inferred: an inotify watch on every outside folder reports each open, read,
listing, write, create, delete or move there while the daemon runs (the test itself touches nothing there
in that window)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random
import shutil
import struct
import time
from pathlib import Path

import pytest

from conftest import db_rows, save_image, sha256, wait_for

CHAOS_SECONDS = 12.0

_IN_EVENTS = {0x1: "read", 0x2: "modified", 0x4: "attributes changed", 0x8: "closed after writing",
              0x10: "closed", 0x20: "opened", 0x40: "moved away", 0x80: "moved in", 0x100: "created",
              0x200: "deleted", 0x400: "folder deleted", 0x800: "folder moved"}
_IN_ISDIR = 0x40000000


class _Watch:
    """inotify on every folder under `folder`: what any process did there (opened, read, listed, changed)."""

    def __init__(self, folder: Path) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, "inotify unavailable"
        self.names: dict[int, Path] = {}
        for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink())]:
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(sub), sum(_IN_EVENTS))
            assert wd >= 0, f"cannot watch {sub}"
            self.names[wd] = sub

    def events(self) -> list[str]:
        out: list[str] = []
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self.fd, 65536):
                offset = 0
                while offset < len(data):
                    wd, mask, _, size = struct.unpack_from("iIII", data, offset)
                    name = data[offset + 16:offset + 16 + size].rstrip(b"\0").decode()
                    offset += 16 + size
                    what = ", ".join(v for k, v in _IN_EVENTS.items() if mask & k)
                    kind = "folder" if mask & _IN_ISDIR or not name else "file"
                    out.append(f"{kind} {self.names.get(wd, '?')}/{name}: {what}")
        return out

    def close(self) -> None:
        os.close(self.fd)


def _snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """name → (sha256, inode, link count) of every file under `folder`."""
    return {p.relative_to(folder).as_posix(): (sha256(p), p.stat().st_ino, p.stat().st_nlink)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _chaos(inbox: Path, outside: Path, sources: list[Path], rng: random.Random) -> None:
    deadline = time.monotonic() + CHAOS_SECONDS
    n = 0
    while time.monotonic() < deadline:
        n += 1
        rel = rng.choice(["", "a", "b", "a/deep"])
        folder = inbox / rel
        if any((inbox / rel).parents[i].is_symlink() for i in range(len(Path(rel).parts))) or folder.is_symlink():
            folder = inbox  # the writer itself must not write through a link it planted
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
        name = f"f{n}.png"
        op = rng.randrange(8)
        with contextlib.suppress(OSError):
            if op == 0:
                shutil.copy(rng.choice(sources), folder / name)
            elif op == 1:
                (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n broken " + bytes([n % 256]))
            elif op == 2:
                os.mkfifo(folder / name)
            elif op == 3:
                os.symlink(outside / rng.choice(["o1.png", "o2.png", "sub/o3.png"]), folder / name)
            elif op == 4:  # a folder swapped for a link to the outside folder (which has files of these names)
                victim = inbox / rng.choice(["a", "b"])
                if victim.is_dir() and not victim.is_symlink():
                    shutil.rmtree(victim)
                elif victim.is_symlink():
                    victim.unlink()
                os.symlink(outside, victim)
            elif op == 5:  # the link goes away again and a real folder comes back
                victim = inbox / rng.choice(["a", "b"])
                if victim.is_symlink():
                    victim.unlink()
                    victim.mkdir()
            elif op == 6:  # a settling file swapped for a FIFO of the same name
                shutil.copy(rng.choice(sources), folder / name)
                time.sleep(0.05)
                os.unlink(folder / name)
                os.mkfifo(folder / name)
            else:  # a reopen-append writer
                data = rng.choice(sources).read_bytes()
                for i in range(0, len(data), len(data) // 3 + 1):
                    with open(folder / name, "ab") as fh:
                        fh.write(data[i:i + len(data) // 3 + 1])
                    time.sleep(0.05)
        time.sleep(rng.uniform(0.01, 0.15))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [12, 1212])
def test_swaps_in_the_inbox_never_touch_outside(root: Path, tmp_path: Path, daemon, seed: int) -> None:
    """Outside files (some named like inbox files) keep their bytes, inodes and link counts; no job ever
    hashed an outside file; nothing new appears outside; the daemon keeps running and stops on SIGTERM."""
    outside = tmp_path / "outside"
    for i, rel in enumerate(["o1.png", "o2.png", "sub/o3.png", "f3.png", "f7.png", "deep/f9.png"]):
        save_image(outside / rel, 40, 30, seed=1000 + i)
    # The swapped-in links point at `outside` as `a`/`b`: give it files with the names the chaos writes.
    for n in range(1, 400, 7):
        save_image(outside / f"f{n}.png", 24, 16, seed=2000 + n)
    before = _snapshot(outside)
    outside_hashes = {h for h, _, _ in before.values()}
    sources = [save_image(tmp_path / "src" / f"s{i}.png", 48, 32, seed=i) for i in range(4)]
    watch = _Watch(outside)
    (outside / "sub" / "o3.png").read_bytes()
    assert any("o3.png: opened" in e for e in watch.events()), "the watch does not see reads"
    proc = daemon(env={"RETOUCHD_WATCH__SETTLE_TIME": "0.6"})
    _chaos(root / "inbox" / "upscale", outside, sources, random.Random(seed))

    def settled() -> bool:
        rows = db_rows(root)
        return bool(rows) and all(r["state"] in ("archived", "failed", "review") for r in rows)

    with contextlib.suppress(AssertionError):
        wait_for(settled, timeout=60, interval=0.5)
    assert proc.proc.poll() is None, "the daemon stopped"
    assert proc.stop() == 0
    touched = watch.events()
    watch.close()
    assert touched == [], "outside the inbox, something was opened, read, listed or changed:\n" + "\n".join(touched)
    assert _snapshot(outside) == before, "a file outside the inbox was moved, changed or linked"
    rows = db_rows(root)
    assert rows and not {r["sha256"] for r in rows} & outside_hashes, "an outside file was read into a job"
    assert any(r["state"] == "archived" for r in rows) and any("FIFO" in (r["error"] or "") for r in rows)
