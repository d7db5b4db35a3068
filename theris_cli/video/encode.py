"""Write grey frames to a video file or an image sequence, streaming, with exact timestamps.

    with VideoWriter("out.mkv", width, height, Fraction(60000, 1001), bit_depth=16, source=info) as w:
        for frame in frames:          # (H, W) uint16 (bit_depth 16) or uint8 (bit_depth 8)
            w.write(frame)

The container comes from the extension; `codec`, `crf` and `pix_fmt` override the defaults:

| path            | codec    | pix_fmt (8-bit / 16-bit)       | notes                                      |
|-----------------|----------|--------------------------------|--------------------------------------------|
| `.mkv`          | ffv1     | gray / gray16le                | lossless, slice CRCs (damage is detected)  |
| `.avi`          | ffv1     | gray / gray16le                | lossless; AVI stores no rotation           |
| `.mp4`, `.mov`  | libx264  | yuv420p (limited range), crf 17| 16-bit needs an explicit pix_fmt           |
| `%05d.png`      | png      | gray / gray16be                | numbered from 1; no audio                  |
| `%05d.tif(f)`   | tiff     | gray / gray16le                | numbered from 1; no audio                  |

Values: frames are full-range grey, as `read_frames` yields them. Into limited-range YUV the writer
maps luma back with `full_to_limited` (the exact inverse of the reader's stretch), chroma neutral.
A 16-bit video written to a narrower format (an explicit `pix_fmt` such as yuv420p) is rescaled
lo..hi -> 0..2^bits-1 with the video's `levels` when given, else 0..65535 -> 0..2^bits-1.

Timestamps: frame i has pts i in a 1/fps time base and lasts one tick, so the rate is stored
exactly where the container can (mp4/mov/avi: 30000/1001 and 9/1 read back exactly). Matroska
stores times in milliseconds: the rate still reads back exactly (FFmpeg writes a frame duration in
nanoseconds and recovers the fraction), but each timestamp, and the duration, is rounded to 1 ms.

`source` (the input's VideoInfo) carries over its audio (packets copied; re-encoded only when the
container cannot hold the codec), rotation and container tags (title, ...) where the container can
store them; what could not be carried is listed in `writer.notes` for the caller to report.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np

from ..errors import OutputError, UsageError
from ..outputs import output_error
from .decode import full_to_limited, pixel_kind
from .ffv1 import readable_ffv1
from .levels import Levels
from .probe import VideoInfo

__all__ = ["VideoWriter", "PacketCopy", "DEFAULT_CRF", "output_kind"]

DEFAULT_CRF = 17  # x264 CRF that is visually lossless for 8-bit footage (18 is the usual quote)
_PATTERN = re.compile(r"%0?\d*d")
_CONTAINERS = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".avi": "avi"}
_IMAGE_CODECS = {".png": "png", ".tif": "tiff", ".tiff": "tiff"}
_DEFAULT_CODEC = {".mkv": "ffv1", ".avi": "ffv1", ".mp4": "libx264", ".mov": "libx264"}
_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1"}
_CRF_MAX = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "libsvtav1": 63, "libaom-av1": 63}  # the encoders' own ranges
_ROTATION_CONTAINERS = {".mkv", ".mp4", ".mov"}
_AUDIO_FALLBACK = {".mkv": "flac", ".mp4": "aac", ".mov": "aac", ".avi": "pcm_s16le"}
# FFV1 v3 with per-slice CRCs. x264 looks 10 frames ahead instead of 40: its lookahead holds
# every frame it looks at (829 MiB at 2560x2048 against 344, `benchmarks/bench_encoder.py`),
# and theris's outputs encode to the same size and quality either way (docs/performance.md).
_CODEC_OPTIONS = {"ffv1": {"level": "3", "slicecrc": "1"}, "libx264": {"rc-lookahead": "10"}}


def output_kind(path: str | Path) -> str:
    """'images' for a `%d` pattern with an image extension, 'video' for a known container.

    Raises OutputError naming the supported extensions otherwise (callers can check early).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if p.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name such as {p / 'out.mkv'} (for every video in a "
                          "folder: theris batch IN_DIR OUT_DIR)")
    if _PATTERN.search(p.name) and ext in _IMAGE_CODECS:
        return "images"
    if ext in _IMAGE_CODECS:
        raise OutputError(f"{path}: a single image cannot hold a video; write a video such as out.mkv (16-bit lossless)")
    if ext not in _CONTAINERS:
        raise OutputError(f"{path}: unknown output type {ext or '(no extension)'}; use .mkv, .mp4, .mov or .avi")
    return "video"


