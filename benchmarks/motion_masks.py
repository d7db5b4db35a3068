"""Is the motion mask marking motion, or noise? The motion figure under two masks.

    python benchmarks/motion_masks.py ../shared/data --split v1

`theris evaluate`'s motion mask (`protocol.motion_mask`) marks the pixels of each in-between truth
frame that differ from the mean of its two neighbours by more than 3 % of the range, dilated by
2 px. On a noisy 8-bit clip single pixels pass that threshold on noise, and the dilation spreads
them over most of the frame. Per clip this prints that difference's median (noise: % of the
range) and the motion figure (PSNR of the MSE pooled over the mask, interpolated frames only) of
theris, bicubic + linear and, where the `bench` extra is installed, bicubic + RIFE (as in
`bench_peers.py`) under two masks: evaluate's, and the same rule applied to the truth
averaged over a --box x --box window first, which keeps a moving edge and lowers pixel noise by
about the box side. Where the two masks tell different stories, the first one is measuring noise.

With RIFE installed it also runs theris with RIFE's motion in place of its own (column "th+rv"):
the same weights, nothing retrained, with the velocities of the motion alignment
(`theris_cli.model.motion`) taken from RIFE's flows to the middle time (`theris_cli.train.rife.velocities`)
instead of its velocity head. The gap between "theris" and "th+rv" is what a better motion
estimate alone is worth to the network as trained. The last group of columns is the PSNR of the
interpolated frames over all their pixels. `--per-frame` breaks evaluate's figure down by
in-between frame.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from bench_peers import bicubic_x4, cascade, rife_interpolator  # beside this script
from theris_cli.eval import metrics
from theris_cli.eval.evaluate import EVAL_OPTIONS, find_clips, load_clip, theris_predictor
from theris_cli.engine.options import UpscaleOptions
from theris_cli.protocol import bicubic_linear, make_lr, midpoint_residual, motion_mask
from theris_cli.weights.load import load_model


def with_velocities_from(model, velocities):
    """``model`` with its motion alignment's velocity head replaced by ``velocities`` (x (B, T, 1,
    h, w) -> (B, T-1, 2, h, w)), on this instance only."""
    if model.motion is None:
        raise SystemExit("these weights have no motion alignment to give velocities to")
    model.motion.velocities = lambda x, feats: velocities(x)
    return model


def smoothed_mask(hr: torch.Tensor, box: int) -> torch.Tensor:
    """`motion_mask` of the truth box-averaged over box x box pixels (box odd)."""
    return motion_mask(F.avg_pool2d(hr.float(), box, stride=1, padding=box // 2, count_include_pad=False))


def per_frame(hr: torch.Tensor, preds: dict[str, torch.Tensor]) -> str:
    """Lines of figures per in-between frame: each method's squared error over evaluate's mask as a
    multiple of the blend's (below 1: better than blending), the frame's share of the blend's error,
    and the true frame's mean minus its neighbours' (per mille of the range: a level jump no
    interpolator can know)."""
    mask, truth = motion_mask(hr), hr[1::2]
    def sse(p: torch.Tensor) -> torch.Tensor:
        return ((p[1::2] - truth) ** 2 * mask).flatten(1).sum(1)
    blend = sse(preds["blend"])
    jump = (truth - 0.5 * (hr[0:-2:2] + hr[2::2])).flatten(1).mean(1)
    rows = [f"  {'frame':>12s} " + " ".join(f"{i:>6d}" for i in range(len(truth))),
            f"  {'share %':>12s} " + " ".join(f"{100 * float(b / blend.sum()):6.1f}" for b in blend),
            f"  {'level jump ‰':>12s} " + " ".join(f"{1000 * float(j):+6.1f}" for j in jump)]
    for name, p in preds.items():
        if name != "blend":
            rows.append(f"  {name + ' / blend':>12s} " + " ".join(f"{float(a / b):6.2f}" for a, b in zip(sse(p), blend)))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+", help="clips or folders, as for theris evaluate")
    ap.add_argument("--split", default=None, help="score this split's validation clips (e.g. v1)")
    ap.add_argument("--max-frames", type=int, default=None, help="first N HR frames of each clip (default: all)")
    ap.add_argument("--weights", default="theris-small", help="theris weights (default theris-small)")
    ap.add_argument("--box", type=int, default=5, help="side of the smoothing box, HR pixels, odd (default 5)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--per-frame", action="store_true",
                    help="also print, per in-between frame, each method's squared error over evaluate's mask "
                         "relative to the blend's, and how far the true frame's mean is from its neighbours'")
    args = ap.parse_args(argv)
    if args.box < 1 or args.box % 2 == 0:
        ap.error(f"--box must be odd and >= 1 (got {args.box})")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    methods = {"theris": theris_predictor(model, UpscaleOptions.of(EVAL_OPTIONS, device="cpu")),
               "blend": bicubic_linear}
    mid, why = rife_interpolator(None)  # RIFE where the bench extra is installed (bench_peers.py)
    if mid is not None:
        from theris_cli.train.rife import load_rife, velocities

        net = load_rife()
        teacher = with_velocities_from(load_model(args.weights), lambda x: velocities(net, x))
        methods["th+rv"] = theris_predictor(teacher, UpscaleOptions.of(EVAL_OPTIONS, device="cpu"))
        methods["rife"] = cascade(bicubic_x4, mid)
    heads = " ".join(f"{name:>7s}" for name in methods)
    print(f"# motion figure (dB; theris: {args.weights}; rife: bicubic x4 + RIFE's middle frames) under "
          f"evaluate's mask and under the same rule on the truth smoothed {args.box}x{args.box}; "
          "share: of the interpolated frames' pixels; then the interpolated frames' PSNR over all pixels")
    print(f"{'clip':40s} {'noise':>6s}   {'share':>6s} {heads}   {'share':>6s} {heads}   {heads}")
    for path in find_clips(args.clips, args.split):
        hr, _ = load_clip(path, args.max_frames)
        lr = make_lr(hr)
        with torch.inference_mode():
            preds = [predict(lr).float().clamp(0, 1) for predict in methods.values()]
        cells = []
        for mask in (motion_mask(hr), smoothed_mask(hr, args.box)):
            if mask.any():
                figures = " ".join(f"{metrics.masked_psnr(p[1::2], hr[1::2], mask):7.2f}" for p in preds)
            else:
                figures = " ".join(f"{'-':>7s}" for _ in preds)
            cells.append(f"{100 * mask.float().mean():5.1f}% {figures}")
        cells.append(" ".join(f"{metrics.mean(metrics.psnr(p[1::2], hr[1::2])):7.2f}" for p in preds))
        noise = 100 * midpoint_residual(hr).median()  # % of the range
        print(f"{path.name[:40]:40s} {noise:5.2f}%   " + "   ".join(cells))
        if args.per_frame:
            print(per_frame(hr, dict(zip(methods, preds))))
    if mid is None:
        print(f"# RIFE not run: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
