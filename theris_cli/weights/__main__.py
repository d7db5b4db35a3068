"""Maintainer tools for the weights registry (see weights/README.md).

    python -m theris_cli.weights --hash weights/theris-small.safetensors
    python -m theris_cli.weights --export runs/x/best.safetensors weights/theris-small.safetensors
    python -m theris_cli.weights --export runs/x/best.safetensors weights/theris-small.safetensors \
        --set use_still_blend=true --set use_still_detail=true --set motion_search=6
    python -m theris_cli.weights --blend weights/theris-small.safetensors runs/x/best.safetensors OUT.safetensors \
        --weight 0.7
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from theris_cli.errors import WeightsError


def _describe_config(config_dict: dict[str, Any]) -> str:
    """A preset's name as a Python string literal when the config is a preset, else the dict."""
    from theris_cli.model import PRESETS

    for preset, cfg in PRESETS.items():
        if cfg.to_dict() == config_dict:
            return json.dumps(preset)
    return repr(config_dict)


def hash_command(path: Path) -> int:
    """Check that `path` is a theris checkpoint and print the registry fields that describe it."""
    from theris_cli.weights.checkpoint import inspect_checkpoint
    from theris_cli.weights.fetch import sha256_file

    info = inspect_checkpoint(path)  # refuses anything that is not a theris checkpoint
    digest = sha256_file(path)
    size = path.stat().st_size
    config = _describe_config(info.config.to_dict())
    print(f"file:     {path}")
    print(f"theris:   {info.theris_version} (format {info.format_version}), {info.n_tensors} tensors")
    print(f"config:   {config}")
    if info.n_extra:
        print(
            f"warning:  {info.n_extra} extra tensors (optimizer state?) make the file larger than needed; ship a "
            f"copy without them: python -m theris_cli.weights --export {path} OUT.safetensors",
            file=sys.stderr,
        )
    print("\nfields for its entry in theris_cli/weights/registry.py:")
    print(f'        filename="{path.name}",')
    print(f"        config={config},")
    print(f'        sha256="{digest}",')
    print(f"        size={size},")
    return 0


def parse_changes(items: list[str]) -> dict[str, bool | int]:
    """NAME=true|false|INTEGER items -> {NAME: value}; a WeightsError names a malformed one."""
    changes: dict[str, bool | int] = {}
    for item in items:
        name, _, value = item.partition("=")
        if value.lower() in ("true", "false"):
            changes[name] = value.lower() == "true"
        elif value.isdigit():
            changes[name] = int(value)
        else:
            raise WeightsError(f"--set {item!r}: expected NAME=true, NAME=false or NAME=INTEGER")
    return changes


def export_command(src: Path, dst: Path, changes: dict[str, bool | int] | None = None) -> int:
    """Copy a training checkpoint without its extra tensors, then print its registry fields."""
    from theris_cli.weights.checkpoint import export_checkpoint

    export_checkpoint(src, dst, changes)
    changed = "".join(f", {k} set to {v}" for k, v in (changes or {}).items())
    print(f"wrote {dst}: the weights, config and metadata of {src}, without extra tensors{changed}\n")
    return hash_command(dst)


def blend_command(base: Path, tuned: Path, dst: Path, weight: float) -> int:
    """Blend a fine-tune with the network it started from, then print the result's registry fields."""
    from theris_cli.weights.checkpoint import blend_checkpoints

    blend_checkpoints(base, tuned, dst, weight)
    print(f"wrote {dst}: {1 - weight:g} x {base} + {weight:g} x {tuned}, in the config and metadata of {tuned}\n")
    return hash_command(dst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m theris_cli.weights", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--hash", type=Path, metavar="FILE", help="check a checkpoint and print its registry fields")
    group.add_argument(
        "--export", type=Path, nargs=2, metavar=("SRC", "DST"),
        help="copy a training checkpoint without its extra tensors (optimizer state), then print its fields",
    )
    group.add_argument(
        "--blend", type=Path, nargs=3, metavar=("BASE", "TUNED", "DST"),
        help="write (1 - w) x BASE + w x TUNED (w: --weight), TUNED a fine-tune of BASE, then print its fields",
    )
    parser.add_argument("--weight", type=float, metavar="W", help="with --blend: the fine-tune's share, 0..1")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="with --export: set a config field of a part without weights (use_still_blend, use_still_detail, "
        "motion_search); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        if args.set and args.export is None:
            raise WeightsError("--set goes with --export")
        if (args.weight is None) != (args.blend is None):
            raise WeightsError("--blend needs --weight, and --weight goes with --blend")
        if args.hash is not None:
            return hash_command(args.hash)
        if args.blend is not None:
            return blend_command(*args.blend, args.weight)
        return export_command(*args.export, parse_changes(args.set))
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
