"""Resident memory the output's encoder takes, by output size, bit depth and container.

    python benchmarks/bench_encoder.py                        # 640x512, 1280x1024, 2560x2048; .mkv and .mp4
    python benchmarks/bench_encoder.py --size 5120x4096 --ext .mkv --frames 4

For each case, in a fresh process: theris's own writer (`video.VideoWriter`, the codec and options
`theris upscale` picks for the extension) is opened on a temporary file and fed --frames frames of a
smooth gradient with a moving noise texture at the given depth. Prints the resident memory the writer added
after its first frame and at its peak (MiB, and bytes per output pixel), and the encoded frame's size.
This is the encoder's share of `theris upscale`'s peak memory, which the network's does not include.

    python benchmarks/bench_encoder.py --lookahead VIDEO      # x264 lookahead 40 (its default), 20, 10

encodes VIDEO's frames (8-bit; played forward, back, forward and back, so that a short clip is
longer than the lookahead) with libx264 at theris's default CRF and each lookahead, in a fresh
process each, and prints the encoder's peak resident memory, the size per frame and the PSNR of the
decoded frames against the frames encoded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_SIZES = ("640x512", "1280x1024", "2560x2048")


def _resident_kib() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


def child(width: int, height: int, bits: int, ext: str, frames: int) -> dict:
    import numpy as np

    from theris_cli.video.encode import VideoWriter

    top = (1 << bits) - 1
    rng = np.random.default_rng(0)
    gradient = np.linspace(0.1, 0.8, width)[None, :] * top
    texture = rng.normal(0.0, 0.01 * top, (height, width + frames))
    dtype = np.uint8 if bits == 8 else np.uint16
    frame_at = lambda i: np.clip(gradient + texture[:, i:i + width], 0, top).astype(dtype)  # noqa: E731
    first = frame_at(0)  # the frames themselves are not the encoder's
    with tempfile.TemporaryDirectory() as tmp:
        base = _resident_kib()
        writer = VideoWriter(Path(tmp) / f"out{ext}", width, height, 25, bits)
        writer.write(first)
        after_first = peak = _resident_kib()
        for i in range(1, frames):
            writer.write(frame_at(i))
            peak = max(peak, _resident_kib())
        writer.close()
        size = (Path(tmp) / f"out{ext}").stat().st_size
    return {
        "codec": writer.codec, "pix_fmt": writer.pix_fmt, "first_kib": after_first - base,
        "peak_kib": peak - base, "file_bytes": size,
    }


def lookahead_child(video: str, frames_ahead: int) -> dict:
    import av
    import numpy as np

    from theris_cli.video.encode import DEFAULT_CRF

    with av.open(video) as src:
        clip = [f.to_ndarray(format="gray") for f in src.decode(video=0)]
    clip = (clip + clip[::-1]) * 2
    height, width = clip[0].shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.mp4"
        base = peak = _resident_kib()
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25, options={"crf": str(DEFAULT_CRF), "rc-lookahead": str(frames_ahead)})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in clip:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray").reformat(format="yuv420p")))
                peak = max(peak, _resident_kib())
            out.mux(stream.encode())
        with av.open(str(path)) as back:
            decoded = [f.reformat(format="gray").to_ndarray() for f in back.decode(video=0)]
        size = path.stat().st_size
    assert len(decoded) == len(clip), f"{len(decoded)} frames decoded of {len(clip)}"
    mse = float(np.mean([np.mean((a.astype(np.float64) - b) ** 2) for a, b in zip(clip, decoded)]))
    return {"frames": len(clip), "peak_kib": peak - base, "bytes": size, "psnr": 10 * np.log10(255**2 / mse)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", action="append", help=f"WxH output size (repeatable; default {', '.join(DEFAULT_SIZES)})")
    ap.add_argument("--bits", type=int, action="append", choices=(8, 16), help="bit depth (repeatable; default 8 and 16)")
    ap.add_argument("--ext", action="append", help="output extension (repeatable; default .mkv and .mp4)")
    ap.add_argument("--frames", type=int, default=48,
                    help="frames to encode (default 48: more than x264's default lookahead of 40 holds)")
    ap.add_argument("--lookahead", metavar="VIDEO", help="compare x264 lookaheads on this video's frames")
    ap.add_argument("--lookahead-child", nargs=2, metavar=("VIDEO", "FRAMES"), help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=4, metavar=("W", "H", "BITS", "EXT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        w, h, bits, ext = args.child
        print(json.dumps(child(int(w), int(h), int(bits), ext, args.frames)))
        return 0
    if args.lookahead_child:
        print(json.dumps(lookahead_child(args.lookahead_child[0], int(args.lookahead_child[1]))))
        return 0
    if args.lookahead:
        print(f"{'lookahead':>9} {'frames':>6} {'peak MiB':>9} {'KiB/frame':>10} {'PSNR dB':>8}")
        for ahead in (40, 20, 10):
            cmd = [sys.executable, __file__, "--lookahead-child", args.lookahead, str(ahead)]
            run = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"{ahead:>9} {r['frames']:>6} {r['peak_kib'] / 1024:>9.0f} {r['bytes'] / r['frames'] / 1024:>10.1f} "
                  f"{r['psnr']:>8.3f}", flush=True)
        return 0

    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in (args.size or DEFAULT_SIZES)]
    print(f"{args.frames} frames each")
    print(f"{'output':>10} {'ext':>5} {'bits':>4} {'codec':>8} {'pix_fmt':>9} {'first MiB':>10} {'peak MiB':>9} "
          f"{'B/pixel':>8} {'frame KiB':>10}")
    for ext in args.ext or (".mkv", ".mp4"):
        for bits in args.bits or (8, 16):
            if ext == ".mp4" and bits == 16:
                continue  # 16-bit needs an explicit pix_fmt there (`theris upscale --pix-fmt`)
            for w, h in sizes:
                cmd = [sys.executable, __file__, "--child", str(w), str(h), str(bits), ext, "--frames", str(args.frames)]
                run = subprocess.run(cmd, capture_output=True, text=True)
                if run.returncode:
                    lines = run.stderr.strip().splitlines() or ["(no output)"]
                    print(f"{w}x{h:<5} {ext:>5} {bits:>4}  failed: {lines[-1]}")
                    continue
                r = json.loads(run.stdout.strip().splitlines()[-1])
                print(f"{f'{w}x{h}':>10} {ext:>5} {bits:>4} {r['codec']:>8} {r['pix_fmt']:>9} "
                      f"{r['first_kib'] / 1024:>10.0f} {r['peak_kib'] / 1024:>9.0f} "
                      f"{r['peak_kib'] * 1024 / (w * h):>8.1f} {r['file_bytes'] / args.frames / 1024:>10.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
