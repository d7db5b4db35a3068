"""Where a model's temporal error (tMAE) comes from: frame parity, window position, levels, sharpness.

    python benchmarks/temporal_breakdown.py ../shared/data/ir/lepton_possum.mkv --max-frames 41 --threads 1
    python benchmarks/temporal_breakdown.py ../shared/data --split v1 --max-frames 41 --threads 1

Runs each clip by the `theris evaluate` protocol (`make_lr` of the truth, the model as
`theris upscale` runs it: windows of 4 LR frames, stride 2, fp32, predictions clamped) and prints,
per clip and per method, in per mille of the data range:

* tMAE over all consecutive pairs, and split by the pair's kind: aligned -> interpolated (t even)
  and interpolated -> aligned (t odd), and by output time t mod 4 (the window period: stride 2 LR
  frames = 4 output frames; two windows cross-fade the frame at phase 1, so pairs 0 -> 1 and
  1 -> 2 carry the handover from one window to the next);
* per frame kind (aligned = even, interpolated = odd): the mean level error mean(pred - gt), the
  sharpness ratio mean |grad pred|^2 / mean |grad gt|^2 (1: as sharp as the truth; < 1 blurrier)
  and the PSNR;
* tMAE2: the same over aligned -> aligned pairs two output frames apart (no interpolated frame in
  it), and the temporal curvature of the in-between frames, c = x[2i+1] - (x[2i] + x[2i+2]) / 2:
  |c gt| of the truth, |c| of the prediction and |c - c gt|, the error it adds. The error of pair
  2i -> 2i+1 is (d[2i+2] - d[2i]) / 2 + (c - c gt) with d = pred - gt, so tMAE is the aligned
  frames' error drift plus this curvature error; a linear blend has c = 0;
* `theris+lin`: the model's aligned frames with linear-blend midpoints, i.e. the model's spatial
  detail without its interpolated frames. If it beats `theris` on tMAE, the interpolated frames are
  what breaks the temporal consistency;
* `theris-1win`: the whole clip as one window (no temporal stitching at all; longer than the
  4 frames the model is trained on). If it beats `theris`, the window cross-fade is to blame;
* `window gap`: mean |A - B| of the two windows' predictions of the one output time they
  cross-fade (from the model run window by window), the most a seam could add.

Tiles are not involved: clips up to the size of the v1 clips run as whole frames on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PERIOD = 4  # output frames between window starts: stride 2 LR frames x factor 2


def grad_energy(x):
    """mean |grad x|^2 per frame (forward differences), (T, 1, H, W) -> (T,)."""
    gy = x[..., 1:, :] - x[..., :-1, :]
    gx = x[..., :, 1:] - x[..., :, :-1]
    return gy.pow(2).flatten(1).mean(1) + gx.pow(2).flatten(1).mean(1)


def breakdown(pred, gt) -> dict:
    """Temporal and per-frame-kind figures of one prediction (N, 1, H, W) against the truth."""
    import torch

    from theris_cli.eval import metrics

    pred = pred.double().clamp(0, 1)
    gt = gt.double()
    e = ((pred[1:] - pred[:-1]) - (gt[1:] - gt[:-1])).abs().flatten(1).mean(1)  # (N-1,) per pair
    t = torch.arange(e.numel())
    out = {
        "tmae": float(e.mean()),
        "a->i": float(e[t % 2 == 0].mean()),
        "i->a": float(e[t % 2 == 1].mean()),
        "phase": [float(e[t % PERIOD == p].mean()) if bool((t % PERIOD == p).any()) else float("nan")
                  for p in range(PERIOD)],
    }
    # an interpolated frame's departure from the midpoint of its neighbours ("curvature" in time):
    # pred_c - gt_c is what a model's own in-between frames add to the error of the linear blend of
    # its aligned frames (theris+lin has pred_c = 0)
    pc = pred[1:-1:2] - 0.5 * (pred[0:-2:2] + pred[2::2])
    gc = gt[1:-1:2] - 0.5 * (gt[0:-2:2] + gt[2::2])
    out["curv_gt"], out["curv_pred"] = float(gc.abs().mean()), float(pc.abs().mean())
    out["curv_err"] = float((pc - gc).abs().mean())
    out["tmae2"] = float(((pred[2::2] - pred[:-2:2]) - (gt[2::2] - gt[:-2:2])).abs().mean())  # aligned -> aligned
    bias = (pred - gt).flatten(1).mean(1)
    sharp = grad_energy(pred) / grad_energy(gt).clamp(min=1e-12)
    p = metrics.psnr(pred.float(), gt.float())
    for name, sl in (("al", slice(0, None, 2)), ("in", slice(1, None, 2))):
        out[f"bias_{name}"] = float(bias[sl].mean())
        out[f"sharp_{name}"] = float(sharp[sl].mean())
        out[f"psnr_{name}"] = float(p[sl].mean())
    return out


def with_linear_midpoints(pred):
    """The aligned frames of `pred` with every odd frame replaced by the mean of its neighbours."""
    out = pred.clone()
    out[1:-1:2] = 0.5 * (pred[0:-2:2] + pred[2::2])
    return out


def window_gap(model, lr, window: int = 4) -> float:
    """Mean |A - B| over the output times two neighbouring windows both predict with weight > 0."""
    import torch

    from theris_cli.engine.infer import Upscaler
    from theris_cli.engine.windows import plan_windows, time_weight

    up = Upscaler(model, device="cpu", precision="fp32", window=window, temporal_factor=2)
    wins = plan_windows(lr.shape[0], window)
    preds = {}  # output index -> list of predictions
    for i, w in enumerate(wins):
        first, last = w.start == 0, w.end == lr.shape[0] - 1
        y = up.run_window(lr[w.start:w.end + 1])  # (7, 1, 4h, 4w)
        for j, m in enumerate(w.output_range(2)):
            if time_weight(j, 2, w.length, first, last) > 0:
                preds.setdefault(m, []).append(y[j].clamp(0, 1))
    gaps = [float((p[0] - p[1]).abs().mean()) for p in preds.values() if len(p) == 2]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="+", help="video files or folders (with --split: the folders to find them in)")
    ap.add_argument("--split", default=None, help="score a named split's validation clips (e.g. v1)")
    ap.add_argument("--weights", default=None, help="registry name, .safetensors or hf://... (default: the default model)")
    ap.add_argument("--max-frames", type=int, default=41, help="HR frames per clip (default 41)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--no-one-window", action="store_true", help="skip the whole-clip-as-one-window run")
    args = ap.parse_args(argv)

    import torch

    from theris_cli.eval.evaluate import EVAL_OPTIONS, find_clips, load_clip, theris_predictor
    from theris_cli.engine.options import UpscaleOptions
    from theris_cli.protocol import bicubic_linear, make_lr
    from theris_cli.weights import DEFAULT_MODEL, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = find_clips(args.clips, args.split)
    model = load_model(args.weights or DEFAULT_MODEL, device="cpu")
    info = getattr(model, "weights_info", None)
    print(f"weights: {info.describe() if info is not None else args.weights or DEFAULT_MODEL}")
    print("figures in per mille of the data range; sharp = |grad pred|^2 / |grad gt|^2; al/in = aligned/interpolated")
    head = (f"{'method':<12} {'tMAE':>6} {'a->i':>6} {'i->a':>6} | {'ph0':>6} {'ph1':>6} {'ph2':>6} {'ph3':>6} | "
            f"{'bias al':>7} {'bias in':>7} {'sharp al':>8} {'sharp in':>8} {'PSNR al':>7} {'PSNR in':>7} | "
            f"{'tMAE2':>6} {'|c gt|':>6} {'|c|':>6} {'|c-cgt|':>7}")
    totals: dict[str, list[dict]] = {}
    for path in paths:
        t0 = time.perf_counter()
        hr, _ = load_clip(path, args.max_frames)
        lr = make_lr(hr)
        with torch.inference_mode():
            preds = {"theris": theris_predictor(model, EVAL_OPTIONS)(lr)}
            preds["theris+lin"] = with_linear_midpoints(preds["theris"].clamp(0, 1))
            if not args.no_one_window:
                one = UpscaleOptions.of(EVAL_OPTIONS, window=lr.shape[0])
                preds["theris-1win"] = theris_predictor(model, one)(lr)
            preds["bicubic"] = bicubic_linear(lr)
            gap = window_gap(model, lr)
        n, _, h, w = hr.shape
        print(f"\n{Path(path).name}: {n} frames {w}x{h} ({time.perf_counter() - t0:.0f} s); "
              f"window gap at the cross-faded frames {1000 * gap:.3f}")
        print(head)
        for name, pred in preds.items():
            b = breakdown(pred, hr)
            totals.setdefault(name, []).append(b)
            print(_row(name, b))
    if len(paths) > 1:
        print(f"\nmean over {len(paths)} clips")
        print(head)
        for name, rows in totals.items():
            mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "phase"}
            mean["phase"] = [sum(r["phase"][p] for r in rows) / len(rows) for p in range(PERIOD)]
            print(_row(name, mean))
    return 0


def _row(name: str, b: dict) -> str:
    k = 1000.0  # per mille, three decimals: differences of a few thousandths between methods matter here
    ph = " ".join(f"{k * v:6.3f}" for v in b["phase"])
    return (f"{name:<12} {k * b['tmae']:6.3f} {k * b['a->i']:6.3f} {k * b['i->a']:6.3f} | {ph} | "
            f"{k * b['bias_al']:7.3f} {k * b['bias_in']:7.3f} {b['sharp_al']:8.3f} {b['sharp_in']:8.3f} "
            f"{b['psnr_al']:7.2f} {b['psnr_in']:7.2f} | {k * b['tmae2']:6.3f} {k * b['curv_gt']:6.3f} "
            f"{k * b['curv_pred']:6.3f} {k * b['curv_err']:7.3f}")


if __name__ == "__main__":
    sys.exit(main())
