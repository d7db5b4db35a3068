"""One command for a GPU machine: is theris's CUDA path right, how fast is it, and does it back off?

    python benchmarks/gpu_check.py                         # on a CUDA machine, about 3 minutes on one GPU
    python benchmarks/gpu_check.py --device cpu --dry-run  # the same code on tiny sizes (no figures)

Runs from a checkout as it is (not installed: the checkout's theris_cli is imported). Needs torch;
the kernel rows need Triton, einops and mamba-ssm's Python code (its pure-Python wheel is enough:
README "GPU"); without them they say why and the rest runs. Prints, in order:
1. launch check: for one window of 4 LR frames of 640x512, the calls of mamba-ssm's kernel that
   `scan.selective_scan` makes for every TSSM layer of each preset, recorded from the real layers on
   the meta device: the largest extent on CUDA's grid axis y (limit 65,535) and the largest float32
   scratch of one call;
2. kernel parity: mamba-ssm's `mamba_chunk_scan_combined`, called as theris calls it, against
   theris's PyTorch scan (`ssd_chunked`), forward and backward, float32, for each preset's head and
   state sizes on a long sequence (SMB-like) and on 70,000 sequences of 7 tokens (TMB-like: more
   than one launch grid holds, so the call is split). Within mamba-ssm's own tests' tolerance for
   TF32 matrix products (rtol 1e-2, atol 3e-3; for gradients atol 3e-3 of the largest one);
3. output frames per second of `small` and `base` (random weights: speed does not depend on them)
   at 160x128 -> 640x512 and 640x512 -> 2560x2048, in fp32 / bf16 / fp16, with the PyTorch scan
   and with the kernel, each the best of --repeat windows of 4 LR frames (7 output frames) after a
   warm-up, and the peak memory of that configuration (torch.cuda.max_memory_allocated);
4. the out-of-memory back-off: `infer.Upscaler` on a 1280x1024 window with the process's share of
   GPU memory capped so that whole frames cannot fit; it must halve its tile, retry, and still
   return every frame (the retry count and the tile it settled on are printed).
A configuration that would run past --budget seconds is skipped and said so, so the command ends.
Exit status 1 when a line says FAIL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# the checkout's theris_cli, whether or not (and whichever copy) is installed
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RTOL, ATOL = 1e-2, 3e-3  # mamba-ssm's tests' tolerance for the kernel in float32 with TF32 tl.dot
LAUNCH_WINDOW = (512, 640, 4)  # LR height, width and input frames of the launch check's window


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def launch_check() -> list[str]:
    """Per preset: the kernel calls `selective_scan` makes for one LR window (LAUNCH_WINDOW), from
    the real TSSM layers run on the meta device (shapes only: no memory, no arithmetic)."""
    import torch

    from theris_cli.model import PRESETS, THERIS, kernel

    H, W, frames = LAUNCH_WINDOW
    M = 2 * frames - 1  # target times of a window: the half-steps
    lines = []
    for name, c in PRESETS.items():
        with torch.device("meta"):
            net = THERIS(c)
        z = torch.empty(1, M, H, W, c.dim, device="meta")                       # (B, M, H, W, dim)
        e = torch.empty(M, c.time_embed_dim, device="meta")
        with kernel.recording_launches() as launches, torch.no_grad():
            for block in net.blocks:
                z = block(z, e)
        grid = max(l.grid_y for l in launches)
        scratch = max(l.scratch_bytes for l in launches) / 2**20
        bad = [l for l in launches if l.grid_y > kernel.GRID_Y_LIMIT
               or l.chunk > max(kernel.MIN_KERNEL_CHUNK, 1 << max(l.sequence - 1, 0).bit_length())]
        lines.append(f"launch check: {name} {W}x{H}: largest grid y {grid} (limit {kernel.GRID_Y_LIMIT}), "
                     f"kernel scratch {scratch:.0f} MiB ({len(launches)} calls){'  FAIL' if bad else ''}")
    return lines


def _parity(kernel_scan, reference_scan, shape, device, seed=0) -> tuple[float, float, bool]:
    """Forward and gradient errors of the kernel against the reference for inputs of ``shape`` =
    (b, L, h, p, g, n): (largest forward error over atol + rtol |ref|, the same for gradients with
    atol relative to the largest gradient, both within 1)."""
    import torch

    b, L, h, p, g, n = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen).to(device)  # noqa: E731
    x, B, C = r(b, L, h, p), r(b, L, g, n), r(b, L, g, n)
    dt, D, bias = r(b, L, h) - 1, r(h), r(h) * 0.5
    A = -torch.rand(h, generator=gen).to(device) * 4 - 0.5
    leaves = [t.clone().requires_grad_() for t in (x, dt, B, C)]
    refs = [t.clone().requires_grad_() for t in (x, dt, B, C)]
    y = kernel_scan(*leaves[:2], A, *leaves[2:], D, dt_bias=bias, dt_softplus=True)
    ref = reference_scan(*refs[:2], A, *refs[2:], D, dt_bias=bias, dt_softplus=True)
    w = torch.randn(ref.shape, generator=gen).to(device)
    (y * w).sum().backward()
    (ref * w).sum().backward()
    err_y = ((y - ref).abs() / (ATOL + RTOL * ref.abs())).max().item()
    err_g = max(((a.grad - b.grad).abs() / (ATOL * b.grad.abs().max() + RTOL * b.grad.abs())).max().item()
                for a, b in zip(leaves, refs))
    return err_y, err_g, err_y <= 1 and err_g <= 1


def kernel_parity(device, dry: bool) -> list[str]:
    from theris_cli.model import PRESETS, kernel, scan

    fn, why = kernel._import_kernel()
    if fn is None:
        return [f"kernel parity: skipped, {why}"]
    if device.type != "cuda" and not kernel.interpreting():
        return ["kernel parity: skipped, no CUDA device (the CPU check is tests/triton_interpreter/, Triton's interpreter)"]
    os.environ["THERIS_SCAN"] = "mamba"
    scan.reset_backend()
    lines = []
    try:
        for name, c in PRESETS.items():
            heads = (c.nheads, c.headdim, c.ngroups, c.d_state)
            cases = [("long", (2, 40 if dry else 2048) + heads), ("TMB-like", (20 if dry else 70_000, 7) + heads)]
            for label, shape in cases:
                b, L = shape[:2]
                chunk = kernel.kernel_chunk(L)
                calls = len(kernel.kernel_pieces(b, L, *heads, chunk))
                ref = lambda *a, **k: scan.ssd_chunked(*a, c.chunk_size, **k)  # noqa: E731
                err_y, err_g, ok = _parity(scan.selective_scan, ref, shape, device)
                lines.append(f"kernel parity {name:<5} {label:<8} b {b:>6} L {L:>5} chunk {chunk:>3} calls {calls:>2}: "
                             f"error / tolerance forward {err_y:.2f}, gradients {err_g:.2f}  {'ok' if ok else 'FAIL'}")
    finally:
        os.environ.pop("THERIS_SCAN", None)
        scan.reset_backend()
    return lines


def speed_rows(device, dry: bool, repeat: int, deadline: float) -> list[str]:
    import torch

    from theris_cli.model import PRESETS, THERIS, kernel, scan

    sizes = [(8, 12), (16, 20)] if dry else [(128, 160), (512, 640)]
    if dry:
        repeat = 1
    precisions = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if device.type == "cpu":
        precisions = {"fp32": torch.float32}
    scans = ["reference"] + (["mamba"] if kernel._import_kernel()[0] is not None and device.type == "cuda" else [])
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

    from theris_cli.model import kernel

    start = time.monotonic()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --device cpu --dry-run to check the script)")
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    import theris_cli

    print(f"# gpu_check on {name}; torch {torch.__version__}; mamba-ssm {kernel.mamba_version() or 'not installed'}; "
          f"theris_cli from {Path(theris_cli.__file__).parent}"
          f"{'; DRY RUN (tiny sizes, figures mean nothing)' if args.dry_run else ''}")
    print(f"# Triton kernel: {kernel.kernel_status()}")
    lines = launch_check()
    for line in lines:  # printed as they come: the rest takes minutes
        print(line, flush=True)
    more = kernel_parity(device, args.dry_run)
    for line in more:
        print(line, flush=True)
    lines += more
    for section in (lambda: speed_rows(device, args.dry_run, args.repeat, start + args.budget),
                    lambda: oom_backoff(device, args.dry_run)):
        more = section()
        for line in more:
            print(line, flush=True)
        lines += more
    print(f"# {time.monotonic() - start:.0f} s")
    return 1 if any("FAIL" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
