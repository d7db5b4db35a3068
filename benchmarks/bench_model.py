"""Forward time and peak memory of each THERIS preset on this machine.

    python benchmarks/bench_model.py                                # every preset, 64x64 LR, 4 frames, CPU
    python benchmarks/bench_model.py --preset small --size 32x32 --frames 4 --batch 8 --backward --threads 2
    python benchmarks/bench_model.py --device cuda --size 180x320   # on a GPU
    python benchmarks/bench_model.py --preset small --size 192x256 --threads 1 --motion-align   # with that part
    python benchmarks/bench_model.py --preset small --size 192x256 --threads 1 --motion-radius 4  # and its matching
    python benchmarks/bench_model.py --preset small --size 192x256 --threads 1 --motion-radius 4 --motion-search 6

Prints, per preset: parameters, forward time (median of --repeat runs after --warmup), optionally
forward+backward time of one training step (Charbonnier + 0.05 TFM on a random target), and peak
memory: CUDA max_memory_allocated, or on CPU the peak RSS of a fresh subprocess per preset (so one
preset's allocations do not hide another's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 64x64), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1x1, got {text!r}")
    return h, w


def measure(preset: str, size: tuple[int, int], frames: int, batch: int, device: str, threads: int,
            warmup: int, repeat: int, backward: bool, motion_align: bool = False, motion_radius: int = 0,
            motion_search: int = 0) -> dict:
    """Time one preset (with the motion-alignment part, and its matching of `motion_radius` searching
    `motion_search`, if asked) in this process; returns a JSON-able dict."""
    import dataclasses

    import torch

    from theris_cli.model import PRESETS, SCALE, THERIS
    from theris_cli.train.loss import TFMLoss, charbonnier

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = dataclasses.replace(PRESETS[preset], use_motion_align=motion_align or motion_radius > 0,
                                 motion_radius=motion_radius, motion_search=motion_search)
    net = THERIS(config).to(device)
    H, W = size
    x = torch.rand(batch, frames, net.config.in_channels, H, W, device=device)
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    net.eval()
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeat):
            sync()
            t0 = time.perf_counter()
            net(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    result = {
        "preset": preset + ("+motion" if config.use_motion_align else "") + (f"+r{motion_radius}" if motion_radius else "")
                  + (f"s{motion_search}" if motion_search else ""),
        "params": sum(p.numel() for p in net.parameters()),
        "input": f"{batch}x{frames}x{H}x{W}", "device": device,
        "threads": torch.get_num_threads(), "forward_ms": 1e3 * statistics.median(times),
    }
    if backward:
        net.train()
        tfm = TFMLoss().to(device)
        target = torch.rand(batch, 2 * frames - 1, net.config.in_channels, SCALE * H, SCALE * W, device=device)
        steps = []
        for i in range(warmup + repeat):
            sync()
            t0 = time.perf_counter()
            y = net(x)
            (charbonnier(y, target) + 0.05 * tfm(y, target)).backward()
            sync()
            if i >= warmup:
                steps.append(time.perf_counter() - t0)
            net.zero_grad(set_to_none=True)
        result["fwd_bwd_ms"] = 1e3 * statistics.median(steps)
    if cuda:
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name(0)
    else:
        import resource

        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    from theris_cli.model.scan import backend_info

    result["scan"] = backend_info()[0]
    return result


def main(argv: list[str] | None = None) -> int:
    from theris_cli.model import PRESETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), action="append",
                    help="preset to measure (repeatable; default: all)")
    ap.add_argument("--size", type=_parse_size, default=(64, 64), help="LR frame size HxW in pixels (default 64x64)")
    ap.add_argument("--frames", type=int, default=4, help="input frames per window, k+1 (default 4)")
    ap.add_argument("--batch", type=int, default=1, help="windows per batch (default 1)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs; the median is printed (default 5)")
    ap.add_argument("--backward", action="store_true", help="also time forward+backward of a training step")
    ap.add_argument("--motion-align", action="store_true", help="measure each preset with the motion-alignment part")
    ap.add_argument("--motion-radius", type=int, default=0, help="and its matching estimate of this reach (default 0: none)")
    ap.add_argument("--motion-search", type=int, default=0, help="and that estimate's search (default 0: the radius)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per preset")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one preset, in a subprocess
    args = ap.parse_args(argv)
    if args.frames < 1 or args.batch < 1 or args.repeat < 1:
        ap.error("--frames, --batch and --repeat must be >= 1")
    presets = args.preset or list(PRESETS)

    if args.worker:
        r = measure(presets[0], args.size, args.frames, args.batch, args.device, args.threads,
                    args.warmup, args.repeat, args.backward, args.motion_align, args.motion_radius, args.motion_search)
        print(json.dumps(r))
        return 0

    results = []
    for name in presets:
        if args.device.startswith("cuda"):
            results.append(measure(name, args.size, args.frames, args.batch, args.device, args.threads,
                                   args.warmup, args.repeat, args.backward, args.motion_align, args.motion_radius,
                                   args.motion_search))
            continue
        # CPU: a fresh process per preset, so its peak RSS is its own
        cmd = [sys.executable, __file__, "--worker", "--preset", name, "--size", f"{args.size[0]}x{args.size[1]}",
               "--frames", str(args.frames), "--batch", str(args.batch), "--device", args.device,
               "--threads", str(args.threads), "--warmup", str(args.warmup), "--repeat", str(args.repeat)]
        if args.backward:
            cmd.append("--backward")
        if args.motion_align:
            cmd.append("--motion-align")
        if args.motion_radius:
            cmd += ["--motion-radius", str(args.motion_radius)]
        if args.motion_search:
            cmd += ["--motion-search", str(args.motion_search)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    if args.json:
        for r in results:
            print(json.dumps(r))
        return 0
    where = results[0].get("gpu") or f"cpu, {results[0]['threads']} threads"
    print(f"# {where}; input (batch x frames x H x W) {results[0]['input']}; scan {results[0]['scan']}; "
          f"median of {args.repeat} after {args.warmup} warm-up")
    header = f"{'preset':16s} {'params':>10s} {'forward ms':>11s}"
    if args.backward:
        header += f" {'fwd+bwd ms':>11s}"
    header += f" {'peak MiB':>9s}"
    print(header)
    for r in results:
        line = f"{r['preset']:16s} {r['params']:>10,d} {r['forward_ms']:>11.1f}"
        if args.backward:
            line += f" {r['fwd_bwd_ms']:>11.1f}"
        line += f" {r['peak_mib']:>9.0f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
