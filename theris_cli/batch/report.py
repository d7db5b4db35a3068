"""What a batch did: the JSON report (`--report`, and OUT_DIR/.theris/reports/) and the summary table."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from theris_cli.engine.events import EventCounts
from theris_cli.errors import OutputError
from theris_cli.humanize import duration, size

BatchResult = Any  # a runner.BatchResult; not imported, as runner imports this module

MAX_SKIPPED_ROWS = 20  # more already-done files than this fold into one row
_STYLE = {"done": "green", "skipped": "dim", "busy": "yellow", "failed": "bold red"}


def write_report(path: Path, result: BatchResult) -> None:
    """Write the report atomically (a reader never sees half a file); its folder must exist."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OutputError(f"cannot write the report {path}: {e.strerror or e}", errno=e.errno) from e


def events_text(events: dict | None) -> str:
    """A file's events as `theris upscale` says them ('1 shutter event, 3 repeated frames'; '' for none)."""
    return EventCounts(**events).summary() if events else ""


def summary_line(result: BatchResult) -> str:
    written = sum(f.output_bytes or 0 for f in result.files if f.status == "done")
    parts = [f"{result.count(s)} {s}" for s in ("done", "skipped", "busy", "failed")]
    took = duration((result.finished or result.started) - result.started)
    shard = f" (shard {result.shard})" if result.shard != "0/1" else ""
    with_events = sum(bool(events_text(f.events)) for f in result.files)
    events = f"; events in {with_events} file{'s' if with_events != 1 else ''}" if with_events else ""
    return f"{', '.join(parts)}{shard} in {took}, {size(written)} written{events}"


def summary_table(result: BatchResult) -> Table:
    """One row per file (already-done files folded into one row when there are many)."""
    table = Table(title="theris batch", title_justify="left", show_edge=False, pad_edge=False)
    for name, kw in [
        ("input", {"overflow": "fold"}),
        ("status", {}),
        ("time", {"justify": "right"}),
        ("frames", {"justify": "right"}),
        ("output size", {"justify": "right"}),
        ("events", {"overflow": "fold"}),
        ("reason", {"overflow": "fold"}),
    ]:
        table.add_column(name, **kw)
    skipped = [f for f in result.files if f.status == "skipped"]
    fold = len(skipped) > MAX_SKIPPED_ROWS
    for f in result.files:
        if fold and f.status == "skipped":
            continue
        table.add_row(
            f.input,
            Text(f.status, style=_STYLE.get(f.status, "")),
            duration(f.seconds) if f.status == "done" else "",
            str(f.frames_out) if f.frames_out is not None else "",
            size(f.output_bytes),
            events_text(f.events),
            f.reason,
        )
    if fold:
        total = sum(f.output_bytes or 0 for f in skipped)
        table.add_row(f"({len(skipped)} files)", Text("skipped", style="dim"), "", "", size(total), "", "already done")
    table.caption = summary_line(result)
    table.caption_justify = "left"
    return table
