"""How much theris raises the sensor's noise on native footage, against bicubic + linear.

    python benchmarks/noise_amplification.py                          # the Lepton clips in ../shared/data/ir
    python benchmarks/noise_amplification.py clip.mkv --weights runs/x/last.safetensors --frames 40

The clips are upscaled as they are (x4 in space, x2 in time; no ground truth): the first --frames
frames of each, mapped to [0, 1] by the clip's levels, go through theris (`theris upscale`'s
windows, fp32) and through bicubic x4 + linear blend in time (`protocol.bicubic_linear`).

Flat regions - where the scene gives an upscaler nothing to sharpen, so any high-frequency energy in
its output is noise it made or kept: LR pixels (not within 2 px of the border) whose gradient magnitude in the clip's temporal mean
(Gaussian-smoothed, sigma 1 px) is below that clip's 30th percentile and whose smoothed value, each
frame less its median (the AGC's offset), varies over the frames used with a std below 1 % of the
clip's range (its 99.5th minus 0.5th percentile), scaled to the output's 4x4 pixels.

Measures, each the mean over the flat pixels of every output frame:

* spatial ("pixel to pixel") - the energy of out - G(out), G a Gaussian blur of sigma 2 output
  pixels: detail finer than half an input pixel, where a grid or checker pattern lives;
* temporal ("frame to frame") - the energy of out[t+1] - out[t], each difference less its median
  over the flat pixels (the AGC's per-frame offset steps, which both methods pass on alike). The
  two output pairs on either side of a splice or a flat-field correction (`engine/events.py`, the
  detector `theris upscale` uses) are left out for both methods: the whole frame's pattern changes
  there, which is the recording's content, not noise (`--keep-events` keeps them).

Printed per clip: both energies of each method (in 1e-6, grey levels on [0, 1] squared) and their ratio
theris / bicubic + linear in dB (10 log10): above 0 dB theris amplifies the noise more than the
classical upscaler, below it theris smooths it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

FLAT_QUANTILE = 0.30  # LR pixels below this quantile of the gradient magnitude are flat candidates
STILL = 0.01  # of the clip's range: the smoothed value's temporal std below which a pixel is still


def flat_mask(lr: torch.Tensor) -> torch.Tensor:
    """(T, 1, h, w) in [0, 1] -> bool (h, w): flat and still LR pixels (module docstring)."""
    from theris_cli.sensor import gaussian_blur

    x = lr[:, 0].float()
    span = float(torch.quantile(x.flatten()[:: max(1, x.numel() // 1_000_000)], 0.995)
                 - torch.quantile(x.flatten()[:: max(1, x.numel() // 1_000_000)], 0.005))
    smooth = gaussian_blur(x, 1.0)  # (T, h, w)
    mean = smooth.mean(0)
    gy, gx = torch.zeros_like(mean), torch.zeros_like(mean)
    gy[1:-1] = (mean[2:] - mean[:-2]) / 2
    gx[:, 1:-1] = (mean[:, 2:] - mean[:, :-2]) / 2
    grad = (gx ** 2 + gy ** 2).sqrt()
    flat = grad <= torch.quantile(grad.flatten(), FLAT_QUANTILE)
    offset_free = smooth - smooth.flatten(1).median(dim=1).values.view(-1, 1, 1)
    flat &= offset_free.std(0) < STILL * max(span, 1e-6)
    flat[:2], flat[-2:], flat[:, :2], flat[:, -2:] = False, False, False, False
    return flat


def break_pairs(lr: torch.Tensor) -> list[int]:
    """Indices t of the output pairs (t, t+1) that span a splice or shutter event of the LR clip
    (T, 1, h, w) in [0, 1]: for a break before LR frame b, the pairs 2b-2 and 2b-1."""
    import numpy as np

    from theris_cli.engine.events import EventDetector

    det = EventDetector()
    for frame in lr[:, 0]:
        det.observe(np.round(frame.numpy() * 65535).astype(np.uint16))
    breaks = sorted(det.counts.splices + det.counts.shutters)
    return [t for b in breaks for t in (2 * b - 2, 2 * b - 1)]


def energies(out: torch.Tensor, mask_hr: torch.Tensor, skip: list[int] = ()) -> tuple[float, float]:
    """(spatial, temporal) high-frequency energy of output frames (N, 1, H, W) over mask_hr (H, W),
    the temporal one without the pairs (t, t+1) whose t is in `skip`."""
    from theris_cli.sensor import gaussian_blur

    y = out[:, 0].float().clamp(0, 1)
    hp = y - gaussian_blur(y, 2.0)
    spatial = float((hp[:, mask_hr] ** 2).mean())
    d = (y[1:] - y[:-1])[:, mask_hr]
    d = d - d.median(dim=1, keepdim=True).values
    keep = torch.ones(d.shape[0], dtype=torch.bool)
    keep[[t for t in skip if 0 <= t < d.shape[0]]] = False
    temporal = float((d[keep] ** 2).mean())
    return spatial, temporal


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ir"
    ap.add_argument("paths", nargs="*", help="clips (default: lepton_* under ../shared/data/ir)")
    ap.add_argument("--weights", default=None, help="theris weights (default: the default model)")
    ap.add_argument("--frames", type=int, default=40, help="LR frames per clip, its first (default 40)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-events", action="store_true",
                    help="keep the output pairs that span a splice or shutter event in the temporal measure")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from theris_cli.eval.evaluate import theris_predictor
    from theris_cli.protocol import SCALE, bicubic_linear, crop_to_multiple
    from clips import unit_frames
    from theris_cli.weights import DEFAULT_MODEL, load_model

    paths = [Path(p) for p in args.paths] or sorted(root.glob("lepton_*"))
    if not paths:
        print(f"no clips: give some, or put the Lepton clips in {root}", file=sys.stderr)
        return 1
    model = load_model(args.weights or DEFAULT_MODEL, device="cpu")
    info = getattr(model, "weights_info", None)
    theris = theris_predictor(model)
    print(f"theris = {info.describe() if info is not None else args.weights or DEFAULT_MODEL}")
    print(f"flat: LR gradient below its {FLAT_QUANTILE:.0%} quantile and still within {STILL:.0%}; "
          "energies in 1e-6 (grey on [0, 1], squared); ratio theris / bicubic+linear")
    print(f"{'clip':32s} {'flat %':>6s} | {'spatial: theris':>15s} {'bicubic':>8s} {'dB':>6s} | "
          f"{'temporal: theris':>16s} {'bicubic':>8s} {'dB':>6s}")
    worst = (-math.inf, -math.inf)
    for path in paths:
        frames, levels = unit_frames(path, args.frames)
        lr = crop_to_multiple(torch.stack(frames).unsqueeze(1).float(), 1)  # (T, 1, h, w): native, not shrunk
        mask = flat_mask(lr)
        if not mask.any():
            print(f"{path.name[:32]:32s} no flat still pixels")
            continue
        mask_hr = mask.repeat_interleave(SCALE, 0).repeat_interleave(SCALE, 1)
        skip = [] if args.keep_events else break_pairs(lr)
        with torch.inference_mode():
            e_t = energies(theris(lr), mask_hr, skip)
            e_b = energies(bicubic_linear(lr), mask_hr, skip)
        db = [10 * math.log10(max(a, 1e-30) / max(b, 1e-30)) for a, b in zip(e_t, e_b)]
        worst = (max(worst[0], db[0]), max(worst[1], db[1]))
        print(f"{path.name[:32]:32s} {100 * float(mask.float().mean()):6.1f} | {1e6 * e_t[0]:15.3f} "
              f"{1e6 * e_b[0]:8.3f} {db[0]:+6.2f} | {1e6 * e_t[1]:16.3f} {1e6 * e_b[1]:8.3f} {db[1]:+6.2f}"
              + (f"  ({len(skip)} pairs at events left out)" if skip else ""), flush=True)
    print(f"largest ratio: spatial {worst[0]:+.2f} dB, temporal {worst[1]:+.2f} dB (0 dB or less: no more "
          "amplification than bicubic + linear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
