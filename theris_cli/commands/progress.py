"""Progress of one upscale: a rich bar on a terminal, plain log lines otherwise, nothing with --quiet.

    with UpscaleProgress("in.mp4") as progress:
        upscale_video(src, dst, on_progress=progress)   # called as progress(done, total)

``done`` and ``total`` count output frames; ``total`` is None when the container does not say how
many frames it holds (the bar then shows a live count without ETA). The callback may come from
another thread (the pipeline's encoder): rich's Progress takes a lock, the plain writer too.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from theris_cli.commands.console import is_terminal
from theris_cli.humanize import duration

PLAIN_INTERVAL = 5.0  # seconds between plain log lines (logs of long runs stay short)


class _FpsColumn(ProgressColumn):
    """Output frames per second, averaged over rich's recent window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("  -- fps" if speed is None else f"{speed:6.1f} fps", style="progress.data.speed")


class _CountColumn(ProgressColumn):
    """``done/total frames``, or a live ``done frames`` when the total is unknown."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(f"{int(task.completed)} frames", style="progress.download")
        return MofNCompleteColumn().render(task) + Text(" frames", style="progress.download")


class UpscaleProgress:
    """Callable progress reporter for upscale_video's ``on_progress``; use as a context manager."""

    def __init__(self, label: str, *, quiet: bool = False, stream: Optional[TextIO] = None,
                 plain: Optional[bool] = None, interval: float = PLAIN_INTERVAL):
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        # A bar only where someone watches it: a terminal; logs and pipes get plain lines.
        self.plain = (not is_terminal(self.stream)) if plain is None else plain
        self.interval = interval
        self._lock = threading.Lock()
        self._progress: Optional[Progress] = None
        self._task = None
        self._t0 = 0.0
        self._last_line = 0.0
        self._done = 0
        self._total: Optional[int] = None

    def __enter__(self) -> "UpscaleProgress":
        self._t0 = self._last_line = time.monotonic()  # the first plain line after one interval
        if not self.quiet and not self.plain:
            console = Console(file=self.stream, highlight=False)
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), _CountColumn(), _FpsColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: Optional[int] = None) -> None:
        with self._lock:
            if total is not None and done > total:  # the container's estimate was short
                total = None
            self._done, self._total = done, total
            if self.quiet:
                return
            if self._progress is not None:
                self._progress.update(self._task, completed=done, total=total)
                return
            now = time.monotonic()
            if now - self._last_line >= self.interval:
                self._last_line = now
                self._line(now)

    def estimate(self, seconds: float, frames_out: int) -> None:
        """upscale_video's ``on_estimate``: one line with the estimated time of a long run."""
        from theris_cli.engine.estimate import LONG_RUN, estimate_line

        if self.quiet or seconds < LONG_RUN:
            return
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(f"{self.label}: {estimate_line(seconds, frames_out)}", highlight=False)
            else:
                print(f"{self.label}: {estimate_line(seconds, frames_out)}", file=self.stream, flush=True)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._t0, 1e-9)
        fps = self._done / elapsed
        if self._total:
            pct = 100.0 * self._done / self._total
            eta = (self._total - self._done) / fps if fps > 0 else None
            msg = f"{self.label}: {self._done}/{self._total} frames ({pct:.0f}%), {fps:.1f} fps, ETA {duration(eta)}"
        else:
            msg = f"{self.label}: {self._done} frames, {fps:.1f} fps"
        if final:
            msg = f"{self.label}: {self._done} frames in {duration(elapsed)}, {fps:.1f} fps"
        print(msg, file=self.stream, flush=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._progress is not None:
            if exc_type is None and self._task is not None:
                self._progress.update(self._task, total=self._done, completed=self._done)
            self._progress.stop()
        elif not self.quiet and self.plain and exc_type is None:
            self._line(time.monotonic(), final=True)
