"""Seeded fuzzing of every input kind through upscale_video, with the tiny random model.

Each case damages a tiny clip (32x24, 6 frames) of one kind: FFV1 (version 3, slice CRCs) in
Matroska gray8 and gray16 and in AVI, H.264/MP4, PNG and TIFF sequences, and FFV1 without slice
CRCs (version 1) in Matroska with CRC-32 elements (mkv-l1), in Matroska without them (mkv-l1-bare)
and in AVI (avi-l1).
Damage: truncation at every container boundary (each packet's start and end, each top-level
element or box) and at random offsets, zeroed and random byte spans anywhere or inside one frame's
packet (a P-frame where the codec has them), flipped bits, dropped and duplicated packets (or image
files), bogus element and box sizes, frame rate or time base fields set to 0 or absurd values, and
a stream with no frames. Every case must end in exactly one of:

- success with the full frame count (the clip's, less a dropped or plus a duplicated packet) and
  exactly the output file, or
- a TherisError with a one-line message (the CLI prints that line and exits 1), leaving no file;

never another exception (a traceback), and running the case again gives the same outcome. A
success after byte damage is "ok" when the frames decode exactly as the undamaged clip's, else
"silent": never allowed where the format can reveal damage (FFV1 slice CRCs, Matroska's CRC-32
elements, PNG's chunk CRCs: REVEALING), counted elsewhere (H.264, TIFF, and FFV1 version 1 outside
a CRC-32-carrying Matroska have no checksum over the pixels). There, a success with a frame
missing is also "silent" when the variable-frame-rate warning was given: a block lost from a file
without checksums leaves the same timestamp gap as a frame a recorder dropped.
`python tests/test_fuzz_inputs.py` prints the share of frame-changing damage each kind refused.

CI size: FUZZ_CASES cases (seed FUZZ_SEED). A larger run: `THERIS_FUZZ_CASES=2000 pytest
tests/test_fuzz_inputs.py`, or `python tests/test_fuzz_inputs.py 2000` for the tally and time.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from clips import write_clip  # noqa: E402

from theris_cli.errors import TherisError  # noqa: E402

FUZZ_CASES = int(os.environ.get("THERIS_FUZZ_CASES", "240"))
FUZZ_SEED = int(os.environ.get("THERIS_FUZZ_SEED", "9"))
T, H, W = 6, 24, 32  # frames, height, width of every base clip
KINDS = ("mkv8", "mkv16", "mp4", "avi", "png", "tiff", "mkv-l1", "avi-l1", "mkv-l1-bare")
VIDEO_KINDS = KINDS[:4]  # cut at every boundary (test_truncation_at_every_container_boundary)
IMAGE_KINDS = ("png", "tiff")
REVEALING = ("mkv8", "mkv16", "avi", "png", "mkv-l1")  # damage that changes decoded frames is always detectable

# Matroska element IDs and MP4/AVI tags worth cutting at or corrupting around
_MKV_IDS = {
    "Segment": "18538067", "SeekHead": "114D9B74", "Info": "1549A966", "Tracks": "1654AE6B",
    "Cluster": "1F43B675", "Cues": "1C53BB6B", "Tags": "1254C367",
    "TimestampScale": "2AD7B1", "DefaultDuration": "23E383", "Duration": "4489",
}
_MP4_BOXES = (b"ftyp", b"moov", b"mvhd", b"trak", b"tkhd", b"mdia", b"mdhd", b"stbl", b"stts", b"stsz", b"stco", b"mdat")
_AVI_TAGS = (b"RIFF", b"LIST", b"avih", b"strh", b"strf", b"movi", b"idx1", b"00dc")
_RATE_FIELDS = {  # tag -> (offset from the tag's end, width in bytes) of a rate or time-base integer
    "mkv": [(bytes.fromhex(_MKV_IDS["TimestampScale"]), 1, 3), (bytes.fromhex(_MKV_IDS["DefaultDuration"]), 1, 4)],
    "mp4": [(b"mdhd", 12, 4), (b"mvhd", 12, 4), (b"stts", 12, 4)],  # timescales; stts' first sample delta
    "avi": [(b"strh", 24, 4), (b"strh", 28, 4), (b"avih", 4, 4)],  # dwScale, dwRate, dwMicroSecPerFrame
}
_SIZE_FIELD = {"mp4": (0, 4), "avi": (4, 4), "mkv": (4, 8)}  # (offset from the boundary, width) of a size


# ------------------------------------------------------------------------------------- base clips


def family(kind: str) -> str:
    """The container of a video kind: 'mkv', 'mp4' or 'avi'."""
    return kind[:3]


def make_base(kind: str, folder: Path) -> Path:
    """The undamaged clip of `kind` in `folder`: a file, or a folder of images."""
    rng = np.random.default_rng(0)  # noise: bytes map to frames evenly, and no codec shrinks it away
    if kind == "mkv16":
        frames = rng.integers(1000, 60000, (T, H, W), dtype=np.uint16)
    else:
        frames = rng.integers(0, 255, (T, H, W), dtype=np.uint8)
    if kind in IMAGE_KINDS:
        ext = "png" if kind == "png" else "tif"
        write_clip(folder / kind / f"%04d.{ext}", frames)
        return folder / kind
    if kind == "mkv-l1-bare":  # FFV1 version 1 in Matroska without CRC-32 elements (as mkvmerge writes)
        path = folder / f"{kind}.mkv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w", options={"write_crc32": "0"}) as out:
            vs = out.add_stream("ffv1", rate=25, options={"level": "1"})
            vs.width, vs.height, vs.pix_fmt = W, H, "gray"
            for i, f in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(f, format="gray")
                vf.pts = i
                out.mux(vs.encode(vf))
            out.mux(vs.encode())
        return path
    options = {"level": "1"} if kind.endswith("-l1") else None
    return write_clip(folder / f"{kind}.{family(kind)}", frames, options=options)


def packets(path: Path, keyframes: bool = False) -> list[tuple]:
    """(byte offset, size) of every video packet, as the demuxer finds them (and is_keyframe)."""
    with av.open(str(path)) as c:
        found = [(p.pos, p.size, p.is_keyframe) for p in c.demux(video=0) if p.size and p.pos is not None and p.pos >= 0]
    return found if keyframes else [(pos, size) for pos, size, _ in found]


def boundaries(kind: str, data: bytes, path: Path) -> list[int]:
    """Offsets where a container structure starts or ends: every packet, element, box and chunk."""
    cuts = {0, 1, len(data) - 1}
    for pos, size in packets(path):
        cuts |= {pos, pos + size}
    tags = (
        [bytes.fromhex(h) for h in _MKV_IDS.values() if len(h) >= 8] if family(kind) == "mkv"
        else [b for b in _MP4_BOXES] if kind == "mp4" else list(_AVI_TAGS)
    )
    for tag in tags:
        start = 0
        while (i := data.find(tag, start)) >= 0:
            cuts.add(i - 4 if kind == "mp4" else i)  # an MP4 box starts at its size field
            start = i + 1
    return sorted(c for c in cuts if 0 <= c < len(data))


def remux(src: Path, dst: Path, copies: Callable[[int], int]) -> None:
    """Copy `src`'s video packets into `dst` (same container), packet i written copies(i) times.

    A dropped packet leaves a gap in the timestamps (as a lost packet does); after a duplicate the
    later timestamps move on by one frame, so that the copy is a well-formed stream."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=inp.format.name.split(",")[0]) as out:
        ins = inp.streams.video[0]
        outs = out.add_stream_from_template(ins)
        shift, step = 0, None
        for i, p in enumerate(q for q in inp.demux(ins) if q.size):
            step = step or p.duration or 1
            data, pts, dts, key, tb = bytes(p), p.pts, p.dts, p.is_keyframe, p.time_base
            for k in range(copies(i)):
                q = av.Packet(data)
                q.pts = None if pts is None else pts + shift + k * step
                q.dts = None if dts is None else dts + shift + k * step
                q.time_base, q.is_keyframe, q.stream = tb, key, outs
                out.mux(q)
            shift += step * max(copies(i) - 1, 0)


