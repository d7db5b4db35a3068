"""Levels: one fixed affine map per video, exactly inverted on output."""

from __future__ import annotations

import numpy as np
import pytest
from clips import ramp_frames, write_clip

from theris_cli.errors import InputError
from theris_cli.video import Levels, scan_levels


@pytest.mark.parametrize("levels", [Levels(0, 255, 8), Levels(1000, 15000, 16), Levels(0, 65535, 16), Levels(7, 8, 16)])
def test_from_unit_inverts_to_unit_for_every_value_in_range(levels):
    raw = np.arange(levels.lo, levels.hi + 1, dtype=levels.dtype)
    x = levels.to_unit(raw)
    assert x.dtype == np.float32
    assert x[0] == 0.0 and x[-1] == 1.0
    back = levels.from_unit(x)
    assert back.dtype == levels.dtype
    np.testing.assert_array_equal(back, raw)


def test_to_unit_does_not_clip_and_from_unit_clips_only_to_the_container():
    lv = Levels(1000, 2000, 16)
    assert lv.to_unit(np.array([0, 3000], np.uint16)).tolist() == [-1.0, 2.0]
    assert lv.from_unit(np.array([-1.0, 2.0, -100.0, 100.0])).tolist() == [0, 3000, 0, 65535]
    assert Levels(0, 255, 8).from_unit(np.array([-0.1, 1.1])).tolist() == [0, 255]


def test_from_unit_takes_torch_tensors():
    torch = pytest.importorskip("torch")
    lv = Levels(0, 255, 8)
    np.testing.assert_array_equal(lv.from_unit(torch.tensor([0.0, 0.5, 1.0])), [0, 128, 255])


def test_from_unit_of_a_large_frame_is_the_float64_map_of_every_value():
    """from_unit works along the frame in pieces (`FROM_UNIT_CHUNK` values): every value, across
    the pieces' edges too, is rounded in float64 as a whole frame's would be."""
    from theris_cli.video.levels import FROM_UNIT_CHUNK

    lv = Levels(3, 60000, 16)
    x = (np.random.default_rng(1).standard_normal((3, 700, 500)) * 0.6 + 0.5).astype(np.float32)
    assert x.size > 2 * FROM_UNIT_CHUNK
    want = np.clip(np.rint(x.astype(np.float64) * (lv.hi - lv.lo) + lv.lo), 0, 65535).astype(np.uint16)
    got = lv.from_unit(x)
    assert got.shape == x.shape and got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)


def test_flat_video_gets_a_nonzero_span_and_bad_levels_are_refused():
    assert Levels.from_range(500, 500, 16) == Levels(500, 501, 16)
    assert Levels.from_range(65535, 65535, 16) == Levels(65534, 65535, 16)
    with pytest.raises(ValueError):
        Levels(10, 10, 16)
    with pytest.raises(ValueError):
        Levels(0, 256, 8)
    assert Levels.from_dict(Levels(3, 9, 16).to_dict()) == Levels(3, 9, 16)


def test_scan_levels_8bit_is_full_range(tmp_path):
    path = write_clip(tmp_path / "a.mkv", ramp_frames(3, 16, 24, lo=40, hi=90))
    assert scan_levels(path) == Levels(0, 255, 8)


def test_scan_levels_16bit_is_min_max_over_all_frames(tmp_path):
    frames = ramp_frames(4, 16, 24, bits=16, lo=2000, hi=3000)
    frames[0, 0, 0], frames[0, 0, 1] = 2500, 2500  # move the extremes to the last frame
    frames[3, 5, 5], frames[3, 6, 6] = 1234, 54321
    path = write_clip(tmp_path / "a.mkv", frames)
    assert scan_levels(path) == Levels(1234, 54321, 16)


def test_scan_levels_flat_16bit(tmp_path):
    path = write_clip(tmp_path / "a.mkv", np.full((2, 8, 8), 777, np.uint16))
    assert scan_levels(path) == Levels(777, 778, 16)


def test_scan_levels_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        scan_levels(tmp_path / "nope.mkv")
