"""One command for a GPU machine: is theris's CUDA path right, how fast is it, and does it back off?

    python benchmarks/gpu_check.py                       # on a CUDA machine, about 3 minutes on one GPU
    python benchmarks/gpu_check.py --device cpu --dry-run  # the same code on tiny sizes (no figures)

Needs mamba-ssm for the kernel rows (README "Install"); without it they say why and the rest runs.
Prints, in order:
1. kernel parity: mamba-ssm's `mamba_chunk_scan_combined` against theris's PyTorch scan
   (`ssd_chunked`), forward and backward, for each preset's head size and state size, float32;
2. output frames per second of `small` and `base` (random weights: speed does not depend on them)
   at 160x128 -> 640x512 and 640x512 -> 2560x2048, in fp32 / bf16 / fp16, with the PyTorch scan
   and with the kernel, each the best of --repeat windows of 4 LR frames (7 output frames) after a
   warm-up, and the peak memory of that configuration (torch.cuda.max_memory_allocated);
3. the out-of-memory back-off: `infer.Upscaler` on a 1280x1024 window with the process's share of
   GPU memory capped so that whole frames cannot fit; it must halve its tile, retry, and still
   return every frame (the retry count and the tile it settled on are printed).
A configuration that would run past --budget seconds is skipped and said so, so the command ends.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def kernel_parity(device, dry: bool) -> list[str]:
    import torch

    from theris_cli.model import PRESETS, scan

    kernel, why = scan._import_kernel()
    if kernel is None:
        return [f"kernel parity: skipped, {why}"]
    if device.type != "cuda" and not scan.interpreting():
        return ["kernel parity: skipped, no CUDA device (the CPU check is tests/triton_interpreter/, Triton's interpreter)"]
    lines = []
    for name, c in PRESETS.items():
        L = 96 if dry else 2048
        g = torch.Generator(device="cpu").manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
        x, B, C = r(2, L, c.nheads, c.headdim), r(2, L, c.ngroups, c.d_state), r(2, L, c.ngroups, c.d_state)
        dt, D, bias = r(2, L, c.nheads) - 1, r(c.nheads), r(c.nheads) * 0.5
        A = -torch.rand(c.nheads, generator=g).to(device) * 4 - 0.5
        leaves = [t.clone().requires_grad_() for t in (x, dt, B, C)]
        refs = [t.clone().requires_grad_() for t in (x, dt, B, C)]
        y = kernel(leaves[0], leaves[1], A, leaves[2], leaves[3], scan.KERNEL_CHUNK, D=D, dt_bias=bias, dt_softplus=True)
        ref = scan.ssd_chunked(refs[0], refs[1], A, refs[2], refs[3], D, c.chunk_size, dt_bias=bias, dt_softplus=True)
        w = torch.randn_like(ref)
        (y * w).sum().backward()
        (ref * w).sum().backward()
        err_y = (y - ref).abs().max().item() / max(ref.abs().max().item(), 1e-12)
        err_g = max((a.grad - b.grad).abs().max().item() / max(b.grad.abs().max().item(), 1e-12)
                    for a, b in zip(leaves, refs))
        ok = err_y < 1e-3 and err_g < 1e-2
        lines.append(f"kernel parity {name:<5} headdim {c.headdim:>3} d_state {c.d_state:>3} L {L}: "
                     f"rel. max error forward {err_y:.1e}, gradients {err_g:.1e}  {'ok' if ok else 'FAIL'}")
    return lines


def speed_rows(device, dry: bool, repeat: int, deadline: float) -> list[str]:
    import torch

    from theris_cli.model import PRESETS, THERIS, scan

    sizes = [(16, 20), (32, 40)] if dry else [(128, 160), (512, 640)]
    precisions = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if device.type == "cpu":
        precisions = {"fp32": torch.float32}
    scans = ["reference"] + (["mamba"] if scan._import_kernel()[0] is not None and device.type == "cuda" else [])
    rows = [f"{'preset':<6} {'LR in':>9} {'HR out':>10} {'prec':>5} {'scan':>9} {'out fps':>8} {'peak MiB':>9}"]
    for preset in ("small", "base"):
        torch.manual_seed(0)
        net = THERIS(PRESETS[preset]).to(device).eval()
        for h, w in sizes:
            x = torch.rand(1, 4, 1, h, w, device=device)
            for pname, dtype in precisions.items():
                for sname in scans:
                    label = f"{preset:<6} {w:>4}x{h:<4} {4 * w:>5}x{4 * h:<4} {pname:>5} {sname:>9}"
                    if time.monotonic() > deadline:
                        rows.append(f"{label}  skipped: past the time budget")
                        continue
                    os.environ["THERIS_SCAN"] = sname
                    scan.reset_backend()
                    try:
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                            torch.cuda.reset_peak_memory_stats(device)
                        ctx = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else torch.autocast(device.type, enabled=False)
                        best = float("inf")
                        with torch.inference_mode(), ctx:
                            for i in range(repeat + 1):
                                _sync(device)
                                t0 = time.perf_counter()
                                y = net(x)
                                _sync(device)
                                if i:
                                    best = min(best, time.perf_counter() - t0)
                        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
                        rows.append(f"{label} {y.shape[1] / best:8.1f} {peak:9.0f}")
                    except torch.cuda.OutOfMemoryError:
                        rows.append(f"{label}  out of memory")
                    except Exception as e:  # noqa: BLE001 - a row says what broke and the check goes on
                        rows.append(f"{label}  FAILED: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
        del net
    os.environ.pop("THERIS_SCAN", None)
    scan.reset_backend()
    return rows


def oom_backoff(device, dry: bool) -> list[str]:
    import torch

    from theris_cli.engine.infer import Upscaler
    from theris_cli.model import PRESETS, THERIS

    if device.type != "cuda":
        return ["out-of-memory back-off: skipped (CUDA only; on the CPU the tile is chosen up front)"]
    torch.manual_seed(0)
    net = THERIS(PRESETS["small"])
    h, w = (1024, 1280)
    frames = [torch.rand(1, h, w) for _ in range(4)]
    total = torch.cuda.get_device_properties(device).total_memory
    cap = 3 * 2**30  # a window of whole 1280x1024 frames needs far more than this
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
    try:
        up = Upscaler(net, device=device, precision="fp32", tile=h)  # a fixed start: the back-off must act
        t0 = time.perf_counter()
        out = list(up.process(iter(frames)))
        dt = time.perf_counter() - t0
        ok = len(out) == 8 and up.oom_retries > 0 and all(o.shape == (1, 4 * h, 4 * w) for o in out)
        return [f"out-of-memory back-off: {cap / 2**30:.0f} GiB cap, start tile {h}: {up.oom_retries} retries, "
                f"settled on tile {up.tile}, {len(out)} frames in {dt:.1f} s  {'ok' if ok else 'FAIL'}"]
    except Exception as e:  # noqa: BLE001
        return [f"out-of-memory back-off: FAILED: {type(e).__name__}: {str(e).splitlines()[0][:160]}"]
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes: checks that the script runs, no figures")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--budget", type=float, default=200.0, help="seconds after which speed rows are skipped")
    args = ap.parse_args(argv)

    import torch

    from theris_cli.model import scan

    start = time.monotonic()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --device cpu --dry-run to check the script)")
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# gpu_check on {name}; torch {torch.__version__}; mamba-ssm {scan.mamba_version() or 'not installed'}"
          f"{'; DRY RUN (tiny sizes, figures mean nothing)' if args.dry_run else ''}")
    lines = kernel_parity(device, args.dry_run)
    lines += speed_rows(device, args.dry_run, args.repeat, start + args.budget)
    lines += oom_backoff(device, args.dry_run)
    for line in lines:
        print(line)
    print(f"# {time.monotonic() - start:.0f} s")
    return 1 if any("FAIL" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
