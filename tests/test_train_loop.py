import json

import pytest
import torch
from typer.testing import CliRunner

from theris_cli.cli import app
from theris_cli.errors import UsageError
from theris_cli.model import PRESETS
from theris_cli.train.degrade import make_lr
from theris_cli.train.loop import TrainSettings, apply_ablations, lr_factor, parse_every, train


class FixedBatch:
    """The same batch at every step: training on it must lower the loss."""

    def __init__(self, n=2, seed=0):
        g = torch.Generator().manual_seed(seed)
        hr = torch.rand(n, 5, 1, 16, 16, generator=g)
        self.hr = torch.nn.functional.avg_pool2d(hr.view(-1, 1, 16, 16), 3, 1, 1).view_as(hr)  # smoother
        self.lr = make_lr(self.hr)

    def batch(self, step, batch_size):
        return self.lr, self.hr


def _settings(**kw):
    base = dict(model=PRESETS["tiny"], steps=6, batch=2, patch=4, frames=3, lr=3e-3, warmup=0,
                checkpoint_steps=0, checkpoint_minutes=0, val_every=0, log_every=1)
    base.update(kw)
    return TrainSettings(**base)


def _losses(out):
    return [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_training_lowers_the_loss_on_a_fixed_batch(tmp_path):
    data = FixedBatch()
    res = train(_settings(steps=8), data, tmp_path, val=(data.lr, data.hr))
    losses = _losses(tmp_path)
    assert res.step == 8 and len(losses) == 8
    assert sum(losses[-3:]) / 3 < losses[0]
    assert res.last_val is not None and "gain" in res.last_val


def test_checkpoint_loads_through_the_weights_api(tmp_path):
    from theris_cli.weights import load_checkpoint, load_model

    data = FixedBatch()
    res = train(_settings(steps=2), data, tmp_path)
    ck = load_checkpoint(res.checkpoint)
    assert ck.config == PRESETS["tiny"]
    assert ck.metadata["step"] == 2 and ck.metadata["seed"] == 0 and "wall_time_s" in ck.metadata
    assert "tfm.d" in ck.extra_tensors and any(k.startswith("optimizer") for k in ck.extra_tensors)
    model = load_model(str(res.checkpoint))
    with torch.no_grad():
        assert model(data.lr).shape == data.hr.shape


def test_resume_continues_the_same_run(tmp_path):
    from theris_cli.weights import load_checkpoint

    data = FixedBatch()
    flat = dict(min_lr_ratio=1.0)  # a constant rate, so that a 2-step run is the start of a 4-step one
    straight = train(_settings(steps=4, **flat), data, tmp_path / "a")
    train(_settings(steps=2, **flat), data, tmp_path / "b")
    resumed = train(_settings(steps=4, **flat), data, tmp_path / "b", resume=tmp_path / "b" / "final.safetensors")
    assert resumed.step == 4
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert b.metadata["step"] == 4
    for k in a.state_dict:
        assert torch.allclose(a.state_dict[k], b.state_dict[k], atol=1e-6), k


def test_resume_refuses_another_network(tmp_path):
    from theris_cli.errors import TrainingError

    data = FixedBatch()
    train(_settings(steps=1), data, tmp_path)
    with pytest.raises(TrainingError, match="different network"):
        train(_settings(steps=2, model=apply_ablations(PRESETS["tiny"], ["spectral-mask"])), data, tmp_path,
              resume=tmp_path / "final.safetensors")


def test_schedule_ablations_and_intervals():
    assert lr_factor(0, 100, 10, 0.05) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, 0.05) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.05) == pytest.approx(0.05)
    cfg = apply_ablations(PRESETS["tiny"], ["spectral-mask", "thermal-prompt"])
    assert not cfg.use_spectral_mask and not cfg.use_thermal_prompt and cfg.use_hmb
    with pytest.raises(UsageError):
        apply_ablations(PRESETS["tiny"], ["nothing"])
    assert parse_every("500,10m") == (500, 10.0)
    assert parse_every("250") == (250, 0.0)
    with pytest.raises(UsageError):
        parse_every("ten")


def test_cli_train_synthetic_then_resume(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--steps", "2", "--batch", "2", "--patch", "4", "--frames", "2",
            "--val-every", "0", "--out", str(out), "--device", "cpu"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (out / "final.safetensors").exists() and (out / "last.safetensors").exists()
    r = runner.invoke(app, args)  # the folder holds a run: refuse, say how to continue
    assert r.exit_code != 0
    r = runner.invoke(app, ["train", "--resume", str(out / "last.safetensors"), "--steps", "3"])
    assert r.exit_code == 0, r.output
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps[-1] == 3


def test_ctrl_c_finishes_the_step_saves_and_returns(tmp_path):
    import os
    import signal

    class InterruptAt(FixedBatch):
        def batch(self, step, batch_size):
            if step == 1:
                os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C during step 1
            return super().batch(step, batch_size)

    res = train(_settings(steps=50), InterruptAt(), tmp_path)
    assert res.interrupted and res.step == 2
    assert res.checkpoint.name == "interrupted.safetensors" and res.checkpoint.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
