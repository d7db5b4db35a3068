"""What a training run computes: `TrainSettings` (frozen, saved in every checkpoint), the ablation
switches, and building settings from defaults <- a resumed checkpoint's <- explicit options.

    s = make_settings(PRESETS["small"], steps=6000, ablate=("tfm",))
    s.model          # the network with the ablated parts switched off
    s.tfm_on         # False: the "no TFM" ablation, whichever way it was asked for

Settings are never changed after they are made: code that needs other values makes new settings
with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theris_cli.engine.options import DEFAULT_WINDOW, MIN_WINDOW
from theris_cli.errors import TrainingError, UsageError
from theris_cli.model import ModelConfig
from theris_cli.train.degrade import SensorRanges

# --ablate names -> the model config fields they switch off; "tfm" switches off the TFM loss
ABLATIONS: dict[str, dict[str, Any]] = {
    "spectral-mask": {"use_spectral_mask": False},
    "thermal-prompt": {"use_thermal_prompt": False},
    "tfm": {},  # no model change: TrainSettings.tfm_on is False (the loss weight counts as 0)
    "smb": {"use_smb": False},
    "tmb": {"use_tmb": False},
    "hmb": {"use_hmb": False},
    "still-blend": {"use_still_blend": False},
    "still-detail": {"use_still_detail": False},
}
TFM_FORMS = ("fitted", "learned")  # train.loss: FittedTFMLoss (default), TFMLoss (the paper's form, as shipped before)


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides what a run computes (saved in every checkpoint)."""

    model: ModelConfig
    steps: int = 6000
    minutes: float = 0.0  # wall-clock budget of training (0: none); the schedule follows it too
    batch: int = 8
    patch: int = 32  # LR pixels (the HR crop is 4x)
    frames: int = DEFAULT_WINDOW  # k+1 LR input frames (2k+1 HR outputs): the window the weights are made for
    lr: float = 4e-4
    warmup: int = 100  # steps of linear warm-up
    min_lr_ratio: float = 0.05  # the cosine ends at this fraction of lr
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    pixel_loss: str = "charbonnier"  # or "l1"
    balance_samples: bool = False  # weigh each crop's pixel and temporal errors by 1 / bicubic + linear's (loss.balance_weights)
    tfm_lambda: float = 0.05
    tfm_form: str = "fitted"  # "fitted": D fitted to the truth, residual gap; "learned": the paper's form
    tfm_d_init: float = 0.15  # px^2 per output frame ("learned" form: D's start value)
    tfm_alpha: float = 20.0  # edge weight exp(-alpha |grad|^2) of the "learned" form
    tfm_edge_quantile: float = 0.9  # "fitted" form: a gradient at this quantile of the batch weighs 1/2
    temporal_lambda: float = 0.1  # weight of the temporal-difference loss (train.loss.temporal_difference)
    flow_teacher: float = 0.0  # weight of the motion-distillation loss against RIFE (train.loss.velocity_error)
    flow_teacher_every: int = 1  # that loss on every n-th step only (the teacher's forward is the cost)
    workers: int = 0  # processes building the batches ahead of the step (train.loader; 0: in the loop)
    synthetic_ratio: float = 0.5
    motion_p: float = 0.25  # fraction of synthetic clips with fast motion (synthetic.SceneConfig.fast_p)
    motion_crops: float = 0.5  # fraction of real crops chosen for their motion (dataset.RealSource)
    extras_p: float = 0.0
    sensor_p: float = 0.0  # fraction of clips whose LR input gets the sensor degradation (degrade.apply_sensor)
    # the ranges that degradation is drawn from (degrade.SensorRanges.to_dict), kept so that a resumed
    # run draws what it drew before whatever the defaults have become
    sensor_ranges: dict = field(default_factory=lambda: SensorRanges().to_dict())
    ema: float = 0.0  # decay per step of the weights' exponential moving average (0: none); checkpoints hold it
    seed: int = 0
    ablate: tuple[str, ...] = ()
    init: str | None = None  # weights the run started from (registry name, path or hf://), None: random
    checkpoint_steps: int = 500
    checkpoint_minutes: float = 10.0
    val_every: int = 100
    log_every: int = 10
    device: str = "cpu"
    amp: bool = False  # bf16 autocast (CUDA, or a CPU with bfloat16 instructions)
    data: dict = field(default_factory=dict)  # description of the data sources, for the metadata

    def __post_init__(self) -> None:
        object.__setattr__(self, "ablate", tuple(self.ablate))
        # the ablated parts are off in the network whether the caller switched them off or not
        object.__setattr__(self, "model", apply_ablations(self.model, self.ablate))

    @property
    def tfm_on(self) -> bool:
        """Whether the TFM loss is used: off for `tfm_lambda = 0` and for the "tfm" ablation."""
        return self.tfm_lambda > 0 and "tfm" not in self.ablate

    @property
    def hr_frames(self) -> int:
        return 2 * self.frames - 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["ablate"] = list(self.ablate)
        return d


def apply_ablations(model: ModelConfig, ablate: tuple[str, ...] | list[str]) -> ModelConfig:
    """The model config with the named parts switched off; raises UsageError on an unknown name."""
    changes: dict[str, Any] = {}
    for name in ablate:
        if name not in ABLATIONS:
            raise UsageError(f"unknown --ablate {name!r}; choose from {', '.join(ABLATIONS)}")
        changes.update(ABLATIONS[name])
    return dataclasses.replace(model, **changes)


