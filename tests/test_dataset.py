import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from clips import ramp_frames, write_clip  # noqa: E402

from theris_cli.train.dataset import (  # noqa: E402
    ClipMixer,
    RealSource,
    SyntheticSource,
    augment,
    find_videos,
    load_real_clips,
    validation_batch,
)


@pytest.fixture
def videos(tmp_path):
    write_clip(tmp_path / "a" / "eight.mkv", ramp_frames(9, 24, 32))
    write_clip(tmp_path / "a" / "deep" / "sixteen.mkv", ramp_frames(8, 20, 28, bits=16))
    write_clip(tmp_path / "short.mkv", ramp_frames(3, 24, 32))
    (tmp_path / "notes.txt").write_text("not a video")
    return tmp_path


def test_find_videos_recursive_with_exclude(videos):
    names = [p.name for p in find_videos([videos])]
    assert sorted(names) == ["eight.mkv", "short.mkv", "sixteen.mkv"]
    assert [p.name for p in find_videos([videos], exclude=["*short*", "*sixteen*"])] == ["eight.mkv"]


def test_load_real_clips_skips_short_ones_and_keeps_raw_levels(videos):
    skipped = []
    clips = load_real_clips([videos], min_frames=7, on_skip=lambda p, why: skipped.append(p.name))
    assert skipped == ["short.mkv"]
    by_name = {c.name: c for c in clips}
    assert by_name["eight.mkv"].frames.dtype == np.uint8
    deep = by_name["sixteen.mkv"]
    assert deep.frames.dtype == np.uint16 and deep.frames.shape == (8, 20, 28)
    # 16-bit: min..max of the whole video maps to 0..1, exactly as at inference
    x = deep.unit(0, 8, 0, 20, 0, 28)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_crops_augmentations_shapes_and_determinism(videos):
    real = RealSource(load_real_clips([videos], min_frames=7), frames=7)
    synth = SyntheticSource(7, 16, seed=1, pool=6, chunk=2, every=2, margin=8)
    mix = ClipMixer(real, synth, 0.5, frames=7, patch=16, seed=3)
    lr, hr = mix.batch(5, 6)
    assert hr.shape == (6, 7, 1, 16, 16) and lr.shape == (6, 4, 1, 4, 4)
    assert hr.min() >= 0 and hr.max() <= 1
    again = ClipMixer(real, SyntheticSource(7, 16, seed=1, pool=6, chunk=2, every=2, margin=8), 0.5, frames=7, patch=16, seed=3)
    assert torch.equal(again.batch(5, 6)[1], hr)  # same (seed, step): same batch, even after a jump
    assert not torch.equal(mix.batch(6, 6)[1], hr)


def test_batch_shrinks_to_the_smallest_real_clip(videos):
    real = RealSource(load_real_clips([videos / "a" / "deep"], min_frames=7), frames=7)
    hr = ClipMixer(real, None, 0.0, frames=7, patch=32, seed=0).hr_batch(0, 2)
    assert hr.shape == (2, 7, 1, 20, 20)  # 20x28 video: the largest square crop, multiple of 4


def test_pool_after_a_jump_equals_the_pool_stepped_there():
    a = SyntheticSource(3, 8, seed=2, pool=5, chunk=2, every=3, margin=4)
    b = SyntheticSource(3, 8, seed=2, pool=5, chunk=2, every=3, margin=4)
    for s in range(10):
        a.advance(s)
    b.advance(9)
    assert torch.equal(a.pool, b.pool)


def test_augment_keeps_shape_and_content():
    clip = torch.rand(5, 1, 12, 12)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    out = augment(clip, g1)
    assert out.shape == clip.shape
    assert torch.equal(out, augment(clip, g2))
    assert torch.allclose(out.sum(), clip.sum())  # a permutation of the same pixels


def test_validation_batch_is_fixed(videos):
    real = RealSource(load_real_clips([videos / "a"], min_frames=7), frames=7)
    synth = SyntheticSource(7, 16, seed=0, pool=2, chunk=1, every=1, margin=4)
    lr1, hr1, groups = validation_batch(real, synth, 2, 2, frames=7, patch=16)
    lr2, hr2, _ = validation_batch(real, synth, 2, 2, frames=7, patch=16)
    assert groups == {"synthetic": slice(0, 2), "real": slice(2, 4)}
    assert hr1.shape == (4, 7, 1, 16, 16) and lr1.shape == (4, 4, 1, 4, 4)
    assert torch.equal(hr1, hr2)