def check_crf(crf: int | None, codec: str | None = None, ext: str | None = None) -> None:
    """Refuse a CRF outside the encoder's range (`codec`, else the default for `ext`): encoders
    clamp it without a word (x264 takes --crf 100 as 51)."""
    codec = codec or _DEFAULT_CODEC.get((ext or "").lower())
    top = _CRF_MAX.get(codec or "")
    if crf is not None and top is not None and not 0 <= crf <= top:
        raise UsageError(f"--crf {crf}: {codec} takes 0 (best) to {top} (smallest file)")


class VideoWriter:
    """Stream `(height, width)` grey frames into `path`; see the module doc for formats."""

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: Fraction | int,
        bit_depth: int,
        codec: str | None = None,
        crf: int | None = None,
        pix_fmt: str | None = None,
        source: VideoInfo | None = None,
        levels: Levels | None = None,
    ) -> None:
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
        self.path = Path(path)
        self.width, self.height, self.bit_depth = int(width), int(height), bit_depth
        self.fps = Fraction(fps)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.levels = levels
        self.notes: list[str] = []  # what could not be carried over, for the caller to report
        self.frames_written = 0
        self._container: Any = None
        self._closed = False
        self._audio: _AudioCopy | None = None
        # called with each frame's packets before they are written (resume keeps them: PacketCopy);
        # its errors other than OSError and FFmpeg's pass through as they are
        self.packet_tap: Callable[[list], None] | None = None

        self.kind = output_kind(self.path)
        ext = self.path.suffix.lower()
        self.codec = codec or (_IMAGE_CODECS[ext] if self.kind == "images" else _DEFAULT_CODEC[ext])
        self.pix_fmt = pix_fmt or self._default_pix_fmt(ext)
        self._target_kind, self._target_bits = self._check_pix_fmt()
        # limited-range luma for YUV (what players assume for H.264) unless the format is yuvj*
        self._full_range = self.pix_fmt.startswith("yuvj")

        options = dict(_CODEC_OPTIONS.get(self.codec, {}))
        if crf is not None or self.codec in ("libx264", "libx265"):
            if self.codec in _CRF_CODECS:
                check_crf(crf, self.codec)
                options["crf"] = str(DEFAULT_CRF if crf is None else crf)
            else:
                self.notes.append(f"--crf ignored: {self.codec} has no CRF (it is lossless or fixed-quality)")
        if self.codec == "ffv1" and self.kind == "video":
            options = readable_ffv1(self.path, self.width, self.height, self.pix_fmt, options)
        self._open(options, source)

    @property
    def stored_bits(self) -> int:
        """Bits per sample the file stores: 8 for yuv420p even from 16-bit frames, 16 for gray16le."""
        return self._target_bits

    # ------------------------------------------------------------------ setup

    def _default_pix_fmt(self, ext: str) -> str:
        codec = self.codec
        if self.kind == "images":
            if self.bit_depth == 8:
                return "gray"
            return "gray16be" if codec == "png" else "gray16le"
        formats = _encoder_formats(codec, self.path)
        grey = ["gray"] if self.bit_depth == 8 else ["gray16le", "gray16be"]
        if codec not in ("libx264", "libx265", "h264"):  # H.264/5 'gray' is High 4:0:0: few players
            for name in grey:
                if name in formats:
                    return name
        if self.bit_depth == 8:
            for name in ("yuv420p", "yuv444p", "gbrp", "rgb24", "bgr0"):
                if name in formats or not formats:
                    return name
        else:
            for name in ("yuv444p16le", "yuv420p16le", "gbrp16le", "rgb48le"):
                if name in formats:
                    return name
            keep = (f"leave out --codec {codec} (the default, FFV1, keeps 16 bits losslessly)"
                    if _DEFAULT_CODEC.get(ext) == "ffv1" else "write .mkv (lossless 16-bit FFV1)")
            raise OutputError(
                f"{self.path}: {codec} cannot store 16-bit video; {keep} or "
                f"pass --pix-fmt (e.g. yuv420p) to reduce it to that format's depth"
            )
        raise OutputError(f"{self.path}: {codec} offers no grey, YUV or RGB pixel format; choose another --codec")

    def _check_pix_fmt(self) -> tuple[str, int]:
        try:
            kind, bits = pixel_kind(self.pix_fmt)
        except (ValueError, av.error.FFmpegError):
            raise OutputError(f"{self.path}: unknown pixel format {self.pix_fmt!r}; see `ffmpeg -pix_fmts`") from None
        formats = _encoder_formats(self.codec, self.path)
        if formats and self.pix_fmt not in formats:
            raise OutputError(
                f"{self.path}: {self.codec} cannot encode {self.pix_fmt}; it takes {', '.join(sorted(formats)[:12])}"
            )
        if bits > 16:
            raise OutputError(f"{self.path}: {self.pix_fmt} is a float format; use an integer one")
        if kind == "yuv" and (self.width % 2 or self.height % 2) and self.codec in ("libx264", "libx265", "h264"):
            probe_fmt = av.VideoFormat(self.pix_fmt, 2, 2)  # chroma planes 1 sample wide/high: subsampled
            if any(c.width == 1 or c.height == 1 for c in probe_fmt.components[1:] if not c.is_alpha):
                raise OutputError(
                    f"{self.path}: {self.codec} in {self.pix_fmt} needs an even width and height, got "
                    f"{self.width}x{self.height}; write .mkv or pass --pix-fmt yuv444p"
                )
        return kind, bits

    def _open(self, options: dict[str, str], source: VideoInfo | None) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            raise OutputError(f"{self.path}: cannot write: folder {parent} does not exist")
        try:
            if self.kind == "images":
                self._container = av.open(str(self.path), "w", format="image2")
            else:
                self._container = av.open(str(self.path), "w", format=_CONTAINERS[self.path.suffix.lower()])
            out = self._container
            stream = out.add_stream(self.codec, rate=self.fps, options=options)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, self.pix_fmt
            stream.time_base = 1 / self.fps  # the muxer may change it (Matroska: 1 ms); frames keep 1/fps
            if self._target_kind == "yuv":
                stream.codec_context.color_range = 2 if self._full_range else 1
            self._stream = stream
            if source is not None:
                self._carry_over(source)
            out.start_encoding()  # header now: a bad option or codec fails here, not at frame 1
        except OutputError:
            self._abort()
            raise
        except (av.error.FFmpegError, OSError, ValueError) as e:
            self._abort()
            raise output_error(e, self.path, "starting the file") from None

    def _carry_over(self, source: VideoInfo) -> None:
        ext = self.path.suffix.lower()
        if source.rotation:
            if self.kind == "video" and ext in _ROTATION_CONTAINERS:
                self._stream.set_display_rotation(source.rotation)
            else:
                self.notes.append(f"rotation ({source.rotation} degrees) dropped: {ext} output cannot store it")
        if self.kind == "images":
            if source.has_audio:
                self.notes.append("audio dropped: image sequences have no audio")
            return
        for key, value in source.metadata.items():
            self._container.metadata[key] = value
        if source.has_audio:
            self._audio = _AudioCopy(source.path, self._container, ext)
            if self._audio.reencode:
                a = self._audio
                self.notes.append(f"audio re-encoded {a.src_codec} -> {a.dst_codec}: {a.reason}")

    # ------------------------------------------------------------------ writing

    def write(self, frame: np.ndarray) -> None:
        """Encode one `(height, width)` frame: uint8 for bit_depth 8, uint16 for bit_depth 16."""
        if self._closed:
            raise ValueError("write() on a closed VideoWriter")
        frame = np.asarray(frame)
        want = np.uint8 if self.bit_depth == 8 else np.uint16
        if frame.shape != (self.height, self.width) or frame.dtype != want:
            raise ValueError(
                f"expected a ({self.height}, {self.width}) {np.dtype(want).name} frame, got {frame.shape} {frame.dtype}"
            )
        vf = self._to_av_frame(frame)
        vf.pts = self.frames_written
        vf.time_base = 1 / self.fps
        vf.duration = 1  # one tick of 1/fps: the container records the last frame's length too
        try:
            packets = self._stream.encode(vf)
            if self.packet_tap is not None:
                self.packet_tap(packets)
            self._container.mux(packets)
            self.frames_written += 1
            if self._audio is not None:
                self._audio.copy_until(self.frames_written / self.fps)
        except (av.error.FFmpegError, OSError) as e:
            self._abort()
            raise output_error(e, self.path, f"frame {self.frames_written}") from None

    def stores_as(self, bit_depth: int) -> bool:
        """Whether this writer's packets are those of ``VideoWriter(x.mkv, ..., bit_depth, codec="ffv1")``
        for the same frames (lossless FFV1 of grey at that depth), so that a `PacketCopy` of them
        keeps the frames as such a writer would without encoding them twice."""
        grey = "gray" if bit_depth == 8 else "gray16le"
        return self.kind == "video" and self.codec == "ffv1" and self.bit_depth == bit_depth and self.pix_fmt == grey

    def close(self) -> None:
        """Flush the encoder, copy the rest of the audio, and finish the file."""
        if self._closed:
            return
        try:
            self._container.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.copy_until(None)
            self._closed = True
            self._audio = None
            self._container.close()
        except (av.error.FFmpegError, OSError) as e:
            self._abort()
            raise output_error(e, self.path, "finishing the file") from None

    def _abort(self) -> None:
        """Close whatever is open without flushing; the caller removes the partial file."""
        self._closed = True
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        _close_quietly(self._container)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    # ------------------------------------------------------------------ pixels

    def _scale_to_target(self, frame: np.ndarray) -> np.ndarray:
        """Full-range grey at the writer's depth -> full-range samples at the pix_fmt's depth."""
        tb = self._target_bits
        top = (1 << tb) - 1
        src_bits = self.bit_depth
        if tb == src_bits or (tb >= 16 and src_bits == 16):
            return frame
        if src_bits == 16 and tb < 16:
            lo, hi = (self.levels.lo, self.levels.hi) if self.levels is not None else (0, 65535)
            x = (frame.astype(np.float64) - lo) * (top / (hi - lo))
        else:  # 8-bit into a deeper format: 0..255 -> 0..top, exactly invertible
            x = frame.astype(np.float64) * (top / 255)
        return np.clip(np.rint(x), 0, top).astype(np.uint8 if tb <= 8 else np.uint16)

    def _to_av_frame(self, frame: np.ndarray) -> av.VideoFrame:
        v = self._scale_to_target(frame)
        tb = self._target_bits
        kind, fmt = self._target_kind, self.pix_fmt
        if kind == "gray":
            if fmt in av.video.frame.supported_np_pix_fmts:
                return av.VideoFrame.from_ndarray(np.ascontiguousarray(v), format=fmt)
            grey = av.VideoFrame.from_ndarray(np.ascontiguousarray(v), format="gray" if tb <= 8 else "gray16le")
            return grey.reformat(format=fmt)
        if kind == "rgb":
            rgb = np.repeat(v[..., None], 3, axis=-1)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24" if tb <= 8 else "rgb48le")
            return vf if vf.format.name == fmt else vf.reformat(format=fmt)
        # YUV: luma in its own plane, chroma neutral
        y = v if self._full_range else full_to_limited(v, max(tb, 8))
        return _yuv_frame(y, fmt, tb, self.width, self.height, self._full_range)


