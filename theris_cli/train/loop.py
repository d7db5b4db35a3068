"""The training loop: THERIS on (LR, HR) batches with pixel loss + lambda * TFM, checkpoints, resume.

    settings = TrainSettings(model=PRESETS["small"], steps=6000, batch=8)
    result = train(settings, data, out_dir="runs/small", val=validation_batch(...), on_event=print)

* Loss: Charbonnier (or L1) over all 2k+1 output frames + `tfm_lambda` * TFM (the heat-equation
  residual, `train.loss`: D fitted to the truth per batch by default, `tfm_form="learned"` for the
  paper's learnable D) + `temporal_lambda` * the temporal-difference term (Charbonnier of the error
  of frame-to-frame changes, `train.loss.temporal_difference`) + `flow_teacher` * the end-point error
  of the motion alignment's velocities against a teacher's (RIFE; `train.loss.velocity_error`). `tfm_lambda = 0` or
  `ablate=("tfm",)` is the "no TFM loss" ablation; `temporal_lambda = 0` switches the other term off.
  `balance_samples` weighs each crop's pixel and temporal errors by 1 / bicubic + linear's error on
  it (`train.loss.balance_weights`), so the loss follows the dB gains that evaluation averages.
* Optimiser: Adam(0.9, 0.99) (the STVSR convention), linear warm-up then cosine decay to
  `min_lr_ratio` x lr; gradients clipped to norm `grad_clip` (selective scans can spike early on).
  With a time budget (`minutes`), the run stops when it is spent and the cosine follows the time
  used when that is further along than the steps, so a run on a slow or busy machine still anneals.
* Precision: bf16 autocast with `amp` (CUDA, or a CPU with bfloat16 instructions), else float32;
  losses always in float32.
* Weight average: with `ema` > 0 an exponential moving average of the weights follows the optimised
  ones (ema_w <- ema * ema_w + (1 - ema) * w after each step); validation scores it and checkpoints
  save it as the network (the optimised weights beside it, for resume).
* Checkpoints (`weights.save_checkpoint`, safetensors, config inside): `step-NNNNNN.safetensors`
  every `checkpoint_steps` steps and/or `checkpoint_minutes` minutes, `last.safetensors` with each,
  `final.safetensors` at the end, and `interrupted.safetensors` on Ctrl-C (the first Ctrl-C finishes
  the step, saves and returns; a second one aborts at once). Each holds the optimiser moments, the
  TFM state and the RNG state (`train.checkpoints`) as extra tensors, and the training metadata (step, data, seed,
  wall time, loss, last validation) as JSON, so `resume` continues the same run: batches depend only
  on (seed, step), so a resumed run sees the batches an uninterrupted one would have seen.
* Log: `log.jsonl` in the out folder, one JSON object a line: training lines every `log_every`
  steps ({"step", "loss", "pixel", "tfm", "temporal", "flow", "train_gain" (dB over bicubic + linear on the training
  batches), "lr", "D" (the TFM diffusivity: learned, or the running mean of the fitted ones),
  "samples_per_s", "elapsed_s"; the fitted form adds "D_batch", "alpha" and "fitted", the share of
  clips D was fitted on}) and validation
  lines ({"step", "val": {...}}) every `val_every` steps: PSNR of the model and of bicubic + linear
  blend on a fixed batch, over all output frames and over the interpolated ones.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from theris_cli.errors import OutputError, TrainingError
from theris_cli.model import THERIS
from theris_cli.outputs import output_error
from theris_cli.protocol import bicubic_linear
from theris_cli.train.checkpoints import resume_state, save_training_checkpoint
from theris_cli.train.loader import step_batches
from theris_cli.train.loss import (balance_weights, charbonnier, make_tfm, sample_mean, temporal_difference,
                                   velocity_error)
from theris_cli.train.settings import TrainSettings


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
# The loop


class _StopFlag:
    """The first SIGINT, SIGTERM or SIGHUP (Ctrl-C; scancel or a Slurm time limit; a closed terminal)
    asks the loop to stop after the current step and save; a second one raises at once."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP does not exist on Windows

    def __init__(self) -> None:
        self.stop = False
        self._old: dict = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


