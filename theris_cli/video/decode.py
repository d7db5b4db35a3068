"""Decode any input PyAV can read into grey frames: `(H, W)` uint8 or uint16, in display order.

    for frame in read_frames("in.mp4"): ...       # a generator: one frame in memory at a time

Inputs: a video file (mp4, mkv, avi, mov, ...), an image-sequence pattern (`frames/%05d.png`,
numbered like FFmpeg's image2: the first file within 0..4 of the pattern, then consecutive), or a
directory of images (natural order: 2.png before 10.png). Pixel formats, and what a frame becomes:

- grey (`gray`, `gray10le`, ..., `gray16le`): the raw values, uint8 for 8-bit formats and uint16
  for 9..16-bit ones (a 14-bit `gray14le` sample of 9000 stays 9000; nothing is rescaled).
- YUV: the luma plane. Limited-range luma (16..235 in 8-bit, the default for H.264 and whenever the
  range is unspecified) is stretched to full range, `round((Y - 16) * 255 / 219)`, so that every
  input reaches the network on the same 0..255 scale; the writer applies the exact inverse when it
  writes limited-range YUV again, so Y values survive a round trip. Full-range (`yuvj*`, or tagged
  "pc"/"jpeg") luma is kept as it is.
- RGB / palette: the grey value when R = G = B, else Rec.601 luma; `probe` flags such video as
  `palette_suspected` because false colour is not temperature.

Errors are `InputError`s that name the file, and for damage mid-stream the frame index (counting
from 0) where decoding went wrong: FFmpeg conceals many errors and a truncated Matroska file just
ends early, so decoder error logs, corrupt-frame flags, a Matroska stream whose last frame ends
before its header's duration and an AVI with fewer frames than its header are all turned into
errors rather than silently short or damaged output; `integrity` holds those checks, the strict
decoder settings and what each format can and cannot reveal. Decoding runs in the calling thread only (no
FFmpeg threads) and collects that thread's error logs per packet, so the verdict on a file never
depends on thread timing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError
from .integrity import check_complete, damaged, decoder_errors, reason, strict

__all__ = ["read_frames", "frame_to_grey", "colour_fraction", "image_files", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".pgm", ".ppm", ".pnm", ".bmp", ".jpg", ".jpeg", ".dpx", ".exr")
_PATTERN = re.compile(r"%0?\d*d")  # printf-style frame number, as FFmpeg's image2 accepts
_START_RANGE = 5  # FFmpeg's image2 default start_number_range: first file among start 0..4

# A pixel differs from neutral grey when a chroma sample is off by more than this many 8-bit counts
# (H.264 at a visually lossless CRF keeps grey chroma within about 1 count).
CHROMA_TOLERANCE_8BIT = 6


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield each frame of `path` as an `(H, W)` uint8/uint16 grey array, in display order.

    Raises InputError (naming the file, and the frame index on damage) for a missing file, a
    directory without images, a file that is not a video, audio only, no frames, a truncated or
    corrupt stream, or frames that change size or pixel format mid-stream.
    """
    shape = fmt = None
    for index, frame in enumerate(decode_av_frames(path)):
        if shape is None:
            shape, fmt = (frame.height, frame.width), frame.format.name
        elif (frame.height, frame.width) != shape or frame.format.name != fmt:
            raise InputError(
                f"{path}: frame {index} is {frame.width}x{frame.height} {frame.format.name}, but the video "
                f"started as {shape[1]}x{shape[0]} {fmt}; split the video where its format changes"
            )
        yield frame_to_grey(frame)


# ---------------------------------------------------------------------------------------------
# opening and decoding