class PacketCopy:
    """A Matroska file of another `VideoWriter`'s packets, copied as they come: the same frames
    without a second encoder (an FFV1 encoder holds about 24 bytes per pixel, 125 MB at
    2560x2048). ``write(packets)`` with each frame's packets (the writer's ``packet_tap``, before
    the writer's muxer uses them up); ``close`` (or ``_abort``) as a writer's."""

    def __init__(self, path: str | Path, writer: VideoWriter):
        self.path = Path(path)
        self.frames_written = 0
        self._closed = False
        self._container: Any = None
        try:
            self._container = av.open(str(self.path), "w", format="matroska")
            self._stream = self._container.add_stream_from_template(writer._stream)
            self._container.start_encoding()
        except (av.error.FFmpegError, OSError, ValueError) as e:
            self._abort()
            raise output_error(e, self.path, "starting the file") from None

    def write(self, packets: list) -> None:
        if self._closed:
            raise ValueError("write() on a closed PacketCopy")
        try:
            for p in packets:
                q = av.Packet(bytes(p))
                q.pts, q.dts, q.duration, q.time_base = p.pts, p.dts, p.duration, p.time_base
                q.is_keyframe = p.is_keyframe
                q.stream = self._stream
                self._container.mux(q)
            self.frames_written += 1
        except (av.error.FFmpegError, OSError) as e:
            self._abort()
            raise output_error(e, self.path, f"frame {self.frames_written}") from None

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._closed = True
            self._container.close()
        except (av.error.FFmpegError, OSError) as e:
            raise output_error(e, self.path, "finishing the file") from None

    def _abort(self) -> None:
        self._closed = True
        _close_quietly(self._container)


