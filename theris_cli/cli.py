"""The `theris` command line. Parsing and reporting only: the work lives in the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from theris_cli import __version__
from theris_cli.errors import TherisError

app = typer.Typer(
    name="theris",
    help="Upscale thermal (infrared) video 4x in space and 2x in time, with heat-conduction priors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err_console = Console(stderr=True, highlight=False)
_debug = False
_interrupt_reported = False  # a command that said itself how it was interrupted (train)


def _flags_without_type(option_class) -> None:
    """Typer 0.29's rich help shows every flag as `--flag <bool>`; a flag takes no value, so no type."""
    shown = option_class.display_type_rich

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    option_class.display_type_rich = display_type_rich


try:
    from typer.core import TyperOption as _TyperOption

    _flags_without_type(_TyperOption)
except (ImportError, AttributeError):  # another Typer: its own help is left as it is
    pass


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


# Commands are added below, one section per concern; each only parses, calls the library and reports.


# --- upscale, demo (PIPELINE) ---------------------------------------------------------------------
_UPSCALE_EPILOG = (
    "Examples:\n\n"
    "  theris upscale in.mp4 out.mp4\n\n"
    "  theris upscale flir16.mkv out.mkv          (16-bit in, 16-bit lossless FFV1 out)\n\n"
    "  theris upscale frames/%05d.png out.mkv --device cuda --tile 256\n\n"
    "  theris upscale in.mp4 out.mp4 --temporal-factor 1 --crf 12 --overwrite"
)


class _WarningsToStderr:
    """Show the library's warnings (logger "theris") as one line each on stderr while a command runs."""

    def __enter__(self):
        import logging

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                err_console.print(Text.assemble(("warning: ", "bold yellow"), record.getMessage()), soft_wrap=True)

        self.handler = _Handler(logging.WARNING)
        self.loggers = [logging.getLogger(name) for name in ("theris", "theris_cli")]  # pipeline, library modules
        self.propagate = [lg.propagate for lg in self.loggers]
        for lg in self.loggers:
            lg.addHandler(self.handler)
            lg.propagate = False  # once, not again through the root logger's last-resort handler
        return self

    def __exit__(self, *exc) -> None:
        for lg, prop in zip(self.loggers, self.propagate):
            lg.removeHandler(self.handler)
            lg.propagate = prop


class _TerminateAsInterrupt:
    """SIGTERM and SIGHUP (a closed terminal, a job scheduler) stop like Ctrl-C, so that the
    temporary output is removed instead of left behind by a killed process."""

    def __enter__(self):
        import signal
        import threading

        self.saved = {}
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread

        def interrupt(signum, frame):
            raise KeyboardInterrupt

        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None:
                self.saved[sig] = signal.signal(sig, interrupt)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _report_upscale(res, quiet: bool) -> None:
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
        err_console.print(
            f"[yellow]note:[/] {res.weights} has random (untrained) weights: the output is not a real upscale",
            soft_wrap=True,
        )


