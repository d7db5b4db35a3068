"""Training batches built by worker processes (train/loader.py) are the loop's own, in step order;
the flow teacher runs on every n-th step; a loss that is not finite still stops the run."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from theris_cli.errors import TrainingError, UsageError
from theris_cli.model import PRESETS
from theris_cli.protocol import make_lr
from theris_cli.train.dataset import ClipMixer, SyntheticSource
from theris_cli.train.loader import step_batches
from theris_cli.train.loop import train
from theris_cli.train.settings import TrainSettings, make_settings


class StepBatch:
    """A batch that is a function of the step alone, as the training data's are."""

    def __init__(self, nan_at: int | None = None):
        self.nan_at = nan_at

    def batch(self, step, batch_size):
        g = torch.Generator().manual_seed(1000 + step)
        hr = torch.rand(batch_size, 5, 1, 16, 16, generator=g)
        if step == self.nan_at:
            hr[0, 0, 0, 0, 0] = math.nan
        return make_lr(hr), hr


def _settings(**kw):
    base = dict(model=PRESETS["tiny"], steps=6, batch=2, patch=4, frames=3, lr=3e-3, warmup=0,
                checkpoint_steps=0, checkpoint_minutes=0, val_every=0, log_every=2)
    base.update(kw)
    return TrainSettings(**base)


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_batches_are_the_loops_own_in_step_order(workers):
    synthetic = SyntheticSource(5, 16, seed=3, pool=8, chunk=4, every=2)
    mixer = ClipMixer(None, synthetic, 1.0, 5, 16, seed=3)
    got = list(step_batches(mixer, 2, 3, 9, workers=workers))
    again = ClipMixer(None, SyntheticSource(5, 16, seed=3, pool=8, chunk=4, every=2), 1.0, 5, 16, seed=3)
    want = [again.batch(step, 2) for step in range(3, 9)]
    assert len(got) == len(want) == 6
    for (lr, hr), (wlr, whr) in zip(got, want):
        assert torch.equal(lr, wlr) and torch.equal(hr, whr)


def test_training_with_workers_gives_the_same_run(tmp_path):
    logs = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        train(_settings(workers=workers), StepBatch(), out)
        logs.append([r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r])
    assert len(logs[0]) == 3 and logs[0] == pytest.approx(logs[1], rel=1e-6)


def test_flow_teacher_runs_every_nth_step_only(tmp_path):
    calls = []

    def teacher(lr):
        calls.append(lr.shape)
        return lr.new_zeros(lr.shape[0], lr.shape[1] - 1, 2, *lr.shape[3:])

    model = dataclasses.replace(PRESETS["tiny"], use_motion_align=True, motion_dim=4)
    train(_settings(model=model, steps=7, flow_teacher=1.0, flow_teacher_every=3), StepBatch(), tmp_path, teacher=teacher)
    assert len(calls) == 3  # steps 0, 3 and 6


def test_a_loss_that_is_not_finite_stops_the_run_before_it_is_logged_or_saved(tmp_path):
    with pytest.raises(TrainingError, match=r"the loss became nan within the 2 steps up to step 4"):
        train(_settings(steps=6, checkpoint_steps=4), StepBatch(nan_at=2), tmp_path)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 1 and math.isfinite(losses[0])   # step 2's log only
    assert not list(tmp_path.glob("*.safetensors"))


def test_workers_and_teacher_interval_are_checked():
    with pytest.raises(UsageError, match="--workers must be >= 0"):
        make_settings(PRESETS["tiny"], workers=-1)
    with pytest.raises(UsageError, match="--flow-teacher-every must be >= 1"):
        make_settings(PRESETS["tiny"], flow_teacher_every=0)


def _worker_then_signals(conn):
    import os
    import signal

    from theris_cli.train.loader import STOP_SIGNALS, worker_init

    worker_init(0)
    for sig in STOP_SIGNALS:
        os.kill(os.getpid(), sig)
    conn.send("alive")


def test_a_worker_outlives_the_stop_signals_the_trainer_handles():
    """Ctrl-C or a scheduler's SIGTERM reach every process of the group: the workers must not die of
    them (the trainer finishes its step, saves, and stops them)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_worker_then_signals, args=(child,))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and parent.poll(1) and parent.recv() == "alive"


class SignalFromWorker(StepBatch):
    """At step 3 (built in a worker) the stop signal reaches the worker and the trainer, as a
    signal to the process group does."""

    def __init__(self, sig):
        super().__init__()
        self.sig = sig

    def batch(self, step, batch_size):
        import os

        if step == 3:
            os.kill(os.getppid(), self.sig)
            os.kill(os.getpid(), self.sig)
        return super().batch(step, batch_size)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_with_workers_finishes_the_step_and_saves(tmp_path, signame):
    import signal

    res = train(_settings(steps=200, workers=1), SignalFromWorker(getattr(signal, signame)), tmp_path)
    assert res.interrupted and res.step < 200
    assert res.checkpoint.name == "interrupted.safetensors" and res.checkpoint.exists()
