"""What the upscaler does with events: repeats as one sample, no blend across a splice or a shutter jump.

Stand-in NearestLinear (nearest x4 in space, linear in time) makes every output frame a known mix
of input frames, so a ghost (a blend of two scenes) or a frozen pair is measured exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clips import scene_frames, shutter_event, write_clip, written_twice
from standins import NearestLinear, Smooth
from theris_cli.engine.infer import Upscaler
from theris_cli.engine.pipeline import upscale_video
from theris_cli.engine.samples import _Run, add_weighted, upscale_marked
from theris_cli.engine.windows import plan_windows
from theris_cli.video import read_frames

H, W = 24, 32


def upscale(tmp_path, frames, **kw):
    src = write_clip(tmp_path / "in.mkv", frames, fps=18)
    dst = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.mkv"
    res = upscale_video(src, dst, model=NearestLinear(), device="cpu", **kw)
    return res, np.stack(list(read_frames(dst))).astype(np.float64)


def down(y):
    return y[:, ::4, ::4]  # NearestLinear repeats each LR pixel 4x4


def frozen_pairs(y):
    """Fraction of consecutive output frames that are the same frame (to within rounding)."""
    d = np.abs(np.diff(y, axis=0)).mean(axis=(1, 2))
    return float((d < 0.5).mean())


@pytest.mark.parametrize("model", [NearestLinear(), Smooth()], ids=["nearest-linear", "smooth"])
@pytest.mark.parametrize("n,window,factor", [(1, 4, 2), (3, 4, 2), (9, 4, 2), (10, 3, 3), (7, 2, 1), (8, 5, 2)])
def test_without_events_the_frames_are_those_of_the_plain_upscaler(model, n, window, factor):
    frames = [torch.rand(1, 6, 8, generator=torch.Generator().manual_seed(i)) for i in range(n)]
    up = Upscaler(model, window=window, temporal_factor=factor)
    plain = list(up.process(iter(frames)))
    marked = list(upscale_marked(up, ((f, "new") for f in frames)))
    assert len(marked) == len(plain) == factor * n
    assert all(torch.equal(a, b) for a, b in zip(plain, marked))
    tail = list(upscale_marked(up, ((f, "new") for f in frames), skip=3))  # resume: the same frames from 3 on
    assert len(tail) == max(factor * n - 3, 0) and all(torch.equal(a, b) for a, b in zip(plain[3:], tail))


def test_frames_written_twice_move_instead_of_stuttering(tmp_path):
    x = written_twice(scene_frames(24, H, W, seed=1))  # 48 frames, each sensor frame twice
    res, y = upscale(tmp_path, x)
    assert res.frames_out == 96 and res.events.repeated == 24  # the file's timing is kept
    assert frozen_pairs(y) <= 0.10
    # the new frames lie between distinct samples: output 4k + j is (4 - j)/4 of sample k, j/4 of k + 1
    s = x[0::2].astype(np.float64)
    np.testing.assert_allclose(down(y)[4 * 3 + 1], 0.75 * s[3] + 0.25 * s[4], atol=0.51)
    _, plain = upscale(tmp_path, x, events=False)
    assert frozen_pairs(plain) >= 0.4  # what the detection removes


def _side_distances(out, a, b):
    """Mean absolute difference of each output frame to sides a and b, relative to a - b."""
    ref = np.abs(a - b).mean()
    return np.abs(out - a).mean(axis=(1, 2)) / ref, np.abs(out - b).mean(axis=(1, 2)) / ref


def test_no_output_frame_blends_the_two_sides_of_a_splice(tmp_path):
    a, b = scene_frames(20, H, W, seed=1), scene_frames(20, H, W, seed=2)
    res, y = upscale(tmp_path, np.concatenate([a, b]))
    assert res.events.splices == [20] and res.frames_out == 80
    yd = down(y)
    last_a, first_b = a[-1].astype(np.float64), b[0].astype(np.float64)
    da, db = _side_distances(yd[36:44], last_a, first_b)  # the output frames either side of the cut
    assert (np.minimum(da, db) <= 0.15).all(), (da, db)
    assert (da[:4] <= 0.15).all() and (db[4:] <= 0.15).all()  # the first scene's, then the second's
    _, plain = upscale(tmp_path, np.concatenate([a, b]), events=False)
    da, db = _side_distances(down(plain)[36:44], last_a, first_b)
    assert (np.minimum(da, db) > 0.15).any()  # without detection: a ghost halfway


def test_no_output_frame_carries_a_ghost_of_a_shutter_jump(tmp_path):
    x = shutter_event(scene_frames(30, H, W, seed=1), at=16, frozen=3)
    res, y = upscale(tmp_path, x)
    assert res.events.shutters == [16] and res.events.repeated == 3
    yd = down(y)
    before, after = x[12].astype(np.float64), x[16].astype(np.float64)  # the frozen frame, the first after
    da, db = _side_distances(yd[24:32], before, after)  # the frozen run and the frame after the jump
    assert (da[:8] <= 0.15).all()  # the frozen run holds the last frame before the correction
    assert np.abs(yd[32] - after).mean() <= 0.5  # from the jump on: the new level, no blend
    assert np.abs(yd[31] - before).mean() <= 0.5


def test_events_can_be_switched_off(tmp_path):
    x = written_twice(scene_frames(6, H, W, seed=1))
    res, _ = upscale(tmp_path, x, events=False)
    assert res.events is None


def test_the_command_reports_events_and_switches_them_off(tmp_path):
    from typer.testing import CliRunner

    from theris_cli.cli import app

    src = write_clip(tmp_path / "in.mkv", written_twice(scene_frames(5, 12, 16, seed=1)), fps=18)
    runner = CliRunner()
    res = runner.invoke(app, ["upscale", str(src), str(tmp_path / "a.mkv"), "-w", "tiny-random", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "events: 5 repeated frames" in res.output
    res = runner.invoke(app, ["upscale", str(src), str(tmp_path / "b.mkv"), "-w", "tiny-random", "--device", "cpu",
                              "--no-events", "--no-resume"])
    assert res.exit_code == 0, res.output
    assert "events:" not in res.output


@pytest.mark.parametrize("skip", [0, 5])
def test_windows_on_several_workers_give_the_same_frames_with_repeats_and_breaks(skip):
    g = torch.Generator().manual_seed(3)
    frames = [torch.rand(1, 12, 16, generator=g) for _ in range(14)]
    marks = ["new", "new", "repeat", "new", "new", "new", "splice", "new", "new", "repeat", "repeat", "new",
             "new", "new"]
    outs = []
    for workers in (1, 3):
        up = Upscaler(Smooth(), window=4)
        up.workers = workers
        outs.append((list(upscale_marked(up, zip(frames, marks), skip=skip)), up.windows_run))
    (one, ran1), (several, ran3) = outs
    assert len(one) == len(several) == 2 * len(frames) - skip and ran1 == ran3
    for a, b in zip(one, several):
        assert torch.equal(a, b)


class _CopyingSums(_Run):
    """The blend with a new tensor for every product, sum and quotient: the reference the in-place
    sums of `_Run` must equal to the bit."""

    def _add(self, targets, preds):
        self.up.windows_run += 1
        for m, tau, weight in targets:
            if m < self.skip:
                continue
            p = preds[tau].float() * weight
            self.num[m] = self.num[m] + p if m in self.num else p
            self.den[m] = self.den.get(m, 0.0) + weight

    def _pop(self, limit):
        while self.next_out < limit:
            m = self.next_out
            self.next_out += 1
            if m >= self.skip:
                yield self.num.pop(m) / self.den.pop(m)


@pytest.mark.parametrize("skip", [0, 5])
def test_the_in_place_sums_are_the_copying_blend_to_the_bit(skip):
    """Held outputs (repeats) have sums of their own, changed in place: none leaks into another."""
    g = torch.Generator().manual_seed(5)
    frames = [torch.rand(1, 12, 16, generator=g) for _ in range(15)]
    marks = ["new", "repeat", "repeat", "new", "new", "new", "splice", "new", "new", "repeat", "new",
             "new", "new", "repeat", "new"]
    up = Upscaler(Smooth(), window=4)
    ours = list(upscale_marked(up, zip(frames, marks), skip=skip))
    copying = list(_CopyingSums(Upscaler(Smooth(), window=4), skip).process(zip(frames, marks)))
    assert len(ours) == len(copying) == 2 * len(frames) - skip
    for a, b in zip(ours, copying):
        assert torch.equal(a, b)
    assert len({a.data_ptr() for a in ours}) == len(ours)  # every frame handed on is its own


def test_add_weighted_is_the_sum_of_the_rounded_product():
    g = torch.Generator().manual_seed(0)
    acc, pred = torch.rand(2, 150, 37, generator=g), torch.rand(2, 150, 37, generator=g)  # rows: not a multiple of a band
    expected = acc + pred * 0.3
    add_weighted(acc, pred, 0.3)
    assert torch.equal(acc, expected)


def test_final_frames_are_handed_on_before_the_next_window_runs():
    """Outputs no later window predicts are not held while the model runs: before a window's model
    call, every output up to its start has been handed on (memory: one output frame is held, not a
    window's)."""
    frames = [torch.rand(1, 6, 8, generator=torch.Generator().manual_seed(i)) for i in range(11)]
    handed_on = [0]
    seen = []  # (window start in input frames, outputs handed on at its model call)

    class Counting(Smooth):
        def forward(self, x, times):
            seen.append(handed_on[0])
            return super().forward(x, times)

    up = Upscaler(Counting(), window=4)
    for _ in upscale_marked(up, ((f, "new") for f in frames)):
        handed_on[0] += 1
    starts = [w.start for w in plan_windows(len(frames), 4)]
    assert len(seen) == len(starts) == 5 and handed_on[0] == 22
    for start, n in zip(starts[1:], seen[1:]):
        assert n == 2 * start + 1  # output times 0 .. start: the window gives its first frame weight 0
