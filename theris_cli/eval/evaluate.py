"""`theris evaluate`: score THERIS and classical baselines on clips, by the training protocol.

Protocol, per clip (the STVSR convention; the same degradation as training, `train/degrade.py`):

1. decode with `read_frames`, map to [0, 1] with the clip's own `scan_levels` (8-bit: 0..255,
   16-bit: the clip's min..max), so every clip is scored on its own data range;
2. crop H, W to multiples of 4 (top-left corner kept) and keep an odd number N = 2m+1 of HR frames
   (the first `max_frames`, minus the last one if that count is even);
3. LR input = `make_lr(HR)`: HR frames 0, 2, ..., 2m, antialiased bicubic ×1/4 (m+1 frames);
   with `degrade="sensor"` that input then gets a thermal sensor's noise (`theris_cli.sensor`,
   `EVAL_LEVELS`, relative to the LR clip's own min..max), drawn from a seed made from the clip's
   file name, so every run and every method sees the same LR frames; the truth stays clean;
4. every method predicts all N HR frames from the LR input; predictions are clamped to [0, 1];
5. PSNR and SSIM (`metrics.py`, grey channel, no border crop, data range 1) per frame, averaged over
   all frames, over input-aligned frames (even indices: an LR input exists at that time) and over
   interpolated frames (odd indices: new frames); temporal consistency over consecutive pairs;
6. motion figures: PSNR and SSIM over the moving pixels of the interpolated frames only, the mask
   made from the truth alone (`protocol.motion_mask`: |true - mean of its two neighbours| > 3 % of
   the range, dilated 2 px; the same pixels for every method), with its pixel count, so that a
   small mask is visible. Where a linear blend is right (static background) nothing is masked.

Figures averaged over clips are means of the per-clip figures (each clip counts once, whatever its
length). Methods: `theris` (a model through `infer.Upscaler`: windows of `DEFAULT_WINDOW` LR frames overlapping by two
(`windows.temporal_stride`), fp32), `bicubic` and `ffmpeg` (`baselines.py`).
`--split NAME` scores the validation clips of a named split (`theris_cli/splits.py`), found by
name under the folders given.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch

from theris_cli.errors import InputError, UsageError
from theris_cli.engine.options import UpscaleOptions
from theris_cli.eval import metrics
from theris_cli.eval.baselines import BASELINES, Predictor
from theris_cli.eval.results import ClipScore, Evaluation, MethodScore, Motion, Subset, mean_scores
from theris_cli.protocol import MOTION_DILATE, MOTION_THRESHOLD, SCALE, crop_to_multiple, make_lr, motion_mask

if TYPE_CHECKING:
    from theris_cli.sensor import SensorLevels

DEGRADATIONS = ("clean", "sensor")  # what the LR input gets after make_lr (--degrade)

METHODS = ("theris", "bicubic", "ffmpeg")  # every method `evaluate` knows, in table order
MIN_FRAMES = 3  # HR frames: 2 LR inputs and one frame between them
MIN_SIZE = 16  # HR pixels per side after cropping: 4 LR pixels, and frames above SSIM's 11-pixel window
EVAL_OPTIONS = UpscaleOptions(precision="fp32")  # theris as upscale runs it, in full precision everywhere

PROTOCOL = {
    "scale": SCALE,
    "temporal_factor": 2,
    "degradation": "make_lr: HR frames 0,2,4,... antialiased bicubic x1/4 (theris_cli.protocol)",
    "levels": "per clip: 8-bit 0..255, 16-bit the clip's min..max -> [0, 1]",
    "crop": "H, W to multiples of 4 (top-left kept); odd number of HR frames",
    "psnr": f"per frame on [0, 1], grey, no border crop, then averaged; exact match reported as {metrics.PSNR_CAP:g} dB",
    "ssim": f"pytorch_msssim.ssim, Gaussian window {metrics.SSIM_WINDOW}, sigma {metrics.SSIM_SIGMA}, data_range 1, per frame",
    "subsets": "all frames; aligned = even indices (an LR input exists); interpolated = odd indices",
    "tmae": "mean |(pred[t+1]-pred[t]) - (gt[t+1]-gt[t])| over consecutive frames, grey units",
    "motion": f"interpolated frames only; mask from the truth: |gt[2i+1] - (gt[2i] + gt[2i+2]) / 2| > "
              f"{MOTION_THRESHOLD:g} of the range, dilated {MOTION_DILATE} px; PSNR of the MSE pooled over the mask, "
              "SSIM map (same window as ssim) averaged over the mask 5 px from the border; null if the mask is empty",
    "clip_mean": "average of per-clip figures (motion: over the clips with a mask)",
}


def sensor_input(lr: torch.Tensor, clip_name: str, levels: SensorLevels | None = None) -> torch.Tensor:
    """The LR clip (T, 1, h, w) as a thermal sensor would give it: `levels` (a sensor.SensorLevels;
    default `sensor.EVAL_LEVELS`) in units of the clip's own min..max (mapped to [0, 1] and back, as
    an 8-bit AGC stretches it), seeded by `clip_name` (CRC-32 of the name), so the same clip always
    gets the same frames."""
    import zlib

    from theris_cli.sensor import EVAL_LEVELS, degrade

    lo, hi = float(lr.min()), float(lr.max())
    span = max(hi - lo, 1e-6)
    gen = torch.Generator().manual_seed(zlib.crc32(clip_name.encode("utf-8")))
    return (degrade((lr - lo) / span, levels or EVAL_LEVELS, gen) * span + lo).to(lr.dtype)


def protocol_for(degrade: str = "clean", sensor_levels: SensorLevels | None = None) -> dict:
    """PROTOCOL, with what the input got beyond make_lr."""
    if degrade == "clean":
        return dict(PROTOCOL)
    from theris_cli.sensor import EVAL_LEVELS

    chosen = sensor_levels or EVAL_LEVELS
    levels = {k: v for k, v in chosen.to_dict().items() if v and (k != "crf" or chosen.codec)}
    return {**PROTOCOL, "input": f"{degrade}: make_lr, then theris_cli.sensor.degrade {levels} in units of the LR "
                                 "clip's min..max, seeded by the clip's file name (CRC-32); the truth is clean"}


# ---------------------------------------------------------------------------------------------
# Scoring


def score(pred: torch.Tensor, gt: torch.Tensor, seconds: float = 0.0, mask: torch.Tensor | None = None) -> MethodScore:
    """Score predicted HR frames against the truth.  pred, gt: (N, 1, H, W), N odd >= 3.

    `pred` is clamped to [0, 1] here (a written video cannot leave its range). `mask`: the motion
    mask of the interpolated frames (N//2, 1, H, W), `motion_mask(gt)` when not given.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction has shape {tuple(pred.shape)}, the truth {tuple(gt.shape)}")
    pred = pred.detach().float().cpu().clamp(0.0, 1.0)
    p, s = metrics.psnr(pred, gt), metrics.ssim(pred, gt)
    subsets = {}
    for name, idx in (("all", slice(None)), ("aligned", slice(0, None, 2)), ("interpolated", slice(1, None, 2))):
        subsets[name] = Subset(psnr=metrics.mean(p[idx]), ssim=metrics.mean(s[idx]), frames=int(p[idx].numel()))
    if mask is None:
        mask = motion_mask(gt)
    ps, ss = metrics.masked_psnr(pred[1::2], gt[1::2], mask), metrics.masked_ssim(pred[1::2], gt[1::2], mask)
    motion = Motion(psnr=None if ps != ps else ps, ssim=None if ss != ss else ss, pixels=int(mask.sum()),
                    fraction=float(mask.float().mean()))  # x != x: NaN, an empty mask
    return MethodScore(
        **subsets, tmae=metrics.temporal_mae(pred, gt), tpsnr=metrics.temporal_psnr(pred, gt), seconds=seconds,
        motion=motion,
    )


def evaluate_frames(hr: torch.Tensor, predictors: Mapping[str, Predictor],
                    degrade: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, MethodScore]:
    """Run each predictor on `make_lr(hr)` (then `degrade` of it, if given) and score it against `hr`.

    hr: (N, 1, H, W) in [0, 1], N odd >= 3, H and W multiples of 4 and >= MIN_SIZE.
    """
    n, c, h, w = hr.shape
    if c != 1 or n < MIN_FRAMES or n % 2 == 0 or h % SCALE or w % SCALE or min(h, w) < MIN_SIZE:
        raise ValueError(
            f"evaluate_frames needs (N, 1, H, W) with N odd >= {MIN_FRAMES} and H, W multiples of {SCALE} "
            f">= {MIN_SIZE}, got {tuple(hr.shape)}"
        )
    lr = make_lr(hr)  # (m+1, 1, H/4, W/4)
    if degrade is not None:
        lr = degrade(lr)
    mask = motion_mask(hr)  # from the truth: the same pixels for every method
    out = {}
    for name, predict in predictors.items():
        t0 = time.perf_counter()
        with torch.inference_mode():
            pred = predict(lr)
        seconds = time.perf_counter() - t0
        if tuple(pred.shape) != tuple(hr.shape):
            raise RuntimeError(f"method {name} returned {tuple(pred.shape)} for HR frames {tuple(hr.shape)}")
        out[name] = score(pred, hr, seconds, mask)
    return out


# ---------------------------------------------------------------------------------------------
# Clips


def find_clips(paths: Sequence[str | Path], split: str | None = None) -> list[Path]:
    """The clips named by `paths`, in order: a file or an image pattern (frames/%05d.png) is one clip;
    a folder gives every video and numbered image sequence under it, by the same rules as
    `theris batch` (`video.inputs.find_inputs`). With `split`: that named split's validation clips,
    found by name under the folders `paths` (`theris_cli.splits`)."""
    from theris_cli.video.inputs import find_inputs

    if split is not None:
        from theris_cli.splits import split_clips

        return split_clips(split, paths)

    if not paths:
        raise UsageError("no clips given; pass video files or folders of videos")
    return find_inputs(paths, what="clip")


def load_clip(path: str | Path, max_frames: int | None = None):
    """The HR truth of a clip by the protocol: (N, 1, H, W) float32 in [0, 1], N odd, and its Levels.

    Raises InputError when the clip is too short (< MIN_FRAMES) or too small (< MIN_SIZE after cropping).
    """
    from theris_cli.video import read_frames, scan_levels

    if max_frames is not None and max_frames < MIN_FRAMES:
        raise UsageError(f"--max-frames must be at least {MIN_FRAMES}, got {max_frames}")
    levels = scan_levels(path)
    frames = []
    for raw in read_frames(path):
        if max_frames is not None and len(frames) >= max_frames:
            break
        frames.append(torch.from_numpy(levels.to_unit(raw)))
    if len(frames) < MIN_FRAMES:
        raise InputError(
            f"{path}: {len(frames)} frame(s); evaluation needs at least {MIN_FRAMES} (two inputs and one between)"
        )
    if len(frames) % 2 == 0:  # N = 2m+1: the last HR frame must be an LR input time
        frames.pop()
    h, w = frames[0].shape
    hh, ww = h - h % SCALE, w - w % SCALE
    if min(hh, ww) < MIN_SIZE:
        raise InputError(
            f"{path}: {w}x{h} pixels ({ww}x{hh} after cropping to multiples of {SCALE}); "
            f"evaluation needs at least {MIN_SIZE}x{MIN_SIZE}"
        )
    hr = crop_to_multiple(torch.stack(frames).unsqueeze(1), SCALE)  # (N, 1, H, W)
    return hr, levels


def check_methods(methods: Sequence[str]) -> list[str]:
    """Validate method names (comma lists allowed), drop repeats, keep the order given."""
    names: list[str] = []
    for item in methods:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in METHODS:
                raise UsageError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
            if name not in names:
                names.append(name)
    if not names:
        raise UsageError(f"no method given; choose from {', '.join(METHODS)}")
    return names


def theris_predictor(model: torch.nn.Module, options: UpscaleOptions = EVAL_OPTIONS) -> Predictor:
    """A model run as `theris upscale` runs it, with `options` (default: upscale's window, fp32, whole
    frames)."""
    from theris_cli.engine.infer import Upscaler

    if options.temporal_factor != 2:
        raise UsageError(f"the evaluation protocol doubles the frame rate; temporal_factor must be 2, not {options.temporal_factor}")
    up = Upscaler(model, options)

    def predict(lr: torch.Tensor) -> torch.Tensor:
        t = lr.shape[0]
        frames = list(up.process(f for f in lr))  # 2 outputs per input; the last repeats the last input
        return torch.stack(frames[: 2 * t - 1])

    return predict


# ---------------------------------------------------------------------------------------------
# The whole run


def evaluate(
    clips: Sequence[str | Path],
    methods: Sequence[str] | Mapping[str, Predictor] = METHODS,
    options: UpscaleOptions | None = None,
    max_frames: int | None = None,
    on_progress: Callable[[str], None] | None = None,
    split: str | None = None,
    degrade: str = "clean",
    sensor_levels: SensorLevels | None = None,
    **fields: Any,
) -> Evaluation:
    """Score `methods` on every clip (files, or folders of videos) by the protocol of this module.

    split: score the validation clips of this named split (`theris_cli.splits`), found by name
    under the folders `clips` instead.

    methods: names from METHODS, or a mapping name -> predictor ((T, 1, h, w) LR -> (2T-1, 1, 4h, 4w)).
    options (or its fields as keywords: weights, device, ...): how "theris" runs, EVAL_OPTIONS by
    default; options.weights is the model scored (registry name, local path, hf://...; None: the default).
    degrade: "clean" (the protocol) or "sensor" (the LR input with a sensor's noise, `sensor_input`).
    sensor_levels: with "sensor", that noise's strengths (a sensor.SensorLevels; default EVAL_LEVELS,
    what `theris evaluate --degrade sensor` uses).
    """
    if degrade not in DEGRADATIONS:
        raise UsageError(f"unknown --degrade {degrade!r}; choose from {', '.join(DEGRADATIONS)}")
    opts = UpscaleOptions.of(options if options is not None else EVAL_OPTIONS, **fields)
    weights = opts.weights
    t_start = time.perf_counter()
    say = on_progress or (lambda msg: None)
    paths = find_clips(clips, split)
    spec = None
    if isinstance(methods, Mapping):
        predictors = dict(methods)
    else:
        names = check_methods(methods)
        predictors = {}
        for name in names:
            if name == "theris":
                from theris_cli.devices import precision_name, resolve_device, resolve_precision
                from theris_cli.engine.prepare import load_network
                from theris_cli.weights import DEFAULT_MODEL

                dev = resolve_device(opts.device)
                say(f"loading model {weights or DEFAULT_MODEL} on {dev}")
                model = load_network(opts, dev).model  # as upscale loads it: non-finite weights refused
                info = getattr(model, "weights_info", None)  # what the spec resolved to, trained or not
                spec = info.describe() if info is not None else (weights or DEFAULT_MODEL)
                dtype = resolve_precision(opts.precision, dev)
                if dtype != torch.float32:  # the protocol's figures are fp32; say so when they are not
                    spec += f", in {precision_name(dtype)}"
                predictors[name] = theris_predictor(model, dataclasses.replace(opts, device=str(dev)))
            else:
                predictors[name] = BASELINES[name]

    results = []
    for i, path in enumerate(paths, 1):
        say(f"[{i}/{len(paths)}] {path}: decoding")
        hr, levels = load_clip(path, max_frames)
        n, _, h, w = hr.shape
        say(f"[{i}/{len(paths)}] {path}: {n} frames {w}x{h}, running {', '.join(predictors)}")
        noisy = (lambda lr, name=Path(path).name: sensor_input(lr, name, sensor_levels)) if degrade == "sensor" else None
        scores = evaluate_frames(hr, predictors, noisy)
        results.append(
            ClipScore(
                clip=str(path),
                bit_depth=levels.bit_depth,
                levels=(levels.lo, levels.hi),
                size=(h, w),
                frames=n,
                lr_frames=(n + 1) // 2,
                methods=scores,
            )
        )
        del hr
    mean = {m: mean_scores([c.methods[m] for c in results]) for m in predictors}
    return Evaluation(
        methods=list(predictors),
        weights=spec,
        clips=results,
        mean=mean,
        seconds=time.perf_counter() - t_start,
        protocol=protocol_for(degrade, sensor_levels),
        split=split,
    )
