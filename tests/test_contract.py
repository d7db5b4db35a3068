"""Checkpoints carry what they were trained for; `upscale` warns once, in one line, outside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clips import write_clip
from theris_cli.model import PRESETS
from theris_cli.engine.pipeline import upscale_video
from theris_cli.train.loop import train
from theris_cli.train.settings import TrainSettings
from theris_cli.weights import save_checkpoint
from theris_cli.weights.checkpoint import contract_for, contract_of


class _Batch:
    def __init__(self, frames):
        self.hr = torch.rand(1, 2 * frames - 1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        self.lr = self.hr[:, ::2, :, ::4, ::4].contiguous()

    def batch(self, step, n):
        return self.lr, self.hr


@pytest.fixture
def trained3(tmp_path):
    """A checkpoint trained on windows of 3 input frames."""
    s = TrainSettings(model=PRESETS["tiny"], steps=1, batch=1, patch=4, frames=3, warmup=0, checkpoint_steps=0,
                      checkpoint_minutes=0, val_every=0, data={"real": [{"name": "cam.mkv"}]})
    return train(s, _Batch(3), tmp_path / "run").checkpoint


@pytest.fixture
def clip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 8), dtype=np.uint8)
    return write_clip(tmp_path / "in.mkv", frames)


def _warnings(res):
    return [w for w in res.warnings if "was not trained for" in w]


def test_window_and_factor_outside_the_contract_warn_once(trained3, clip, tmp_path):
    res = upscale_video(clip, tmp_path / "a.mkv", weights=str(trained3), window=4, device="cpu")
    (msg,) = _warnings(res)
    assert "--window 4 (trained: 3)" in msg and "\n" not in msg
    again = upscale_video(clip, tmp_path / "b.mkv", weights=str(trained3), window=4, device="cpu")
    assert _warnings(again) == []  # said once
    res = upscale_video(clip, tmp_path / "c.mkv", weights=str(trained3), window=3, temporal_factor=3, device="cpu")
    (msg,) = _warnings(res)
    assert "--temporal-factor 3 (trained: 1, 2)" in msg and "--window" not in msg
    for tf in (1, 2):
        ok = upscale_video(clip, tmp_path / f"d{tf}.mkv", weights=str(trained3), window=3, temporal_factor=tf,
                           device="cpu")
        assert _warnings(ok) == []


def test_old_checkpoints_without_a_contract_still_load(clip, tmp_path):
    from theris_cli.model import THERIS

    path = save_checkpoint(tmp_path / "old.safetensors", THERIS(PRESETS["tiny"]), metadata={"note": "no contract"})
    res = upscale_video(clip, tmp_path / "out.mkv", weights=str(path), window=5, device="cpu")
    assert res.frames_out == 10 and _warnings(res) == []


def test_contract_implied_by_old_training_metadata():
    old = {"train": {"frames": 4}, "data": {"real": [{"name": "possum.mkv"}], "paths": ["/abs/path"]}}
    assert contract_of(old) == contract_for(4, ["possum.mkv"])
    assert contract_of({}) is None
    assert contract_for(4, ["/some/where/clip.mkv"])["clips"] == ["clip.mkv"]  # names, never paths
