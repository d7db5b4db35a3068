"""`theris evaluate`: the scores as tables (stdout, or stderr when the JSON goes to stdout) and JSON."""

from __future__ import annotations

from typing import Optional, Sequence

import typer
from rich.console import Console

from theris_cli.options import UpscaleOptions


def evaluate(clips: Sequence[str], methods: str, options: UpscaleOptions, *,
             max_frames: Optional[int] = None, json_out: Optional[str] = None) -> None:
    from theris_cli.eval.evaluate import check_methods, evaluate as run_evaluation, render
    from theris_cli.outputs import atomic_output, check_destination

    names = check_methods([methods])  # before any decoding: a typo fails at once
    to_stdout = json_out == "-"
    if json_out and not to_stdout:
        check_destination(json_out, overwrite=True)
    console = Console(stderr=to_stdout, highlight=False)
    if not console.is_terminal:  # piped or redirected: keep the tables whole rather than 80 columns
        console.width = max(console.width, 100)
    with console.status("evaluating…") as status:
        ev = run_evaluation(clips, methods=names, options=options, max_frames=max_frames,
                            on_progress=lambda msg: status.update(msg))
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
