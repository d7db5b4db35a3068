"""`theris upscale` and `theris batch`: their options, the library call with progress, the report.

Progress and warnings go to stderr; a batch's summary table goes to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from rich.console import Console
from rich.text import Text

from theris_cli.commands import args, console
from theris_cli.commands.console import err_console, note_untrained, stop_on_signals, warnings_to
from theris_cli.errors import BatchError, OutputError, UsageError
from theris_cli.engine.options import DEFAULT_TEMPORAL_FACTOR, DEFAULT_WINDOW, UpscaleOptions


def run_upscale(src: str, dst: str, options: UpscaleOptions, *, overwrite: bool = False, quiet: bool = False,
                resume: bool = True) -> None:
    """`theris upscale SRC DST`: a folder SRC goes to the batch runner, a video to upscale_video."""
    from theris_cli.video.inputs import is_image_folder

    if Path(src).is_dir() and not is_image_folder(src):  # `upscale IN_DIR OUT_DIR`: the batch runner
        if Path(dst).suffix and not Path(dst).is_dir():
            raise UsageError(f"{src} is a folder (not a video or a folder of numbered images), so the output must "
                             f"be a folder too, not {dst}")
        run_batch_command(Path(src), Path(dst), options, quiet=quiet, overwrite=overwrite, resume=resume)
        return
    from theris_cli.commands.progress import UpscaleProgress
    from theris_cli.engine.pipeline import upscale_video

    with stop_on_signals(), warnings_to(err_console), \
            UpscaleProgress(Path(src).name, quiet=quiet, stream=err_console.file) as progress:
        res = upscale_video(src, dst, options, overwrite=overwrite, on_progress=progress, resume=resume,
                            on_estimate=progress.estimate)
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
    if res.events is not None and res.events.summary():
        err_console.print(Text(f"events: {res.events.summary()} (repeats interpolated as one frame, nothing blended "
                               "across a splice or a shutter jump; --no-events: off)"), soft_wrap=True)
    if res.resumed_frames:
        err_console.print(Text(f"resumed: {res.resumed_frames} of the frames came from the interrupted run"), soft_wrap=True)
    if res.weights_trained is False:
        note_untrained(res.weights)


def run_batch_command(in_dir: Path, out_dir: Path, options: Optional[UpscaleOptions] = None, *, quiet: bool = False,
                      **batch_args: Any) -> None:
    """Run a batch with progress on stderr and the summary on stdout; BatchError if any file failed.

    `theris batch` and `theris upscale IN_DIR OUT_DIR` both end here; `batch_args` are run_batch's
    (UpscaleOptions fields among them too, as run_batch takes them).
    """
    from theris_cli.batch import run_batch
    from theris_cli.batch.report import summary_line, summary_table
    from theris_cli.commands.batch_display import make_display

    display = make_display(err_console, quiet)
    console.batch_running = True
    try:
        with stop_on_signals(), warnings_to(err_console, quiet):
            result = run_batch(in_dir, out_dir, options, listener=display, **batch_args)
    finally:
        if display is not None:
            display.close()
    console.batch_running = False  # finished: only an interrupted batch leaves it set, for main()'s message
    if quiet:
        for f in result.files:
            if f.status == "failed":
                err_console.print(Text.assemble(("failed: ", "bold red"), f"{f.input}: {f.reason}"), soft_wrap=True)
    elif result.files:
        Console(highlight=False).print(summary_table(result))
    else:
        err_console.print(f"nothing to do: {summary_line(result)}")
    failed = result.count("failed")
    report_is_the_error = bool(result.report_errors) and not (result.stopped or failed)
    for problem in result.report_errors[:-1] if report_is_the_error else result.report_errors:
        err_console.print(Text.assemble(("warning: ", "bold yellow"), problem), soft_wrap=True)
    # TherisErrors, so that main() prints one line and exits 1 (typer.Exit would be lost)
    if result.stopped:
        raise BatchError(
            f"stopped: {result.stopped}; {result.not_started} inputs not started; fix that and rerun the same "
            "command to finish the rest (finished files are kept)"
        )
    if failed:
        where = f"; details in {batch_args['report']}" if batch_args.get("report") and not result.report_errors else ""
        raise BatchError(f"{failed} of {len(result.files)} inputs failed{where}; fix or remove them and rerun (finished files are kept)")
    if report_is_the_error:
        raise OutputError(f"{result.report_errors[-1]} (every input is finished; the summary above is complete)")


# --- the commands ------------------------------------------------------------------------------
UPSCALE_EPILOG = (
    "Examples:\n\n"
    "  theris upscale in.mp4 out.mp4\n\n"
    "  theris upscale flir16.mkv out.mkv          (16-bit in, 16-bit lossless FFV1 out)\n\n"
    "  theris upscale frames/%05d.png out.mkv --device cuda --tile 256\n\n"
    "  theris upscale in.mp4 out.mp4 --temporal-factor 1 --crf 12 --overwrite"
)


def upscale_cmd(
    src: str = typer.Argument(
        ..., metavar="SRC", show_default=False,
        help="Input video, an image pattern such as frames/%05d.png, or a folder (then DST is a folder: "
        "every video under SRC is upscaled, as `theris batch` does).",
    ),
    dst: str = typer.Argument(
        ..., metavar="DST", show_default=False,
        help="Output video; its extension picks the container (.mkv and .avi: lossless FFV1 at the input's bit "
        "depth; .mp4 and .mov: H.264).",
    ),
    weights: args.Weights = None,
    device: args.Device = "auto",
    precision: args.Precision = "auto",
    window: args.Window = DEFAULT_WINDOW,
    tile: args.Tile = None,
    temporal_factor: args.TemporalFactor = DEFAULT_TEMPORAL_FACTOR,
    codec: args.Codec = None,
    crf: args.Crf = None,
    pix_fmt: args.PixFmt = None,
    events: args.Events = True,
    resume: args.Resume = True,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
    quiet: args.Quiet = False,
) -> None:
    """Upscale a thermal video 4x in space and 2x in time (frame rate doubled, duration kept).

    Bit depth is kept: 8-bit stays 8-bit, 16-bit (radiometric) stays 16-bit. Input frame i becomes
    output frame 2i; output frame 2i+1 lies halfway to the next input frame; the last input frame is
    held for its whole display time (its second output frame repeats it). The output is written under
    a temporary name and renamed when complete; on error or Ctrl-C nothing is left behind.
    """
    options = UpscaleOptions(weights=weights, device=device, precision=precision, window=window, tile=tile,
                             temporal_factor=temporal_factor, codec=codec, crf=crf, pix_fmt=pix_fmt, events=events)
    run_upscale(src, dst, options, overwrite=overwrite, quiet=quiet, resume=resume)


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
    window: args.Window = DEFAULT_WINDOW,
    tile: args.Tile = None,
    temporal_factor: args.TemporalFactor = DEFAULT_TEMPORAL_FACTOR,
    codec: args.Codec = None,
    crf: args.Crf = None,
    pix_fmt: args.PixFmt = None,
    events: args.Events = True,
    resume: args.Resume = True,
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

      # one CPU machine: a worker per core, each at one thread, finishes a folder sooner
      for i in 1 2; do OMP_NUM_THREADS=1 theris batch survey/ survey_x4/ > log$i 2>&1 & done; wait
    """
    options = UpscaleOptions(weights=weights, device=device, precision=precision, window=window, tile=tile,
                             temporal_factor=temporal_factor, codec=codec, crf=crf, pix_fmt=pix_fmt, events=events)
    run_batch_command(
        in_dir, out_dir, options, quiet=quiet, include=include, exclude=exclude, ext=ext, overwrite=overwrite,
        resume=resume,
        verify=verify, shard=shard, stale_after=stale_after, report=report,
    )
