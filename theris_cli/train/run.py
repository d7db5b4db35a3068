"""`theris train` as a library call: settings from defaults <- a resumed checkpoint <- options, the
network (a preset, a config file, or the weights to fine-tune), the device, the data, the loop.

    result = run_training(preset="small", data=["clips/"], split="v1", steps=6000, out="runs/small")
    result = run_training(init="theris-small", data=["my-camera/"], steps=300, out="runs/mine")
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from theris_cli.errors import UsageError
from theris_cli.train.loop import TrainResult, train
from theris_cli.train.settings import apply_ablations, make_settings, parse_every, settings_from_checkpoint


def resolve_network(preset: str | None = None, config: str | Path | None = None, init: str | None = None,
                    resume: str | Path | None = None, ablate: Sequence[str] = (), motion_align: bool = False,
                    add_blocks: int = 0, motion_radius: int | None = None, motion_search: int | None = None):
    """(model config, saved settings dict of a resumed run, initial state_dict or None, the names of
    the clips the initial weights were trained on).

    One of `preset`, `config` (a JSON file of ModelConfig fields), `init` (any weights `load_model`
    resolves: registry name, path, hf://...) names the network; `resume` takes the checkpoint's own.
    `motion_align` adds the motion-alignment part (model/motion.py) to that network; to weights
    trained without it, it is added at zero velocity, so training starts from exactly those weights.
    `add_blocks` (with `init` only) appends that many TSSMs to the weights' network; each starts as
    the identity (`train.loop.load_init_state`), so training again starts from exactly the weights.
    `motion_radius` (implies `motion_align`) gives the motion alignment a matching estimate of that
    reach (`ModelConfig.motion_radius`); its parts are new, and its estimate counts from the first step.
    `motion_search` sets how far that estimate looks (`ModelConfig.motion_search`; no weights).
    """
    from theris_cli.model import PRESETS, ModelConfig

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
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    init: str | None = None,
    resume: str | Path | None = None,
    data: Sequence[str] = (),
    exclude: Sequence[str] = (),
    val_data: Sequence[str] = (),
    split: str | None = None,
    out: str | Path | None = None,
    checkpoint_every: str | None = None,
    max_frames: int = 1000,
    device: str = "auto",
    amp: bool | None = None,
    threads: int | None = None,
    ablate: Sequence[str] = (),
    motion_align: bool = False,
    add_blocks: int = 0,
    motion_radius: int | None = None,
    motion_search: int | None = None,
    on_message: Callable[[str], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train (or continue, or fine-tune) as `theris train` does; `options` are TrainSettings fields
    (None: the default, or the resumed run's value). Returns the loop's TrainResult."""
    import torch

    say = on_message or (lambda msg: None)
    if threads:
        torch.set_num_threads(threads)
    model_cfg, base, init_state, init_clips = resolve_network(preset, config, init, resume, tuple(ablate), motion_align,
                                                                add_blocks, motion_radius, motion_search)
    ck_steps = ck_minutes = None
    if checkpoint_every is not None:
        ck_steps, ck_minutes = parse_every(checkpoint_every)
    dev = resolve_train_device(device)
    if amp and not dev.startswith("cuda"):
        from theris_cli.devices import cpu_has_bf16

        if not cpu_has_bf16():
            raise UsageError("--amp trains in bfloat16, which this CPU has no instructions for (AVX512-BF16 or "
                             "AMX); train without --amp")
    settings = make_settings(
        model_cfg, base, ablate=tuple(ablate) if ablate else None, init=init, checkpoint_steps=ck_steps,
        checkpoint_minutes=ck_minutes, device=dev, amp=(dev.startswith("cuda") if amp is None else amp), **options,
    )
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
