"""What `theris weights list` and `theris weights verify` report, as data (the CLI only renders it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from theris_cli.errors import WeightsError
from theris_cli.weights.checkpoint import inspect_checkpoint
from theris_cli.weights.fetch import entry_local_path, fetch_entry, verify_file
from theris_cli.weights.registry import (
    DEFAULT_MODEL,
    REGISTRY,
    ModelEntry,
    default_model,
    shipped_path,
)


@dataclass(frozen=True)
class EntryStatus:
    entry: ModelEntry
    local: str          # "in package", "missing", "not shipped yet", "cached", "not cached", "in memory"
    path: Path | None   # the local file, when there is one
    default: str        # "" | "default" | "default (absent)" | "fallback"


def entry_status(entry: ModelEntry) -> EntryStatus:
    """Where an entry stands on this machine; reads no file and touches no network."""
    path = entry_local_path(entry)
    if entry.source == "shipped":
        if path is not None:
            local = "in package"
        else:
            local = "missing" if entry.sha256 else "not shipped yet"
    elif entry.source == "hub":
        local = "cached" if path is not None else ("not cached" if entry.published else "—")
    else:
        local = "in memory"

    default = ""
    resolved = default_model()
    if entry.name == DEFAULT_MODEL:
        default = "default" if resolved == DEFAULT_MODEL else "default (absent)"
    elif entry.name == resolved:
        default = "fallback"  # what the default loads while its file is absent
    return EntryStatus(entry, local, path, default)


def list_status() -> list[EntryStatus]:
    return [entry_status(e) for e in REGISTRY.values()]


@dataclass(frozen=True)
class VerifyResult:
    name: str
    outcome: Literal["ok", "failed", "skipped"]
    message: str


def verify_entry(entry: ModelEntry, *, download: bool = False) -> VerifyResult:
    """Check an entry's local file: SHA-256 against the registry, and a header theris understands.

    Hub entries not in the cache are skipped unless `download` (then fetched first).
    """
    name = entry.name
    if entry.source == "random":
        return VerifyResult(name, "ok", "built in memory from a preset and a fixed seed: nothing to verify")
    try:
        if entry.source == "shipped":
            path = shipped_path(entry)
            if not path.is_file():
                if entry.sha256 is None:
                    return VerifyResult(name, "skipped", f"not shipped yet ({path.name} is produced by training)")
                return VerifyResult(name, "failed", f"{path} is missing from this install: reinstall theris")
            verify_file(path, entry.sha256, name, cached=False)
        else:
            if not entry.published:
                return VerifyResult(name, "skipped", "not published yet")
            path = entry_local_path(entry)
            if path is None:
                if not download:
                    return VerifyResult(name, "skipped", f"not downloaded: run `theris weights download {name}`")
                path = fetch_entry(entry)
            else:
                verify_file(path, entry.sha256, name, cached=True)
        info = inspect_checkpoint(path)
    except WeightsError as e:
        return VerifyResult(name, "failed", str(e))
    if info.config != entry.model_config():
        return VerifyResult(name, "failed", f"{path} holds a different network config than the registry entry ({entry.config!r})")
    return VerifyResult(name, "ok", f"sha256 {entry.sha256[:12]}… matches; theris checkpoint, written by theris {info.theris_version}")
