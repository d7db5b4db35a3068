"""Batch processing: a folder of recordings upscaled into a mirrored folder, resumable and shardable.

    from theris_cli.batch import run_batch
    result = run_batch("survey/", "survey_x4/", weights="tiny-random")
    result.ok, result.count("failed")

Modules: discover (inputs and output names), shard (cluster split), claims (per-file locks),
records (completion records), paths (writes stay in OUT_DIR), runner (run_batch), report (JSON
report, summary table). Its progress display is the CLI's, in commands/batch_display.py.
"""

from theris_cli.batch.discover import Job, PathFilter, check_roots, discover
from theris_cli.batch.runner import OUTPUT_EXTENSIONS, BatchListener, BatchResult, FileResult, run_batch
from theris_cli.batch.shard import Shard, parse_shard, resolve_shard, shard_from_env
from theris_cli.video.inputs import FRAME_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = [
    "FRAME_EXTENSIONS", "VIDEO_EXTENSIONS", "OUTPUT_EXTENSIONS", "Job", "PathFilter", "check_roots", "discover",
    "BatchListener", "BatchResult", "FileResult", "run_batch", "Shard", "parse_shard", "resolve_shard", "shard_from_env",
]
