"""Which part of `theris evaluate --degrade sensor`'s noise costs what: the evaluation of split v1
with all of `sensor.EVAL_LEVELS`, and with each of its parts alone.

    python benchmarks/sensor_parts.py                                    # the default weights
    python benchmarks/sensor_parts.py --weights runs/x/last.safetensors --weights theris-small

Parts: fixed (the per-pixel and per-column offsets, the same in every frame), temporal (the
per-frame noise and its signal-dependent part) and 8-bit (rounding to 256 grey levels), each at
EVAL_LEVELS' strength with the others off; "clean" is the protocol's input. Printed per weights
file and input: the mean PSNR over all frames of theris and of bicubic + linear, theris's gain over
all and over the interpolated frames, and tMAE (‰ of the range) of both.

A network that only stops amplifying the noise keeps bicubic's loss; one that removes it climbs
back towards its clean score.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch


def parts():
    """(name, SensorLevels or None) of every input scored: None is the clean protocol."""
    from theris_cli.sensor import EVAL_LEVELS as full

    return [
        ("clean", None),
        ("sensor (all)", full),
        ("fixed", dataclasses.replace(full, temporal=0.0, shot=0.0, bits=0)),
        ("temporal", dataclasses.replace(full, pixel=0.0, column=0.0, bits=0)),
        ("8-bit", dataclasses.replace(full, pixel=0.0, column=0.0, temporal=0.0, shot=0.0)),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"),
                    help="the folder holding split v1's clips (default ../shared/data)")
    ap.add_argument("--weights", action="append", help="weights to score (repeatable; default: the default model)")
    ap.add_argument("--split", default="v1")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from theris_cli.eval.evaluate import evaluate

    print(f"split {args.split}; mean over its clips; tMAE in ‰ of the range")
    print(f"{'weights':28s} {'input':14s} {'theris dB':>9s} {'bicubic':>8s} {'gain all':>8s} {'interp':>7s} "
          f"{'tMAE theris':>11s} {'bicubic':>8s}")
    for weights in args.weights or [None]:
        for name, levels in parts():
            ev = evaluate([args.data], methods=("theris", "bicubic"), split=args.split,
                          degrade="clean" if levels is None else "sensor", sensor_levels=levels, weights=weights)
            t, b = ev.mean["theris"], ev.mean["bicubic"]
            label = Path(weights).name if weights else "default"
            print(f"{label[:28]:28s} {name:14s} {t.all.psnr:9.2f} {b.all.psnr:8.2f} {t.all.psnr - b.all.psnr:+8.2f} "
                  f"{t.interpolated.psnr - b.interpolated.psnr:+7.2f} {1000 * t.tmae:11.2f} {1000 * b.tmae:8.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
