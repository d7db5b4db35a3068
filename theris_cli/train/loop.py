"""The training loop: THERIS on (LR, HR) batches with pixel loss + lambda * TFM, checkpoints, resume.

    settings = TrainSettings(model=PRESETS["small"], steps=6000, batch=8)
    result = train(settings, data, out_dir="runs/small", val=validation_batch(...), on_event=print)

* Loss: Charbonnier (or L1) over all 2k+1 output frames + `tfm_lambda` * TFM (the heat-equation
  residual, `train.loss.TFMLoss`), whose learnable diffusivity D is trained with the network and
  saved with it. `tfm_lambda = 0` is the "no TFM loss" ablation.
* Optimiser: Adam(0.9, 0.99) (the STVSR convention), linear warm-up then cosine decay to
  `min_lr_ratio` x lr; gradients clipped to norm `grad_clip` (selective scans can spike early on).
  With a time budget (`minutes`), the run stops when it is spent and the cosine follows the time
  used when that is further along than the steps, so a run on a slow or busy machine still anneals.
* Precision: bf16 autocast on CUDA (`amp`), float32 on CPU; losses always in float32.
* Checkpoints (`weights.save_checkpoint`, safetensors, config inside): `step-NNNNNN.safetensors`
  every `checkpoint_steps` steps and/or `checkpoint_minutes` minutes, `last.safetensors` with each,
  `final.safetensors` at the end, and `interrupted.safetensors` on Ctrl-C (the first Ctrl-C finishes
  the step, saves and returns; a second one aborts at once). Each holds the optimiser moments, the
  TFM parameter and the RNG state as extra tensors, and the training metadata (step, data, seed,
  wall time, loss, last validation) as JSON, so `resume` continues the same run: batches depend only
  on (seed, step), so a resumed run sees the batches an uninterrupted one would have seen.
* Log: `log.jsonl` in the out folder, one JSON object a line: training lines every `log_every`
  steps ({"step", "loss", "pixel", "tfm", "train_gain" (dB over bicubic + linear on the training
  batches), "lr", "D", "samples_per_s", "elapsed_s"}) and validation
  lines ({"step", "val": {...}}) every `val_every` steps: PSNR of the model and of bicubic + linear
  blend on a fixed batch, over all output frames and over the interpolated ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from theris_cli.errors import TrainingError, UsageError
from theris_cli.model import THERIS, ModelConfig
from theris_cli.train.loss import TFMLoss, charbonnier

# --ablate names -> what they switch off (model config fields, or the TFM loss)
ABLATIONS: dict[str, dict[str, Any]] = {
    "spectral-mask": {"use_spectral_mask": False},
    "thermal-prompt": {"use_thermal_prompt": False},
    "tfm": {},  # handled as tfm_lambda = 0
    "smb": {"use_smb": False},
    "tmb": {"use_tmb": False},
    "hmb": {"use_hmb": False},
}


@dataclass
class TrainSettings:
    """Everything that decides what a run computes (saved in every checkpoint)."""

    model: ModelConfig
    steps: int = 6000
    minutes: float = 0.0  # wall-clock budget of training (0: none); the schedule follows it too
    batch: int = 8
    patch: int = 32  # LR pixels (the HR crop is 4x)
    frames: int = 4  # k+1 LR input frames (2k+1 HR outputs)
    lr: float = 4e-4
    warmup: int = 100  # steps of linear warm-up
    min_lr_ratio: float = 0.05  # the cosine ends at this fraction of lr
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    pixel_loss: str = "charbonnier"  # or "l1"
    tfm_lambda: float = 0.05
    tfm_d_init: float = 0.15  # px^2 per output frame
    tfm_alpha: float = 20.0
    synthetic_ratio: float = 0.5
    extras_p: float = 0.0
    seed: int = 0
    ablate: tuple[str, ...] = ()
    checkpoint_steps: int = 500
    checkpoint_minutes: float = 10.0
    val_every: int = 100
    log_every: int = 10
    device: str = "cpu"
    amp: bool = False  # bf16 autocast; only used on CUDA
    data: dict = field(default_factory=dict)  # description of the data sources, for the metadata

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["ablate"] = list(self.ablate)
        return d


def apply_ablations(model: ModelConfig, ablate: tuple[str, ...] | list[str]) -> ModelConfig:
    """The model config with the named parts switched off; raises UsageError on an unknown name."""
    changes: dict[str, Any] = {}
    for name in ablate:
        if name not in ABLATIONS:
            raise UsageError(f"unknown --ablate {name!r}; choose from {', '.join(ABLATIONS)}")
        changes.update(ABLATIONS[name])
    return dataclasses.replace(model, **changes)


def lr_factor(step: int, steps: int, warmup: int, min_ratio: float, time_progress: float = 0.0) -> float:
    """Multiplier of the base learning rate at `step` (0-based): linear warm-up, then cosine.

    The cosine follows whichever is further along: the steps, or `time_progress` (the fraction of a
    wall-clock budget used), so a run cut by its time budget still ends at the low rate."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, max((step - warmup) / span, time_progress))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    step: int  # steps completed
    checkpoint: Path | None  # the last checkpoint written
    interrupted: bool
    wall_time_s: float
    last_loss: float | None
    last_val: dict | None