def _holds_images(folder: Path) -> bool:
    """A folder of images is one image sequence (upscaled into one video), not a batch."""
    from theris_cli.video.decode import image_files

    try:
        return bool(image_files(folder))
    except TherisError:
        return False


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
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", help="Registry name (see `theris weights list`), a .safetensors file, or "
        "hf://owner/repo/file (optionally @revision). Default: the default model.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto: the GPU if there is one)."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto, fp32, fp16 or bf16 (auto: bf16/fp16 on CUDA, fp32 on the CPU)."
    ),
    window: int = typer.Option(4, "--window", min=2, help="Input frames the model sees at once (k+1)."),
    tile: Optional[int] = typer.Option(
        None, "--tile", min=16, help="Tile side in input pixels, for frames too large for memory. "
        "Default: whole frames where they fit, else chosen from free memory (RAM or GPU).",
    ),
    temporal_factor: int = typer.Option(
        2, "--temporal-factor", min=1,
        help="Output frames per input frame (1: spatial only; 2: double the frame rate).",
    ),
    codec: Optional[str] = typer.Option(
        None, "--codec", help="Video codec, e.g. ffv1, libx264, libx265. Default: from the extension."
    ),
    crf: Optional[int] = typer.Option(
        None, "--crf", min=0,
        help="Quality for H.264/H.265 (lower is better). Default: the codec's visually lossless setting (17).",
    ),
    pix_fmt: Optional[str] = typer.Option(
        None, "--pix-fmt", help="Output pixel format, e.g. gray16le, yuv420p. Default: fits the input and codec."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar and no summary (errors and warnings only)."
    ),
) -> None:
    """Upscale a thermal video 4x in space and 2x in time (frame rate doubled, duration kept).

    Bit depth is kept: 8-bit stays 8-bit, 16-bit (radiometric) stays 16-bit. Input frame i becomes
    output frame 2i; output frame 2i+1 lies halfway to the next input frame; the last input frame is
    held for its whole display time (its second output frame repeats it). The output is written under
    a temporary name and renamed when complete; on error or Ctrl-C nothing is left behind.
    """

    from theris_cli.errors import UsageError
    from theris_cli.pipeline import upscale_video
    from theris_cli.progress import UpscaleProgress

    options = dict(
        weights=weights, device=device, precision=precision, window=window, tile=tile,
        temporal_factor=temporal_factor, codec=codec, crf=crf, pix_fmt=pix_fmt, overwrite=overwrite,
    )
    if Path(src).is_dir() and not _holds_images(Path(src)):  # `upscale IN_DIR OUT_DIR`: the batch runner
        if Path(dst).suffix and not Path(dst).is_dir():
            raise UsageError(f"{src} is a folder of videos, so the output must be a folder too, not {dst}")
        run_batch_command(Path(src), Path(dst), quiet=quiet, **options)
        return
    with _TerminateAsInterrupt(), _WarningsToStderr(), \
            UpscaleProgress(Path(src).name, quiet=quiet, stream=err_console.file) as progress:
        res = upscale_video(src, dst, on_progress=progress, **options)
    _report_upscale(res, quiet)


@app.command("demo")
def demo_cmd(
    out_dir: str = typer.Option(
        "theris-demo", "--out-dir", "-o", help="Folder for the demo's input and output (created if missing)."
    ),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w",
        help="Registry name, .safetensors file or hf://owner/repo/file. Default: the default model.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (the paths are still printed)."),
) -> None:
    """Make a 3-second synthetic thermal clip and upscale it: the first command to try.

    Writes OUT_DIR/thermal_input.mkv (80x64, 9 fps, lossless) and OUT_DIR/thermal_upscaled.mp4 (320x256,
    18 fps, H.264), replacing those two files if an earlier demo left them, and says which weights did it.

    Example: theris demo --out-dir /tmp/theris-demo
    """
    from theris_cli.demo import run_demo
    from theris_cli.progress import UpscaleProgress

    with _TerminateAsInterrupt(), _WarningsToStderr(), \
            UpscaleProgress("demo", quiet=quiet, stream=err_console.file) as progress:
        demo = run_demo(out_dir, weights=weights, device=device, on_progress=progress)
    res = demo.upscale
    size_in, size_out = f"{res.size_in[0]}x{res.size_in[1]}", f"{res.size_out[0]}x{res.size_out[1]}"
    typer.echo(f"input:   {demo.input} ({size_in}, {res.frames_in} frames at {res.fps_in} fps, synthetic)")
    typer.echo(f"output:  {demo.output} ({size_out}, {res.frames_out} frames at {res.fps_out} fps)")
    trained = {
        True: "trained",
        False: "UNTRAINED: random weights, so the output is not a real upscale yet",
        None: "training unknown",
    }[res.weights_trained]
    typer.echo(f"weights: {res.weights} ({trained}) on {res.device}, {res.seconds:.1f} s")


# --- batch (BATCH) --------------------------------------------------------------------------------

