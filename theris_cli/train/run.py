"""`theris train` as a library call: settings from defaults <- a resumed checkpoint <- options, the
network (a preset, a config file, or the weights to fine-tune), the device, the data, the loop.

    result = run_training(TrainOptions(preset="small", data=("clips/",), split="v1", steps=6000, out="runs/small"))
    result = run_training(init="theris-small", data=["my-camera/"], steps=300, out="runs/mine")   # fields as keywords

`TrainOptions` is what the command was asked, built once by the CLI and passed down; `TrainSettings`
(train/settings.py) is what the run computes, made from the defaults, a resumed run's settings and
the options that were given.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from theris_cli.errors import UsageError
from theris_cli.train.loop import TrainResult, train
from theris_cli.train.settings import apply_ablations, make_settings, parse_every, settings_from_checkpoint


# TrainOptions fields that are TrainSettings fields of the same name: None takes the default, or the
# resumed run's value (the others are resolved here first: the network, the device, the data)
SETTING_OVERRIDES = (
    "steps", "minutes", "batch", "patch", "frames", "lr", "warmup", "tfm_lambda", "tfm_form", "temporal_lambda",
    "pixel_loss", "balance_samples", "flow_teacher", "synthetic_ratio", "motion_p", "motion_crops", "extras_p",
    "sensor_p", "ema", "seed", "val_every", "flow_teacher_every", "workers",
)


@dataclass(frozen=True)
class TrainOptions:
    """What `theris train` is asked (`theris train --help` for each option's meaning). None: the
    default, or with ``resume`` the resumed run's value."""

    # the network: one of preset, config, init (or resume's), changed by the rest
    preset: Optional[str] = None
    config: Optional[str | Path] = None  # a JSON file of ModelConfig fields
    init: Optional[str] = None  # weights to fine-tune: registry name, path or hf://...
    resume: Optional[str | Path] = None  # a run's checkpoint to continue
    ablate: tuple[str, ...] = ()
    motion_align: bool = False
    noise_input: bool = False
    add_blocks: int = 0
    motion_radius: Optional[int] = None
    motion_search: Optional[int] = None
    # the data
    data: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    val_data: tuple[str, ...] = ()
    split: Optional[str] = None
    max_frames: int = 1000  # frames kept in memory per real video
    # where and how it runs
    out: Optional[str | Path] = None
    checkpoint_every: Optional[str] = None  # "500", "10m" or "500,10m"
    device: str = "auto"
    amp: Optional[bool] = None
    threads: Optional[int] = None
    # TrainSettings fields (SETTING_OVERRIDES)
    steps: Optional[int] = None
    minutes: Optional[float] = None
    batch: Optional[int] = None
    patch: Optional[int] = None
    frames: Optional[int] = None
    lr: Optional[float] = None
    warmup: Optional[int] = None
    tfm_lambda: Optional[float] = None
    tfm_form: Optional[str] = None
    temporal_lambda: Optional[float] = None
    pixel_loss: Optional[str] = None
    balance_samples: Optional[bool] = None
    flow_teacher: Optional[float] = None
    synthetic_ratio: Optional[float] = None
    motion_p: Optional[float] = None
    motion_crops: Optional[float] = None
    extras_p: Optional[float] = None
    sensor_p: Optional[float] = None
    ema: Optional[float] = None
    seed: Optional[int] = None
    val_every: Optional[int] = None
    flow_teacher_every: Optional[int] = None
    workers: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("ablate", "data", "exclude", "val_data"):  # lists or None (an unset CLI list) -> tuples
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))

    @classmethod
    def of(cls, options: Optional["TrainOptions"] = None, **fields: Any) -> "TrainOptions":
        """``options`` with ``fields`` changed (either may be left out)."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UsageError(f"unknown training option {unknown[0]!r}")
        base = options if options is not None else cls()
        return dataclasses.replace(base, **fields) if fields else base

    def overrides(self) -> dict[str, Any]:
        """The TrainSettings values asked for (None: not asked)."""
        return {name: getattr(self, name) for name in SETTING_OVERRIDES}


def resolve_network(options: Optional[TrainOptions] = None, **fields: Any):
    """(model config, saved settings dict of a resumed run, initial state_dict or None, the names of
    the clips the initial weights were trained on) for ``options`` (or its fields as keywords).

    One of `preset`, `config` (a JSON file of ModelConfig fields), `init` (any weights `load_model`
    resolves: registry name, path, hf://...) names the network; `resume` takes the checkpoint's own.
    `motion_align` adds the motion-alignment part (model/motion.py) to that network; to weights
    trained without it, it is added at zero velocity, so training starts from exactly those weights.
    `add_blocks` (with `init` only) appends that many TSSMs to the weights' network; each starts as
    the identity (`train.loop.load_init_state`), so training again starts from exactly the weights.
    `motion_radius` (implies `motion_align`) gives the motion alignment a matching estimate of that
    reach (`ModelConfig.motion_radius`); its parts are new, and its estimate counts from the first step.
    `motion_search` sets how far that estimate looks (`ModelConfig.motion_search`; no weights).
    `noise_input` adds the noise input (`network.NoiseFiLM`), at gain 1 and offset 0 for weights
    trained without it.
    """
    from theris_cli.model import PRESETS, ModelConfig

    o = TrainOptions.of(options, **fields)
    preset, config, init, resume, ablate = o.preset, o.config, o.init, o.resume, o.ablate
    motion_align, add_blocks, motion_radius, motion_search = o.motion_align, o.add_blocks, o.motion_radius, o.motion_search
    if sum(x is not None for x in (preset, config, init)) > 1:
        raise UsageError("give one of --preset, --config and --init")
    if init is not None and resume is not None:
        raise UsageError("--init starts a new run from weights; --resume continues a run: give one of them")
    if add_blocks < 0:
        raise UsageError(f"--add-blocks must be >= 0, got {add_blocks}")
    if add_blocks and init is None:
        raise UsageError("--add-blocks grows the network of --init weights; for a new network give --config")
    model_cfg, base, init_state = None, {}, None
    init_clips: list[str] = []
    if resume is not None:
        model_cfg, base = settings_from_checkpoint(resume)
    if config is not None:
        try:
            asked = ModelConfig.from_dict(json.loads(Path(config).read_text()))
        except (ValueError, OSError) as e:
            raise UsageError(f"--config {config}: {e}") from None
    elif preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown --preset {preset!r}; choose from {', '.join(PRESETS)}")
        asked = PRESETS[preset]
    elif init is not None:
        from theris_cli.weights import load_model

        model = load_model(init, device="cpu")  # the registry's resolution: verified, cached, offline-aware
        if not model.weights_info.trained:
            raise UsageError(f"--init {init}: these are random weights; fine-tune trained weights, or train "
                             "from scratch with --preset")
        asked, init_state = model.config, {k: v.detach().clone() for k, v in model.state_dict().items()}
        _check_finite(init, init_state)
        init_clips.extend(_contract_clips(model))
        if ablate:
            raise UsageError("--init keeps the network of the weights; --ablate would change it")
        if add_blocks:
            asked = dataclasses.replace(asked, n_blocks=asked.n_blocks + add_blocks)
    else:
        asked = None
    if motion_radius is not None and motion_radius < 0:
        raise UsageError(f"--motion-radius must be >= 0, got {motion_radius}")
    if motion_align or motion_radius:
        asked = dataclasses.replace(asked or model_cfg or PRESETS["small"], use_motion_align=True)
    if o.noise_input:
        asked = dataclasses.replace(asked or model_cfg or PRESETS["small"], use_noise_input=True)
    if init_state is not None and asked.motion_radius and motion_radius not in (None, asked.motion_radius):
        raise UsageError(f"--init {init}: its matching has radius {asked.motion_radius}, and its cost-volume conv "
                         f"cannot change size; to look further, give --motion-search instead of --motion-radius")
    matching = {k: v for k, v in (("motion_radius", motion_radius), ("motion_search", motion_search)) if v is not None}
    if matching:  # set together: the search must be at least the radius
        try:
            asked = dataclasses.replace(asked or model_cfg or PRESETS["small"], **matching)
        except ValueError as e:
            raise UsageError(f"--motion-radius/--motion-search: {e}") from None
    if asked is not None or ablate or model_cfg is None:
        asked = apply_ablations(asked or (model_cfg if model_cfg is not None else PRESETS["small"]), ablate)
        if model_cfg is not None and asked != model_cfg:
            raise UsageError(f"{resume} holds a different network; resume without --preset/--config/--ablate")
        model_cfg = asked
    return model_cfg, base, init_state, init_clips


def _check_finite(init: str, state: dict) -> None:
    """Refuse weights with NaN or infinite values before any run folder exists: training from them
    gives a NaN loss at the first step, whatever the learning rate."""
    import torch

    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UsageError(f"--init {init}: {len(bad)} of its {len(state)} tensors hold NaN or infinite values "
                         f"(first: {bad[0]}); these weights are damaged: use other weights or train with --preset")


def _contract_clips(model) -> list[str]:
    """The training clip names recorded in the weights a model was loaded from (empty if none)."""
    from theris_cli.errors import WeightsError
    from theris_cli.weights import inspect_checkpoint
    from theris_cli.weights.checkpoint import contract_of

    path = getattr(getattr(model, "weights_info", None), "path", None)
    if path is None:
        return []
    try:
        contract = contract_of(inspect_checkpoint(path).metadata)
    except WeightsError:
        return []
    return list(contract["clips"]) if contract else []


def resolve_train_device(device: str = "auto") -> str:
    """auto -> cuda if there is one, else cpu; the same rules and messages as `theris upscale`."""
    from theris_cli.devices import resolve_device

    return str(resolve_device(device))


def run_training(
    options: Optional[TrainOptions] = None,
    *,
    on_message: Callable[[str], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
    **fields: Any,
) -> TrainResult:
    """Train (or continue, or fine-tune) as `theris train` does, with ``options`` (or its fields as
    keywords). Returns the loop's TrainResult."""
    import torch

    o = TrainOptions.of(options, **fields)
    say = on_message or (lambda msg: None)
    if o.threads:
        torch.set_num_threads(o.threads)
    model_cfg, base, init_state, init_clips = resolve_network(o)
    ck_steps = ck_minutes = None
    if o.checkpoint_every is not None:
        ck_steps, ck_minutes = parse_every(o.checkpoint_every)
    dev = resolve_train_device(o.device)
    if o.amp and not dev.startswith("cuda"):
        from theris_cli.devices import cpu_has_bf16

        if not cpu_has_bf16():
            raise UsageError("--amp trains in bfloat16, which this CPU has no instructions for (AVX512-BF16 or "
                             "AMX); train without --amp")
    settings = make_settings(
        model_cfg, base, ablate=o.ablate or None, init=o.init, checkpoint_steps=ck_steps,
        checkpoint_minutes=ck_minutes, device=dev, amp=(dev.startswith("cuda") if o.amp is None else o.amp),
        **o.overrides(),
    )
    preset, config, init, resume, split, out = o.preset, o.config, o.init, o.resume, o.split, o.out
    data, exclude, val_data, max_frames = o.data, o.exclude, o.val_data, o.max_frames
    saved = base.get("data", {}) if resume is not None else {}
    split = split if split is not None else saved.get("split")
    data_paths = list(data) if data else saved.get("paths", [])
    exclude_l = list(exclude) if exclude else saved.get("exclude", [])
    val_paths = list(val_data) if val_data else saved.get("val_paths", [])
    if split is not None:
        from theris_cli.splits import split_clips, training_exclusions

        if not data_paths:
            raise UsageError(f"--split {split} holds clips out of --data; give --data too")
        exclude_l = list(dict.fromkeys(exclude_l + training_exclusions(split)))
        if not val_paths:
            dirs = [p for p in data_paths if Path(p).is_dir()]
            val_paths = [str(p) for p in split_clips(split, dirs)]
    if out is None:
        name = preset or (Path(config).stem if config else None) or ("finetune" if init else "small")
        out = Path(resume).parent if resume is not None else Path("runs") / name
    out = Path(out)
    if resume is None and (out / "last.safetensors").exists():
        raise UsageError(f"{out} already holds a run; continue it with --resume {out / 'last.safetensors'}, "
                         "or choose another --out")
    teacher = None
    if settings.flow_teacher > 0:  # before the data loads: without RIFE's weights, one line and nothing written
        from theris_cli.train.rife import teacher as rife_teacher

        teacher = rife_teacher(dev)
    from theris_cli.train.data import build_data

    say("loading data…")
    settings, mixer, val = build_data(settings, data_paths, exclude_l, val_paths, max_frames=max_frames,
                                      on_skip=on_skip, split=split)
    if init_clips:
        settings = dataclasses.replace(settings, data={**settings.data, "init_clips": init_clips})
    desc = settings.data
    if desc["real"]:
        say("real clips: " + ", ".join(f"{c['name']} ({c['frames']} frames {c['width']}x{c['height']}, "
                                       f"{c['bit_depth']}-bit)" for c in desc["real"]))
    if desc["validation"]:
        say("held out for validation: " + ", ".join(c["name"] for c in desc["validation"]))
    say(f"synthetic share {settings.synthetic_ratio:.0%}; run folder {out}")
    return train(settings, mixer, out, val=val, resume=resume, on_event=on_event, init_state=init_state,
                 teacher=teacher)
