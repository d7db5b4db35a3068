"""A thermal sensor's noise on real clips, in % of each clip's range: the table the training
degradation's ranges (`train.degrade.SensorRanges`) and `theris evaluate --degrade sensor`'s levels
(`sensor.EVAL_LEVELS`) are drawn from.

    python benchmarks/sensor_noise.py                     # every clip under ../shared/data
    python benchmarks/sensor_noise.py clips/ --frames 300

Per clip, on its first --frames frames mapped to [0, 1] as theris reads them (`scan_levels`), and
"range" = the 99.5th minus the 0.5th percentile of those values:

* temporal - the std of the per-frame noise: the robust std (`robust_std`: the central 95 %) of
  frame-to-frame differences, each difference less its own median (AGC steps), divided by sqrt(2).
  Frame pairs that are more than 90 % identical (a repeated frame) are left out.
* flicker - the std over frames of those medians: per-frame offset steps of the AGC.
* pixel - the fixed per-pixel non-uniformity: the robust std of the temporal mean less its Gaussian
  blur (sigma 1 px), with the part the temporal noise leaves in a mean of N frames (temporal^2 / N)
  taken out. Fine scene texture counts too, so this is an upper bound.
* column / row - the robust std of the column (row) means of the temporal mean, each less a running
  mean of 7 columns (rows): stripes of the readout. Scene structure along a whole column counts too.

Prints one line per clip and the median of each column over the clips.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


TRIM = 0.95  # share of values kept by robust_std, the closest to the median
TRIM_STD = 0.8712  # std of a unit Gaussian cut at its central 95 % (|z| <= 1.96)


def robust_std(x: torch.Tensor) -> float:
    """The std of the central 95 % of the values around their median, divided by that of a unit
    Gaussian cut the same way: a Gaussian's std, blind to a minority of outliers (moving pixels,
    edges) and, unlike the median absolute deviation, not zero on integer data with few levels."""
    x = x.flatten().double()
    dev = x - x.median()
    if x.numel() > 4_000_000:  # quantile's limit; a strided sample is as good
        dev = dev[:: x.numel() // 2_000_000]
    cut = torch.quantile(dev.abs(), TRIM)
    kept = dev[dev.abs() <= cut]
    return float(kept.pow(2).mean().sqrt() / TRIM_STD) if kept.numel() else 0.0


def running_mean(x: torch.Tensor, width: int = 7) -> torch.Tensor:
    """Running mean of a 1-D profile, replicate-padded."""
    pad = width // 2
    k = torch.ones(1, 1, width, dtype=x.dtype) / width
    return torch.nn.functional.conv1d(torch.nn.functional.pad(x.view(1, 1, -1), (pad, pad), mode="replicate"), k).flatten()


def measure(frames: torch.Tensor) -> dict[str, float]:
    """frames (N, H, W) float in [0, 1] -> the module docstring's figures, in % of the range."""
    from theris_cli.sensor import gaussian_blur

    x = frames.double()
    lo, hi = torch.quantile(x.flatten()[:: max(1, x.numel() // 2_000_000)], torch.tensor([0.005, 0.995], dtype=x.dtype))
    span = max(float(hi - lo), 1e-9)
    d = x[1:] - x[:-1]
    d = d[(d == 0).flatten(1).double().mean(1) <= 0.9]  # repeated frames carry no noise
    if d.shape[0] == 0:
        d = x[1:] - x[:-1]
    steps = d.flatten(1).median(dim=1).values  # per-frame offset change
    d = d - steps.view(-1, 1, 1)
    temporal = robust_std(d) / np.sqrt(2)
    n = x.shape[0]
    mean = x.mean(0)
    hp = mean - gaussian_blur(mean.float(), 1.0).double()
    pixel = np.sqrt(max(0.0, robust_std(hp) ** 2 - temporal ** 2 / n))
    cols, rows = mean.mean(0), mean.mean(1)
    column = robust_std(cols - running_mean(cols))
    row = robust_std(rows - running_mean(rows))
    return {k: 100 * v / span for k, v in (("temporal", temporal), ("flicker", float(steps.std())), ("pixel", pixel),
                                             ("column", column), ("row", row))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", default=[str(Path(__file__).resolve().parents[1].parent / "shared" / "data")],
                    help="clips or folders (default ../shared/data)")
    ap.add_argument("--frames", type=int, default=200, help="frames per clip, its first (default 200)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from clips import unit_frames
    from theris_cli.video.inputs import find_inputs

    clips = find_inputs(args.paths, what="clip")
    cols = ("temporal", "flicker", "pixel", "column", "row")
    print(f"{'clip':44s} {'frames':>6s} {'size':>9s} {'bits':>4s} " + " ".join(f"{c + ' %':>10s}" for c in cols))
    table = []
    for path in clips:
        got, levels = unit_frames(path, args.frames)
        if len(got) < 3:
            print(f"{Path(path).name:44s} skipped: {len(got)} frame(s)")
            continue
        f = torch.stack(got)
        m = measure(f)
        table.append(m)
        print(f"{Path(path).name[:44]:44s} {f.shape[0]:6d} {f.shape[2]:4d}x{f.shape[1]:<4d} {levels.bit_depth:4d} "
              + " ".join(f"{m[c]:10.3f}" for c in cols), flush=True)
    if table:
        print(f"{'median over ' + str(len(table)) + ' clips':44s} {'':6s} {'':9s} {'':4s} "
              + " ".join(f"{float(np.median([m[c] for m in table])):10.3f}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
