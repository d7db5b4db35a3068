"""Resume inside one file: a run killed with SIGKILL and rerun writes what an uninterrupted run writes."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from clips import scene_frames, write_clip
from standins import Sleepy, Smooth
from theris_cli.engine.pipeline import upscale_video
from theris_cli.engine.resume import MANIFEST, work_dir
from theris_cli.video import read_frames
from workers import WORKER_STARTUP_CAP, start_worker

TESTS = Path(__file__).resolve().parent
SEGMENT = 0.4  # seconds of output per segment: 8 frames at 20 fps


def clip(tmp_path, n=40, name="in.mkv", seed=1):
    return write_clip(tmp_path / name, scene_frames(n, 12, 16, seed=seed), fps=10)


def run(src, dst, model=None, **kw):
    return upscale_video(src, dst, model=model or Sleepy(0.0), device="cpu", weights="theris-small",
                         segment_seconds=SEGMENT, **kw)


def frames(path):
    return np.stack(list(read_frames(path)))


def segments(dst):
    try:
        return json.loads((work_dir(dst) / MANIFEST).read_text())["segments"]
    except (OSError, ValueError, KeyError):
        return []


def kill_midway(src, dst, tmp_path, at_least=3):
    """Start the run in another process, SIGKILL it once ``at_least`` segments are complete."""
    script = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "from standins import Sleepy, Smooth\n"
        "from theris_cli.engine.pipeline import upscale_video\n"
        f"upscale_video({str(src)!r}, {str(dst)!r}, model=Sleepy(0.1), device='cpu', weights='theris-small', "
        f"segment_seconds={SEGMENT})\n"
    )
    log = tmp_path / "worker.log"
    worker = start_worker(script, log)
    deadline = time.monotonic() + WORKER_STARTUP_CAP
    while len(segments(dst)) < at_least and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if worker.poll() is not None:
        pytest.fail(f"the worker ended before it was killed: {log.read_text()[-2000:]}")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    return len(segments(dst))


def test_a_killed_run_resumes_and_writes_what_an_uninterrupted_run_writes(tmp_path, caplog):
    src = clip(tmp_path)
    whole = tmp_path / "whole.mkv"
    run(src, whole)
    dst = tmp_path / "out.mkv"
    done = kill_midway(src, dst, tmp_path)
    assert not dst.exists()  # nothing under the final name before the end
    assert work_dir(dst).is_dir() and done >= 3
    model = Sleepy(0.0)
    with caplog.at_level(logging.WARNING, logger="theris"):
        res = run(src, dst, model=model)
    assert [r.getMessage() for r in caplog.records if "resuming" in r.getMessage()]
    assert res.resumed_frames >= 3 * 8 and res.frames_out == 80
    np.testing.assert_array_equal(frames(dst), frames(whole))  # frame for frame
    assert not work_dir(dst).exists()  # work files removed on success
    assert len(model.calls) < 19  # the windows of the kept segments were not run again (19 in all)


class Crash(Exception):
    pass


class CrashAfter(Sleepy):
    """Sleepy (same weights identity) that fails on its ``calls``-th window, as a crash would."""

    __qualname__ = "Sleepy"

    def __init__(self, calls: int):
        super().__init__()
        self.limit = calls

    def forward(self, x, times=None):
        if len(self.calls) >= self.limit:
            raise Crash("crashed")
        return super().forward(x, times)


def _partial_work(tmp_path, src, dst):
    """Leave complete segments for ``dst`` as a crash would (in this process: quicker than a kill)."""
    with pytest.raises(Crash):
        run(src, dst, model=CrashAfter(10))
    assert not dst.exists() and len(segments(dst)) >= 2


@pytest.mark.parametrize("change,line", [
    ("input", "the input changed"),
    ("options", "the options changed"),
    ("weights", "the weights changed"),
    ("no-resume", "starting over (--no-resume)"),
])
def test_a_changed_input_or_option_or_no_resume_starts_over_and_says_so(tmp_path, caplog, change, line):
    src, dst = clip(tmp_path), tmp_path / "out.mkv"
    _partial_work(tmp_path, src, dst)
    kw = {}
    if change == "input":
        clip(tmp_path, seed=2)  # rewritten in place
    elif change == "options":
        kw["window"] = 3
    elif change == "weights":
        kw["model"] = Smooth()
    else:
        kw["resume"] = False
    with caplog.at_level(logging.WARNING, logger="theris"):
        res = run(src, dst, **kw)
    msgs = [r.getMessage() for r in caplog.records]
    assert any(line in m for m in msgs), msgs
    assert res.resumed_frames == 0 and not work_dir(dst).exists()
    whole = tmp_path / "whole.mkv"
    run(src, whole, **{k: v for k, v in kw.items() if k != "resume"})
    np.testing.assert_array_equal(frames(dst), frames(whole))


def test_a_resumed_run_keeps_the_tile_its_segments_were_made_with(tmp_path, monkeypatch):
    # the tile decides the output's float rounding: a resumed run must not choose another one from
    # whatever memory is free at its start
    from theris_cli.engine.infer import Upscaler

    src, dst = clip(tmp_path), tmp_path / "out.mkv"
    _partial_work(tmp_path, src, dst)
    recorded = json.loads((work_dir(dst) / MANIFEST).read_text())["tile"]

    def choose(self, x, times):
        raise AssertionError("a resumed run chose its tile again")

    monkeypatch.setattr(Upscaler, "_tile_for_memory", choose)
    res = run(src, dst)
    assert res.resumed_frames > 0
    assert res.tile == recorded
    whole = tmp_path / "whole.mkv"
    monkeypatch.undo()
    run(src, whole)
    np.testing.assert_array_equal(frames(dst), frames(whole))


def test_no_resume_keeps_no_segments(tmp_path):
    src, dst = clip(tmp_path), tmp_path / "out.mkv"
    with pytest.raises(Crash):
        run(src, dst, model=CrashAfter(10), resume=False)
    assert not work_dir(dst).exists() and not dst.exists()


def test_a_failure_before_any_segment_leaves_nothing(tmp_path):
    src = tmp_path / "bad.mkv"
    src.write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(2000))  # a Matroska header, then noise
    dst = tmp_path / "out.mkv"
    with pytest.raises(Exception):
        run(src, dst)
    assert not dst.exists() and not work_dir(dst).exists()


def test_batch_resumes_inside_the_file_it_was_in(tmp_path):
    from theris_cli.batch import run_batch

    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    src = clip(in_dir)
    dst = out_dir / "in.mkv"
    out_dir.mkdir()
    _partial_work(tmp_path, src, dst)
    kept = len(segments(dst))
    model = Sleepy(0.0)
    result = run_batch(in_dir, out_dir, model=model, weights="theris-small", device="cpu")
    assert result.ok and result.files[0].status == "done"
    assert not work_dir(dst).exists()
    whole = tmp_path / "whole.mkv"
    run(src, whole)
    np.testing.assert_array_equal(frames(dst), frames(whole))
    assert len(model.calls) < 19 and kept >= 2  # it continued: fewer windows than a whole run


def test_a_lossy_output_resumes_in_one_pass_of_its_encoder(tmp_path):
    # The segments are lossless and the destination is encoded in one pass: no second generation of
    # compression. x264 itself is not repeatable run to run here (two uninterrupted runs differ by
    # about 0.5 of 255 on average), so the resumed file is compared within that.
    src = clip(tmp_path)
    dst, whole = tmp_path / "out.mp4", tmp_path / "whole.mp4"
    with pytest.raises(Crash):
        run(src, dst, model=CrashAfter(10), pix_fmt="yuv420p")
    assert len(segments(dst)) >= 2
    res = run(src, dst, pix_fmt="yuv420p")
    run(src, whole, pix_fmt="yuv420p")
    assert res.resumed_frames >= 16 and res.frames_out == 80
    a, b = frames(dst).astype(np.float64), frames(whole).astype(np.float64)
    assert a.shape == b.shape and np.abs(a - b).mean() <= 1.5
