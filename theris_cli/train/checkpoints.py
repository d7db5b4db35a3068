"""Training checkpoints: the network, the optimiser moments, the TFM state and the RNG state of a
run, with its settings and its inference contract, so that `resume` continues the same run and
`theris upscale` knows what the weights were trained for.

Files (`weights.save_checkpoint`, safetensors, config inside): extra tensors "optimizer.*" (packed
with `pack_state`), "tfm.<name>" (the TFM loss's state: the learnable `d` of the paper's form, or the
running mean `d_ema` of the fitted form) and "rng.torch". A run with an exponential moving average
of the weights (`TrainSettings.ema`) saves the average as the network, so that `theris evaluate`,
`upscale` and `weights export` use it, and the optimised weights as "raw.<name>" for `resume`;
metadata {"kind": "training", "step",
"steps", "seed", "wall_time_s", "loss", "val", "tfm_D", "data", "train" (the settings),
"contract" (`weights.checkpoint.contract_for`), "optimizer" (the skeleton), "ema" (the decay, or 0)}.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from theris_cli.errors import TrainingError
from theris_cli.train.settings import TrainSettings


def save_training_checkpoint(path: Path, net, tfm: torch.nn.Module, opt: torch.optim.Optimizer,
                             settings: TrainSettings, step: int, wall_time: float, loss: float | None,
                             val: dict | None, ema_net=None) -> Path:
    """Write the run's state to `path`; with `ema_net` (the averaged weights) that is the network
    saved, and `net`'s own weights go in as "raw.<name>"."""
    from theris_cli.weights import pack_state, save_checkpoint
    from theris_cli.weights.checkpoint import contract_for

    tensors, skeleton = pack_state(opt.state_dict(), "optimizer")
    for k, v in tfm.state_dict().items():
        tensors[f"tfm.{k}"] = v.detach().clone()
    tensors["rng.torch"] = torch.get_rng_state()
    if ema_net is not None:
        for k, v in net.state_dict().items():
            tensors[f"raw.{k}"] = v.detach().clone()
    d = float(tfm.D.detach())
    meta = {
        "kind": "training",
        "step": step,
        "steps": settings.steps,
        "seed": settings.seed,
        "wall_time_s": round(wall_time, 1),
        "loss": loss,
        "val": val,
        "tfm_D": d if math.isfinite(d) else None,
        "tfm_form": settings.tfm_form,
        "data": settings.data,
        "train": settings.to_dict(),
        "contract": contract_for(settings.frames, clips=list(dict.fromkeys(
            [c["name"] for c in settings.data.get("real", [])] + list(settings.data.get("init_clips", []))))),
        "optimizer": skeleton,
        "ema": settings.ema if ema_net is not None else 0.0,
    }
    return save_checkpoint(path, ema_net if ema_net is not None else net, metadata=meta, extra_tensors=tensors)


def resume_state(path: str | Path, net, tfm: torch.nn.Module, opt: torch.optim.Optimizer, s: TrainSettings,
                 ema_net=None) -> tuple[int, float]:
    """Load model, TFM state, optimiser and RNG state from `path`; returns (step, wall time so far).
    `ema_net` gets the averaged weights (a checkpoint written without an average: the weights)."""
    from theris_cli.weights import load_checkpoint, unpack_state

    ck = load_checkpoint(path)
    if ck.config != s.model:
        raise TrainingError(f"{path} holds a different network than the one asked for; resume without "
                            f"--preset/--config/--ablate, or with the ones the run started with")
    tfm_state = {k[len("tfm."):]: v for k, v in ck.extra_tensors.items() if k.startswith("tfm.")}
    if ck.metadata.get("kind") != "training" or "optimizer" not in ck.metadata:
        raise TrainingError(f"{path} has no training state (optimiser, step); start a new run, or resume from a "
                            f"checkpoint that `theris train` wrote")
    if set(tfm_state) != set(tfm.state_dict()):
        raise TrainingError(f"{path} was trained with another TFM form than --tfm-form {s.tfm_form}; resume with "
                            f"the form the run started with")
    raw = {k[len("raw."):]: v for k, v in ck.extra_tensors.items() if k.startswith("raw.")}
    net.load_state_dict(raw or ck.state_dict)
    if ema_net is not None:
        ema_net.load_state_dict(ck.state_dict)
    tfm.load_state_dict(tfm_state)
    opt.load_state_dict(unpack_state(ck.extra_tensors, ck.metadata["optimizer"]))  # moves moments to the params' device
    if "rng.torch" in ck.extra_tensors:
        torch.set_rng_state(ck.extra_tensors["rng.torch"])
    return int(ck.metadata["step"]), float(ck.metadata.get("wall_time_s", 0.0))
