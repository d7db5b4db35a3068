"""The model registry: every named set of weights, as data, in one place.

Each entry says which file holds the weights, its SHA-256 and size, the network config, and where
the file comes from:

- ``shipped``: inside the installed package (the repository's top-level ``weights/`` folder, packaged
  as ``theris_cli/_shipped_weights``), so it works on a fresh install with no network;
- ``hub``: a file on the Hugging Face Hub at a pinned commit, downloaded once into the Hub cache;
- ``random``: no file; the network is built in memory from a preset with a fixed seed.

To record a new shipped or published file, run ``python -m theris_cli.weights --hash FILE`` and
paste the fields it prints into ``_ENTRIES`` below (see weights/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from theris_cli.errors import WeightsError

Source = Literal["shipped", "hub", "random"]

# The name `load_model()` uses when none is given. Until its file is in the package, loading it
# falls back to FALLBACK_MODEL (see `default_model()`), loudly.
DEFAULT_MODEL = "theris-small"
FALLBACK_MODEL = "small-untrained"

@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    source: Source
    config: str | dict[str, Any]      # a preset name from theris_cli.model.PRESETS, or ModelConfig.to_dict()
    trained: bool                     # False: random weights, the output is not a real upscale
    filename: str | None = None       # shipped: name in weights/; hub: path inside the repository
    sha256: str | None = None         # lowercase hex of the whole file; None: not recorded yet
    size: int | None = None           # bytes
    license: str = "Apache-2.0"
    repo_id: str | None = None        # hub: "owner/name"; None: not published yet
    revision: str | None = None       # hub: the full 40-hex commit the file was uploaded in
    seed: int | None = None           # random: torch.manual_seed before building the network

    @property
    def published(self) -> bool:
        """A hub entry with a repository and a pinned commit (an unpublished one cannot be downloaded)."""
        return self.source == "hub" and self.repo_id is not None and self.revision is not None

    @property
    def where(self) -> str:
        """Where the weights come from, in words, for `theris weights list`."""
        if self.source == "shipped":
            return "ships with theris"
        if self.source == "random":
            return f"random init, seed {self.seed}"
        if not self.published:
            return "Hub: not published yet"
        return f"hf://{self.repo_id}/{self.filename}@{self.revision[:8]}"

    def model_config(self):
        """The registry's ModelConfig for this entry (files also carry their own in their metadata)."""
        from theris_cli.model import PRESETS, ModelConfig

        if isinstance(self.config, str):
            return PRESETS[self.config]
        return ModelConfig.from_dict(self.config)


_ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="theris-small",
        description="THERIS small, trained on thermal clips; the default, runs on a CPU",
        source="shipped",
        config={  # the small preset, the motion part with its matching (searching wider) and both still parts
            "in_channels": 1, "dim": 24, "enc_blocks": 1, "n_blocks": 1, "d_state": 16, "expand": 2, "headdim": 24,
            "ngroups": 1, "d_conv": 4, "chunk_size": 32, "hilbert_window": 8, "time_embed_dim": 32, "decay_bins": 8,
            "spectral_bins": 16, "dec_dim": 12, "dec_blocks": 1, "bidirectional": False, "use_spectral_mask": True,
            "use_thermal_prompt": True, "use_smb": True, "use_tmb": True, "use_hmb": True, "use_motion_align": True,
            "motion_dim": 24, "motion_radius": 4, "motion_search": 6, "use_still_blend": True, "use_still_detail": True,
        },
        trained=True,
        filename="theris-small.safetensors",
        sha256="dce38da3db2aff460dce47adc7eb61dd6e87ffc78163a9dfe9dc1efe1ab6bdf5",
        size=563072,
    ),
    ModelEntry(
        name="theris-small-sensor",
        description="theris-small trained on sensor noise, with a noise input: for native camera footage",
        source="shipped",
        config={  # theris-small's config with the noise input (network.NoiseFiLM)
            "in_channels": 1, "dim": 24, "enc_blocks": 1, "n_blocks": 1, "d_state": 16, "expand": 2, "headdim": 24,
            "ngroups": 1, "d_conv": 4, "chunk_size": 32, "hilbert_window": 8, "time_embed_dim": 32, "decay_bins": 8,
            "spectral_bins": 16, "dec_dim": 12, "dec_blocks": 1, "bidirectional": False, "use_spectral_mask": True,
            "use_thermal_prompt": True, "use_smb": True, "use_tmb": True, "use_hmb": True, "use_motion_align": True,
            "motion_dim": 24, "motion_radius": 4, "motion_search": 6, "use_still_blend": True, "use_still_detail": True,
            "use_noise_input": True,
        },
        trained=True,
        filename="theris-small-sensor.safetensors",
        sha256="495e5acc4d5d83359088a33da349096e87ac7932159c9f8774dce3df57ddb6f4",
        size=564328,
    ),
    ModelEntry(
        name="theris-base",
        description="THERIS base, a GPU model of a few million parameters",
        source="hub",
        config="base",
        trained=True,
        filename="theris-base.safetensors",
        repo_id=None,  # not published yet; publishing steps in weights/README.md
        revision=None,
    ),
    ModelEntry(
        name=FALLBACK_MODEL,
        description="UNTRAINED small network (random weights): the default's stand-in while theris-small is absent",
        source="random",
        config="small",
        trained=False,
        seed=0,
    ),
    ModelEntry(
        name="tiny-random",
        description="UNTRAINED tiny network (random weights) for tests: the whole CLI end to end in a second",
        source="random",
        config="tiny",
        trained=False,
        seed=0,
    ),
)

REGISTRY: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}


def available_models() -> list[str]:
    """Every registered name, in registry order (feeds CLI choices, completion and error messages)."""
    return list(REGISTRY)


def get_entry(name: str, *, files_too: bool = False) -> ModelEntry:
    """The entry for `name`, or a WeightsError listing the known names (and, with `files_too`, the
    other forms `--weights` accepts)."""
    try:
        return REGISTRY[name]
    except KeyError:
        other = ", or pass a .safetensors file or hf://owner/repo/file[@revision]" if files_too else ""
        raise WeightsError(f"unknown model {name!r}: choose one of {', '.join(available_models())}{other}") from None


def shipped_dir() -> Path:
    """The folder of shipped weights inside the installed package.

    In a wheel (and in a checkout, through the symlink theris_cli/_shipped_weights -> ../weights)
    it is ``theris_cli/_shipped_weights``; a checkout whose symlink became a plain file (Windows
    without symlink support) falls back to the repository's ``weights/`` folder.
    """
    package = Path(__file__).resolve().parents[1]
    inside = package / "_shipped_weights"
    if inside.is_dir():
        return inside
    return package.parent / "weights"


def shipped_path(entry: ModelEntry) -> Path:
    """Where a shipped entry's file is (or would be) in this install."""
    if entry.source != "shipped" or entry.filename is None:
        raise ValueError(f"{entry.name} is not a shipped entry")
    return shipped_dir() / entry.filename


def is_shipped_present(entry: ModelEntry) -> bool:
    return entry.source == "shipped" and shipped_path(entry).is_file()


def default_model() -> str:
    """The name DEFAULT_MODEL stands for in this install: itself when its file is in the package,
    otherwise FALLBACK_MODEL (random weights, labelled as such everywhere it is shown)."""
    entry = REGISTRY[DEFAULT_MODEL]
    if entry.source != "shipped" or is_shipped_present(entry):
        return DEFAULT_MODEL
    return FALLBACK_MODEL


# --- for the commands' --weights option ----------------------------------------------------------


def complete_weights(incomplete: str) -> list[str]:
    """Shell completion for a `--weights` option: registry names starting with what was typed."""
    return [n for n in available_models() if n.startswith(incomplete)]
