"""Every error retouchd raises on purpose derives from RetouchdError.

`permanent` decides what the job boundary does: a permanent error sends the file to failed/ at once,
a transient one is retried with backoff until the rule's max_attempts.
"""

from __future__ import annotations


class RetouchdError(Exception):
    """Root of retouchd's errors. The message says what happened and what to do."""

    permanent: bool = True

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


class ConfigError(RetouchdError):
    """An invalid setting or rule; start-up stops with this message."""


class RuleError(ConfigError):
    """A rule file that cannot be used."""


class InputError(RetouchdError):
    """The input file cannot be processed (corrupt, not an image, too large, unsafe path)."""


class DecodeError(InputError):
    """The file is not a readable image."""


class LimitError(InputError):
    """The image exceeds a configured limit (pixels, dimensions, bytes, output size)."""


class UnsafePathError(InputError):
    """A path leads outside the folder it must stay in (symlink, `..`)."""


class StepError(RetouchdError):
    """A step could not produce its output for this image."""


class ModelError(RetouchdError):
    """A model cannot be found, loaded or verified."""


class TransientError(RetouchdError):
    """Worth retrying later: disk full, share gone, file still changing, device busy."""

    permanent = False


class SourceChangedError(TransientError):
    """The input's bytes differ from the ones that were hashed when it was queued."""


class WorkerDiedError(TransientError):
    """The worker process running the job died (segfault, OOM kill) or overran workers.job_timeout."""


class DeviceOutOfMemoryError(TransientError):
    """The device ran out of memory even at the smallest tile."""


class StoreError(RetouchdError):
    """The database refused an operation (illegal state transition, unreachable server)."""


class LeaseLost(StoreError):
    """This claim no longer holds the job (its lease expired and another claimant took it over): the
    holder must abandon the job without publishing, archiving or failing it."""

    permanent = False


class DatabaseUnavailable(StoreError):
    """The database cannot be reached or used right now (locked, server gone); the operation waits."""

    permanent = False