def image_files(path: str | Path) -> list[Path] | None:
    """The image files `path` names (a `%d` pattern or a directory of images), else None.

    A name with `%d` that is an existing file is that file, not a pattern.

    Raises InputError when `path` is such a pattern or directory but holds no image.
    """
    p = Path(path)
    if _PATTERN.search(p.name) and not p.is_file():  # a real file named "pct%d.mkv" is that file
        files = []
        start = next((s for s in range(_START_RANGE) if (p.parent / (p.name % s)).is_file()), None)
        if start is None:
            raise InputError(f"{path}: no image matches this pattern (tried numbers {0}..{_START_RANGE - 1} first)")
        n = start
        while (p.parent / (p.name % n)).is_file():
            files.append(p.parent / (p.name % n))
            n += 1
        return files
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise InputError(
                f"{path}: is a directory with no images in it; give a video file, an image pattern such "
                f"as frames/%05d.png, or a directory of {'/'.join(e[1:] for e in IMAGE_EXTENSIONS[:3])} files"
            )
        exts = {f.suffix.lower() for f in files}
        if len(exts) > 1:
            kinds = ", ".join(sorted(exts))
            raise InputError(f"{path}: holds images of several types ({kinds}); keep one sequence per directory")
        return sorted(files, key=_natural_key)
    return None


def _natural_key(p: Path) -> list:
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", p.name)]


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open one media file for reading, mapping every failure to a one-line InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file; check the path")
    if p.is_dir():
        raise InputError(f"{path}: is a directory; give a video file or an image pattern such as frames/%05d.png")
    try:
        return av.open(str(p), "r")
    except PermissionError:
        raise InputError(f"{path}: cannot be read (permission denied)") from None
    except av.error.EOFError:
        raise InputError(f"{path}: ends before its first video frame (empty or truncated file)") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise InputError(
            f"{path}: not a video FFmpeg can read ({reason(e)}); is it truncated or another kind of file?"
        ) from None


def video_stream(container: av.container.InputContainer, path: str | Path) -> av.video.stream.VideoStream:
    """The first real video stream (cover art in audio files does not count)."""
    for s in container.streams.video:
        if not (s.disposition & av.stream.Disposition.attached_pic):
            if s.codec_context is None:  # e.g. an MP4 whose sample description was cut off
                raise InputError(
                    f"{path}: its video stream has no decoder (damaged header or unknown codec); is it truncated?"
                )
            return s
    if container.streams.audio:
        raise InputError(f"{path}: has no video stream (audio only); give a video file")
    raise InputError(f"{path}: has no video stream; give a video file")


def decode_av_frames(path: str | Path) -> Iterator[av.VideoFrame]:
    """Decoded PyAV frames of `path` (video or image sequence), with every failure an InputError."""
    files = image_files(path)
    if files is not None:
        yield from _decode_images(path, files)
        return
    with open_container(path) as container:
        stream = video_stream(container, path)
        # No FFmpeg threads: with frame threads a decoder reports a damaged packet from a worker
        # thread, some calls later or not at all before the capture closes, so the same file would
        # be caught on some runs only. Thermal frames are small; one thread decodes them far faster
        # than the network runs.
        stream.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        strict(stream)
        n = 0
        read = 0  # packets with data, discarded ones included (an MP4 edit list hides some frames)
        end = None  # where the last frame ends, in seconds (its pts plus its duration)
        packets = container.demux(stream)
        while True:
            try:
                with decoder_errors() as errors:
                    packet = next(packets, None)
                    if packet is None:
                        break
                    read += 1 if packet.size else 0
                    frames = packet.decode()
            except av.error.FFmpegError as e:
                raise damaged(path, n, reason(e)) from None
            if errors:
                raise damaged(path, n, errors[0])
            for frame in frames:
                if frame.is_corrupt:
                    raise damaged(path, n, "the decoder flagged the frame as corrupt")
                if frame.pts is not None and frame.time_base:
                    ends = (frame.pts + (frame.duration or 0)) * Fraction(frame.time_base)
                    end = ends if end is None else max(end, ends)
                n += 1
                yield frame
        check_complete(path, container, stream, n, end, read)
        if n == 0:
            raise InputError(f"{path}: contains no video frames")