# ---------------------------------------------------------------------------------------------
# Validation


def bicubic_linear(lr: torch.Tensor) -> torch.Tensor:
    """The classical baseline on a batch: (B, T, 1, h, w) -> (B, 2T-1, 1, 4h, 4w)."""
    from theris_cli.eval.baselines import bicubic

    return torch.stack([bicubic(clip) for clip in lr])


def _psnr_frames(pred: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """PSNR per (clip, frame), dB: (B, T, 1, H, W) twice -> (B, T)."""
    mse = ((pred.clamp(0, 1).double() - hr.double()) ** 2).mean(dim=(2, 3, 4))
    return 10 * torch.log10(1 / mse.clamp(min=1e-10))


@torch.no_grad()
def validate(net: torch.nn.Module, lr: torch.Tensor, hr: torch.Tensor, device: torch.device,
             chunk: int = 8, baseline: torch.Tensor | None = None,
             groups: dict[str, slice] | None = None) -> dict[str, float]:
    """PSNR (dB, mean over clips and frames) of the model and of bicubic + linear blend on a fixed
    batch; `_interp` figures over the interpolated (odd) frames only; `gain` = model - baseline.
    `groups` (name -> slice of the batch, e.g. "real", "synthetic") adds the same figures per group,
    suffixed `_<name>`."""
    was_training = net.training
    net.eval()
    preds = []
    for i in range(0, lr.shape[0], chunk):
        preds.append(net(lr[i:i + chunk].to(device)).float().cpu())
    net.train(was_training)
    pred = torch.cat(preds)
    base = bicubic_linear(lr) if baseline is None else baseline
    p_m, p_b = _psnr_frames(pred, hr), _psnr_frames(base, hr)
    out: dict[str, float] = {}
    for name, sl in [("", slice(None))] + [("_" + k, v) for k, v in (groups or {}).items()]:
        m, b = p_m[sl], p_b[sl]
        if m.numel() == 0:
            continue
        out["psnr" + name], out["psnr_bicubic" + name] = float(m.mean()), float(b.mean())
        out["psnr_interp" + name], out["psnr_bicubic_interp" + name] = float(m[:, 1::2].mean()), float(b[:, 1::2].mean())
        out["gain" + name] = out["psnr" + name] - out["psnr_bicubic" + name]
        out["gain_interp" + name] = out["psnr_interp" + name] - out["psnr_bicubic_interp" + name]
    return out


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_training_checkpoint(path: Path, net: THERIS, tfm: TFMLoss, opt: torch.optim.Optimizer,
                             settings: TrainSettings, step: int, wall_time: float, loss: float | None,
                             val: dict | None) -> Path:
    from theris_cli.weights import pack_state, save_checkpoint

    tensors, skeleton = pack_state(opt.state_dict(), "optimizer")
    tensors["tfm.d"] = tfm.d.detach().clone()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "kind": "training",
        "step": step,
        "steps": settings.steps,
        "seed": settings.seed,
        "wall_time_s": round(wall_time, 1),
        "loss": loss,
        "val": val,
        "tfm_D": tfm.D.item(),
        "data": settings.data,
        "train": settings.to_dict(),
        "optimizer": skeleton,
    }
    return save_checkpoint(path, net, metadata=meta, extra_tensors=tensors)


# ---------------------------------------------------------------------------------------------
# The loop


