"""How unevenly training crops weigh in the loss: bicubic + linear's error on each crop of the
batches `theris train` draws, and the weights `--balance-samples` gives them.

    python benchmarks/crop_errors.py ../shared/data --split v1 --batches 40

Builds the training batches exactly as `theris train --data DATA --split SPLIT` does (default
settings: batch 8, 32x32 LR patches, 4 input frames, half synthetic, seed 0) and prints, over
`--batches` batches:

* quantiles of each crop's MSE against bicubic + linear (and as PSNR): how far apart quiet and busy
  crops are;
* the share of the summed MSE held by the top tenth of crops and by the bottom half: what a plain
  mean of errors trains on;
* per batch, the largest of the `--balance-samples` weights (`train.loss.balance_weights`, mean 1):
  how far one crop can outweigh the others when each counts relative to bicubic's error on it.
"""

from __future__ import annotations

import argparse
import math
import sys


def _quantiles(values: list[float], qs=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)) -> list[float]:
    v = sorted(values)
    return [v[round(q * (len(v) - 1))] for q in qs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", help="clips or folders, as `theris train --data`")
    ap.add_argument("--split", default=None, help="leave out this split's validation clips (e.g. v1)")
    ap.add_argument("--batches", type=int, default=40, help="batches to draw (default 40)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args(argv)

    import torch

    from theris_cli import splits
    from theris_cli.model import PRESETS
    from theris_cli.protocol import bicubic_linear
    from theris_cli.train.data import build_data
    from theris_cli.train.loss import balance_weights
    from theris_cli.train.settings import TrainSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    s = TrainSettings(model=PRESETS["small"])
    exclude = list(splits.training_exclusions(args.split)) if args.split else []
    s, mixer, _ = build_data(s, args.data, exclude=exclude, val_paths=[])
    mse, top_w = [], []
    for step in range(args.batches):
        lr, hr = mixer.batch(step, s.batch)
        base = bicubic_linear(lr.float())
        mse += ((base - hr) ** 2).flatten(1).mean(1).tolist()
        top_w.append(float(balance_weights(base, hr).max()))

    qs = "0 / 10 / 25 / 50 / 75 / 90 / 100 %"
    print(f"# {len(mse)} crops in {args.batches} batches of {s.batch} ({len(s.data['real'])} real clips, "
          f"synthetic ratio {s.synthetic_ratio})")
    print(f"bicubic + linear MSE, quantiles {qs}: " + " ".join(f"{m:.2e}" for m in _quantiles(mse)))
    print("  as PSNR dB: " + " ".join(f"{-10 * math.log10(m):.1f}" for m in _quantiles(mse)))
    ordered, total = sorted(mse), sum(mse)
    print(f"share of the summed MSE: top 10 % of crops {sum(ordered[int(0.9 * len(ordered)):]) / total:.0%}, "
          f"bottom 50 % {sum(ordered[:len(ordered) // 2]) / total:.0%}")
    print(f"largest --balance-samples weight per batch (mean 1), quantiles 0 / 25 / 50 / 75 / 100 %: "
          + " ".join(f"{w:.2f}" for w in _quantiles(top_w, (0.0, 0.25, 0.5, 0.75, 1.0))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