def _decode_images(path: str | Path, files: list[Path]) -> Iterator[av.VideoFrame]:
    for index, f in enumerate(files):
        try:
            with av.open(str(f), "r") as c:
                stream = c.streams.video[0]
                stream.thread_type = "NONE"  # as for video: every log line arrives in this thread
                strict(stream)  # PNG: chunk CRCs checked
                with decoder_errors() as errors:
                    frame = next(c.decode(stream), None)
        except (av.error.FFmpegError, ValueError, IndexError) as e:
            raise InputError(f"{path}: image {f.name} (frame {index}) cannot be read: {reason(e)}") from None
        if frame is None or errors:
            detail = errors[0] if errors else "no picture in it"
            raise InputError(f"{path}: image {f.name} (frame {index}) cannot be read: {detail}")
        yield frame


# ---------------------------------------------------------------------------------------------
# pixels


def _plane(frame: av.VideoFrame, index: int, dtype: np.dtype | str, width: int, height: int) -> np.ndarray:
    """One plane of `frame` as an `(height, width)` array (a copy, without line padding)."""
    plane = frame.planes[index]
    dtype = np.dtype(dtype)
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
    return rows[:height, :width].copy()


def _luma_bits(fmt: av.VideoFormat) -> int:
    return fmt.components[0].bits


def _kind(fmt: av.VideoFormat) -> str:
    """'gray', 'yuv' or 'rgb' (palette formats count as rgb: their palette can hold any colour)."""
    if fmt.is_rgb or fmt.has_palette or fmt.is_bayer:
        return "rgb"
    colour = [c for c in fmt.components if not c.is_alpha]
    if colour and colour[0].is_luma and len(colour) == 1:
        return "gray"
    if colour and colour[0].is_luma:
        return "yuv"
    return "rgb"


def pixel_kind(pix_fmt: str) -> tuple[str, int]:
    """('gray' | 'yuv' | 'rgb', significant bits of the luma or first colour) for a pix_fmt name."""
    fmt = av.VideoFormat(pix_fmt)
    return _kind(fmt), _luma_bits(fmt)


def is_full_range(frame: av.VideoFrame) -> bool:
    """Full-range luma: `yuvj*` formats or frames tagged JPEG/pc range (2); else limited."""
    return frame.format.name.startswith("yuvj") or frame.color_range == 2