def _close_quietly(container: Any) -> None:
    """Close a container (or None) on the way out of a failure: an error closing it is dropped, since
    the first error is the one to report."""
    if container is not None:
        try:
            container.close()
        except Exception:  # noqa: BLE001 - already failing; the first error is the one to report
            pass


def _yuv_frame(y: np.ndarray, fmt: str, bits: int, width: int, height: int, full_range: bool) -> av.VideoFrame:
    info = av.VideoFormat(fmt)
    luma = info.components[0]
    planar = info.is_planar and luma.plane == 0 and all(c.plane != 0 for c in info.components[1:])
    work = fmt if planar and not info.is_big_endian else ("yuv444p" if bits <= 8 else "yuv444p16le")
    vf = av.VideoFrame(width, height, work)
    dtype = np.dtype(np.uint8 if bits <= 8 else "<u2")
    mid = 1 << (bits - 1)
    for i, plane in enumerate(vf.planes):
        rows = np.full((plane.height, plane.line_size // dtype.itemsize), mid, dtype)
        if i == 0:
            rows[:height, :width] = y
        elif info.components[-1].is_alpha and i == len(vf.planes) - 1:
            rows[:] = (1 << bits) - 1  # opaque
        plane.update(rows.tobytes())
    vf.color_range = 2 if full_range else 1
    if work != fmt:
        vf = vf.reformat(format=fmt, src_color_range=vf.color_range, dst_color_range=vf.color_range)
        vf.color_range = 2 if full_range else 1
    return vf


def _encoder_formats(codec: str, path: Path) -> set[str]:
    try:
        c = av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError):
        raise OutputError(
            f"{path}: no encoder named {codec!r} in this FFmpeg build; try ffv1 (.mkv) or libx264 (.mp4)"
        ) from None
    if c.type != "video":
        raise OutputError(f"{path}: {codec} is not a video codec")
    return {f.name for f in (c.video_formats or [])}


class _AudioCopy:
    """The source's first audio stream, copied packet by packet alongside the video.

    Copying interleaves: audio up to each video frame's time is muxed right after it, so that
    neither stream runs ahead in the file and memory stays small. Copied AAC keeps its priming
    packet at a negative time, as `ffmpeg -c copy` does: MP4/MOV hide it with an edit list;
    Matroska shifts both streams by it (the video then starts at about 21 ms at 48 kHz, in sync).
    """

    def __init__(self, src_path: str, out: Any, ext: str) -> None:
        self._in = av.open(str(src_path), "r")
        src = self._in.streams.audio[0]
        self.src_codec = src.codec_context.name
        if self.src_codec not in out.supported_codecs or (ext == ".mov" and self.src_codec == "vorbis"):
            self.reason = f"{ext} cannot hold {self.src_codec}"
        elif ext == ".avi" and not self.src_codec.startswith("pcm_"):
            # AVI has no audio timestamps: a codec's priming samples (AAC: 1024, stored at a negative
            # time) would shift the audio late or pad the video with empty frames
            self.reason = f"{ext} keeps {self.src_codec} in sync only as PCM"
        else:
            self.reason = ""
        self.reencode = bool(self.reason)
        self.dst_codec = _AUDIO_FALLBACK[ext] if self.reencode else self.src_codec
        if self.reencode:
            self._out = out.add_stream(self.dst_codec, rate=src.codec_context.sample_rate)
            self._out.layout = src.codec_context.layout
        else:
            self._out = out.add_stream_from_template(src)
        self._src = src
        self._outc = out
        self._packets = self._in.demux(src)
        self._done = False

    def copy_until(self, seconds: Fraction | None) -> None:
        """Mux source audio with timestamps before `seconds` (all of it when None)."""
        if self._done:
            return
        for packet in self._packets:
            if packet.dts is None and packet.size == 0:  # the demuxer's final flush packet
                continue
            at = packet.pts * self._src.time_base if packet.pts is not None else None  # before mux rebases it
            if self.reencode:
                for frame in packet.decode():
                    frame.pts = None  # let the encoder count samples
                    self._outc.mux(self._out.encode(frame))
            else:
                packet.stream = self._out
                self._outc.mux(packet)
            if seconds is not None and at is not None and at >= seconds:
                return
        if self.reencode:
            self._outc.mux(self._out.encode(None))
        self.close()

    def close(self) -> None:
        self._done = True
        self._in.close()