class _StopFlag:
    """First SIGINT asks the loop to stop after the current step; a second one raises at once."""

    def __init__(self) -> None:
        self.stop = False
        self._old = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(settings: TrainSettings, data, out_dir: str | Path, val: tuple | None = None,
          resume: str | Path | None = None, on_event: Callable[[dict], None] | None = None) -> TrainResult:
    """Run (or continue) training; `data.batch(step, batch)` gives (lr, hr). Returns where it stopped.

    `val`: a fixed batch (lr, hr) or (lr, hr, groups) as `dataset.validation_batch` makes it.

    Events passed to `on_event`: {"event": "start", ...}, {"event": "step", ...} every log_every
    steps, {"event": "val", ...}, {"event": "checkpoint", "path": ...}, {"event": "end", ...}.
    """
    emit = on_event or (lambda e: None)
    s = settings
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(s.device)
    torch.manual_seed(s.seed)
    net = THERIS(s.model).to(device)
    tfm = TFMLoss(d_init=s.tfm_d_init, alpha=s.tfm_alpha).to(device)
    params = list(net.parameters()) + list(tfm.parameters())
    opt = torch.optim.Adam(params, lr=s.lr, betas=(0.9, 0.99), weight_decay=s.weight_decay)
    start_step, wall_before = 0, 0.0
    if resume is not None:
        start_step, wall_before = _resume(resume, net, tfm, opt, s, device)
    sched_base = s.lr
    amp = s.amp and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else nullcontext
    val_groups = val[2] if val is not None and len(val) > 2 else None
    baseline = bicubic_linear(val[0]) if val is not None else None
    log = open(out / "log.jsonl", "a", encoding="utf-8")

    def write(obj: dict) -> None:
        log.write(json.dumps(obj) + "\n")
        log.flush()

    n_params = sum(p.numel() for p in net.parameters())
    emit({"event": "start", "step": start_step, "steps": s.steps, "params": n_params, "device": str(device), "amp": amp})
    write({"event": "start", "step": start_step, "settings": s.to_dict(), "params": n_params})
    t0 = time.perf_counter()
    last_ckpt_time = t0
    last_ckpt: Path | None = None
    losses: list[tuple[float, float, float, float]] = []
    last_loss: float | None = None
    last_val: dict | None = None
    step = start_step
    window_t, window_n = time.perf_counter(), 0
    interrupted = False

    def checkpoint(name: str) -> Path:
        nonlocal last_ckpt
        wall = wall_before + time.perf_counter() - t0
        path = save_training_checkpoint(out / name, net, tfm, opt, s, step, wall, last_loss, last_val)
        if name != "last.safetensors":
            save_training_checkpoint(out / "last.safetensors", net, tfm, opt, s, step, wall, last_loss, last_val)
        last_ckpt = path
        emit({"event": "checkpoint", "step": step, "path": str(path)})
        write({"event": "checkpoint", "step": step, "path": str(path)})
        return path

    net.train()
    with _StopFlag() as flag:
        try:
            while step < s.steps:
                elapsed = wall_before + time.perf_counter() - t0
                time_progress = elapsed / (60 * s.minutes) if s.minutes > 0 else 0.0
                if time_progress >= 1.0:
                    break
                if val is not None and s.val_every and step % s.val_every == 0:
                    last_val = validate(net, val[0], val[1], device, baseline=baseline, groups=val_groups)
                    emit({"event": "val", "step": step, **last_val})
                    write({"event": "val", "step": step, "val": last_val})
                for g in opt.param_groups:
                    g["lr"] = sched_base * lr_factor(step, s.steps, s.warmup, s.min_lr_ratio, time_progress)
                lr_in, hr = data.batch(step, s.batch)
                lr_in, hr = lr_in.to(device, non_blocking=True), hr.to(device, non_blocking=True)
                with autocast():
                    pred = net(lr_in)
                pred = pred.float()
                pix = charbonnier(pred, hr) if s.pixel_loss == "charbonnier" else (pred - hr).abs().mean()
                tl = tfm(pred, hr) if s.tfm_lambda > 0 else pred.new_zeros(())
                loss = pix + s.tfm_lambda * tl
                if not torch.isfinite(loss.detach()):
                    raise TrainingError(f"the loss became {float(loss)} at step {step}; lower --lr or resume from "
                                        f"the last checkpoint ({last_ckpt or 'none yet'})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if s.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                opt.step()
                step += 1
                window_n += hr.shape[0]
                with torch.no_grad():  # gain over bicubic + linear on this very batch, dB (cheap: no model)
                    gain_b = (_psnr_frames(pred.detach(), hr) - _psnr_frames(bicubic_linear(lr_in.float()), hr)).mean()
                losses.append((loss.item(), pix.item(), tl.item(), gain_b.item()))
                if step % s.log_every == 0 or step == s.steps:
                    now = time.perf_counter()
                    n = len(losses)
                    mean = [sum(v[i] for v in losses) / n for i in range(4)]
                    last_loss = mean[0]
                    rec = {
                        "step": step, "loss": mean[0], "pixel": mean[1], "tfm": mean[2], "train_gain": mean[3],
                        "lr": opt.param_groups[0]["lr"], "D": tfm.D.item(),
                        "samples_per_s": window_n / max(now - window_t, 1e-9),
                        "elapsed_s": wall_before + now - t0,
                    }
                    if s.minutes > 0:
                        rec["budget_left_s"] = max(0.0, 60 * s.minutes - rec["elapsed_s"])
                    losses.clear()
                    window_t, window_n = now, 0
                    emit({"event": "step", "steps": s.steps, **rec})
                    write(rec)
                due_steps = s.checkpoint_steps and step % s.checkpoint_steps == 0
                due_time = s.checkpoint_minutes and time.perf_counter() - last_ckpt_time >= 60 * s.checkpoint_minutes
                if (due_steps or due_time) and step < s.steps:
                    checkpoint(f"step-{step:06d}.safetensors")
                    last_ckpt_time = time.perf_counter()
                if flag.stop:
                    interrupted = True
                    break
            if not interrupted and val is not None:
                last_val = validate(net, val[0], val[1], device, baseline=baseline, groups=val_groups)
                emit({"event": "val", "step": step, **last_val})
                write({"event": "val", "step": step, "val": last_val})
            checkpoint("interrupted.safetensors" if interrupted else "final.safetensors")
        finally:
            wall = wall_before + time.perf_counter() - t0
            write({"event": "end", "step": step, "interrupted": interrupted, "wall_time_s": wall})
            log.close()
    emit({"event": "end", "step": step, "interrupted": interrupted, "wall_time_s": wall, "checkpoint": str(last_ckpt)})
    return TrainResult(step, last_ckpt, interrupted, wall, last_loss, last_val)


def _resume(path: str | Path, net: THERIS, tfm: TFMLoss, opt: torch.optim.Optimizer, s: TrainSettings,
            device: torch.device) -> tuple[int, float]:
    """Load model, TFM parameter, optimiser and RNG state; returns (step, wall time so far)."""
    from theris_cli.weights import load_checkpoint, unpack_state

    ck = load_checkpoint(path)
    if ck.config != s.model:
        raise TrainingError(f"{path} holds a different network than the one asked for; resume without "
                            f"--preset/--config/--ablate, or with the ones the run started with")
    if ck.metadata.get("kind") != "training" or "tfm.d" not in ck.extra_tensors:
        raise TrainingError(f"{path} has no training state (optimiser, step); start a new run, or resume from a "
                            f"checkpoint that `theris train` wrote")
    net.load_state_dict(ck.state_dict)
    with torch.no_grad():
        tfm.d.copy_(ck.extra_tensors["tfm.d"])
    opt.load_state_dict(unpack_state(ck.extra_tensors, ck.metadata["optimizer"]))  # moves moments to the params' device
    if "rng.torch" in ck.extra_tensors:
        torch.set_rng_state(ck.extra_tensors["rng.torch"])
    return int(ck.metadata["step"]), float(ck.metadata.get("wall_time_s", 0.0))


# ---------------------------------------------------------------------------------------------
# Wiring for the CLI: settings from defaults <- a resumed checkpoint <- explicit options


def settings_from_checkpoint(path: str | Path) -> tuple[ModelConfig, dict]:
    """The network config and the saved training settings (a dict) of a training checkpoint."""
    from theris_cli.weights import inspect_checkpoint

    info = inspect_checkpoint(path)
    train_d = dict(info.metadata.get("train") or {})
    if info.metadata.get("kind") != "training" or not train_d:
        raise TrainingError(f"{path} was not written by `theris train` (no training state); start a new run instead")
    return info.config, train_d


def make_settings(model: ModelConfig, base: dict | None = None, **options: Any) -> TrainSettings:
    """TrainSettings from `base` (e.g. a checkpoint's saved settings) overridden by the options that
    are not None. Unknown keys raise UsageError."""
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    merged = {k: v for k, v in (base or {}).items() if k in known and k != "model"}
    for k, v in options.items():
        if k not in known:
            raise UsageError(f"unknown training setting {k!r}")
        if v is not None:
            merged[k] = v
    if "ablate" in merged:
        merged["ablate"] = tuple(merged["ablate"])
    s = TrainSettings(model=model, **merged)
    _check_settings(s)
    return s


def _check_settings(s: TrainSettings) -> None:
    problems = []
    if s.steps < 1:
        problems.append(f"--steps must be >= 1 (got {s.steps})")
    if s.minutes < 0:
        problems.append(f"--minutes must be >= 0 (got {s.minutes})")
    if s.batch < 1:
        problems.append(f"--batch must be >= 1 (got {s.batch})")
    if s.patch < 4:
        problems.append(f"--patch must be >= 4 LR pixels (got {s.patch})")
    if s.frames < 2:
        problems.append(f"--frames must be >= 2 (k+1 inputs; got {s.frames})")
    if not s.lr > 0:
        problems.append(f"--lr must be > 0 (got {s.lr})")
    if s.tfm_lambda < 0:
        problems.append(f"--tfm-lambda must be >= 0 (got {s.tfm_lambda})")
    if not 0 <= s.synthetic_ratio <= 1:
        problems.append(f"--synthetic-ratio must lie in [0, 1] (got {s.synthetic_ratio})")
    if not 0 <= s.extras_p <= 1:
        problems.append(f"--extras must lie in [0, 1] (got {s.extras_p})")
    if s.pixel_loss not in ("charbonnier", "l1"):
        problems.append(f"--pixel-loss must be charbonnier or l1 (got {s.pixel_loss})")
    for name in s.ablate:
        if name not in ABLATIONS:
            problems.append(f"unknown --ablate {name!r} (choose from {', '.join(ABLATIONS)})")
    if problems:
        raise UsageError("; ".join(problems))


def parse_every(spec: str) -> tuple[int, float]:
    """'500' -> (500 steps, 0 min); '10m' -> (0, 10.0); '500,10m' -> both. 0 switches a trigger off."""
    steps, minutes = 0, 0.0
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if part.endswith("m"):
                minutes = float(part[:-1])
            else:
                steps = int(part)
        except ValueError:
            raise UsageError(f"--checkpoint-every {spec!r}: use steps (500), minutes (10m) or both (500,10m)") from None
    if steps < 0 or minutes < 0:
        raise UsageError(f"--checkpoint-every {spec!r} must not be negative")
    return steps, minutes


def build_data(s: TrainSettings, data_paths: list[str], exclude: list[str], val_paths: list[str],
               max_frames: int = 1000, on_skip: Callable[[Path, str], None] | None = None,
               n_val: int = 8, scene=None):
    """The training batches (a ClipMixer) and a fixed validation batch, and a description of both
    for the checkpoint metadata. Real clips are optional (synthetic only without --data);
    `scene` (a synthetic.SceneConfig) changes what the synthetic clips look like."""
    from theris_cli.train.dataset import ClipMixer, RealSource, SyntheticSource, load_real_clips, validation_batch

    hr_frames, hr_patch = 2 * s.frames - 1, 4 * s.patch
    real = None
    if data_paths:
        real = RealSource(load_real_clips(data_paths, hr_frames, min_side=16, max_frames=max_frames,
                                          exclude=exclude, on_skip=on_skip), hr_frames)
    elif s.synthetic_ratio < 1:
        s.synthetic_ratio = 1.0  # nothing real to mix in
    synthetic = None
    if s.synthetic_ratio > 0 or not val_paths:
        # about one new clip for every four synthetic crops trained on, rendered eight at a time
        per_step = max(1.0, s.synthetic_ratio * s.batch)
        synthetic = SyntheticSource(hr_frames, hr_patch, seed=s.seed, pool=max(64, 8 * s.batch), chunk=8,
                                    every=max(1, round(32 / per_step)), config=scene)
    mixer = ClipMixer(real, synthetic, s.synthetic_ratio, hr_frames, hr_patch, seed=s.seed, extras_p=s.extras_p)
    val_real = None
    if val_paths:
        val_real = RealSource(load_real_clips(val_paths, hr_frames, min_side=16, max_frames=max_frames,
                                              on_skip=on_skip), hr_frames)
    val_src = val_real if val_real is not None else real
    val = validation_batch(val_src, synthetic, n_real=n_val if val_src is not None else 0,
                           n_synthetic=n_val if synthetic is not None else 0, frames=hr_frames, patch=hr_patch,
                           seed=s.seed)
    desc = {
        "real": [{"name": c.name, "frames": int(c.frames.shape[0]), "width": int(c.frames.shape[2]),
                  "height": int(c.frames.shape[1]), "bit_depth": c.frames.dtype.itemsize * 8}
                 for c in (real.clips if real else [])],
        "paths": [str(p) for p in data_paths], "exclude": list(exclude), "val_paths": [str(p) for p in val_paths],
        "val_held_out": bool(val_paths), "synthetic_ratio": s.synthetic_ratio, "synthetic": "theris_cli.train.synthetic",
        "degradation": "antialiased bicubic x1/4 of HR frames 0, 2, 4, ... (degrade.make_lr)"
                       + (f"; extras on {s.extras_p:.0%} of clips" if s.extras_p else ""),
    }
    return mixer, val, desc


class TrainReporter:
    """Progress of a run: one live rich line on a terminal, plain lines otherwise."""

    def __init__(self, stream=None, plain: bool | None = None):
        import sys

        self.stream = stream if stream is not None else sys.stderr
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.plain = (not tty) if plain is None else plain
        self.live = None
        self.val_text = ""
        self.start_step = 0
        self.t0 = time.perf_counter()

    def __enter__(self) -> TrainReporter:
        if not self.plain:
            from rich.console import Console
            from rich.live import Live

            self.live = Live("", console=Console(file=self.stream, highlight=False), refresh_per_second=2, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()

    def _print(self, msg: str) -> None:
        if self.live is not None:
            self.live.console.print(msg, highlight=False, soft_wrap=True)
        else:
            print(msg, file=self.stream, flush=True)

    def __call__(self, e: dict) -> None:
        kind = e["event"]
        if kind == "start":
            self.start_step, self.t0 = e["step"], time.perf_counter()
            self._print(f"training {e['params']:,} parameters on {e['device']}"
                        f"{' (bf16 autocast)' if e['amp'] else ''}, steps {e['step']}..{e['steps']}")
        elif kind == "step":
            done = e["step"] - self.start_step
            rate = done / max(time.perf_counter() - self.t0, 1e-9)
            eta = (e["steps"] - e["step"]) / rate if rate > 0 else float("inf")
            eta = min(eta, e.get("budget_left_s", eta))
            line = (f"step {e['step']}/{e['steps']}  loss {e['loss']:.4f} (tfm {e['tfm']:.4f}, D {e['D']:.3f}, "
                    f"{e['train_gain']:+.2f} dB)  "
                    f"lr {e['lr']:.2e}  {e['samples_per_s']:.1f} samples/s  ETA {_hms(eta)}{self.val_text}")
            if self.live is not None:
                self.live.update(line)
            else:
                self._print(line)
        elif kind == "val":
            self.val_text = f"  val {e['gain']:+.2f} dB (interp {e['gain_interp']:+.2f})"
            parts = "".join(f"; {g} {e['gain_' + g]:+.2f} dB (interp {e['gain_interp_' + g]:+.2f})"
                            for g in ("real", "synthetic") if "gain_" + g in e)
            self._print(f"validation at step {e['step']}: {e['psnr']:.2f} dB vs bicubic+linear {e['psnr_bicubic']:.2f} dB "
                        f"({e['gain']:+.2f} dB); interpolated frames {e['psnr_interp']:.2f} vs "
                        f"{e['psnr_bicubic_interp']:.2f} dB ({e['gain_interp']:+.2f} dB){parts}")
        elif kind == "checkpoint":
            self._print(f"checkpoint at step {e['step']}: {e['path']}")


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
