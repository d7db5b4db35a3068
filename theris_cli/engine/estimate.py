"""How long an upscale will take, from its first window: said at the start of a long run.

The first window is timed as it runs (it is the first output's wait anyway); every window of a
video costs about the same (the same frame size and window length), and windows run ``workers`` at
a time (`infer.Upscaler.workers`), each as long as the first. Decoding and encoding run beside the
model in their own threads, so they are not added.
"""

from __future__ import annotations

from theris_cli.engine.windows import plan_windows
from theris_cli.humanize import duration

LONG_RUN = 60.0  # seconds: a run estimated to take longer than this is told its estimate


def estimate_seconds(frames_in: int, window: int, workers: int, first_window_seconds: float) -> float:
    """Seconds for the whole model stage of a video of ``frames_in`` input frames, in windows of
    ``window`` frames, ``workers`` windows at a time, the first of which took ``first_window_seconds``."""
    windows = len(plan_windows(frames_in, window))
    return first_window_seconds * windows / max(1, workers)


def estimate_line(seconds: float, frames_out: int) -> str:
    """The estimate as people read it: ``estimated time: 1:05:00 for 240 output frames (16.3 s a frame)``."""
    per = seconds / frames_out if frames_out else float("nan")
    return f"estimated time: {duration(seconds)} for {frames_out} output frames ({per:.1f} s a frame)"
