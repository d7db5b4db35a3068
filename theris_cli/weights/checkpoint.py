"""theris checkpoints: safetensors files that describe themselves, written atomically, never unpickled.

Layout of a file (all safetensors metadata values are strings):

    metadata["format"]          "theris-checkpoint"
    metadata["format_version"]  "1"
    metadata["model_config"]    ModelConfig.to_dict() as JSON
    metadata["theris_version"]  the theris that wrote it
    metadata["metadata"]        the caller's dict as JSON (training info: steps, data, losses, ...;
                                "contract": what the weights were trained for, see below)
    metadata["tensor_sha256"]   SHA-256 of every tensor's name, dtype, shape and bytes (`tensor_digest`):
                                loading checks it, so a damaged or altered file is refused; a file
                                without one (written before theris wrote them) loads unverified
    tensors                     the model's state_dict, under its own names
    "__extra__.<name>"          extra tensors (e.g. optimizer state to resume training), kept out of
                                the state_dict
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theris_cli.errors import WeightsError

FORMAT = "theris-checkpoint"
FORMAT_VERSION = 1  # bump when the layout above changes; readers refuse newer versions
EXTRA_PREFIX = "__extra__."


@dataclass
class Checkpoint:
    config: Any                                   # theris_cli.model.ModelConfig
    state_dict: dict[str, Any]                    # name -> torch.Tensor, for THERIS(config).load_state_dict
    metadata: dict[str, Any]                      # the caller's metadata, as saved
    extra_tensors: dict[str, Any] = field(default_factory=dict)  # without the reserved prefix
    theris_version: str = ""                      # the theris that wrote the file
    format_version: int = FORMAT_VERSION
    verified: bool = True                         # False: the file carries no tensor digest to check


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's header says, read without loading any tensor."""

    config: Any
    metadata: dict[str, Any]
    theris_version: str
    format_version: int
    n_tensors: int  # model tensors
    n_extra: int    # extra tensors


