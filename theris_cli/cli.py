"""The `theris` command line: parsing only. Each command calls one function of `commands/`, which
calls the library and reports; shared options are declared once in `commands/args.py`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from theris_cli import __version__
from theris_cli.commands import args
from theris_cli.commands.console import err_console
from theris_cli.errors import TherisError
from theris_cli.options import UpscaleOptions

app = typer.Typer(
    name="theris",
    help="Upscale thermal (infrared) video 4x in space and 2x in time, with heat-conduction priors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_debug = False


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"theris {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", envvar="THERIS_DEBUG", help="Show full tracebacks instead of one-line errors."
    ),
) -> None:
    global _debug
    _debug = debug


# --- upscale, batch, demo, preview (PIPELINE) -----------------------------------------------------
_UPSCALE_EPILOG = (
    "Examples:\n\n"
    "  theris upscale in.mp4 out.mp4\n\n"
    "  theris upscale flir16.mkv out.mkv          (16-bit in, 16-bit lossless FFV1 out)\n\n"
    "  theris upscale frames/%05d.png out.mkv --device cuda --tile 256\n\n"
    "  theris upscale in.mp4 out.mp4 --temporal-factor 1 --crf 12 --overwrite"
)


@app.command("upscale", epilog=_UPSCALE_EPILOG)
def upscale_cmd(
    src: str = typer.Argument(
        ..., metavar="SRC", show_default=False,
        help="Input video, an image pattern such as frames/%05d.png, or a folder (then DST is a folder: "
        "every video under SRC is upscaled, as `theris batch` does).",
    ),
    dst: str = typer.Argument(
        ..., metavar="DST", show_default=False,
        help="Output video; its extension picks the container (.mkv: lossless FFV1 at the input's bit depth, "
        ".mp4: H.264).",
    ),
    weights: args.Weights = None,
    device: args.Device = "auto",
    precision: args.Precision = "auto",
    window: args.Window = 4,
    tile: args.Tile = None,
    temporal_factor: args.TemporalFactor = 2,
    codec: args.Codec = None,
    crf: args.Crf = None,
    pix_fmt: args.PixFmt = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
    quiet: args.Quiet = False,
) -> None:
    """Upscale a thermal video 4x in space and 2x in time (frame rate doubled, duration kept).

    Bit depth is kept: 8-bit stays 8-bit, 16-bit (radiometric) stays 16-bit. Input frame i becomes
    output frame 2i; output frame 2i+1 lies halfway to the next input frame; the last input frame is
    held for its whole display time (its second output frame repeats it). The output is written under
    a temporary name and renamed when complete; on error or Ctrl-C nothing is left behind.
    """
    from theris_cli.commands import upscale

    options = UpscaleOptions(weights=weights, device=device, precision=precision, window=window, tile=tile,
                             temporal_factor=temporal_factor, codec=codec, crf=crf, pix_fmt=pix_fmt)
    upscale.upscale(src, dst, options, overwrite=overwrite, quiet=quiet)


@app.command("batch")
def batch_cmd(
    in_dir: Path = typer.Argument(..., metavar="IN_DIR", help="Folder of recordings, searched recursively.", show_default=False),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="Folder for the outputs; IN_DIR's tree is mirrored here.", show_default=False),
    include: list[str] = typer.Option(
        [], "--include", metavar="GLOB", help="Only inputs matching GLOB, relative to IN_DIR (repeatable): "
        "'*.mp4' matches a name at any depth, 'site1/**' a subtree. Default: every video and image sequence.",
    ),
    exclude: list[str] = typer.Option(
        [], "--exclude", metavar="GLOB", help="Skip inputs and folders matching GLOB (repeatable; wins over --include).",
    ),
    ext: str = typer.Option(
        "mkv", "--ext", help="Output container: mkv (lossless FFV1 at the input's bit depth), mp4 (H.264), "
        "mov, avi, nut, or 'same' (each input's own; image sequences get mkv). Default: mkv.",
    ),
    weights: args.Weights = None,
    device: args.Device = "auto",
    precision: args.Precision = "auto",
    window: args.Window = 4,
    tile: args.Tile = None,
    temporal_factor: args.TemporalFactor = 2,
    codec: args.Codec = None,
    crf: args.Crf = None,
    pix_fmt: args.PixFmt = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every file, also those already done. Default: skip done files."),
    verify: bool = typer.Option(False, "--verify", help="Before skipping a done file, check its output's SHA-256 against its record (reads every output)."),
    shard: Optional[str] = typer.Option(
        None, "--shard", metavar="INDEX/COUNT", help="Process only shard INDEX (0-based) of COUNT, e.g. 0/4. "
        "Default: from a Slurm job array's SLURM_ARRAY_TASK_* variables, else all files; 0/1 forces all.",
    ),
    stale_after: float = typer.Option(
        600.0, "--stale-after", metavar="SECONDS", help="A lock of another host not refreshed for this long "
        "belongs to a dead worker and is taken over (locks are refreshed every minute). Default: 600.",
    ),
    report: Optional[Path] = typer.Option(None, "--report", metavar="FILE.json", help="Also write the JSON report here (one is always kept in OUT_DIR/.theris/reports/)."),
    quiet: args.Quiet = False,
) -> None:
    """Upscale every video and image sequence under IN_DIR into the same tree under OUT_DIR.

    Unattended and resumable: a file is skipped when its output is finished and verified by its
    completion record (OUT_DIR/.theris/done/), so rerunning the same command after a crash or kill
    finishes the rest. A corrupt file is reported and skipped; the exit code is 1 if any failed.
    Several workers (processes, machines, Slurm array tasks) may share one OUT_DIR: a lock per
    file keeps them apart. SIGTERM and SIGHUP stop it like Ctrl-C, after writing the report.

    Examples:

      theris batch survey/ survey_x4/

      theris batch survey/ survey_x4/ --include 'site1/**' --exclude '*calib*' --report report.json

      sbatch --array=0-7 --wrap "theris batch survey/ survey_x4/"   # 8 shards
    """
    from theris_cli.commands import upscale

    options = UpscaleOptions(weights=weights, device=device, precision=precision, window=window, tile=tile,
                             temporal_factor=temporal_factor, codec=codec, crf=crf, pix_fmt=pix_fmt)
    upscale.batch(
        in_dir, out_dir, options, quiet=quiet, include=include, exclude=exclude, ext=ext, overwrite=overwrite,
        verify=verify, shard=shard, stale_after=stale_after, report=report,
    )


@app.command("demo")
def demo_cmd(
    out_dir: str = typer.Option(
        "theris-demo", "--out-dir", "-o", help="Folder for the demo's input and output (created if missing)."
    ),
    weights: args.Weights = None,
    device: args.Device = "auto",
    quiet: args.Quiet = False,
) -> None:
    """Make a 3-second synthetic thermal clip and upscale it: the first command to try.

    Writes OUT_DIR/thermal_input.mkv (80x64, 9 fps, lossless) and OUT_DIR/thermal_upscaled.mp4 (320x256,
    18 fps, H.264), replacing those two files if an earlier demo left them, and says which weights did it.

    Example: theris demo --out-dir /tmp/theris-demo
    """
    from theris_cli.commands import upscale

    upscale.demo(out_dir, UpscaleOptions(weights=weights, device=device), quiet=quiet)


@app.command("preview")
def preview_cmd(
    src: str = typer.Argument(..., metavar="SRC", show_default=False, help="Input video or image pattern, as for upscale."),
    at: Optional[str] = typer.Option(
        None, "--at", metavar="TIME", show_default=False,
        help="Time of the frame to show: seconds (12.5) or m:ss (1:02.5). Default: the middle of the video.",
    ),
    output: Path = typer.Option(Path("preview.png"), "--output", "-o", help="The PNG to write."),
    weights: args.Weights = None,
    device: args.Device = "auto",
    precision: args.Precision = "auto",
    window: args.Window = 4,
    tile: args.Tile = None,
    temporal_factor: args.TemporalFactor = 2,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the PNG if it exists."),
    quiet: args.Quiet = False,
) -> None:
    """Look before a long run: one window of SRC upscaled, beside the input and bicubic, as a PNG.

    Rows: the input frame at TIME, the interpolated frame after it, and a 2x zoom of the busiest
    region; columns: the input (nearest neighbour x4), bicubic x4 + linear blend in time, and theris,
    with the same weights, device and options as `theris upscale`. Takes seconds on a CPU: frames
    wider than 160 or taller than 128 pixels are previewed on their busiest region of that size.

    Example: theris preview flight.mkv --at 1:30 -o flight-preview.png
    """
    from theris_cli.commands import upscale

    options = UpscaleOptions(weights=weights, device=device, precision=precision, window=window, tile=tile,
                             temporal_factor=temporal_factor)
    upscale.preview(src, output, options, at=at, overwrite=overwrite, quiet=quiet)


# --- evaluate (EVAL) ------------------------------------------------------------------------------
@app.command("evaluate")
def evaluate_cmd(
    clips: list[str] = typer.Argument(
        ..., metavar="CLIPS", show_default=False,
        help="Video files, image sequences, or folders of videos (each video in a folder is a clip).",
    ),
    weights: args.Weights = None,
    methods: str = typer.Option(
        "theris,bicubic,ffmpeg", "--methods", "-m",
        help="Comma-separated methods to score: theris, bicubic (bicubic x4 + linear blend in time), "
        "ffmpeg (FFmpeg lanczos x4 + minterpolate mci).",
    ),
    max_frames: Optional[int] = typer.Option(
        None, "--max-frames", min=3,
        help="Use at most the first N HR frames of each clip (a clip is held in memory, about 12 bytes "
        "per HR pixel and frame). Default: all.",
    ),
    json_out: Optional[str] = typer.Option(
        None, "--json", metavar="FILE",
        help="Also write every figure as JSON to FILE (replaced if it exists), or to stdout with '-' "
        "(the table then goes to stderr).",
    ),
    device: args.Device = "auto",
) -> None:
    """Score THERIS against classical upscalers on clips: PSNR, SSIM, temporal consistency.

    Each clip is mapped to [0, 1] by its own levels, cropped to multiples of 4, cut to an odd number
    of frames N; every other frame is shrunk x1/4 (antialiased bicubic) as the input, and each method
    predicts all N frames. Figures: over all frames, input-aligned frames (in) and interpolated frames
    (interp), per clip and averaged over clips. theris runs as upscale does, in fp32.

    Example: theris evaluate clips/ --methods theris,bicubic,ffmpeg --json results.json
    """
    from theris_cli.commands.evaluate import evaluate
    from theris_cli.eval.evaluate import EVAL_OPTIONS

    options = UpscaleOptions.of(EVAL_OPTIONS, weights=weights, device=device)
    evaluate(clips, methods, options, max_frames=max_frames, json_out=json_out)


# --- weights, info (WEIGHTS, MODEL) ---------------------------------------------------------------
weights_app = typer.Typer(
    help="List, download, verify and locate model weights (the names --weights accepts).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(weights_app, name="weights")
Name = args.ModelName


@weights_app.command("list")
def weights_list_cmd() -> None:
    """Show every registered model: size, where it comes from, whether it is here, the default, SHA-256.

    Example: theris weights list
    """
    from theris_cli.commands import weights

    weights.list_models()


@weights_app.command("download")
def weights_download_cmd(name: Name) -> None:
    """Download a model from the Hugging Face Hub into its cache (HF_HOME) and verify its SHA-256.

    Honours HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_ENDPOINT. Shipped and in-memory models need
    no download. Example: theris weights download theris-base
    """
    from theris_cli.commands import weights

    weights.download(name)


@weights_app.command("verify")
def weights_verify_cmd(name: args.OptionalModelName = None) -> None:
    """Check local weight files against the registry's SHA-256 and that theris can read them.

    Exits non-zero when any check fails (for a named model, also when it cannot be checked).
    Example: theris weights verify ; theris weights verify theris-small
    """
    from theris_cli.commands import weights

    weights.verify(name)


@weights_app.command("path")
def weights_path_cmd(name: Name) -> None:
    """Print the local file of a model (shipped or in the Hub cache); never downloads.

    Example: cp "$(theris weights path theris-small)" .
    """
    from theris_cli.commands import weights

    weights.path(name)


@app.command("info")
def info_cmd() -> None:
    """Print versions, the device, and which scan backend is in use and why.

    Example: theris info ; THERIS_SCAN=reference theris info
    """
    from theris_cli.commands.info import info

    info()


# --- train (TRAIN) --------------------------------------------------------------------------------
_TRAIN_EPILOG = (
    "Examples:\n\n"
    "  theris train --preset small --data videos/ --steps 6000 --out runs/small\n\n"
    "  theris train --data clips/a.mkv --data clips/b.mkv --val-data held_out/ --synthetic-ratio 0.5\n\n"
    "  theris train --preset small --ablate spectral-mask --out runs/no-mask     (an ablation)\n\n"
    "  theris train --resume runs/small/last.safetensors                          (continue a run)"
)


@app.command("train", epilog=_TRAIN_EPILOG)
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
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto: the GPU if there is one)."),
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
    dev = device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    elif dev.startswith("cuda") and not torch.cuda.is_available():
        from theris_cli.errors import DeviceError

        raise DeviceError(f"--device {device}: no CUDA device here; use --device cpu")
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
        raise typer.Exit(130)
    err_console.print(f"done: {res.step} steps in {res.wall_time_s / 60:.1f} min; weights {res.checkpoint} "
                      f"(use with --weights {res.checkpoint})", soft_wrap=True)


def main() -> None:
    """Console entry point: run the app and turn every expected failure into one line and an exit code."""
    try:
        # without standalone mode, a command's `typer.Exit(n)` comes back as the return value n
        rc = app(standalone_mode=False)
    except TherisError as e:
        if _debug:
            raise
        err_console.print(Text.assemble(("error: ", "bold red"), str(e)), soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        sys.exit(130)
    except typer.TyperException as e:  # usage errors: bad option, missing argument, ...
        e.show()
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(rc if isinstance(rc, int) else 0)
