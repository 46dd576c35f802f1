"""Run the CLI on a pseudo-terminal, as a person at a terminal would, and read what it drew."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from conftest import FAST_ENV

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def run_in_pty(*args: str, keys: bytes = b"", keys_after: float = 0.0, timeout: float = 120,
               columns: int = 120, lines: int = 40) -> tuple[int, str]:
    """`python -m retouchd ARGS` with stdin, stdout and stderr on a pty; `keys` are typed after `keys_after` s.

    Returns the exit code and everything written, escape sequences included.
    """
    master, slave = pty.openpty()
    env = {**os.environ, **FAST_ENV, "COLUMNS": str(columns), "LINES": str(lines), "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "retouchd", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    started, output, typed = time.monotonic(), bytearray(), not keys
    try:
        while time.monotonic() - started < timeout:
            if not typed and time.monotonic() - started >= keys_after:
                os.write(master, keys)
                typed = True
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        code = proc.wait(10)
        os.close(master)
    return code, output.decode("utf-8", "replace")
