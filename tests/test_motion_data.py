"""Motion where training sees it: fast synthetic scenes, motion-weighted real crops, the held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from theris_cli.protocol import motion_mask
from theris_cli.splits import SPLITS, get_split, split_clips, training_exclusions
from theris_cli.train.dataset import RealClip, RealSource, moving_fraction
from theris_cli.train.synthetic import SceneConfig, SyntheticThermal


def test_fast_synthetic_scenes_move_much_more():
    slow = SyntheticThermal(7, 96, 96, seed=3).batch(0, 8)
    fast = SyntheticThermal(7, 96, 96, seed=3, config=SceneConfig(fast_p=1.0)).batch(0, 8)
    f_slow = np.mean([moving_fraction(c) for c in slow])
    f_fast = np.mean([moving_fraction(c) for c in fast])
    assert f_fast > 3 * f_slow and f_fast > 0.1
    assert fast.shape == slow.shape and float(fast.min()) >= 0 and float(fast.max()) <= 1


def test_fast_pan_reaches_ten_input_pixels_per_input_frame():
    from theris_cli.train.synthetic import draw_clip

    s = SyntheticThermal(7, 96, 96, seed=0, config=SceneConfig(fast_p=1.0, pan_p=1.0))
    speeds = []
    for i in range(40):
        d = draw_clip(torch.Generator().manual_seed(i), s)
        speeds.append(float((d["camera"][1:] - d["camera"][:-1]).abs().max()))  # HR px per output frame
    # 20 HR px per output frame = 10 LR px per LR frame; the canvas margin covers the whole travel
    assert max(speeds) > 15 and s.margin >= 20 * 3


def test_a_config_without_fast_motion_draws_the_same_clips():
    a = SyntheticThermal(5, 48, 48, seed=1).batch(0, 2)
    b = SyntheticThermal(5, 48, 48, seed=1, config=SceneConfig(fast_p=0.0)).batch(0, 2)
    assert torch.equal(a, b)


def _corner_mover(n=40, size=64):
    """A static clip but for a hot square moving fast in one corner."""
    rng = np.random.default_rng(0)
    frames = np.repeat((rng.random((1, size, size)) * 40 + 100).astype(np.uint8), n, axis=0)
    for t in range(n):
        x = (3 * t) % 12
        frames[t, 2:10, x:x + 6] = 250
    from theris_cli.video import Levels

    return RealClip(Path("corner.mkv"), frames, Levels(0, 255, 8))


def test_motion_crops_find_the_moving_corner():
    clip = _corner_mover()

    def share(motion_crops):
        src = RealSource([clip], 5, motion_crops=motion_crops)
        gen = torch.Generator().manual_seed(0)
        return np.mean([moving_fraction(src.crop(clip, gen, 16)) > 0 for _ in range(60)])

    with_motion, plain = share(1.0), share(0.0)
    assert with_motion > 4 * plain and with_motion > 0.15  # 4 candidates: the moving one is found far more often


def test_motion_mask_is_the_documented_one():
    hr = torch.zeros(3, 1, 16, 16)
    hr[1, 0, 8, 8] = 0.031  # just over 3 % of the range, against a blend of 0
    m = motion_mask(hr)
    assert m.shape == (1, 1, 16, 16) and int(m.sum()) == 25  # one pixel, dilated 2 px: 5 x 5
    hr[1, 0, 8, 8] = 0.029
    assert int(motion_mask(hr).sum()) == 0


def test_split_v1_holds_out_what_issue_11_and_12_ask():
    s = get_split("v1")
    names = s.names()
    assert {"lepton_possum.mkv", "vottir_horse.mkv", "vottir_horse_h264.mp4"} <= set(names)
    new = [n for n in names if n.startswith(("tno-", "cacophony-"))]
    assert len(new) >= 4
    assert len([n for n in s.names(motion_only=True) if n in new]) >= 2
    assert training_exclusions("v1") == names
    with pytest.raises(Exception, match="unknown split"):
        get_split("nope")
    assert list(SPLITS) == ["v1"]


def test_split_v1_on_the_real_clips(shared_ir):
    from theris_cli.video import scan_levels

    train_dir = shared_ir.parent / "ir-train"
    if not train_dir.is_dir():
        pytest.skip(f"{train_dir} not found")
    paths = split_clips("v1", [shared_ir, train_dir])
    assert [p.name for p in paths] == get_split("v1").names()
    kinds = set()
    for p in paths:
        if p.parent == train_dir:
            lv = scan_levels(p)
            if lv.bit_depth == 8 and not p.name.startswith("cacophony"):
                kinds.add("8-bit non-Lepton")
            elif lv.bit_depth == 16 and lv.lo > 20000:
                kinds.add("Lepton 3.5 radiometric")
            elif lv.bit_depth == 16 and lv.hi < 16384:
                kinds.add("Lepton 3 raw")
    assert kinds == {"8-bit non-Lepton", "Lepton 3.5 radiometric", "Lepton 3 raw"}
    from theris_cli.train.dataset import find_videos

    trained = find_videos([shared_ir, train_dir], exclude=training_exclusions("v1"))
    assert not {p.name for p in trained} & set(get_split("v1").names())
    assert len(trained) == len(find_videos([shared_ir, train_dir])) - len(paths)