def _luma_plane_raw(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a YUV frame as raw samples (uint8 or uint16), any layout."""
    fmt = frame.format
    bits = _luma_bits(fmt)
    y = fmt.components[0]
    own_plane = fmt.is_planar and all(c.plane != y.plane for c in fmt.components[1:])
    if own_plane and y.plane == 0 and bits <= 16 and not fmt.name.startswith(("xv", "v30", "y2", "p0", "p2", "p4")):
        dtype = np.uint8 if bits <= 8 else (">u2" if fmt.is_big_endian else "<u2")
        return _plane(frame, 0, dtype, frame.width, frame.height).astype(np.uint8 if bits <= 8 else np.uint16)
    # packed or MSB-aligned layouts: let swscale repack into planar YUV of the same range
    target = "yuv444p" if bits <= 8 else "yuv444p16le"
    out = frame.reformat(format=target)
    y16 = _plane(out, 0, np.uint8 if bits <= 8 else "<u2", frame.width, frame.height)
    if bits > 8 and bits < 16:
        y16 = (y16.astype(np.uint32) >> (16 - bits)).astype(np.uint16)  # back to the source's scale
    return y16


def limited_to_full(y: np.ndarray, bits: int) -> np.ndarray:
    """Stretch limited-range luma (16..235 at 8 bits, scaled by 2^(bits-8)) to 0..2^bits-1."""
    return _limited_to_full_table(bits)[y]


@lru_cache(maxsize=None)
def _limited_to_full_table(bits: int) -> np.ndarray:
    # a lookup table over every code value: one indexing per frame instead of float arithmetic
    scale = 1 << (bits - 8)
    top = (1 << bits) - 1
    y = np.arange(1 << bits, dtype=np.float64)
    full = np.clip(np.rint((y - 16 * scale) * (top / (219 * scale))), 0, top)
    return full.astype(np.uint8 if bits <= 8 else np.uint16)


def full_to_limited(v: np.ndarray, bits: int) -> np.ndarray:
    """Exact inverse of `limited_to_full` on its outputs (each step of it is > 1 count wide)."""
    v = np.asarray(v)
    if v.dtype in (np.uint8, np.uint16):  # every frame an encoder writes: one indexing per frame
        return _full_to_limited_table(bits, v.dtype.itemsize)[v]
    return _full_to_limited(v, bits)


def _full_to_limited(v: np.ndarray, bits: int) -> np.ndarray:
    scale = 1 << (bits - 8)
    top = (1 << bits) - 1
    y = np.rint(v.astype(np.float64) * (219 * scale / top) + 16 * scale)
    return y.astype(np.uint8 if bits <= 8 else np.uint16)


@lru_cache(maxsize=None)
def _full_to_limited_table(bits: int, itemsize: int) -> np.ndarray:
    # the same arithmetic over every value of the input's integer type, so indexing equals it exactly
    return _full_to_limited(np.arange(1 << (8 * itemsize)), bits)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 or uint16 RGB of any RGB/palette/bayer frame."""
    deep = _luma_bits(frame.format) > 8 and not frame.format.has_palette
    return frame.reformat(format="rgb48le" if deep else "rgb24").to_ndarray()


def frame_to_grey(frame: av.VideoFrame) -> np.ndarray:
    """One decoded frame -> `(H, W)` uint8 (8-bit formats) or uint16 (9..16-bit), per the module doc."""
    fmt = frame.format
    kind, bits = _kind(fmt), _luma_bits(fmt)
    if bits > 16:
        raise InputError(f"pixel format {fmt.name} ({bits}-bit float) is not supported; convert to gray16le")
    if kind == "gray":
        if fmt.name in ("gray", "gray8"):
            return _plane(frame, 0, np.uint8, frame.width, frame.height)
        if re.fullmatch(r"gray(9|1[0-6])(le|be)", fmt.name):
            return _plane(frame, 0, ">u2" if fmt.is_big_endian else "<u2", frame.width, frame.height).astype(np.uint16)
        # gray with alpha, 1-bit and other layouts
        return frame.reformat(format="gray" if bits <= 8 else "gray16le").to_ndarray()
    if kind == "yuv":
        y = _luma_plane_raw(frame)
        return y if is_full_range(frame) else limited_to_full(y, max(bits, 8))
    rgb = _rgb(frame)
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    luma = (299 * r + 587 * g + 114 * b + 500) // 1000  # Rec.601 weights; exact when R = G = B
    return luma.astype(rgb.dtype)


def colour_fraction(frame: av.VideoFrame) -> float:
    """Share of pixels whose colour is clearly not grey (0.0 for grey formats).

    False-colour palettes (iron, rainbow) put most pixels far from neutral; grey video through a
    lossy YUV codec stays within a count or two of neutral chroma.
    """
    fmt = frame.format
    kind, bits = _kind(fmt), _luma_bits(fmt)
    if kind == "gray":
        return 0.0
    if kind == "yuv":
        deep = bits > 8
        out = frame.reformat(format="yuv444p16le" if deep else "yuv444p")
        # the chroma planes one by one: PyAV's to_ndarray is (H, W, 3) for yuv444p16le, not planar
        chroma = np.stack([_plane(out, i, "<u2" if deep else np.uint8, frame.width, frame.height) for i in (1, 2)])
        mid, tol = (32768, CHROMA_TOLERANCE_8BIT * 256) if deep else (128, CHROMA_TOLERANCE_8BIT)
        chroma = chroma.astype(np.int32) - mid
        off = np.abs(chroma).max(axis=0) > tol
        return float(off.mean())
    raw = _rgb(frame)
    tol = CHROMA_TOLERANCE_8BIT * (257 if raw.dtype == np.uint16 else 1)
    rgb = raw.astype(np.int32)
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float((spread > tol).mean())
