"""upscale, batch, demo and preview as commands: the library call with progress, then the report.

Progress and warnings go to stderr; a batch's summary table goes to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.text import Text

from theris_cli.commands.console import err_console, stop_on_signals, warnings_to
from theris_cli.errors import BatchError, UsageError
from theris_cli.options import UpscaleOptions


def _untrained_note(name: str, what: str = "the output is not a real upscale") -> None:
    err_console.print(f"[yellow]note:[/] {name} has random (untrained) weights: {what}", soft_wrap=True)


def upscale(src: str, dst: str, options: UpscaleOptions, *, overwrite: bool = False, quiet: bool = False) -> None:
    """`theris upscale SRC DST`: a folder SRC goes to the batch runner, a video to upscale_video."""
    if Path(src).is_dir():  # `upscale IN_DIR OUT_DIR`: the batch runner (skip-done, per-file results)
        if Path(dst).suffix and not Path(dst).is_dir():
            raise UsageError(f"{src} is a folder, so the output must be a folder too, not {dst}")
        batch(Path(src), Path(dst), options, quiet=quiet, overwrite=overwrite)
        return
    from theris_cli.commands.progress import UpscaleProgress
    from theris_cli.pipeline import upscale_video

    with stop_on_signals(), warnings_to(err_console), \
            UpscaleProgress(Path(src).name, quiet=quiet, stream=err_console.file) as progress:
        res = upscale_video(src, dst, options, overwrite=overwrite, on_progress=progress)
    if quiet:
        return
    st = res.stages
    err_console.print(
        Text(
            f"wrote {res.dst}: {res.frames_out} frames {res.size_out[0]}x{res.size_out[1]} at {res.fps_out} fps, "
            f"{res.bit_depth}-bit (from {res.frames_in} frames {res.size_in[0]}x{res.size_in[1]} at {res.fps_in} fps) "
            f"in {res.seconds:.1f} s (decode {st['decode']:.1f} s, model {st['model']:.1f} s, "
            f"encode {st['encode']:.1f} s) with {res.weights} on {res.device} ({res.precision})"
        ),
        soft_wrap=True,
    )
    if res.weights_trained is False:
        _untrained_note(res.weights)


def batch(in_dir: Path, out_dir: Path, options: UpscaleOptions, *, quiet: bool = False, **batch_args: Any) -> None:
    """Run a batch with progress on stderr and the summary on stdout; BatchError if any file failed.

    `theris batch` and `theris upscale IN_DIR OUT_DIR` both end here; `batch_args` are run_batch's.
    """
    from theris_cli.batch import run_batch
    from theris_cli.batch.report import summary_line, summary_table
    from theris_cli.commands.batch_display import make_display

    display = make_display(err_console, quiet)
    try:
        with stop_on_signals(), warnings_to(err_console, quiet):
            result = run_batch(in_dir, out_dir, options, listener=display, **batch_args)
    finally:
        if display is not None:
            display.close()
    if quiet:
        for f in result.files:
            if f.status == "failed":
                err_console.print(Text.assemble(("failed: ", "bold red"), f"{f.input}: {f.reason}"), soft_wrap=True)
    elif result.files:
        Console(highlight=False).print(summary_table(result))
    else:
        err_console.print(f"nothing to do: {summary_line(result)}")
    failed = result.count("failed")
    if failed:  # a TherisError, so that main() prints one line and exits 1 (typer.Exit would be lost)
        where = f"; details in {batch_args['report']}" if batch_args.get("report") else ""
        raise BatchError(f"{failed} of {len(result.files)} inputs failed{where}; fix or remove them and rerun (finished files are kept)")


def demo(out_dir: str, options: UpscaleOptions, *, quiet: bool = False) -> None:
    """`theris demo`: make the synthetic clip, upscale it, print where both are and which weights did it."""
    import typer

    from theris_cli.commands.progress import UpscaleProgress
    from theris_cli.demo import run_demo

    with stop_on_signals(), warnings_to(err_console), \
            UpscaleProgress("demo", quiet=quiet, stream=err_console.file) as progress:
        res_demo = run_demo(out_dir, weights=options.weights, device=options.device, on_progress=progress)
    res = res_demo.upscale
    size_in, size_out = f"{res.size_in[0]}x{res.size_in[1]}", f"{res.size_out[0]}x{res.size_out[1]}"
    typer.echo(f"input:   {res_demo.input} ({size_in}, {res.frames_in} frames at {res.fps_in} fps, synthetic)")
    typer.echo(f"output:  {res_demo.output} ({size_out}, {res.frames_out} frames at {res.fps_out} fps)")
    trained = {
        True: "trained",
        False: "UNTRAINED: random weights, so the output is not a real upscale yet",
        None: "training unknown",
    }[res.weights_trained]
    typer.echo(f"weights: {res.weights} ({trained}) on {res.device}, {res.seconds:.1f} s")


def preview(src: str, output: Path, options: UpscaleOptions, *, at: Optional[str] = None,
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
            _untrained_note(res.weights, "the theris panels are not a real upscale")