def run_batch_command(in_dir: Path, out_dir: Path, *, quiet: bool = False, **options) -> None:
    """Run a batch with progress on stderr and the summary on stdout; BatchError if any file failed.

    `theris batch` and `theris upscale IN_DIR OUT_DIR` both end here; `options` are run_batch's.
    """
    from theris_cli.batch import run_batch
    from theris_cli.batch.display import make_display, warnings_to
    from theris_cli.batch.report import summary_line, summary_table
    from theris_cli.batch.runner import interrupt_on_sigterm

    display = make_display(err_console, quiet)
    try:
        with interrupt_on_sigterm(), warnings_to(err_console, quiet):  # SIGTERM: Slurm's time limit, scancel
            result = run_batch(in_dir, out_dir, listener=display, **options)
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
    from theris_cli.errors import BatchError, OutputError

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
        where = f"; details in {options['report']}" if options.get("report") and not result.report_errors else ""
        raise BatchError(f"{failed} of {len(result.files)} inputs failed{where}; fix or remove them and rerun (finished files are kept)")
    if report_is_the_error:
        raise OutputError(f"{result.report_errors[-1]} (every input is finished; the summary above is complete)")


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
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", help="Registry name (see `theris weights list`), a .safetensors file, or "
        "hf://owner/repo/file (optionally @revision); loaded once for the whole batch. Default: the default model.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto: the GPU if there is one)."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, fp16 or bf16 (auto: bf16/fp16 on CUDA, fp32 on the CPU)."),
    window: int = typer.Option(4, "--window", min=2, help="Input frames the model sees at once (k+1). Default: 4."),
    tile: Optional[int] = typer.Option(
        None, "--tile", min=16, help="Tile side in input pixels, for frames too large for memory. "
        "Default: whole frames on the CPU, chosen from free memory on CUDA.",
    ),
    temporal_factor: int = typer.Option(
        2, "--temporal-factor", min=1, help="Output frames per input frame (1: spatial only; 2: double the frame rate). Default: 2."
    ),
    codec: Optional[str] = typer.Option(None, "--codec", help="Video codec, e.g. ffv1, libx264, libx265. Default: from --ext."),
    crf: Optional[int] = typer.Option(None, "--crf", min=0, help="Quality for H.264/H.265 (lower is better). Default: the codec's visually lossless setting."),
    pix_fmt: Optional[str] = typer.Option(None, "--pix-fmt", help="Output pixel format, e.g. gray16le, yuv420p. Default: fits the input and codec."),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table; failed files are still listed."),
) -> None:
    """Upscale every video and image sequence under IN_DIR into the same tree under OUT_DIR.

    Unattended and resumable: a file is skipped when its output is finished and verified by its
    completion record (OUT_DIR/.theris/done/), so rerunning the same command after a crash or kill
    finishes the rest. A corrupt file is reported and skipped; the exit code is 1 if any failed.
    Several workers (processes, machines, Slurm array tasks) may share one OUT_DIR: a lock per
    file keeps them apart.

    Examples:

      theris batch survey/ survey_x4/

      theris batch survey/ survey_x4/ --include 'site1/**' --exclude '*calib*' --report report.json

      sbatch --array=0-7 --wrap "theris batch survey/ survey_x4/"   # 8 shards
    """
    run_batch_command(
        in_dir, out_dir, quiet=quiet, include=include, exclude=exclude, ext=ext, weights=weights, device=device,
        precision=precision, window=window, tile=tile, temporal_factor=temporal_factor, codec=codec, crf=crf,
        pix_fmt=pix_fmt, overwrite=overwrite, verify=verify, shard=shard, stale_after=stale_after, report=report,
    )


# --- evaluate (EVAL) ------------------------------------------------------------------------------
from theris_cli.weights.registry import available_models as _eval_models  # noqa: E402
from theris_cli.weights.registry import complete_weights as _eval_complete_weights  # noqa: E402


