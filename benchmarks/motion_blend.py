"""How much a *right* velocity is worth to the in-between frames, without any network.

    python benchmarks/motion_blend.py ../shared/data --split v1 --max-frames 61

For each clip (the protocol of `theris evaluate`: every other HR frame shrunk x1/4 as the input),
scores two classical predictors on the same truth and the same motion mask:

- `bicubic`: bicubic x4 + the mean of the two neighbouring inputs (theris evaluate's baseline);
- `matched`: bicubic x4 + the two neighbouring inputs moved to the midpoint along a velocity found
  by symmetric block matching at LR (for each pixel the displacement d, |d| <= --radius LR pixels,
  that best matches input j sampled at x - d/2 with input j+1 at x + d/2 over a 5x5 box; a small
  penalty on |d| keeps flat regions still), blended with `model.motion.aligned_blend`, the function
  the network's motion-alignment part uses.

The gap on the moving pixels (PSNR move) is what the network's motion part could add to its
residual if its velocity were right; the network's own velocity head, trained end to end from zero,
stays near zero (docs/evaluation.md, "Ablations").
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from theris_cli.eval.evaluate import evaluate_frames, find_clips, load_clip
from theris_cli.model.motion import aligned_blend, warp
from theris_cli.protocol import SCALE, bicubic_linear

BOX = 5  # LR pixels: the window a displacement is judged over
STILL_PENALTY = 2e-4  # per LR pixel of |d|, in mean absolute grey units: ties go to "not moving"


def match_velocity(a: torch.Tensor, b: torch.Tensor, radius: int) -> torch.Tensor:
    """Symmetric block matching between frames a and b (1, 1, h, w): the displacement (dx, dy) per
    pixel of the midpoint frame, (1, 2, h, w), in LR pixels per input frame."""
    best = torch.full_like(a, float("inf"))
    v = a.new_zeros(1, 2, *a.shape[-2:])
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            d = a.new_tensor([dx, dy]).view(1, 2, 1, 1).expand_as(v)
            err = (warp(a, -0.5 * d) - warp(b, 0.5 * d)).abs()
            cost = F.avg_pool2d(err, BOX, stride=1, padding=BOX // 2, count_include_pad=False)
            cost = cost + STILL_PENALTY * (dx * dx + dy * dy) ** 0.5
            better = cost < best
            best = torch.where(better, cost, best)
            v = torch.where(better, d, v)
    return v


def matched_blend(radius: int):
    def predict(lr: torch.Tensor) -> torch.Tensor:  # (T, 1, h, w) -> (2T-1, 1, 4h, 4w)
        out = bicubic_linear(lr)
        for j in range(lr.shape[0] - 1):
            v = match_velocity(lr[j:j + 1], lr[j + 1:j + 2], radius)
            mid = aligned_blend(lr[None, j:j + 2], v[None], torch.tensor([0.5]))[0]  # (1, 1, h, w)
            out[2 * j + 1] = F.interpolate(mid, scale_factor=SCALE, mode="bicubic", align_corners=False)[0]
        return out
    return predict


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+", help="clips or folders, as for theris evaluate")
    ap.add_argument("--split", default=None, help="score this split's validation clips (e.g. v1)")
    ap.add_argument("--max-frames", type=int, default=61, help="first N HR frames of each clip (default 61)")
    ap.add_argument("--radius", type=int, default=6, help="largest displacement searched, LR pixels (default 6)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clips = find_clips(args.clips, args.split)
    print(f"# in-between frames: linear blend vs blend along block-matched velocity (radius {args.radius} LR px); "
          f"first {args.max_frames} HR frames")
    print(f"{'clip':40s} {'moving px':>10s} {'interp bicubic':>15s} {'interp matched':>15s} "
          f"{'move bicubic':>13s} {'move matched':>13s} {'gain move':>10s}")
    for path in clips:
        hr, _ = load_clip(path, args.max_frames)
        s = evaluate_frames(hr, {"bicubic": bicubic_linear, "matched": matched_blend(args.radius)})
        b, m = s["bicubic"], s["matched"]
        move_b = b.motion.psnr if b.motion.psnr is not None else float("nan")
        move_m = m.motion.psnr if m.motion.psnr is not None else float("nan")
        print(f"{path.name:40s} {b.motion.pixels:10d} {b.interpolated.psnr:15.2f} {m.interpolated.psnr:15.2f} "
              f"{move_b:13.2f} {move_m:13.2f} {move_m - move_b:+10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
