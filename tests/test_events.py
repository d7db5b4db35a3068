"""Event detection on generated clips (and on the real Lepton clip with a shutter event, where present)."""

from __future__ import annotations

import numpy as np
import pytest

from clips import scene_frames, shutter_event, written_twice
from theris_cli.engine.events import NEW, REPEAT, SHUTTER, SPLICE, EventCounts, EventDetector

H, W = 24, 32


def marks(frames):
    det = EventDetector()
    return [det.observe(f) for f in frames], det.counts


def test_a_plain_scene_has_no_events():
    m, counts = marks(scene_frames(30, H, W, seed=1))
    assert set(m) == {NEW} and counts.summary() == ""


def test_every_frame_written_twice_is_found():
    m, counts = marks(written_twice(scene_frames(15, H, W, seed=1)))
    assert m[0::2] == [NEW] * 15 and m[1::2] == [REPEAT] * 15
    assert counts.repeated == 15


def test_repeats_within_the_sensor_noise_are_found():
    # a lossy recorder: the second copy is not bit-exact, off by a count here and there
    x = written_twice(scene_frames(12, H, W, seed=1, noise=20)).astype(np.int64)
    rng = np.random.default_rng(5)
    x[1::2] += rng.integers(-1, 2, x[1::2].shape)
    m, counts = marks(x.astype(np.uint16))
    assert counts.repeated == 11 and m[1] == NEW  # the first pair: no distinct change seen yet to compare with
    assert m[3::2] == [REPEAT] * 11


def test_a_splice_is_found_where_the_scenes_meet():
    x = np.concatenate([scene_frames(20, H, W, seed=1), scene_frames(20, H, W, seed=2)])
    m, counts = marks(x)
    assert counts.splices == [20] and m[20] == SPLICE
    assert [i for i, k in enumerate(m) if k != NEW] == [20]


def test_a_shutter_event_is_a_frozen_run_then_a_level_jump():
    x = shutter_event(scene_frames(24, H, W, seed=1), at=14, frozen=3)
    m, counts = marks(x)
    assert m[11:14] == [REPEAT] * 3 and m[14] == SHUTTER
    assert counts.shutters == [14] and counts.summary() == "1 shutter event, 3 repeated frames"


def test_summary_wording():
    c = EventCounts(repeated=120, splices=[5], shutters=[1, 2, 3])
    assert c.summary() == "3 shutter events, 1 splice, 120 repeated frames"


def test_the_lepton_flat_field_correction_is_found(shared_ir):
    from theris_cli.video import read_frames

    real = shared_ir / "lepton_hedgehog-ffc.mkv"  # a real Lepton recording with a shutter event
    if not real.exists():
        pytest.skip(f"{real} not found")
    m, counts = marks(read_frames(real))
    assert counts.shutters == [30] and counts.splices == [] and counts.repeated == 0
