"""The terminal side shared by every command: stderr, the library's warnings, termination signals.

    with stop_on_signals(), warnings_to(err_console):
        upscale_video(...)
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.text import Text

err_console = Console(stderr=True, highlight=False)  # progress, warnings, summaries, errors

STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # kill, scancel and Slurm's time limit; a closed terminal
interrupt_reported = False  # set by a command that said itself how it was interrupted (train)
batch_running = False  # set while a batch runs: an interrupt message says its finished files are kept


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the work inside the block like Ctrl-C (KeyboardInterrupt), so that a
    temporary output, a batch lock and the batch report are cleaned up or written instead of left
    behind by a killed process. Only in the main thread (Python delivers signals there)."""
    saved = {}
    if threading.current_thread() is threading.main_thread():

        def interrupt(signum, frame):  # noqa: ARG001 - a signal handler's signature
            raise KeyboardInterrupt(f"signal {signum}")

        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)  # SIGHUP does not exist on Windows
            if sig is not None:
                saved[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def warnings_to(console: Console = err_console, quiet: bool = False) -> Iterator[None]:
    """Show the library's warnings (logger "theris") as one line each on ``console`` inside the
    block; ``quiet`` hides them (a batch also keeps them in each file's report entry)."""

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not quiet:
                console.print(Text.assemble(("warning: ", "bold yellow"), record.getMessage()), soft_wrap=True)

    logger = logging.getLogger("theris")  # every library module logs under it
    handler = _Handler(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # once, not again through the root logger
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def is_terminal(stream) -> bool:
    """Whether someone watches ``stream``: live bars there; plain lines for logs, pipes and Slurm."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def note_untrained(name: str, what: str = "the output is not a real upscale") -> None:
    """The note after a run with random weights, so that nobody mistakes it for a real upscale."""
    err_console.print(f"[yellow]note:[/] {name} has random (untrained) weights: {what}", soft_wrap=True)
