"""`load_model(spec)`: a registry name, a local checkpoint or an hf:// file -> a THERIS in eval mode."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from theris_cli.errors import WeightsError
from theris_cli.weights.checkpoint import load_checkpoint
from theris_cli.weights.fetch import download_hub_file, fetch_entry, parse_hf_spec, sha256_file
from theris_cli.weights.registry import (
    DEFAULT_MODEL,
    REGISTRY,
    default_model,
    get_entry,
)

log = logging.getLogger("theris.weights")  # under "theris": the CLI shows these as one-line warnings


@dataclass(frozen=True)
class WeightsInfo:
    """What a loaded model was built from; set as `model.weights_info` for reporting."""

    spec: str                  # what was asked for
    name: str                  # registry name, or the file name
    source: str                # "shipped" | "hub" | "random" | "file"
    path: Path | None          # the file read, None for in-memory models
    sha256: str | None
    trained: bool              # False: random weights, the output is not a real upscale

    def describe(self) -> str:
        label = self.name if self.trained else f"{self.name} (UNTRAINED: random weights)"
        return label + (f", sha256 {self.sha256[:12]}" if self.sha256 else "")


def _build(config, state_dict, device, label: str):
    from theris_cli.model import THERIS

    model = THERIS(config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise WeightsError(f"{label}: its tensors do not fit the network its config describes ({detail[:300]})") from None
    return model.to(device).eval()


def _build_random(entry, device):
    import torch

    from theris_cli.model import THERIS

    config = entry.model_config()
    # the same weights on every machine and run, without disturbing the caller's random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(entry.seed or 0)
        model = THERIS(config)
    return model.to(device).eval()


def _note_unverified(ck, path: Path) -> None:
    # registry files are checked against their recorded SHA-256 instead, so this is for the others
    if not ck.verified:
        log.warning("%s carries no digest of its tensor data (written by an older theris): loaded unverified", path)


def load_model(spec: str = DEFAULT_MODEL, device="cpu"):
    """A THERIS network in eval mode on `device`.

    spec: a registry name (`available_models()`), a local .safetensors checkpoint, or
    ``hf://owner/repo/path/file.safetensors[@revision]``. Registry files are verified against their
    recorded SHA-256 before they are read. While the default's file is not in the package, the default
    falls back to an untrained network and says so in a warning and in `model.weights_info`.
    """
    from theris_cli.devices import resolve_device

    dev = resolve_device(device)  # the same spellings and messages as --device everywhere
    spec = str(spec)

    if spec in REGISTRY:
        name = spec
        if spec == DEFAULT_MODEL and default_model() != DEFAULT_MODEL:
            name = default_model()
            log.warning(
                "%s is not in this install; using %s instead: RANDOM weights, the output is not a real upscale "
                "(see `theris weights list`)",
                DEFAULT_MODEL,
                name,
            )
        entry = get_entry(name)
        if entry.source == "random":
            model = _build_random(entry, dev)
            info = WeightsInfo(spec, entry.name, "random", None, None, entry.trained)
        else:
            path = fetch_entry(entry)  # verified
            ck = load_checkpoint(path)
            model = _build(ck.config, ck.state_dict, dev, entry.name)
            info = WeightsInfo(spec, entry.name, entry.source, path, entry.sha256, entry.trained)
    elif spec.startswith("hf://"):
        hf = parse_hf_spec(spec)
        path = download_hub_file(hf)  # no registry hash to check against: safetensors cannot run code
        ck = load_checkpoint(path)
        _note_unverified(ck, path)
        model = _build(ck.config, ck.state_dict, dev, spec)
        info = WeightsInfo(spec, Path(hf.filename).name, "hub", path, sha256_file(path), True)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            if any(sep in spec for sep in ("/", "\\")) or path.suffix:
                raise WeightsError(f"checkpoint {spec} does not exist: check the path")
            get_entry(spec, files_too=True)  # raises: unknown name, listing the known ones
        ck = load_checkpoint(path)
        _note_unverified(ck, path)
        model = _build(ck.config, ck.state_dict, dev, str(path))
        info = WeightsInfo(spec, path.name, "file", path, sha256_file(path), True)

    model.weights_info = info
    return model
