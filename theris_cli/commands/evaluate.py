"""`theris evaluate`: its options; the scores as tables (stdout, or stderr when the JSON goes to stdout) and JSON."""

from __future__ import annotations

from typing import Optional, Sequence

import typer
from rich.console import Console

from theris_cli.commands import args
from theris_cli.engine.options import UpscaleOptions


def run_evaluate(clips: Sequence[str], methods: str, options: UpscaleOptions, *,
             max_frames: Optional[int] = None, json_out: Optional[str] = None, split: Optional[str] = None,
             degrade: str = "clean") -> None:
    from theris_cli.errors import UsageError
    from theris_cli.eval.evaluate import DEGRADATIONS, check_methods, evaluate as run_evaluation
    from theris_cli.eval.report import render
    from theris_cli.outputs import atomic_output, check_destination

    names = check_methods([methods])  # before any decoding: a typo fails at once
    if degrade not in DEGRADATIONS:
        raise UsageError(f"unknown --degrade {degrade!r}; choose from {', '.join(DEGRADATIONS)}")
    to_stdout = json_out == "-"
    if json_out and not to_stdout:
        check_destination(json_out, overwrite=True)
    console = Console(stderr=to_stdout, highlight=False)
    if not console.is_terminal:  # piped or redirected: keep the tables whole rather than 80 columns
        console.width = max(console.width, 132)
    with console.status("evaluating…") as status:
        ev = run_evaluation(clips, methods=names, options=options, max_frames=max_frames,
                            on_progress=lambda msg: status.update(msg), split=split, degrade=degrade)
    for renderable in render(ev):
        console.print(renderable)
    if ev.weights:
        console.print(f"theris = {ev.weights}")
    if "input" in ev.protocol:
        console.print(f"input: {ev.protocol['input']}")
    console.print(f"{len(ev.clips)} clip(s) in {ev.seconds:.1f} s")
    if to_stdout:
        typer.echo(ev.to_json())
    elif json_out:
        with atomic_output(json_out, overwrite=True) as tmp:
            tmp.write_text(ev.to_json() + "\n")
        console.print(f"wrote {json_out}")


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
    precision: args.Precision = "fp32",
    split: Optional[str] = typer.Option(
        None, "--split", help="Score the validation clips of this named split (e.g. v1), found by name under the "
        "CLIPS folders.",
    ),
    degrade: str = typer.Option(
        "clean", "--degrade", help="What the LR input gets: clean (the protocol) or sensor (a thermal sensor's "
        "temporal noise, per-pixel and per-column offsets and 8-bit output at the levels of real Lepton clips, "
        "the same frames every run; theris_cli/sensor.py). Default clean.",
    ),
) -> None:
    """Score THERIS against classical upscalers on clips: PSNR, SSIM, temporal consistency, motion.

    Each clip is mapped to [0, 1] by its own levels, cropped to multiples of 4, cut to an odd number
    of frames N; every other frame is shrunk x1/4 (antialiased bicubic) as the input, and each method
    predicts all N frames. Figures: over all frames, input-aligned frames (in) and interpolated frames
    (interp), per clip and averaged over clips; PSNR and SSIM over the moving pixels of the
    interpolated frames (move: where the truth differs from the mean of its two neighbours by more
    than 3 % of the range, dilated 2 px), with the masked pixel count. theris runs as upscale does,
    in fp32 unless --precision says otherwise (auto: as upscale chooses here).

    Example: theris evaluate clips/ --methods theris,bicubic,ffmpeg --json results.json

    Example: theris evaluate ../shared/data --split v1 --methods theris,bicubic

    Example: theris evaluate ../shared/data --split v1 --methods theris,bicubic --degrade sensor
    """
    from theris_cli.eval.evaluate import EVAL_OPTIONS

    options = UpscaleOptions.of(EVAL_OPTIONS, weights=weights, device=device, precision=precision)
    run_evaluate(clips, methods, options, max_frames=max_frames, json_out=json_out, split=split, degrade=degrade)