@app.command("evaluate")
def evaluate_cmd(
    clips: list[str] = typer.Argument(
        ..., metavar="CLIPS", show_default=False,
        help="Video files, image sequences, or folders of videos (each video in a folder is a clip).",
    ),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", autocompletion=_eval_complete_weights,
        help=f"Model scored as `theris`: a registry name ({', '.join(_eval_models())}), a .safetensors "
        "path or hf://owner/repo/file\\[@rev]. Default: the default model (see `theris weights list`).",
    ),
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
    device: str = typer.Option("auto", "--device", help="Device for the model: auto, cpu, cuda or cuda:N."),
    split: Optional[str] = typer.Option(
        None, "--split", help="Score the validation clips of this named split (e.g. v1), found by name under the "
        "CLIPS folders.",
    ),
) -> None:
    """Score THERIS against classical upscalers on clips: PSNR, SSIM, temporal consistency, motion.

    Each clip is mapped to [0, 1] by its own levels, cropped to multiples of 4, cut to an odd number
    of frames N; every other frame is shrunk x1/4 (antialiased bicubic) as the input, and each method
    predicts all N frames. Figures: over all frames, input-aligned frames (in) and interpolated frames
    (interp), per clip and averaged over clips; PSNR and SSIM over the moving pixels of the
    interpolated frames (move: where the truth differs from the mean of its two neighbours by more
    than 3 % of the range, dilated 2 px), with the masked pixel count.

    Example: theris evaluate clips/ --methods theris,bicubic,ffmpeg --json results.json

    Example: theris evaluate ../shared/data --split v1 --methods theris,bicubic
    """
    from theris_cli.eval.evaluate import check_methods, evaluate, render
    from theris_cli.outputs import atomic_output, check_destination

    names = check_methods([methods])  # before any decoding: a typo fails at once
    to_stdout = json_out == "-"
    if json_out and not to_stdout:
        check_destination(json_out, overwrite=True)
    console = Console(stderr=to_stdout, highlight=False)
    if not console.is_terminal:  # piped or redirected: keep the tables whole rather than 80 columns
        console.width = max(console.width, 132)
    with console.status("evaluating…") as status:
        ev = evaluate(
            clips, methods=names, weights=weights, max_frames=max_frames, device=device,
            on_progress=lambda msg: status.update(msg), split=split,
        )
    for renderable in render(ev):
        console.print(renderable)
    if ev.weights:
        console.print(f"theris = {ev.weights}")
    console.print(f"{len(ev.clips)} clip(s) in {ev.seconds:.1f} s")
    if to_stdout:
        typer.echo(ev.to_json())
    elif json_out:
        with atomic_output(json_out, overwrite=True) as tmp:
            tmp.write_text(ev.to_json() + "\n")
        console.print(f"wrote {json_out}")


# --- weights (WEIGHTS) ----------------------------------------------------------------------------
from theris_cli.weights.registry import available_models as _available_models  # noqa: E402
from theris_cli.weights.registry import complete_weights as _complete_weights  # noqa: E402

