"""The `theris` command line: the app, its commands and the one-line errors. Parsing only.

Each command lives in `commands/` beside what it prints: its options (the shared ones declared once
in `commands/args.py`), one call into the library, and the report. `main()` maps every TherisError
to one line and its exit code; tracebacks only with --debug.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.text import Text

from theris_cli import __version__
from theris_cli.commands import console, evaluate, info, preview, train, upscale, weights
from theris_cli.commands.console import err_console
from theris_cli.errors import TherisError

app = typer.Typer(
    name="theris",
    help="Upscale thermal (infrared) video 4x in space and 2x in time, with heat-conduction priors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_debug = False
_debug_after_command = False  # --debug given after the subcommand (main() takes it out of the arguments)


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
    _debug = debug or _debug_after_command


# In the order `theris --help` lists them: the work, looking first, scoring, training, the weights.
app.command("upscale", epilog=upscale.UPSCALE_EPILOG)(upscale.upscale_cmd)
app.command("batch")(upscale.batch_cmd)
app.command("preview")(preview.preview_cmd)
app.command("demo")(preview.demo_cmd)
app.command("evaluate")(evaluate.evaluate_cmd)
app.command("train", epilog=train.TRAIN_EPILOG)(train.train_cmd)
app.add_typer(weights.app, name="weights")
app.command("info")(info.info_cmd)


def interrupt_message() -> str:
    """What Ctrl-C left: the unfinished output removed (only where there was one), finished batch files kept."""
    from theris_cli.outputs import removed_on_interrupt

    said = (f"the unfinished output {removed_on_interrupt[-1]} was removed" if removed_on_interrupt
            else "no output had been started")
    if console.batch_running:
        said += "; finished files of the batch are kept, rerun the same command to go on"
    return f"interrupted: {said}"


def main() -> None:
    """Console entry point: run the app and turn every expected failure into one line and an exit code."""
    from theris_cli.engine.hugepages import prefer_huge_pages

    prefer_huge_pages()  # before anything imports torch: fewer page faults on large frames
    global _debug_after_command
    args = sys.argv[1:]
    _debug_after_command = "--debug" in args[: args.index("--") if "--" in args else len(args)]
    if _debug_after_command:  # anywhere before "--": Typer knows it only before the command
        args.remove("--debug")
    try:
        # without standalone mode, a command's `typer.Exit(n)` comes back as the return value n
        rc = app(args=args, standalone_mode=False)
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
    if rc == 130 and not console.interrupt_reported:  # Typer turns Ctrl-C into a bare exit code 130
        err_console.print(interrupt_message(), soft_wrap=True)
    sys.exit(rc if isinstance(rc, int) else 0)
