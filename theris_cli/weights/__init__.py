"""Pretrained weights: the registry, verified Hub downloads, and self-describing safetensors checkpoints.

    from theris_cli.weights import load_model, available_models, DEFAULT_MODEL
    model = load_model()                      # the default: ships with theris, no network
    model = load_model("tiny-random")         # built in memory, for tests
    model = load_model("runs/x/last.safetensors")
    model = load_model("hf://owner/repo/model.safetensors@<commit>")

    from theris_cli.weights import save_checkpoint, load_checkpoint, Checkpoint
    save_checkpoint(path, model, metadata={"step": 1000})
    ck = load_checkpoint(path)                # ck.config, ck.state_dict, ck.metadata, ck.extra_tensors

    # optimizer state to resume training: flat tensors + a JSON skeleton
    tensors, skeleton = pack_state(optimizer.state_dict(), "optimizer")
    save_checkpoint(path, model, {"optimizer": skeleton, "step": 1000}, tensors)
    optimizer.load_state_dict(unpack_state(ck.extra_tensors, ck.metadata["optimizer"]))
"""

from theris_cli.weights.checkpoint import (
    Checkpoint,
    CheckpointInfo,
    export_checkpoint,
    inspect_checkpoint,
    load_checkpoint,
    pack_state,
    save_checkpoint,
    unpack_state,
)
from theris_cli.weights.load import WeightsInfo, load_model
from theris_cli.weights.registry import (
    DEFAULT_MODEL,
    FALLBACK_MODEL,
    REGISTRY,
    ModelEntry,
    available_models,
    complete_weights,
    default_model,
    get_entry,
)

__all__ = [
    "DEFAULT_MODEL",
    "FALLBACK_MODEL",
    "REGISTRY",
    "Checkpoint",
    "CheckpointInfo",
    "ModelEntry",
    "WeightsInfo",
    "available_models",
    "complete_weights",
    "default_model",
    "export_checkpoint",
    "get_entry",
    "inspect_checkpoint",
    "load_checkpoint",
    "load_model",
    "pack_state",
    "save_checkpoint",
    "unpack_state",
]
