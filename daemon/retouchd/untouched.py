"""An image no step changed is delivered as the input's own bytes: decoding and re-encoding it would cost a
JPEG generation (or rewrite metadata) for nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from retouchd import beneath
from retouchd.exceptions import SourceChangedError
from retouchd.fsops import CHUNK
from retouchd.images import ImageInfo, output_format
from retouchd.outputspec import OutputSpec
from retouchd.typing import Frame


def can_copy(before: Frame, after: Frame, info: ImageInfo, spec: OutputSpec) -> bool:
    """True when the steps left every pixel as decoded and the output format is the input's own.

    An animated source is re-encoded: the documented result is its first frame only.
    """
    if info.frames != 1 or output_format(info, spec) != info.format:
        return False
    if after is before:
        return True
    same_alpha = (before.alpha is None and after.alpha is None) or (
        before.alpha is not None and after.alpha is not None and np.array_equal(before.alpha, after.alpha)
    )
    return same_alpha and np.array_equal(before.rgb, after.rgb)


def copy_source(inbox: str | None, source: str, out: BinaryIO, sha256: str) -> None:
    """Copy the source file (read beneath its inbox) into `out`, checking that it still has the content
    that was processed."""
    digest = hashlib.sha256()
    with beneath.open_file(Path(inbox) if inbox else None, Path(source)) as (fd, _):
        while chunk := beneath.read_chunk(fd, CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        raise SourceChangedError("the file changed while it was processed (hash mismatch); it will be retried")