MATCHING_PARTS = ("motion.match.", "motion.cost_in.", "motion.log_temperature")  # `--motion-radius`'s parts


def load_init_state(net: THERIS, state: dict) -> None:
    """Load fine-tuning weights into ``net``. Four parts may be missing from them: the
    motion-alignment part (it keeps its zero-velocity start), its matching estimate
    (`--motion-radius`: new, and counted from the first step), TSSMs after the weights' own
    (`--add-blocks`: each starts as the identity, its layers' output projections at zero, so the
    network computes exactly what the weights did) and the noise input (`--noise-input`: gain 1,
    offset 0). Anything else must match."""
    missing, unexpected = net.load_state_dict(state, strict=False)
    adds_motion = not any(k.startswith("motion.") for k in state)
    if not any(k.startswith(MATCHING_PARTS) for k in state):
        missing = [k for k in missing if not k.startswith(MATCHING_PARTS)]
    had_blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    new_blocks = range(max(had_blocks, default=-1) + 1, len(net.blocks))
    grown = tuple(f"blocks.{i}." for i in new_blocks)
    missing = [k for k in missing if not (adds_motion and k.startswith("motion.")) and not k.startswith(grown)]
    if not any(k.startswith("noise_film.") for k in state):
        missing = [k for k in missing if not k.startswith("noise_film.")]
    if missing or unexpected:
        raise TrainingError(f"the initial weights do not fit the network: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for i in new_blocks:
            for layer in (net.blocks[i].smb, net.blocks[i].tmb, net.blocks[i].hmb):
                if layer is not None:
                    layer.out_proj.weight.zero_()  # the residual layer adds nothing until it learns to


def train(settings: TrainSettings, data, out_dir: str | Path, val: tuple | None = None,
          resume: str | Path | None = None, on_event: Callable[[dict], None] | None = None,
          init_state: dict | None = None,
          teacher: Callable[[torch.Tensor], torch.Tensor] | None = None) -> TrainResult:
    """Run (or continue) training; `data.batch(step, batch)` gives (lr, hr). Returns where it stopped.

    `val`: a fixed batch (lr, hr) or (lr, hr, groups) as `dataset.validation_batch` makes it.
    `init_state`: a state_dict of `settings.model` to start from (fine-tuning; ignored on resume).
    `teacher`: with `settings.flow_teacher` > 0, the velocities the motion alignment is taught, LR
    frames (B, T, 1, H, W) -> (B, T-1, 2, H, W) (default: RIFE's, `train.rife.teacher`).

    Events passed to `on_event`: {"event": "start", ...}, {"event": "step", ...} every log_every
    steps, {"event": "val", ...}, {"event": "checkpoint", "path": ...}, {"event": "end", ...}.
    """
    emit = on_event or (lambda e: None)
    s = settings
    device = torch.device(s.device)
    if s.flow_teacher > 0 and teacher is None:  # before anything is written: without RIFE, nothing starts
        from theris_cli.train.rife import teacher as rife_teacher

        teacher = rife_teacher(device)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, out, "the run folder") from None
    torch.manual_seed(s.seed)
    net = THERIS(s.model)
    if init_state is not None and resume is None:
        load_init_state(net, init_state)  # fine-tuning: start from given weights, at step 0
    net = net.to(device)
    tfm = make_tfm(s.tfm_form, d_init=s.tfm_d_init, alpha=s.tfm_alpha, edge_quantile=s.tfm_edge_quantile).to(device)
    params = list(net.parameters()) + list(tfm.parameters())
    opt = torch.optim.Adam(params, lr=s.lr, betas=(0.9, 0.99), weight_decay=s.weight_decay)
    ema_net = copy.deepcopy(net).requires_grad_(False) if s.ema > 0 else None
    start_step, wall_before = 0, 0.0
    if resume is not None:
        start_step, wall_before = resume_state(resume, net, tfm, opt, s, ema_net=ema_net)
    sched_base = s.lr
    amp = s.amp and device.type in ("cuda", "cpu")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else nullcontext
    if ema_net is not None:
        ema_params = [p for p in ema_net.parameters()]
        net_params = [p for p in net.parameters()]
    scored = ema_net if ema_net is not None else net  # the weights validation scores
    val_groups = val[2] if val is not None and len(val) > 2 else None
    baseline = bicubic_linear(val[0]) if val is not None else None
    try:
        log = open(out / "log.jsonl", "a", encoding="utf-8")
    except OSError as e:
        raise output_error(e, out / "log.jsonl") from None

    def write(obj: dict) -> None:
        try:
            log.write(json.dumps(obj) + "\n")
            log.flush()
        except OSError as e:  # a full or read-only disk: one line, as for a checkpoint
            raise output_error(e, out / "log.jsonl") from None

    n_params = sum(p.numel() for p in net.parameters())
    emit({"event": "start", "step": start_step, "steps": s.steps, "params": n_params, "device": str(device), "amp": amp})
    write({"event": "start", "step": start_step, "settings": s.to_dict(), "params": n_params})
    t0 = time.perf_counter()
    last_ckpt_time = t0
    last_ckpt: Path | None = None
    losses: list[int] = []  # the steps summed in `sums` since the last log
    sums = torch.zeros(6, device=device)  # their losses, summed on the device: no host sync per step
    last_loss: float | None = None
    last_val: dict | None = None
    step = start_step
    window_t, window_n = time.perf_counter(), 0
    interrupted = False

    def finite_so_far() -> list[float]:
        """The losses summed since the last log, read back (a host sync, so at logs and checkpoints
        only): one that is not finite stops the run before it is logged or checkpointed."""
        totals = sums.tolist()
        if not math.isfinite(totals[0]):
            raise TrainingError(f"the loss became {totals[0]} within the {len(losses)} steps up to step {step}; "
                                f"lower --lr or resume from the last checkpoint ({last_ckpt or 'none yet'})")
        return totals

    def checkpoint(name: str) -> Path:
        nonlocal last_ckpt
        finite_so_far()
        wall = wall_before + time.perf_counter() - t0
        path = save_training_checkpoint(out / name, net, tfm, opt, s, step, wall, last_loss, last_val, ema_net=ema_net)
        if name != "last.safetensors":
            save_training_checkpoint(out / "last.safetensors", net, tfm, opt, s, step, wall, last_loss, last_val,
                                     ema_net=ema_net)
        last_ckpt = path
        emit({"event": "checkpoint", "step": step, "path": str(path)})
        write({"event": "checkpoint", "step": step, "path": str(path)})
        return path

    net.train()
    failed = False
    batches = step_batches(data, s.batch, start_step, s.steps, workers=s.workers, pin=device.type == "cuda")
    with _StopFlag() as flag:
        try:
            while step < s.steps:
                elapsed = wall_before + time.perf_counter() - t0
                time_progress = elapsed / (60 * s.minutes) if s.minutes > 0 else 0.0
                if time_progress >= 1.0:
                    break
                if val is not None and s.val_every and step % s.val_every == 0:
                    last_val = validate(scored, val[0], val[1], device, baseline=baseline, groups=val_groups)
                    emit({"event": "val", "step": step, **last_val})
                    write({"event": "val", "step": step, "val": last_val})
                for g in opt.param_groups:
                    g["lr"] = sched_base * lr_factor(step, s.steps, s.warmup, s.min_lr_ratio, time_progress)
                lr_in, hr = next(batches)
                lr_in, hr = lr_in.to(device, non_blocking=True), hr.to(device, non_blocking=True)
                with autocast():
                    pred = net(lr_in)
                pred = pred.float()
                with torch.no_grad():
                    base = bicubic_linear(lr_in.float())
                w = balance_weights(base, hr) if s.balance_samples else None
                pix = charbonnier(pred, hr, weights=w) if s.pixel_loss == "charbonnier" else sample_mean((pred - hr).abs(), w)
                tl = tfm(pred, hr) if s.tfm_on else pred.new_zeros(())
                td = temporal_difference(pred, hr, weights=w) if s.temporal_lambda > 0 else pred.new_zeros(())
                fl = pred.new_zeros(())
                if s.flow_teacher > 0 and step % s.flow_teacher_every == 0:
                    with torch.no_grad():
                        taught = teacher(lr_in.float())
                    with autocast():
                        own = net.pair_velocities(lr_in)
                    fl = velocity_error(own.float(), taught)
                loss = pix + s.tfm_lambda * tl + s.temporal_lambda * td + s.flow_teacher * fl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if s.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                opt.step()
                if ema_net is not None:
                    with torch.no_grad():
                        torch._foreach_lerp_(ema_params, net_params, 1.0 - s.ema)
                        for b_ema, b in zip(ema_net.buffers(), net.buffers()):
                            b_ema.copy_(b)
                step += 1
                window_n += hr.shape[0]
                with torch.no_grad():  # gain over bicubic + linear on this very batch, dB (cheap: no model)
                    gain_b = (_psnr_frames(pred.detach(), hr) - _psnr_frames(base, hr)).mean()
                sums += torch.stack([loss, pix, tl, gain_b, td, fl]).detach().float()
                losses.append(step)
                if step % s.log_every == 0 or step == s.steps:
                    totals = finite_so_far()
                    now = time.perf_counter()
                    n = len(losses)
                    mean = [v / n for v in totals]
                    sums.zero_()
                    last_loss = mean[0]
                    rec = {
                        "step": step, "loss": mean[0], "pixel": mean[1], "tfm": mean[2], "temporal": mean[4],
                        "flow": mean[5],
                        "train_gain": mean[3],
                        "lr": opt.param_groups[0]["lr"], "D": _finite(float(tfm.D.detach())),
                        "samples_per_s": window_n / max(now - window_t, 1e-9),
                        "elapsed_s": wall_before + now - t0,
                    }
                    if hasattr(tfm, "last_fitted") and s.tfm_on:  # the fitted form: this batch's D and alpha
                        rec |= {"D_batch": _finite(tfm.last_D), "alpha": _finite(tfm.last_alpha),
                                "fitted": _finite(tfm.last_fitted)}
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
                last_val = validate(scored, val[0], val[1], device, baseline=baseline, groups=val_groups)
                emit({"event": "val", "step": step, **last_val})
                write({"event": "val", "step": step, "val": last_val})
            checkpoint("interrupted.safetensors" if interrupted else "final.safetensors")
        except BaseException:
            failed = True
            raise
        finally:
            wall = wall_before + time.perf_counter() - t0
            try:
                write({"event": "end", "step": step, "interrupted": interrupted, "wall_time_s": wall})
            except OutputError:
                if not failed:  # else the error already on its way says more (often the same disk)
                    raise
            finally:
                _close_quietly(log)
    emit({"event": "end", "step": step, "interrupted": interrupted, "wall_time_s": wall, "checkpoint": str(last_ckpt)})
    return TrainResult(step, last_ckpt, interrupted, wall, last_loss, last_val)


def _close_quietly(log) -> None:
    try:
        log.close()
    except OSError:  # the buffered tail could not be flushed: the write before it already said so
        pass


def _finite(x: float) -> float | None:
    """x, or None for NaN / infinity (the log is standard JSON)."""
    return x if math.isfinite(x) else None
