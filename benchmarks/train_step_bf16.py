"""Training steps per second on the CPU, float32 against bf16 autocast, measured in alternation.

    python benchmarks/train_step_bf16.py                  # theris-small, batch 8, 32x32 LR patches, 1 thread
    python benchmarks/train_step_bf16.py --rounds 20 --weights runs/x/last.safetensors

One process holds two copies of the network (each with its own Adam) and runs one full training
step of each in turn - forward, the loss of `theris train` (Charbonnier + 0.05 TFM + 0.3 temporal
term), backward, gradient clipping, Adam - on the same batch, float32 and then under
`torch.autocast("cpu", dtype=torch.bfloat16)` as `theris train --amp` does. Alternating step by step
means that other work on the machine slows both alike; the ratio of their median step times is the
figure, the absolute times only say how busy the machine was. The batch is synthetic heat-equation
scenes (`train.synthetic`), the data loading is left out (it is the same in both).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import nullcontext


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="theris-small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32, help="LR patch side (default 32)")
    ap.add_argument("--rounds", type=int, default=12, help="steps of each precision, after one warm-up each")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    from theris_cli.devices import cpu_has_bf16
    from theris_cli.protocol import make_lr
    from theris_cli.train.dataset import SyntheticSource
    from theris_cli.train.loss import charbonnier, make_tfm, temporal_difference
    from theris_cli.weights import load_model

    torch.set_num_threads(args.threads)
    if not cpu_has_bf16():
        print("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX): bf16 would be emulated", file=sys.stderr)
    torch.manual_seed(0)
    base = load_model(args.weights, device="cpu")
    synth = SyntheticSource(7, 4 * args.patch, seed=0, pool=max(8, args.batch), chunk=args.batch, every=1)
    synth.advance(0)
    gen = torch.Generator().manual_seed(0)
    hr = torch.stack([synth.crop(gen, 4 * args.patch) for _ in range(args.batch)])
    lr = make_lr(hr)

    def runner(bf16: bool):
        net = copy.deepcopy(base).train()
        tfm = make_tfm("fitted")
        params = list(net.parameters()) + list(tfm.parameters())
        opt = torch.optim.Adam(params, lr=1e-5, betas=(0.9, 0.99))
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext

        def step() -> float:
            t0 = time.perf_counter()
            with ctx():
                pred = net(lr)
            pred = pred.float()
            loss = charbonnier(pred, hr) + 0.05 * tfm(pred, hr) + 0.3 * temporal_difference(pred, hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            return time.perf_counter() - t0

        return step

    steps = {"fp32": runner(False), "bf16": runner(True)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for k, fn in steps.items():
        fn()  # warm-up
    for _ in range(args.rounds):
        for k, fn in steps.items():
            times[k].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.weights}, batch {args.batch}, LR patch {args.patch}x{args.patch}, {args.threads} thread(s), "
          f"{args.rounds} alternating steps each")
    for k in steps:
        print(f"{k}: median {med[k]:.2f} s/step ({1 / med[k]:.3f} steps/s), range {min(times[k]):.2f}-{max(times[k]):.2f} s")
    print(f"bf16 / fp32 step time: {med['bf16'] / med['fp32']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
