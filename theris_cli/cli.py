"""The `theris` command line. Parsing and reporting only: the work lives in the library."""

from __future__ import annotations

import sys
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
    try:
        from theris_cli.weights import DEFAULT_MODEL

        weights = DEFAULT_MODEL
    except Exception:  # noqa: BLE001 - the weights package is optional for this report
        weights = "(weights registry unavailable)"
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


def main() -> None:
    """Console entry point: run the app and turn every expected failure into one line and an exit code."""
    try:
        app(standalone_mode=False)
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
