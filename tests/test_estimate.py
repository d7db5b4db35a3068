"""The estimate of a long upscale's time (engine/estimate.py) and where it is said: its arithmetic
and its words, not any timing."""

import io

import pytest

from clips import ramp_frames, write_clip
from theris_cli.commands.progress import UpscaleProgress
from theris_cli.engine.estimate import LONG_RUN, estimate_line, estimate_seconds
from theris_cli.engine.pipeline import upscale_video


@pytest.mark.parametrize("frames_in,window,workers,first,expected", [
    (21, 4, 1, 2.0, 20.0),   # 10 windows, one at a time
    (21, 4, 2, 2.0, 10.0),   # two at a time
    (3, 4, 1, 5.0, 5.0),     # a video shorter than a window: one window
    (0, 4, 1, 5.0, 0.0),
])
def test_estimate_counts_the_windows_and_the_workers(frames_in, window, workers, first, expected):
    assert estimate_seconds(frames_in, window, workers, first) == pytest.approx(expected)


def test_estimate_line_reads_as_a_duration_and_a_cost_per_frame():
    assert estimate_line(3900.0, 240) == "estimated time: 1:05:00 for 240 output frames (16.2 s a frame)"
    assert estimate_line(75.0, 30) == "estimated time: 1:15 for 30 output frames (2.5 s a frame)"


def test_progress_says_the_estimate_of_a_long_run_only():
    out = io.StringIO()
    with UpscaleProgress("in.mkv", stream=out, plain=True) as p:
        p.estimate(LONG_RUN / 2, 10)
        p.estimate(3900.0, 240)
    assert out.getvalue().splitlines()[0] == "in.mkv: estimated time: 1:05:00 for 240 output frames (16.2 s a frame)"
    quiet = io.StringIO()
    with UpscaleProgress("in.mkv", stream=quiet, plain=True, quiet=True) as p:
        p.estimate(3900.0, 240)
    assert quiet.getvalue() == ""


def test_upscale_video_gives_one_estimate_after_the_first_window(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(9, 16, 24))
    got = []
    res = upscale_video(src, tmp_path / "out.mkv", weights="tiny-random", device="cpu",
                        on_estimate=lambda seconds, frames: got.append((seconds, frames)))
    assert len(got) == 1
    seconds, frames = got[0]
    assert frames == res.frames_out == 18 and seconds > 0