def settings_from_checkpoint(path: str | Path) -> tuple[ModelConfig, dict]:
    """The network config and the saved training settings (a dict) of a training checkpoint."""
    from theris_cli.weights import inspect_checkpoint

    info = inspect_checkpoint(path)
    train_d = dict(info.metadata.get("train") or {})
    if info.metadata.get("kind") != "training" or not train_d:
        raise TrainingError(f"{path} was not written by `theris train` (no training state); start a new run instead")
    return info.config, train_d


# settings a checkpoint written before they existed ran with (its saved dict lacks them)
_LEGACY = {"tfm_form": "learned", "motion_p": 0.0, "motion_crops": 0.0, "temporal_lambda": 0.0,
           "sensor_ranges": {
               "temporal": [0.0, 0.012], "shot": [0.0, 0.006], "pixel": [0.0, 0.008], "pixel_gain": [0.0, 0.02],
               "column": [0.0, 0.010], "row": [0.0, 0.004], "drift": [0.0, 0.005], "flicker_gain": [0.0, 0.02],
               "flicker_offset": [0.0, 0.01], "blur_p": 0.3, "blur": [0.2, 0.8], "codec_p": 0.25, "crf": [18, 32],
               "bits_p": 0.7}}


def make_settings(model: ModelConfig, base: dict | None = None, **options: Any) -> TrainSettings:
    """TrainSettings from `base` (e.g. a checkpoint's saved settings) overridden by the options that
    are not None. Unknown keys raise UsageError; so do values out of range."""
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    merged = {k: v for k, v in (base or {}).items() if k in known and k != "model"}
    if base:
        merged = {**{k: v for k, v in _LEGACY.items() if k not in merged}, **merged}
    for k, v in options.items():
        if k not in known:
            raise UsageError(f"unknown training setting {k!r}")
        if v is not None:
            merged[k] = v
    if "ablate" in merged:
        merged["ablate"] = tuple(merged["ablate"])
    for name in merged.get("ablate", ()):
        if name not in ABLATIONS:
            raise UsageError(f"unknown --ablate {name!r} (choose from {', '.join(ABLATIONS)})")
    s = TrainSettings(model=model, **merged)
    check_settings(s)
    return s


def check_settings(s: TrainSettings) -> None:
    """UsageError naming every value out of range."""
    problems = []
    if s.steps < 1:
        problems.append(f"--steps must be >= 1 (got {s.steps})")
    if s.minutes < 0:
        problems.append(f"--minutes must be >= 0 (got {s.minutes})")
    if s.batch < 1:
        problems.append(f"--batch must be >= 1 (got {s.batch})")
    if s.patch < 4:
        problems.append(f"--patch must be >= 4 LR pixels (got {s.patch})")
    if s.frames < MIN_WINDOW:
        problems.append(f"--frames must be >= {MIN_WINDOW} (k+1 inputs; got {s.frames})")
    if not s.lr > 0:
        problems.append(f"--lr must be > 0 (got {s.lr})")
    if s.tfm_lambda < 0:
        problems.append(f"--tfm-lambda must be >= 0 (got {s.tfm_lambda})")
    if s.temporal_lambda < 0:
        problems.append(f"--temporal-lambda must be >= 0 (got {s.temporal_lambda})")
    if s.flow_teacher < 0:
        problems.append(f"--flow-teacher must be >= 0 (got {s.flow_teacher})")
    if s.flow_teacher_every < 1:
        problems.append(f"--flow-teacher-every must be >= 1 step (got {s.flow_teacher_every})")
    if s.workers < 0:
        problems.append(f"--workers must be >= 0 (got {s.workers})")
    if s.flow_teacher > 0 and not s.model.use_motion_align:
        problems.append("--flow-teacher teaches the motion alignment, which this network has not: add --motion-align")
    if s.tfm_form not in TFM_FORMS:
        problems.append(f"--tfm-form must be one of {', '.join(TFM_FORMS)} (got {s.tfm_form})")
    if not 0 < s.tfm_edge_quantile < 1:
        problems.append(f"tfm_edge_quantile must lie in (0, 1) (got {s.tfm_edge_quantile})")
    for name, v in (("--synthetic-ratio", s.synthetic_ratio), ("--extras", s.extras_p),
                    ("--motion", s.motion_p), ("--motion-crops", s.motion_crops), ("--sensor", s.sensor_p)):
        if not 0 <= v <= 1:
            problems.append(f"{name} must lie in [0, 1] (got {v})")
    if not 0 <= s.ema < 1:
        problems.append(f"--ema must lie in [0, 1) (got {s.ema})")
    try:
        SensorRanges.from_dict(s.sensor_ranges)
    except (TypeError, ValueError) as e:
        problems.append(f"sensor ranges: {e}")
    if s.pixel_loss not in ("charbonnier", "l1"):
        problems.append(f"--pixel-loss must be charbonnier or l1 (got {s.pixel_loss})")
    if problems:
        raise UsageError("; ".join(problems))


def parse_every(spec: str) -> tuple[int, float]:
    """'500' -> (500 steps, 0 min); '10m' -> (0, 10.0); '500,10m' -> both. 0 switches a trigger off."""
    steps, minutes = 0, 0.0
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if part.endswith("m"):
                minutes = float(part[:-1])
            else:
                steps = int(part)
        except ValueError:
            raise UsageError(f"--checkpoint-every {spec!r}: use steps (500), minutes (10m) or both (500,10m)") from None
    if steps < 0 or minutes < 0:
        raise UsageError(f"--checkpoint-every {spec!r} must not be negative")
    return steps, minutes
