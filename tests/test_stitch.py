"""Blending: a single prediction comes back exactly; overlaps blend without steps."""

import torch

from theris_cli.engine.stitch import TemporalBlender, TileCanvas, feather
from theris_cli.engine.windows import Tile, plan_tiles, plan_windows, window_targets


def test_feather_is_one_on_frame_borders_and_ramps_inside():
    w = feather(Tile(0, 8, 4, 12), height=8, width=16, overlap=2, scale=4)
    assert w.shape == (32, 32)
    assert torch.all(w[:, 8:24] == 1)  # left edge at x0 = 4 ramps in, right edge at 12 ramps out; y on borders
    assert w[0, 0] < w[0, 1] < w[0, 7] and w[0, 7] < 1 and w[0, 8] == 1
    assert torch.all(w > 0)


def test_tiles_of_a_constant_image_blend_to_the_same_constant():
    h, w, s = 23, 31, 4
    canvas = TileCanvas(2, 1, h, w, s, overlap=3)
    img = torch.rand(2, 1, s * h, s * w)
    for t in plan_tiles(h, w, 10, 3):
        canvas.add(t, img[:, :, s * t.y0 : s * t.y1, s * t.x0 : s * t.x1])
    assert torch.allclose(canvas.result(), img, atol=1e-6)


def test_temporal_blend_of_consistent_windows_is_exact_and_keeps_duration():
    n, f = 9, 2
    truth = torch.rand(f * (n - 1) + 1, 1, 2, 2)  # the value at each output time
    b = TemporalBlender(f)
    got = []
    for w in plan_windows(n, 4):
        first, last = w.start == 0, w.end == n - 1
        local = window_targets(w.length, f, first, last)
        b.add(w, truth[[w.output_range(f)[j] for j in local]], first=first, last=last)
        got += list(b.pop_ready(f * (w.start + 1)))
    got += list(b.finish(n))
    assert len(got) == f * n
    assert torch.allclose(torch.stack(got[: len(truth)]), truth, atol=1e-6)
    assert torch.equal(got[-1], got[-2])  # the last input frame is held for its display time


def test_temporal_blend_ramps_between_disagreeing_windows():
    # Window A predicts 0 everywhere, B predicts 1: over the shared interval the output ramps 0 -> 1.
    from theris_cli.engine.windows import Window

    # A's end edge (time 3) and B's start edge (time 2) have weight 0: each window predicts 6 of 7 times.
    b = TemporalBlender(2)
    b.add(Window(0, 4), torch.zeros(6, 1, 1, 1), first=True, last=False)
    b.add(Window(2, 4), torch.ones(6, 1, 1, 1), first=False, last=True)
    vals = [float(x) for x in b.finish(6)]
    assert vals[:5] == [0, 0, 0, 0, 0]  # output times 0 .. 2
    assert abs(vals[5] - 0.5) < 1e-6  # time 2.5: halfway
    assert vals[6:] == [1, 1, 1, 1, 1, 1]  # time 3 .. the end


def test_temporal_blend_skips_zero_weight_predictions_given_explicitly():
    # A caller may pass every time of a window (local indices given): crossed edges add nothing.
    from theris_cli.engine.windows import Window

    b = TemporalBlender(2)
    b.add(Window(0, 4), torch.zeros(7, 1, 1, 1), first=True, last=False, local=range(7))
    b.add(Window(2, 4), torch.ones(7, 1, 1, 1), first=False, last=True, local=range(7))
    vals = [float(x) for x in b.finish(6)]
    assert vals == [0] * 5 + [0.5] + [1] * 6
