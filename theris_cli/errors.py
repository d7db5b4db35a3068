"""One exception hierarchy for everything a user can get wrong or run into.

Library code raises these with a message that says what happened and what to do next, in one
line. `cli.main()` prints that line and exits with `exit_code`; anything that is *not* a
`TherisError` is a bug and keeps its traceback.
"""

from __future__ import annotations


class TherisError(Exception):
    """Base class: a failure we expected and can explain in one line."""

    exit_code = 1


class UsageError(TherisError):
    """An option or argument that cannot work (bad value, conflicting flags)."""

    exit_code = 2


class InputError(TherisError):
    """The input is missing, unreadable, not a video, empty or corrupt."""


class OutputError(TherisError):
    """The destination cannot be written (exists, unwritable, disk full, same as input).

    `errno` is the OS error behind it, when there is one: a batch stops on a full or read-only
    disk (every further file would fail alike) and goes on after a file's own failure.
    """

    def __init__(self, message: str, *, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class DeviceError(TherisError):
    """The requested device or precision is not available here."""


class BackendUnavailable(TherisError):
    """A scan backend was asked for but cannot be used here."""


class WeightsError(TherisError):
    """A checkpoint cannot be found, fetched, verified or understood."""


class NumericalError(TherisError):
    """The network produced values that are not numbers (NaN or infinite): no output is written."""


class TrainingError(TherisError):
    """Training or evaluation cannot start or continue."""


class BatchError(TherisError):
    """Some inputs of a batch failed (the others were done and are kept); the summary lists them."""
