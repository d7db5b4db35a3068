"""`theris train`: its options, the training run, and the lines it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from theris_cli.commands import args, console
from theris_cli.commands.console import err_console

TRAIN_EPILOG = (
    "Examples:\n\n"
    "  theris train --preset small --data videos/ --steps 6000 --out runs/small\n\n"
    "  theris train --data clips/a.mkv --data clips/b.mkv --val-data held_out/ --synthetic-ratio 0.5\n\n"
    "  theris train --preset small --ablate spectral-mask --out runs/no-mask     (an ablation)\n\n"
    "  theris train --resume runs/small/last.safetensors                          (continue a run)"
)


def train_cmd(
    preset: Optional[str] = typer.Option(
        None, "--preset", help="Network size: tiny, small or base (default: small; with --resume: the checkpoint's)."
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", exists=True, dir_okay=False, help="JSON file of ModelConfig fields (instead of --preset)."
    ),
    data: Optional[list[str]] = typer.Option(
        None, "--data", help="Video file or folder (searched recursively) of real thermal clips; repeatable. "
        "Default: synthetic clips only.",
    ),
    exclude: Optional[list[str]] = typer.Option(
        None, "--exclude", help="Glob of videos under --data not to train on (e.g. '*possum*'); repeatable."
    ),
    val_data: Optional[list[str]] = typer.Option(
        None, "--val-data", help="Held-out videos for the validation figures; repeatable. Default: crops of the "
        "training clips plus held-out synthetic clips.",
    ),
    synthetic_ratio: Optional[float] = typer.Option(
        None, "--synthetic-ratio", min=0.0, max=1.0, help="Fraction of each batch that is synthetic (default 0.5; 1 without --data)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Optimiser steps in all (default 6000)."),
    minutes: Optional[float] = typer.Option(
        None, "--minutes", min=0.0, help="Stop after this much training time (wall clock, all sessions of the run); "
        "the learning-rate cosine follows it when it is further along than the steps (default 0: no limit).",
    ),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Clips per step (default 8)."),
    patch: Optional[int] = typer.Option(None, "--patch", min=4, help="LR patch side in pixels; HR is 4x (default 32)."),
    frames: Optional[int] = typer.Option(None, "--frames", min=2, help="LR input frames k+1; 2k+1 HR frames out (default 4)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate, after warm-up; cosine decay to 5% (default 4e-4)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", min=0, help="Warm-up steps (default 100)."),
    tfm_lambda: Optional[float] = typer.Option(
        None, "--tfm-lambda", min=0.0, help="Weight of the TFM heat-equation loss (default 0.05; 0: the no-TFM ablation)."
    ),
    pixel_loss: Optional[str] = typer.Option(None, "--pixel-loss", help="charbonnier or l1 (default charbonnier)."),
    ablate: Optional[list[str]] = typer.Option(
        None, "--ablate", help="Switch a part off: spectral-mask, thermal-prompt, tfm, smb, tmb or hmb; repeatable."
    ),
    extras: Optional[float] = typer.Option(
        None, "--extras", min=0.0, max=1.0, help="Fraction of clips whose inputs get extra blur, noise and "
        "compression (default 0: the clean evaluation protocol).",
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the weights and of every batch (default 0)."),
    out: Optional[Path] = typer.Option(None, "--out", file_okay=False, help="Run folder: checkpoints and log.jsonl "
                                       "(default runs/<preset>; with --resume: the checkpoint's folder)."),
    checkpoint_every: Optional[str] = typer.Option(
        None, "--checkpoint-every", help="Steps (500), minutes (10m) or both (500,10m) between checkpoints (default 500,10m)."
    ),
    val_every: Optional[int] = typer.Option(None, "--val-every", min=0, help="Steps between validations (default 100; 0: only at the end)."),
    resume: Optional[Path] = typer.Option(
        None, "--resume", exists=True, dir_okay=False, help="Continue the run of this checkpoint (its settings, "
        "unless given again).",
    ),
    max_frames: int = typer.Option(1000, "--max-frames", min=3, help="Frames kept in memory per real video (its first)."),
    device: args.Device = "auto",
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (default: on with CUDA, off on the CPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for PyTorch (default: PyTorch's choice)."),
) -> None:
    """Train THERIS on real thermal videos and synthetic heat-conduction scenes.

    Inputs are made by the evaluation protocol: every other HR frame, antialiased bicubic x1/4.
    Loss: Charbonnier over all 2k+1 output frames + lambda * TFM. Checkpoints (safetensors, config
    inside) go to the run folder at intervals, at the end (final.safetensors) and on Ctrl-C
    (interrupted.safetensors); log.jsonl holds the losses and validation figures.
    """
    import json as _json

    import torch

    from theris_cli.errors import UsageError
    from theris_cli.model import PRESETS, ModelConfig
    from theris_cli.train import loop

    if preset is not None and config is not None:
        raise UsageError("give --preset or --config, not both")
    if threads:
        torch.set_num_threads(threads)
    model_cfg, base = None, {}
    if resume is not None:
        model_cfg, base = loop.settings_from_checkpoint(resume)
    if config is not None:
        try:
            asked = ModelConfig.from_dict(_json.loads(config.read_text()))
        except (ValueError, OSError) as e:
            raise UsageError(f"--config {config}: {e}") from None
    elif preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown --preset {preset!r}; choose from {', '.join(PRESETS)}")
        asked = PRESETS[preset]
    else:
        asked = None
    if asked is not None or ablate or model_cfg is None:
        asked = loop.apply_ablations(asked or (model_cfg if model_cfg is not None else PRESETS["small"]), ablate or [])
        if model_cfg is not None and asked != model_cfg:
            raise UsageError(f"{resume} holds a different network; resume without --preset/--config/--ablate")
        model_cfg = asked
    ablations = tuple(ablate) if ablate else None
    ck_steps = ck_minutes = None
    if checkpoint_every is not None:
        ck_steps, ck_minutes = loop.parse_every(checkpoint_every)
    from theris_cli.devices import resolve_device

    dev = str(resolve_device(device))  # the same spellings and messages as every other command
    settings = loop.make_settings(
        model_cfg, base, steps=steps, minutes=minutes, batch=batch, patch=patch, frames=frames, lr=lr, warmup=warmup,
        tfm_lambda=0.0 if ablations and "tfm" in ablations else tfm_lambda, pixel_loss=pixel_loss,
        synthetic_ratio=synthetic_ratio, extras_p=extras, seed=seed, ablate=ablations,
        checkpoint_steps=ck_steps, checkpoint_minutes=ck_minutes, val_every=val_every, device=dev,
        amp=(dev.startswith("cuda") if amp is None else amp),
    )
    saved = base.get("data", {}) if resume is not None else {}
    data_paths = list(data) if data else saved.get("paths", [])
    exclude_l = list(exclude) if exclude else saved.get("exclude", [])
    val_paths = list(val_data) if val_data else saved.get("val_paths", [])
    if out is None:
        out = resume.parent if resume is not None else Path("runs") / (preset or (config.stem if config else "small"))
    if resume is None and (out / "last.safetensors").exists():
        raise UsageError(f"{out} already holds a run; continue it with --resume {out / 'last.safetensors'}, "
                         "or choose another --out")

    def skipped(path, reason):
        err_console.print(Text.assemble(("skipped: ", "yellow"), f"{path} ({reason})"), soft_wrap=True)

    err_console.print("loading data…")
    mixer, val, desc = loop.build_data(settings, data_paths, exclude_l, val_paths, max_frames=max_frames, on_skip=skipped)
    settings.data = desc
    if desc["real"]:
        err_console.print("real clips: " + ", ".join(f"{c['name']} ({c['frames']} frames {c['width']}x{c['height']}, "
                                                      f"{c['bit_depth']}-bit)" for c in desc["real"]), soft_wrap=True)
    err_console.print(f"synthetic share {settings.synthetic_ratio:.0%}; run folder {out}", soft_wrap=True)
    with loop.TrainReporter(stream=err_console.file) as reporter:
        res = loop.train(settings, mixer, out, val=val, resume=resume, on_event=reporter)
    if res.interrupted:
        err_console.print(f"interrupted at step {res.step}; saved {res.checkpoint}; continue with: "
                          f"theris train --resume {res.checkpoint}", soft_wrap=True)
        console.interrupt_reported = True
        raise typer.Exit(130)
    err_console.print(f"done: {res.step} steps in {res.wall_time_s / 60:.1f} min; weights {res.checkpoint} "
                      f"(use with --weights {res.checkpoint})", soft_wrap=True)
