"""`theris weights list|download|verify|path`: the registry and the local files, as lines and a table."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from theris_cli.commands import args
from theris_cli.errors import WeightsError
from theris_cli.humanize import size

app = typer.Typer(
    help="List, download, verify and locate model weights (the names --weights accepts).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _list_models() -> None:
    """Every registered model: size, where it comes from, whether it is here, the default, SHA-256."""
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
        n = st.path.stat().st_size if st.path is not None else e.size
        sha = (e.sha256[:12] + "…") if e.sha256 else ("—" if e.source == "random" else "not recorded")
        row = [e.name, size(n) or "—", e.where, st.local, f"[bold]{st.default}[/]" if st.default else "", sha]
        table.add_row(*row, *((e.description,) if wide else ()))
    console.print(table)
    if default_model() != DEFAULT_MODEL:
        console.print(
            f"[yellow]note:[/] {DEFAULT_MODEL} is not in this install, so the default is {default_model()}: "
            "random weights, the output is not a real upscale."
        )


def _file_check(path) -> str:
    """Read a checkpoint whole (tensor digest checked where it has one): what `verify` says of a
    file the registry has no hash for."""
    from theris_cli.weights import load_checkpoint

    ck = load_checkpoint(path)
    return "tensor digest verified" if ck.verified else "readable (it carries no tensor digest to verify)"


def _download(name: str) -> None:
    from pathlib import Path

    from theris_cli.weights.fetch import download_hub_file, fetch_entry, parse_hf_spec
    from theris_cli.weights.registry import REGISTRY, get_entry

    if name.startswith("hf://"):  # pre-load an offline node's cache with what --weights hf://... will read
        path = download_hub_file(parse_hf_spec(name), label=name)
        typer.echo(f"{name}: downloaded, {_file_check(path)}: {path}")
        return
    if name not in REGISTRY and Path(name).expanduser().is_file():
        typer.echo(f"{name}: a local file, nothing to download; {_file_check(Path(name).expanduser())}")
        return
    entry = get_entry(name)
    if entry.source == "random":
        typer.echo(f"{name} is built in memory: nothing to download")
        return
    path = fetch_entry(entry)  # verified; shipped files are only checked
    verb = "ships with theris" if entry.source == "shipped" else "downloaded and verified"
    typer.echo(f"{name}: {verb}: {path}")


def _verify_file_spec(name: str) -> None:
    """`verify hf://...` (its cached copy; never downloads) or `verify PATH`: the file reads whole."""
    from pathlib import Path

    from theris_cli.weights.fetch import cached_hub_path, parse_hf_spec

    path = cached_hub_path(parse_hf_spec(name)) if name.startswith("hf://") else Path(name).expanduser()
    if path is None:
        raise WeightsError(f"{name} is not downloaded: run `theris weights download {name}`")
    Console(highlight=False).print(f"[green]ok[/]  {name}: {_file_check(path)}: {path}", soft_wrap=True)


def _verify(name: Optional[str]) -> None:
    """One line per model; WeightsError when any check fails (for a named model, also when skipped)."""
    from pathlib import Path

    from theris_cli.weights.registry import REGISTRY, get_entry
    from theris_cli.weights.status import verify_entry

    if name is not None and name not in REGISTRY and (name.startswith("hf://") or Path(name).expanduser().is_file()):
        _verify_file_spec(name)
        return
    entries = [get_entry(name)] if name is not None else list(REGISTRY.values())
    results = [verify_entry(e) for e in entries]
    marks = {"ok": "[green]ok[/]", "failed": "[bold red]FAILED[/]", "skipped": "[yellow]skipped[/]"}
    console = Console(highlight=False)
    for r in results:
        console.print(f"{marks[r.outcome]}  {r.name}: {r.message}", soft_wrap=True)
    bad = [r.name for r in results if r.outcome == "failed" or (name is not None and r.outcome != "ok")]
    if bad:
        raise WeightsError(f"verification failed for {', '.join(bad)}: see the lines above")


def _path(name: str) -> None:
    from theris_cli.weights.fetch import entry_local_path
    from theris_cli.weights.registry import get_entry

    entry = get_entry(name)
    if entry.source == "random":
        raise WeightsError(f"{name} is built in memory and has no file")
    local = entry_local_path(entry)
    if local is None:
        if entry.source == "hub" and entry.published:
            raise WeightsError(f"{name} is not downloaded: run `theris weights download {name}`")
        raise WeightsError(f"{name} has no file in this install ({entry.where}): see `theris weights list`")
    typer.echo(str(local))


# --- the commands ------------------------------------------------------------------------------
@app.command("list")
def weights_list_cmd() -> None:
    """Show every registered model: size, where it comes from, whether it is here, the default, SHA-256.

    Example: theris weights list
    """
    _list_models()


@app.command("download")
def weights_download_cmd(name: args.WeightsSpec) -> None:
    """Download a model from the Hugging Face Hub into its cache (HF_HOME) and verify it.

    NAME: a registry name (SHA-256 checked), or hf://owner/repo/file.safetensors[@revision] (the
    file's tensor digest checked), so that an offline node's cache holds what --weights will read.
    Honours HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_ENDPOINT. Shipped and in-memory models need
    no download. Example: theris weights download theris-base
    """
    _download(name)


@app.command("verify")
def weights_verify_cmd(name: args.OptionalModelName = None) -> None:
    """Check local weight files against the registry's SHA-256 and that theris can read them.

    NAME may also be a checkpoint path or an hf:// file (its cached copy): it is read whole and its
    tensor digest checked. Exits non-zero when any check fails (for a named model, also when it
    cannot be checked). Example: theris weights verify ; theris weights verify runs/mine/final.safetensors
    """
    _verify(name)


@app.command("path")
def weights_path_cmd(name: args.ModelName) -> None:
    """Print the local file of a model (shipped or in the Hub cache); never downloads.

    Example: cp "$(theris weights path theris-small)" .
    """
    _path(name)