weights_app = typer.Typer(
    help="List, download, verify and locate model weights (the names --weights accepts).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(weights_app, name="weights")

_NAME_HELP = f"Registry name: one of {', '.join(_available_models())}."


def _size(n: Optional[int]) -> str:
    """Bytes in decimal units, as file managers show them."""
    if n is None:
        return "—"
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


@weights_app.command("list")
def weights_list_cmd() -> None:
    """Show every registered model: size, where it comes from, whether it is here, the default, SHA-256.

    Example: theris weights list
    """
    from rich.table import Table

    from theris_cli.weights.registry import DEFAULT_MODEL, default_model
    from theris_cli.weights.status import list_status

    console = Console()
    wide = console.width >= 140  # descriptions only where they fit beside the rest
    table = Table(title="theris weights", title_justify="left")
    for col in ("name", "size", "where", "here", "default", "sha256") + (("description",) if wide else ()):
        table.add_column(col, no_wrap=col in ("name", "sha256"), overflow="fold")
    for st in list_status():
        e = st.entry
        size = st.path.stat().st_size if st.path is not None else e.size
        sha = (e.sha256[:12] + "…") if e.sha256 else ("—" if e.source == "random" else "not recorded")
        row = [e.name, _size(size), e.where, st.local, f"[bold]{st.default}[/]" if st.default else "", sha]
        table.add_row(*row, *((e.description,) if wide else ()))
    console.print(table)
    if default_model() != DEFAULT_MODEL:
        console.print(
            f"[yellow]note:[/] {DEFAULT_MODEL} is not in this install, so the default is {default_model()}: "
            "random weights, the output is not a real upscale."
        )


@weights_app.command("download")
def weights_download_cmd(
    name: str = typer.Argument(..., metavar="NAME", help=_NAME_HELP, autocompletion=_complete_weights),
) -> None:
    """Download a model from the Hugging Face Hub into its cache (HF_HOME) and verify its SHA-256.

    Honours HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_ENDPOINT. Shipped and in-memory models need
    no download. Example: theris weights download theris-base
    """
    from theris_cli.weights.fetch import fetch_entry
    from theris_cli.weights.registry import get_entry

    entry = get_entry(name)
    if entry.source == "random":
        typer.echo(f"{name} is built in memory: nothing to download")
        return
    path = fetch_entry(entry)  # verified; shipped files are only checked
    verb = "ships with theris" if entry.source == "shipped" else "downloaded and verified"
    typer.echo(f"{name}: {verb}: {path}")


@weights_app.command("verify")
def weights_verify_cmd(
    name: Optional[str] = typer.Argument(
        None, metavar="NAME", help=f"{_NAME_HELP} Default: every registered model.", autocompletion=_complete_weights
    ),
) -> None:
    """Check local weight files against the registry's SHA-256 and that theris can read them.

    Exits non-zero when any check fails (for a named model, also when it cannot be checked).
    Example: theris weights verify ; theris weights verify theris-small
    """
    from theris_cli.weights.registry import REGISTRY, get_entry
    from theris_cli.weights.status import verify_entry

    entries = [get_entry(name)] if name is not None else list(REGISTRY.values())
    results = [verify_entry(e) for e in entries]
    marks = {"ok": "[green]ok[/]", "failed": "[bold red]FAILED[/]", "skipped": "[yellow]skipped[/]"}
    console = Console(highlight=False)
    for r in results:
        console.print(f"{marks[r.outcome]}  {r.name}: {r.message}", soft_wrap=True)
    bad = [r.name for r in results if r.outcome == "failed" or (name is not None and r.outcome != "ok")]
    if bad:
        from theris_cli.errors import WeightsError

        raise WeightsError(f"verification failed for {', '.join(bad)}: see the lines above")


@weights_app.command("path")
def weights_path_cmd(
    name: str = typer.Argument(..., metavar="NAME", help=_NAME_HELP, autocompletion=_complete_weights),
) -> None:
    """Print the local file of a model (shipped or in the Hub cache); never downloads.

    Example: cp "$(theris weights path theris-small)" .
    """
    from theris_cli.errors import WeightsError
    from theris_cli.weights.fetch import entry_local_path
    from theris_cli.weights.registry import get_entry

    entry = get_entry(name)
    if entry.source == "random":
        raise WeightsError(f"{name} is built in memory and has no file")
    path = entry_local_path(entry)
    if path is None:
        if entry.source == "hub" and entry.published:
            raise WeightsError(f"{name} is not downloaded: run `theris weights download {name}`")
        raise WeightsError(f"{name} has no file in this install ({entry.where}): see `theris weights list`")
    typer.echo(str(path))


# --- info (MODEL) ---------------------------------------------------------------------------------
@app.command("info")
def info_cmd() -> None:
    """Print versions, the device, and which scan backend is in use and why.

    Example: theris info ; THERIS_SCAN=reference theris info
    """
    import platform

    import torch

    from theris_cli.model.scan import backend_info, mamba_version

    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    try:
        name, reason = backend_info()
        backend = f"{name} ({reason})"
    except TherisError as e:  # THERIS_SCAN asks for what is not here: show it, it is why you ran info
        backend = f"unavailable: {e}"
    from theris_cli.weights import REGISTRY, default_model

    name = default_model()  # the fallback's name where the shipped file is missing, never a false claim
    weights = name if REGISTRY[name].trained else f"{name} (untrained: random weights)"
    rows = [
        ("theris", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("device", device),
        ("scan backend", backend),
        ("mamba-ssm", mamba_version() or "not installed"),
        ("default weights", weights),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")


# --- train (TRAIN) --------------------------------------------------------------------------------
_TRAIN_EPILOG = (
    "Examples:\n\n"
    "  theris train --preset small --data videos/ --steps 6000 --out runs/small\n\n"
    "  theris train --data ../shared/data --split v1 --minutes 20 --out runs/full   (held-out validation clips)\n\n"
    "  theris train --preset small --ablate spectral-mask --out runs/no-mask     (an ablation)\n\n"
    "  theris train --init theris-small --data my-camera/ --steps 300 --lr 1e-4 --out runs/mine   (fine-tune)\n\n"
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
    init: Optional[str] = typer.Option(
        None, "--init", autocompletion=_eval_complete_weights,
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
    frames: Optional[int] = typer.Option(None, "--frames", min=2, help="LR input frames k+1; 2k+1 HR frames out (default 4)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate, after warm-up; cosine decay to 5% (default 4e-4)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", min=0, help="Warm-up steps (default 100)."),
    tfm_lambda: Optional[float] = typer.Option(
        None, "--tfm-lambda", min=0.0, help="Weight of the TFM heat-equation loss (default 0.05; 0: the no-TFM ablation)."
    ),
    tfm_form: Optional[str] = typer.Option(
        None, "--tfm-form", help="fitted (D fitted to the truth per batch, residual gap, edge weight from the data; "
        "default) or learned (the paper's learnable D, as theris-small was trained).",
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
    and the inference contract inside) go to the run folder at intervals, at the end
    (final.safetensors) and on Ctrl-C (interrupted.safetensors); log.jsonl holds the losses and
    validation figures.
    """
    from theris_cli.train.report import TrainReporter
    from theris_cli.train.run import run_training

    def say(msg: str) -> None:
        err_console.print(msg, soft_wrap=True)

    with TrainReporter(stream=err_console.file) as reporter:
        res = run_training(
            preset=preset, config=config, init=init, resume=resume, data=data or (), exclude=exclude or (),
            val_data=val_data or (), split=split, out=out, checkpoint_every=checkpoint_every, max_frames=max_frames,
            device=device, amp=amp, threads=threads, ablate=ablate or (), on_message=reporter.message,
            on_skip=lambda path, why: reporter.message(f"skipped: {path} ({why})"),
            on_event=reporter, steps=steps, minutes=minutes, batch=batch, patch=patch, frames=frames, lr=lr,
            warmup=warmup, tfm_lambda=tfm_lambda, tfm_form=tfm_form, pixel_loss=pixel_loss,
            synthetic_ratio=synthetic_ratio, motion_p=motion, motion_crops=motion_crops, extras_p=extras, seed=seed,
            val_every=val_every,
        )
    if res.interrupted:
        global _interrupt_reported
        say(f"interrupted at step {res.step}; saved {res.checkpoint}; continue with: theris train --resume {res.checkpoint}")
        _interrupt_reported = True
        raise typer.Exit(130)
    say(f"done: {res.step} steps in {res.wall_time_s / 60:.1f} min; weights {res.checkpoint} "
        f"(use with --weights {res.checkpoint})")


def main() -> None:
    """Console entry point: run the app and turn every expected failure into one line and an exit code."""
    from theris_cli.hugepages import prefer_huge_pages

    prefer_huge_pages()  # before anything imports torch: fewer page faults on large frames
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
        rc = 130
    except typer.TyperException as e:  # usage errors: bad option, missing argument, ...
        e.show()
        sys.exit(getattr(e, "exit_code", 2))
    if rc == 130 and not _interrupt_reported:  # Typer turns Ctrl-C into a bare exit code 130
        err_console.print(
            "interrupted: the unfinished output was removed (finished files of a batch are kept; rerun to go on)",
            soft_wrap=True,
        )
    sys.exit(rc if isinstance(rc, int) else 0)
