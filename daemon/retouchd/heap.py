"""glibc's heap policy for a worker process: what the allocator maps, unmaps and keeps between jobs.

Left to its defaults, glibc hands a freed heap top back to the kernel as soon as it exceeds twice the
largest block freed so far (its dynamic trim threshold): a small job's arrays (the decoded image, the
resized one, Pillow's copy for the encoder: ~1.5 MB for a 256×171 → 512×342 lanczos job) were returned at
the end of every job and faulted in again by the next, ~420 page faults a job where a plain Pillow loop
takes none (issue 16). A worker keeps up to `TRIM_THRESHOLD` free at each heap's top instead, and maps
blocks of `MMAP_THRESHOLD` or more on their own (unmapped when freed), as models/ncnnrun.py needs for its
tiles' feature maps: large images still give their memory back at once.
"""

from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
"""Allocations at least this large get their own mapping, unmapped on free (a fixed value also ends
glibc's dynamic raising of both thresholds)."""
TRIM_THRESHOLD = 8 << 20
"""Free memory at a heap's top kept for the next job: at most this much per arena (a worker's main thread
and its one or two job threads), never a large image's blocks (those are mapped on their own)."""


def _mallopt(param: int, value: int) -> bool:
    try:
        return bool(ctypes.CDLL(None).mallopt(param, value))
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        return False


@functools.cache
def large_blocks_unmapped() -> bool:
    """Map every block of `MMAP_THRESHOLD` or more on its own and unmap it when freed (once per process)."""
    return _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


@functools.cache
def keep_freed_heap() -> bool:
    """The worker's policy: large blocks mapped on their own, and up to `TRIM_THRESHOLD` of freed heap kept
    for the next job rather than returned and faulted in again. Whether glibc took both."""
    return large_blocks_unmapped() and _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
