"""The still blend's and the still detail's gate (model/still.py) at several settings, and off, on the
same clips.

    python benchmarks/still_gate.py CLIP... [--max-frames 41] [--gate 10,30,2 --gate 20,60,0 ...]
    python benchmarks/still_gate.py ../shared/data --split v1
    python benchmarks/still_gate.py ../shared/data --split v1 --degrade sensor --gate 10,30,2,0

Each --gate is STILL_BELOW,MOVING_ABOVE in per mille of the level range and STILL_DILATE in LR pixels,
optionally followed by NOISE_FLOOR (the multiple of the window's temporal noise the gaps are lowered
by); a NOISE_FLOOR of 0 scores the parts blind to noise: no floor and no shrinking of the still
detail's deviations (`noise_level` taken as 0). `--degrade sensor` scores `theris evaluate --degrade
sensor`'s input instead of the clean one;
the shipped setting and "off" (the same weights without either) are always scored, each gate with the
still blend alone and with the still detail too. Prints a
Markdown table of theris's gain over bicubic + linear, by `theris evaluate`'s protocol (fp32): PSNR
over all and interpolated frames, tMAE (and on how many clips it is below bicubic's), PSNR over the
moving pixels. The settings were chosen on training clips, then checked on split v1
(docs/network.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from theris_cli.engine.hugepages import prefer_huge_pages

prefer_huge_pages()  # before torch is imported, as `theris evaluate` does

import torch  # noqa: E402

from theris_cli.eval.baselines import BASELINES  # noqa: E402
from theris_cli.eval.evaluate import evaluate, theris_predictor  # noqa: E402
from theris_cli.model import THERIS, network, still  # noqa: E402
from theris_cli.weights import DEFAULT_MODEL, load_model  # noqa: E402


def _gate(text: str) -> tuple[float, float, int, float]:
    below, above, dilate, *floor = text.split(",")
    return float(below) / 1000, float(above) / 1000, int(dilate), float(floor[0]) if floor else still.NOISE_FLOOR


def _blind(x: torch.Tensor) -> torch.Tensor:
    """`noise_level` for parts blind to noise."""
    return x.new_zeros(x.shape[0])


def _row(name: str, ev) -> str:
    t, b = ev.mean["theris"], ev.mean["bicubic"]
    steadier = sum(c.methods["theris"].tmae < c.methods["bicubic"].tmae for c in ev.clips)
    move = "–" if t.motion.psnr is None else f"{t.motion.psnr - b.motion.psnr:+.3f}"  # no clip moves
    return (f"| {name} | {t.all.psnr - b.all.psnr:+.3f} | {t.interpolated.psnr - b.interpolated.psnr:+.3f} | "
            f"{1e3 * t.tmae:.3f} ({1e3 * b.tmae:.3f}) | {steadier}/{len(ev.clips)} | {move} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--split", default=None, help="score this split's validation clips, found under CLIPS")
    ap.add_argument("--weights", default=DEFAULT_MODEL)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--gate", action="append", default=[], type=_gate, metavar="BELOW,ABOVE,DILATE")
    ap.add_argument("--degrade", choices=["clean", "sensor"], default="clean")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.weights)

    def switched(blend: bool, detail: bool) -> THERIS:
        net = THERIS(dataclasses.replace(model.config, use_still_blend=blend, use_still_detail=detail)).eval()
        net.load_state_dict(model.state_dict())
        return net

    off, blend, both = switched(False, False), switched(True, False), switched(True, True)
    shipped = (still.STILL_BELOW, still.MOVING_ABOVE, still.STILL_DILATE, still.NOISE_FLOOR)
    measured = network.noise_level
    gates = [shipped] + [g for g in args.gate if g != shipped]

    def run(net: THERIS):
        methods = {"theris": theris_predictor(net), "bicubic": BASELINES["bicubic"]}
        return evaluate(args.clips, methods, max_frames=args.max_frames, split=args.split, degrade=args.degrade)

    print(f"# {args.weights}, {args.degrade} input; gain over bicubic + linear (dB), tMAE in per mille of the range, fp32")
    print("| still blend (below, above ‰, dilate px, noise floor) | PSNR all | PSNR interp | tMAE ‰ (bicubic) | tMAE < bicubic "
          "| PSNR move |")
    print("|---|---|---|---|---|---|")
    print(_row("off", run(off)), flush=True)
    try:
        for below, above, dilate, floor in gates:
            still.STILL_BELOW, still.MOVING_ABOVE, still.STILL_DILATE, still.NOISE_FLOOR = below, above, dilate, floor
            network.noise_level = measured if floor else _blind  # what the forward hands both parts
            mark = " (shipped)" if (below, above, dilate, floor) == shipped else ""
            name = f"{1e3 * below:g}, {1e3 * above:g}, {dilate}, {floor:g}"
            print(_row(f"{name}{mark}", run(blend)), flush=True)
            print(_row(f"{name}, + still detail{mark}", run(both)), flush=True)
    finally:
        still.STILL_BELOW, still.MOVING_ABOVE, still.STILL_DILATE, still.NOISE_FLOOR = shipped
        network.noise_level = measured
    return 0


if __name__ == "__main__":
    sys.exit(main())
