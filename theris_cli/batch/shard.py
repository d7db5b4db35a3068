"""Split one batch over many workers: `--shard INDEX/COUNT`, or a Slurm job array's environment.

Rule: an input belongs to shard `sha256(relative path) mod COUNT`. It depends on the input's own
path only, so every worker agrees even when files arrive in IN_DIR between two array tasks'
starts (a rule over positions in the sorted list would then shift, and could skip a file). The
price is that shards are balanced only on average; within a shard, and across workers started
without shards, the per-file locks share the work out.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping

from theris_cli.errors import UsageError


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int
    source: str = "--shard"  # where it came from, for the log and the report

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, rel_path: str) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.sha256(rel_path.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


ALL = Shard(0, 1, "none")


def parse_shard(text: str) -> Shard:
    """'INDEX/COUNT' with 0 <= INDEX < COUNT, e.g. '0/4' .. '3/4'."""
    try:
        index_s, count_s = text.split("/")
        index, count = int(index_s), int(count_s)
    except ValueError:
        index = count = -1
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text!r}: give INDEX/COUNT with 0 <= INDEX < COUNT, e.g. --shard 0/4")
    return Shard(index, count, "--shard")


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard of this Slurm array task, or None outside a job array.

    Slurm sets SLURM_ARRAY_TASK_ID with _MIN, _MAX, _COUNT and _STEP, so `--array=1-8` and
    `--array=0-15:2` both work (index = (ID - MIN) / STEP). An array given as a list (`--array=1,4,9`)
    has no arithmetic rule: pass --shard yourself there.
    """
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    try:
        task = int(env["SLURM_ARRAY_TASK_ID"])
        lo = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", 1)) or 1
        if "SLURM_ARRAY_TASK_COUNT" in env:
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        elif "SLURM_ARRAY_TASK_MAX" in env:
            count = (int(env["SLURM_ARRAY_TASK_MAX"]) - lo) // step + 1
        else:
            count = -1
    except ValueError:
        count = -1
    index, rem = divmod(task - lo, step) if count > 0 else (-1, 0)
    if count < 1 or rem or not 0 <= index < count:
        raise UsageError(
            "cannot tell this task's shard from the Slurm array variables "
            f"(SLURM_ARRAY_TASK_ID={env.get('SLURM_ARRAY_TASK_ID')}); pass --shard INDEX/COUNT explicitly"
        )
    return Shard(index, count, "slurm")


def resolve_shard(option: str | None, env: Mapping[str, str] | None = None) -> Shard:
    """An explicit --shard wins; else a Slurm array's; else everything (`--shard 0/1` forces that)."""
    if option:
        return parse_shard(option)
    return shard_from_env(env) or ALL
