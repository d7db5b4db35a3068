"""Progress of a batch on stderr: rich bars on a terminal, plain lines in logs (Slurm), or nothing.

The overall ETA is by input bytes, the one measure of remaining work known before decoding: seconds
spent so far per byte processed (the running file counted by its frames done) times the bytes
left. Files skipped as done or busy leave the estimate without weighing on it.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.text import Text

from theris_cli.batch.discover import Job
from theris_cli.batch.report import events_text
from theris_cli.batch.runner import BatchListener, BatchResult, FileResult, input_bytes
from theris_cli.humanize import duration

PLAIN_EVERY_S = 30.0  # at most one per-file progress line per this many seconds in plain mode


class _Tally(BatchListener):
    """Counts shared by both displays: files, frames and the byte-based ETA."""

    def batch_start(self, jobs: Sequence[Job], total_bytes: int, result: BatchResult) -> None:
        self.n, self.total_bytes, self.result = len(jobs), total_bytes, result
        self.finished = 0
        self.frames = 0  # output frames written, all files
        self.bytes_left = total_bytes
        self.work_s = 0.0
        self.work_bytes = 0
        self.cur_bytes = 0
        self.cur_frames = (0, None)
        self.t_file = time.monotonic()
        self.cur_job: Optional[Job] = None

    def file_start(self, job: Job, index: int) -> None:
        self.cur_job, self.index = job, index
        self.t_file = time.monotonic()
        self.cur_frames = (0, None)

    def file_progress(self, frames_done: int, frames_total: Optional[int]) -> None:
        self.cur_frames = (frames_done, frames_total)

    def file_end(self, job: Job, result: FileResult, input_bytes: int) -> None:
        self.finished += 1
        self.bytes_left -= input_bytes
        if result.status in ("done", "failed"):
            self.work_s += result.seconds
            self.work_bytes += input_bytes
        self.frames += result.frames_out or 0
        self.cur_frames = (0, None)

    def close(self) -> None:
        pass

    def eta(self, cur_bytes: int = 0) -> str:
        done, total = self.cur_frames
        frac = done / total if total else 0.0
        worked = self.work_bytes + frac * cur_bytes
        if worked <= 0:
            return "ETA --:--"
        spent = self.work_s + (time.monotonic() - self.t_file)
        return "ETA " + duration(spent / worked * max(self.bytes_left - frac * cur_bytes, 0))


class PlainDisplay(_Tally):
    """One line per file, and a progress line per PLAIN_EVERY_S within long files, for logs."""

    def __init__(self, console: Console):
        self.console = console
        self.last_line = 0.0

    def batch_start(self, jobs, total_bytes, result) -> None:
        super().batch_start(jobs, total_bytes, result)
        self.console.print(f"theris batch: {len(jobs)} inputs (shard {result.shard}) -> {result.out_dir}", highlight=False)

    def file_start(self, job, index) -> None:
        super().file_start(job, index)
        self.last_line = time.monotonic()

    def file_progress(self, frames_done, frames_total) -> None:
        super().file_progress(frames_done, frames_total)
        if time.monotonic() - self.last_line >= PLAIN_EVERY_S:
            self.last_line = time.monotonic()
            of = f"/{frames_total}" if frames_total else ""
            self.console.print(f"  {self.cur_job.name}: {frames_done}{of} frames", highlight=False)

    def file_end(self, job, result, input_bytes) -> None:
        super().file_end(job, result, input_bytes)
        what = result.status + (f": {result.reason}" if result.reason else "")
        if result.status == "done":
            what += f" in {duration(result.seconds)}, {result.frames_out or '?'} frames"
            events = events_text(result.events)
            if events:
                what += f"; events: {events}"
        self.console.print(
            f"[{self.finished}/{self.n}] {job.name} -> {result.output}: {what} ({self.eta()})", highlight=False, soft_wrap=True
        )


class RichDisplay(_Tally):
    """Two live bars: the batch (files, frames, ETA) and the current file (frames)."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
        )

    def batch_start(self, jobs, total_bytes, result) -> None:
        super().batch_start(jobs, total_bytes, result)
        self.progress.start()
        self.overall = self.progress.add_task("batch", total=max(len(jobs), 1), info="")
        self.file = self.progress.add_task("", total=None, info="", visible=False)
        self._refresh()

    def _refresh(self) -> None:
        info = f"{self.finished}/{self.n} files · {self.frames + self.cur_frames[0]} frames · {self.eta(self.cur_bytes)}"
        self.progress.update(self.overall, completed=self.finished, info=info)

    def file_start(self, job, index) -> None:
        super().file_start(job, index)
        self.cur_bytes = input_bytes(job)
        self.progress.reset(self.file, total=None, description=job.name, info="", visible=True)

    def file_progress(self, frames_done, frames_total) -> None:
        super().file_progress(frames_done, frames_total)
        elapsed = max(time.monotonic() - self.t_file, 1e-6)
        of = f"/{frames_total}" if frames_total else ""
        self.progress.update(
            self.file, completed=frames_done, total=frames_total, info=f"{frames_done}{of} frames · {frames_done / elapsed:.1f} fps"
        )
        self._refresh()

    def file_end(self, job, result, input_bytes) -> None:
        super().file_end(job, result, input_bytes)
        self.progress.update(self.file, visible=False)
        if result.status == "failed":
            self.progress.console.print(Text.assemble((f"failed: {job.name}: ", "bold red"), result.reason), soft_wrap=True)
        self._refresh()

    def close(self) -> None:
        self.progress.stop()


def make_display(console: Console, quiet: bool) -> Optional[BatchListener]:
    """The display that fits: none when quiet, bars on a terminal, plain lines otherwise."""
    if quiet:
        return None
    return RichDisplay(console) if console.is_terminal else PlainDisplay(console)
