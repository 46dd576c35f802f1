"""What `retouchd process` works on: the files named, and the matching files of the folders named.

A folder gives the files the rule would take from an inbox (its `match`, no sidecars, no partial downloads
or system names), recursively with --recursive; their results keep their path relative to that folder, so
that two `a.jpg` from two subfolders do not land on one name. A file named on the command line that the
rule would not match is refused unless --any-name says to run it anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from retouchd.rules import Rule
from retouchd.settle import IgnoreMatcher
from retouchd.sidecars import is_sidecar


@dataclass(frozen=True)
class Input:
    path: Path
    out_rel: Path
    """Where its result goes under --out (the name is replaced by the result's name)."""
    refused: str | None = None
    """Why this file is not processed (it does not match the rule), or None."""


def _walk(folder: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):  # symlinked folders are not followed
        dirnames.sort()
        found += [Path(dirpath) / name for name in sorted(filenames)]
    return [p for p in found if not p.is_symlink()]


def collect(paths: list[Path], rule: Rule, ignore: IgnoreMatcher, *, recursive: bool, any_name: bool) -> list[Input]:
    """The work, in order. Missing paths are kept (they fail with "not a file" like before)."""
    inputs: list[Input] = []
    for given in paths:
        if not given.is_dir():
            refused = None
            if given.is_file() and not any_name and not rule.matches(given.name):
                refused = (f"rule {rule.name!r} does not match it ({', '.join(rule.match)}); "
                           "--any-name runs it anyway")
            inputs.append(Input(given, Path(given.name), refused))
            continue
        for path in _walk(given, recursive):
            rel = path.relative_to(given)
            if is_sidecar(path.name) or ignore.ignored(rel) or not (any_name or rule.matches(path.name)):
                continue
            inputs.append(Input(path, rel))
    return inputs
