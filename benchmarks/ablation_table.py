"""The ablation table from `theris evaluate --json` files: one row per training run.

    python benchmarks/ablation_table.py full=runs/abl-full/v1.json no-mask=runs/abl-no-mask/v1.json ...

Each argument is NAME=FILE (the first is the reference row the differences are taken against). Prints
a Markdown table: theris's mean over the evaluated clips of PSNR over all and interpolated frames,
SSIM, tMAE and PSNR over the moving pixels, its gain over bicubic + linear on the same clips, the
difference from the reference row, and the number of clips where theris's tMAE beats bicubic's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from theris_cli.eval.results import Evaluation


def _row(ev: Evaluation) -> dict[str, float]:
    ours, base = ev.mean["theris"], ev.mean["bicubic"]
    steadier = sum(c.methods["theris"].tmae < c.methods["bicubic"].tmae for c in ev.clips)
    return {
        "psnr": ours.all.psnr, "gain": ours.all.psnr - base.all.psnr,
        "interp": ours.interpolated.psnr, "gain_interp": ours.interpolated.psnr - base.interpolated.psnr,
        "ssim": ours.all.ssim, "tmae": 1e3 * ours.tmae, "tmae_bicubic": 1e3 * base.tmae,
        "move": ours.motion.psnr if ours.motion and ours.motion.psnr is not None else float("nan"),
        "move_gain": (ours.motion.psnr - base.motion.psnr) if ours.motion and base.motion else float("nan"),
        "steadier": steadier, "clips": len(ev.clips),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=FILE, a `theris evaluate --json` file; the first is the reference")
    args = ap.parse_args(argv)
    rows = []
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"expected NAME=FILE, got {spec!r}")
        try:
            rows.append((name, _row(Evaluation.from_dict(json.loads(Path(path).read_text())))))
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
    ref = rows[0][1]
    print("| run | PSNR all | vs bicubic | PSNR interp | vs bicubic | SSIM all | tMAE ‰ (bicubic) | tMAE < bicubic "
          "| PSNR move | vs bicubic | Δ all vs " + rows[0][0] + " |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['psnr']:.2f} | {r['gain']:+.2f} | {r['interp']:.2f} | {r['gain_interp']:+.2f} | "
              f"{r['ssim']:.4f} | {r['tmae']:.2f} ({r['tmae_bicubic']:.2f}) | {r['steadier']}/{r['clips']} | "
              f"{r['move']:.2f} | {r['move_gain']:+.2f} | {r['psnr'] - ref['psnr']:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
