"""Worker processes (retouchd.worker): tied to the daemon's life, or say why not."""

from __future__ import annotations

import ctypes
import errno

import pytest

from retouchd import worker


def test_die_with_parent_reports_a_failed_prctl(monkeypatch: pytest.MonkeyPatch) -> None:
    """prctl(PR_SET_PDEATHSIG) returning -1 is reported with its errno (the worker logs it once), not
    ignored; success reports nothing."""

    class Libc:
        def __init__(self, result: int) -> None:
            self.result = result

        def prctl(self, *args: int) -> int:
            ctypes.set_errno(errno.EPERM)
            return self.result

    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: Libc(-1))
    assert worker._die_with_parent() == "Operation not permitted"
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: Libc(0))
    assert worker._die_with_parent() is None