# --- writing -----------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    model,
    metadata: dict | None = None,
    extra_tensors: dict | None = None,
) -> Path:
    """Write `model` (anything with `.config` and `.state_dict()`, i.e. a THERIS) to `path`.

    The file appears complete or not at all: it is written under a temporary name in the same
    folder and renamed into place. Returns the path.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise TypeError("save_checkpoint needs a model with a .config (a THERIS network)")
    return write_checkpoint(path, config, model.state_dict(), metadata, extra_tensors)


def write_checkpoint(path, config, state_dict: dict, metadata: dict | None = None, extra_tensors: dict | None = None) -> Path:
    """`save_checkpoint` from a config and a state_dict, without building the network."""
    import torch
    from safetensors.torch import save

    from theris_cli import __version__

    path = Path(path)
    try:
        metadata_json = json.dumps(metadata or {}, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {e}") from e

    tensors: dict[str, torch.Tensor] = {}
    for name, t in state_dict.items():
        if name.startswith(EXTRA_PREFIX):
            raise ValueError(f"state_dict key {name!r} uses the reserved prefix {EXTRA_PREFIX!r}")
        tensors[name] = _plain(t, name)
    for name, t in (extra_tensors or {}).items():
        tensors[EXTRA_PREFIX + name] = _plain(t, name)

    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(config.to_dict(), sort_keys=True),
        "theris_version": __version__,
        "metadata": metadata_json,
        "tensor_sha256": tensor_digest(tensors),
    }
    blob = save(tensors, metadata=header)

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:  # the usual permissions (umask), readable by the group like any output
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)
    except OSError as e:
        raise WeightsError(f"cannot write checkpoint {path}: {_write_failure(e)}") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path


def _write_failure(e: OSError) -> str:
    """What went wrong with a write, and what to do, in a few words."""
    reason = (e.strerror or str(e)).strip().rstrip(".")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{reason}; free some space or choose another folder"
    if e.errno == errno.EROFS:
        return "read-only file system; choose another folder"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{reason.lower()}; choose a folder you can write to"
    return f"{reason}; check the folder and free space"


def tensor_digest(tensors: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: what a checkpoint's
    header records and loading recomputes (independent of the file's layout)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _plain(t, name: str):
    """A CPU, contiguous tensor that owns its memory (safetensors refuses shared storage)."""
    import torch

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"checkpoint entry {name!r} must be a torch.Tensor, got {type(t).__name__}")
    return t.detach().to("cpu", copy=True).contiguous()


def pack_state(state: Any, prefix: str) -> tuple[dict[str, Any], Any]:
    """Split a nested state (an `optimizer.state_dict()`, a scheduler's, ...) into flat tensors and a
    JSON-able skeleton, so that it fits `extra_tensors` + `metadata`:

        tensors, skeleton = pack_state(opt.state_dict(), "optimizer")
        save_checkpoint(path, model, {"optimizer": skeleton}, tensors)
        ck = load_checkpoint(path)
        opt.load_state_dict(unpack_state(ck.extra_tensors, ck.metadata["optimizer"]))

    Dict keys keep their type (optimizer state is keyed by int), tuples stay tuples.
    """
    import torch

    tensors: dict[str, Any] = {}

    def walk(x, path: str):
        if isinstance(x, torch.Tensor):
            tensors[path] = x
            return {"__tensor__": path}
        if isinstance(x, dict):
            return {"__dict__": [[walk(k, f"{path}.k{i}"), walk(v, f"{path}.{i}")] for i, (k, v) in enumerate(x.items())]}
        if isinstance(x, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"pack_state: cannot store {type(x).__name__} at {path}")

    return tensors, walk(state, prefix)


def unpack_state(tensors: dict[str, Any], skeleton: Any) -> Any:
    """Inverse of `pack_state`."""
    def walk(x):
        if isinstance(x, dict):
            if "__tensor__" in x:
                return tensors[x["__tensor__"]]
            if "__tuple__" in x:
                return tuple(walk(v) for v in x["__tuple__"])
            return {walk(k): walk(v) for k, v in x["__dict__"]}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(skeleton)


# config fields of parts without weights: an export may set them (the file's weights stay valid)
WEIGHTLESS_FIELDS = ("use_still_blend", "use_still_detail", "motion_search")


def export_checkpoint(src, dst, changes: dict[str, bool | int] | None = None) -> Path:
    """Copy a checkpoint without its extra tensors (the file to ship: weights, config, metadata),
    and without the paths of this machine that training recorded to resume (clip names stay).

    changes: `WEIGHTLESS_FIELDS` to set in the copy's config (e.g. the still blend on for weights
    trained before it existed); the metadata records them under "config_changes"."""
    from theris_cli.model import ModelConfig

    ck = load_checkpoint(src)
    meta = dict(ck.metadata)
    config = ck.config
    if changes:
        unknown = sorted(set(changes) - set(WEIGHTLESS_FIELDS))
        if unknown:
            raise WeightsError(f"cannot set {', '.join(unknown)} on export: only {', '.join(WEIGHTLESS_FIELDS)} "
                               f"carry no weights")
        try:
            config = ModelConfig.from_dict({**config.to_dict(), **changes})
        except ValueError as e:
            raise WeightsError(f"cannot export {src} with {changes}: {e}") from None
        meta["config_changes"] = {**meta.get("config_changes", {}), **changes}
    return write_checkpoint(dst, config, ck.state_dict, _shippable(meta))


def _shippable(meta: dict) -> dict:
    """Training metadata without the paths of this machine that training recorded to resume (clip
    names stay), with the contract the training settings imply."""
    meta = dict(meta)
    if isinstance(meta.get("data"), dict):
        meta["data"] = {k: v for k, v in meta["data"].items() if k not in ("paths", "val_paths", "exclude")}
    if isinstance(meta.get("train"), dict) and isinstance(meta["train"].get("data"), dict):
        meta["train"] = {**meta["train"], "data": meta["data"]}
    contract = contract_of(meta)
    if contract is not None:
        meta["contract"] = contract
    return meta


def blend_checkpoints(base, tuned, dst, weight: float) -> Path:
    """Write the weights (1 - weight) * base + weight * tuned: a fine-tuned network (`tuned`) moved
    back part of the way to the network it was fine-tuned from (`base`), in its config and metadata
    (exported as `export_checkpoint` does), the blend recorded under "blend".

    Between the two, such a blend often keeps more of the base's skill than the fine-tune does while
    keeping most of what the fine-tune learned. Parts `tuned` has and `base` lacks (the noise input)
    count in `base` as their initial values, which must be zero: a part that starts at zero leaves
    the network's function as it is, so `base` in `tuned`'s config is the base network itself."""
    import torch

    from theris_cli.model import THERIS

    if not 0.0 <= weight <= 1.0:
        raise WeightsError(f"the blend's weight must lie in 0..1, got {weight}")
    a, b = load_checkpoint(base), load_checkpoint(tuned)
    with torch.random.fork_rng():  # the caller's random state is left as it was
        fresh = THERIS(b.config).state_dict()
    extra = sorted(set(a.state_dict) - set(b.state_dict))
    if extra:
        raise WeightsError(f"{base} has weights {tuned} lacks ({extra[0]}, ...): blend a network with one "
                           "fine-tuned from it")
    blended = {}
    for name, t in b.state_dict.items():
        if name in a.state_dict:
            s = a.state_dict[name]
        elif name in fresh and not fresh[name].any():
            s = torch.zeros_like(t)
        else:
            raise WeightsError(f"{base} lacks {name}, which does not start at zero: its network is not the "
                               f"base of {tuned}")
        if s.shape != t.shape or s.dtype != t.dtype:
            raise WeightsError(f"{name} is {tuple(s.shape)} {s.dtype} in {base}, {tuple(t.shape)} {t.dtype} in "
                               f"{tuned}: blend a network with one fine-tuned from it")
        if not t.is_floating_point():
            if not torch.equal(s, t):
                raise WeightsError(f"{name} differs between {base} and {tuned} and cannot be blended")
            blended[name] = t
        else:
            blended[name] = torch.lerp(s.float(), t.float(), weight).to(t.dtype)
    meta = _shippable(b.metadata)
    meta["blend"] = {"base": Path(base).name, "base_tensor_sha256": tensor_digest(a.state_dict),
                     "tuned_tensor_sha256": tensor_digest(b.state_dict), "weight": weight}
    return write_checkpoint(dst, b.config, blended, meta)


# --- reading -----------------------------------------------------------------------------------


def _open_header(path: Path) -> tuple[dict[str, str], list[str]]:
    """The safetensors metadata and tensor names of `path`, or a one-line WeightsError."""
    from safetensors import safe_open

    if not path.exists():
        raise WeightsError(f"checkpoint {path} does not exist: check the path, or pass a registry name")
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}), list(f.keys())
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError) on bad input
        hint = ""
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            hint = " (it looks like a pickled PyTorch file: theris never unpickles, for safety)"
        raise WeightsError(
            f"{path} is not a complete safetensors file{hint}: pass a checkpoint written by theris ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'unreadable header'})"
        ) from None


def _parse_header(path: Path, meta: dict[str, str]):
    """(config, caller metadata, theris version, format version) from a header, or WeightsError."""
    if meta.get("format") != FORMAT:
        raise WeightsError(
            f"{path} is a safetensors file but not a theris checkpoint (no '{FORMAT}' marker in its metadata): "
            "pass a file written by theris train or a registry name"
        )
    version_s = meta.get("theris_version", "unknown")
    try:
        fmt = int(meta.get("format_version", ""))
    except ValueError:
        raise WeightsError(f"{path}: bad format_version {meta.get('format_version')!r} in the checkpoint header") from None
    if fmt > FORMAT_VERSION:
        raise WeightsError(
            f"{path} was written by theris {version_s} in checkpoint format {fmt}; this theris reads up to "
            f"format {FORMAT_VERSION}: upgrade theris"
        )
    try:
        config_dict = json.loads(meta["model_config"])
        user_meta = json.loads(meta.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: the checkpoint header is damaged ({type(e).__name__}: {e})") from None

    from theris_cli.model import ModelConfig

    try:
        config = ModelConfig.from_dict(config_dict)
    except ValueError as e:
        raise WeightsError(
            f"{path} holds a network config this theris does not know ({e}); it was written by theris "
            f"{version_s}: use that version, or a checkpoint written by this one"
        ) from None
    return config, user_meta, version_s, fmt


def inspect_checkpoint(path) -> CheckpointInfo:
    """Check that `path` is a theris checkpoint with a known config, without loading its tensors."""
    path = Path(path)
    meta, keys = _open_header(path)
    config, user_meta, version_s, fmt = _parse_header(path, meta)
    n_extra = sum(k.startswith(EXTRA_PREFIX) for k in keys)
    return CheckpointInfo(config, user_meta, version_s, fmt, len(keys) - n_extra, n_extra)


def load_checkpoint(path) -> Checkpoint:
    """Read a theris checkpoint. Never unpickles: only safetensors tensors and JSON metadata."""
    from safetensors import safe_open

    path = Path(path)
    meta, _ = _open_header(path)
    config, user_meta, version_s, fmt = _parse_header(path, meta)
    tensors: dict[str, Any] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as e:
        raise WeightsError(f"{path}: cannot read its tensors ({type(e).__name__}: {e}); the file may be truncated") from None
    recorded = meta.get("tensor_sha256")
    if recorded is not None and tensor_digest(tensors) != recorded:
        raise WeightsError(f"{path}: its tensor data does not match the digest in its header (damaged or altered "
                           "since theris wrote it); re-copy the file or use another checkpoint")
    state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    extra = {k[len(EXTRA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    return Checkpoint(config, state, user_meta, extra, version_s, fmt, verified=recorded is not None)


# --- the inference contract ----------------------------------------------------------------------
#
# metadata["contract"] of a checkpoint written by `theris train`: what the weights were trained for.
#     {"window": k+1 LR frames a window holds,
#      "temporal_factors": [1, 2] (output times i/2 of an input interval: factors 1 and 2 ask only those),
#      "levels": how raw samples were mapped to [0, 1], "scale": 4,
#      "clips": names (never paths) of the real clips trained on}
# Checkpoints written before the contract existed have none; one with training settings gets the
# contract those imply (every `theris train` run trained factor 2 on windows of `train.frames`).

LEVELS = "per clip: 8-bit 0..255, 16-bit the clip's min..max -> [0, 1] (video.scan_levels)"
TRAINED_TIME_STEP = 2  # output frames per input interval in training (HR frames 0, 1, 2, ... of 2k+1)
_warned: set[tuple] = set()


def contract_for(window: int, clips: list[str] | tuple[str, ...] = ()) -> dict:
    """The contract of weights trained on windows of `window` LR frames, 2x in time."""
    return {
        "window": int(window),
        "temporal_factors": [f for f in range(1, TRAINED_TIME_STEP + 1) if TRAINED_TIME_STEP % f == 0],
        "levels": LEVELS,
        "scale": 4,
        "clips": [Path(c).name for c in clips],
    }


def contract_of(metadata: dict) -> dict | None:
    """A checkpoint's contract (explicit, or implied by its training settings); None if unknown."""
    c = metadata.get("contract")
    if isinstance(c, dict) and "window" in c:
        return c
    frames = (metadata.get("train") or {}).get("frames")
    if isinstance(frames, int):
        return contract_for(frames, [r.get("name", "") for r in (metadata.get("data") or {}).get("real", [])])
    return None


def contract_warning(model, window: int, temporal_factor: int) -> str | None:
    """One line when `window` / `temporal_factor` leave what the weights of `model` (as loaded by
    `load_model`, which sets `model.weights_info`) were trained for; None when inside, when the
    weights say nothing, or when this very warning was given before in this process."""
    info = getattr(model, "weights_info", None)
    path = getattr(info, "path", None)
    if path is None:
        return None
    try:
        contract = contract_of(inspect_checkpoint(path).metadata)
    except WeightsError:
        return None
    if contract is None:
        return None
    outside = []
    if window != contract["window"]:
        outside.append(f"--window {window} (trained: {contract['window']})")
    factors = contract.get("temporal_factors") or []
    if factors and temporal_factor not in factors:
        outside.append(f"--temporal-factor {temporal_factor} (trained: {', '.join(map(str, factors))})")
    if not outside:
        return None
    key = (str(path), window, temporal_factor)
    if key in _warned:
        return None
    _warned.add(key)
    return f"{getattr(info, 'name', path)} was not trained for {' and '.join(outside)}: expect lower quality"
