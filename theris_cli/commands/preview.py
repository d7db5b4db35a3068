"""`theris preview` and `theris demo`, the two ways to look first: options, library call, report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from theris_cli.commands import args
from theris_cli.commands.console import err_console, note_untrained, stop_on_signals, warnings_to
from theris_cli.engine.options import DEFAULT_TEMPORAL_FACTOR, DEFAULT_WINDOW, UpscaleOptions


def run_demo_command(out_dir: str, options: UpscaleOptions, *, quiet: bool = False) -> None:
    """`theris demo`: make the synthetic clip, upscale it, print where both are and which weights did it."""
    import typer

    from theris_cli.commands.progress import UpscaleProgress
    from theris_cli.demo import run_demo

    with stop_on_signals(), warnings_to(err_console), \
            UpscaleProgress("demo", quiet=quiet, stream=err_console.file) as progress:
        res_demo = run_demo(out_dir, weights=options.weights, device=options.device, on_progress=progress)
    res = res_demo.upscale
    if quiet:
        return
    size_in, size_out = f"{res.size_in[0]}x{res.size_in[1]}", f"{res.size_out[0]}x{res.size_out[1]}"
    typer.echo(f"input:   {res_demo.input} ({size_in}, {res.frames_in} frames at {res.fps_in} fps, synthetic)")
    typer.echo(f"output:  {res_demo.output} ({size_out}, {res.frames_out} frames at {res.fps_out} fps)")
    trained = {
        True: "trained",
        False: "UNTRAINED: random weights, so the output is not a real upscale yet",
        None: "training unknown",
    }[res.weights_trained]
    typer.echo(f"weights: {res.weights} ({trained}) on {res.device}, {res.seconds:.1f} s")


def run_preview(src: str, output: Path, options: UpscaleOptions, *, at: Optional[str] = None,
            overwrite: bool = False, quiet: bool = False) -> None:
    """`theris preview`: write the PNG, then say where it is and what it shows."""
    from theris_cli.preview import make_preview, parse_time

    seconds = parse_time(at) if at is not None else None
    with stop_on_signals(), warnings_to(err_console):
        res = make_preview(src, output, options, at=seconds, overwrite=overwrite)
    if not quiet:
        w, h = res.size
        err_console.print(Text(f"wrote {res.dst} ({w}x{h}): {res.caption}"), soft_wrap=True)
        if res.weights_trained is False:
            note_untrained(res.weights, "the theris panels are not a real upscale")


# --- the commands ------------------------------------------------------------------------------
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
    window: args.Window = DEFAULT_WINDOW,
    tile: args.Tile = None,
    temporal_factor: args.TemporalFactor = DEFAULT_TEMPORAL_FACTOR,
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
    options = UpscaleOptions(weights=weights, device=device, precision=precision, window=window, tile=tile,
                             temporal_factor=temporal_factor)
    run_preview(src, output, options, at=at, overwrite=overwrite, quiet=quiet)


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
    run_demo_command(out_dir, UpscaleOptions(weights=weights, device=device), quiet=quiet)