# ------------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    index: int
    kind: str
    mutation: str
    seed: int

    def __str__(self) -> str:
        return f"case {self.index}: {self.kind} {self.mutation} (seed {self.seed})"


MUTATIONS = (
    "truncate_boundary", "truncate_random", "zero_span", "random_span", "flip_bits",
    "drop_packet", "dup_packet", "bogus_size", "rate_field", "zero_frames", "packet_span",
)
# mutations after which a success must decode to the undamaged clip's frames (timing fields aside)
BYTE_MUTATIONS = ("zero_span", "random_span", "flip_bits", "bogus_size", "packet_span")
IMAGE_MUTATIONS = ("truncate_random", "zero_span", "random_span", "flip_bits", "drop_file", "dup_file", "empty_file")


def cases(count: int, seed: int = FUZZ_SEED) -> list[Case]:
    out = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        muts = IMAGE_MUTATIONS if kind in IMAGE_KINDS else MUTATIONS
        mutation = muts[(i // len(KINDS)) % len(muts)]
        out.append(Case(i, kind, mutation, seed * 1_000_003 + i))
    return out


def _bytes_mutation(mutation: str, data: bytearray, rng: random.Random, cuts: list[int] | None, kind: str) -> bytes:
    n = len(data)
    if mutation == "truncate_boundary":
        return bytes(data[: rng.choice(cuts)])
    if mutation == "truncate_random":
        return bytes(data[: rng.randrange(n)])
    if mutation == "zero_span":
        at, length = rng.randrange(n), rng.randint(1, 256)
        data[at : at + length] = bytes(len(data[at : at + length]))
    elif mutation == "random_span":
        at, length = rng.randrange(n), rng.randint(1, 256)
        span = len(data[at : at + length])
        data[at : at + length] = bytes(rng.getrandbits(8) for _ in range(span))
    elif mutation == "flip_bits":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif mutation == "bogus_size":
        skip, width = _SIZE_FIELD[family(kind)]
        at = rng.choice(cuts) + skip
        value = rng.choice([b"\x00" * 8, b"\xff" * 8, b"\x01" + b"\xff" * 7, struct.pack(">Q", rng.getrandbits(64))])
        data[at : at + width] = value[:width]
    elif mutation == "rate_field":
        fam = family(kind)
        tag, offset, width = rng.choice(_RATE_FIELDS[fam])
        found, start = [], 0
        while (i := data.find(tag, start)) >= 0:
            found.append(i)
            start = i + 1
        if found:
            at = rng.choice(found) + len(tag) + offset
            value = rng.choice([0, 1, 2 ** (8 * width) - 1, rng.getrandbits(8 * width)])
            data[at : at + width] = value.to_bytes(width, "little" if fam == "avi" else "big")
    del data[n:]  # spans written past the end never lengthen the file
    return bytes(data)


def build(case: Case, base: Path, work: Path) -> tuple[Path, int]:
    """The damaged input for `case`, and the frame count a success must have."""
    rng = random.Random(case.seed)
    work.mkdir(parents=True, exist_ok=True)
    if case.kind in IMAGE_KINDS:
        files = sorted(base.iterdir())
        dst = work / case.kind
        dst.mkdir()
        for f in files:
            (dst / f.name).write_bytes(f.read_bytes())
        victim = dst / rng.choice(files).name
        expected = len(files)
        if case.mutation == "drop_file":
            victim.unlink()
            expected -= 1
        elif case.mutation == "dup_file":
            (dst / "9999{}".format(victim.suffix)).write_bytes(victim.read_bytes())
            expected += 1
        elif case.mutation == "empty_file":
            victim.write_bytes(b"")
        else:
            victim.write_bytes(_bytes_mutation(case.mutation, bytearray(victim.read_bytes()), rng, None, case.kind))
        return dst, expected
    dst = work / base.name
    if case.mutation == "zero_frames":
        with av.open(str(base)) as inp, av.open(str(dst), "w", format=inp.format.name.split(",")[0]) as out:
            out.add_stream_from_template(inp.streams.video[0])
        return dst, 0
    if case.mutation in ("drop_packet", "dup_packet"):
        k = rng.randrange(T)
        extra = -1 if case.mutation == "drop_packet" else 1
        remux(base, dst, lambda i: 1 + extra if i == k else 1)
        return dst, T - 1 if case.mutation == "drop_packet" else T + 1
    data = bytearray(base.read_bytes())
    if case.mutation == "packet_span":  # zeroed bytes inside one frame: a P-frame where there are any
        found = packets(base, keyframes=True)
        inner = [(pos, size) for pos, size, key in found if not key] or [(pos, size) for pos, size, _ in found]
        pos, size = rng.choice(inner)
        at = pos + rng.randrange(size)
        length = min(rng.randint(1, 200), pos + size - at)
        data[at : at + length] = bytes(length)
        dst.write_bytes(bytes(data))
        return dst, T
    cuts = boundaries(case.kind, bytes(data), base)
    dst.write_bytes(_bytes_mutation(case.mutation, data, rng, cuts, case.kind))
    return dst, T


# ------------------------------------------------------------------------------------- running


def outcome(src: Path, out_dir: Path, model, expected: int, lost_frames_warned: bool = False) -> tuple[str, str]:
    """('ok', '<frames>') or ('error', message); raises AssertionError on a broken promise.

    `lost_frames_warned`: for a format without checksums, a success with another frame count is
    'silent' (not a broken promise) when the variable-frame-rate warning said the frames are
    unevenly spaced: a block lost from such a file leaves exactly the gap a recorder's dropped frame
    does, and nothing else tells them apart."""
    from theris_cli.engine.pipeline import upscale_video

    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / "out.mkv"
    try:
        res = upscale_video(src, dst, model=model, device="cpu", temporal_factor=2)
    except TherisError as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"not one line: {msg!r}"
        assert not list(out_dir.iterdir()), f"left behind: {sorted(p.name for p in out_dir.iterdir())}"
        return "error", msg
    if res.frames_in != expected and lost_frames_warned and any("variable frame rate" in w for w in res.warnings):
        dst.unlink()
        return "silent", str(res.frames_in)
    assert res.frames_in == expected, f"succeeded with {res.frames_in} frames, expected {expected}"
    assert res.frames_out == 2 * expected
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.mkv"]
    dst.unlink()
    return "ok", str(res.frames_in)


def frames_of(src: Path) -> np.ndarray:
    from theris_cli.video.decode import read_frames

    return np.stack(list(read_frames(src)))


def run_case(case: Case, bases: dict[str, Path], work: Path, model) -> tuple[str, str]:
    """('ok' | 'silent' | 'error', detail); 'silent': a success whose frames differ from the clip's."""
    src, expected = build(case, bases[case.kind], work / f"c{case.index}")
    warned = case.kind not in REVEALING
    first = outcome(src, work / f"c{case.index}-out1", model, expected, warned)
    again = outcome(src, work / f"c{case.index}-out2", model, expected, warned)
    assert first == again, f"not repeatable: {first} then {again}"
    if first[0] == "ok" and case.mutation in BYTE_MUTATIONS:
        if not np.array_equal(frames_of(src), frames_of(bases[case.kind])):
            assert case.kind not in REVEALING, "damage that changes the frames was accepted without a word"
            return "silent", first[1]
    return first


def run_all(count: int, work: Path, seed: int = FUZZ_SEED) -> tuple[Counter, list[str]]:
    """Run `count` cases; (tally of outcomes per kind, failures as one line each)."""
    from theris_cli.weights import load_model

    model = load_model("tiny-random", device="cpu")
    bases = {k: make_base(k, work / "base") for k in KINDS}
    tally: Counter = Counter()
    failures = []
    for case in cases(count, seed):
        try:
            verdict, _ = run_case(case, bases, work, model)
            tally[verdict] += 1
            tally[f"{case.kind}:{verdict}"] += 1
        except Exception as e:  # noqa: BLE001 - a broken promise or a traceback: both are reported
            tally["FAILED"] += 1
            failures.append(f"{case}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return tally, failures


@pytest.mark.parametrize("kind", KINDS)
def test_fuzzed_inputs_succeed_fully_or_fail_in_one_line(tmp_path, kind):
    from theris_cli.weights import load_model

    model = load_model("tiny-random", device="cpu")
    base = {kind: make_base(kind, tmp_path / "base")}
    mine = [c for c in cases(FUZZ_CASES) if c.kind == kind]
    failures, tally = [], Counter()
    for case in mine:
        try:
            tally[run_case(case, base, tmp_path, model)[0]] += 1
        except Exception as e:  # noqa: BLE001
            failures.append(f"{case}: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures)
    assert sum(tally.values()) == len(mine) > 0


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_truncation_at_every_container_boundary(tmp_path, kind):
    # not a sample: every cut point of boundaries(), each run twice
    from theris_cli.weights import load_model

    model = load_model("tiny-random", device="cpu")
    base = make_base(kind, tmp_path / "base")
    data = base.read_bytes()
    failures = []
    for i, cut in enumerate(boundaries(kind, data, base)):
        src = tmp_path / f"cut{i}" / base.name
        src.parent.mkdir()
        src.write_bytes(data[:cut])
        try:
            first = outcome(src, tmp_path / f"cut{i}-a", model, T)
            assert first == outcome(src, tmp_path / f"cut{i}-b", model, T), "not repeatable"
            assert first[0] == "error" or cut >= max(p + n for p, n in packets(base)), f"a cut at {cut} succeeded"
        except Exception as e:  # noqa: BLE001
            failures.append(f"{kind} cut at byte {cut} of {len(data)}: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures)


def test_every_boundary_is_a_cut_point(tmp_path):
    # the boundary list is what "truncation at every container boundary" means: every packet's
    # start and end at least, and the cases cut at each of them over a CI run
    for kind in VIDEO_KINDS:
        base = make_base(kind, tmp_path)
        cuts = boundaries(kind, base.read_bytes(), base)
        assert len(cuts) >= 2 * T, (kind, cuts)
        assert {pos for pos, _ in packets(base)} <= set(cuts)


if __name__ == "__main__":  # python tests/test_fuzz_inputs.py [COUNT [SEED]]
    import logging
    import tempfile

    logging.getLogger("theris").setLevel(logging.ERROR)  # the warnings (variable rate, ...) are expected

    count = int(sys.argv[1]) if len(sys.argv) > 1 else FUZZ_CASES
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else FUZZ_SEED
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tally, failures = run_all(count, Path(d), seed)
    totals = {k: v for k, v in tally.items() if ":" not in k}
    print(f"{count} cases (seed {seed}) in {time.perf_counter() - t0:.1f} s: {totals}")
    for kind in KINDS:  # of the cases whose damage changed the frames or was refused: how many were refused
        err, silent = tally[f"{kind}:error"], tally[f"{kind}:silent"]
        print(f"  {kind}: {err} refused, {silent} accepted with changed frames, {tally[f'{kind}:ok']} accepted intact"
              + (f"; damage detected {err}/{err + silent} = {100 * err / (err + silent):.0f}%" if err + silent else ""))
    for f in failures:
        print(f)
    sys.exit(1 if failures else 0)
