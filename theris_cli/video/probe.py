"""What a video is, before decoding it all: size, exact frame rate, bit depth, rotation, audio.

    info = probe("in.mp4")      # VideoInfo; raises InputError (one line, naming the file)

`probe` opens the container and decodes the first few frames (the stream's pixel format, rotation
and colour are only certain on decoded frames). Counts and durations from the container are
estimates: `read_frames` counts the real frames.

Variable frame rate: a Matroska file (which states a nominal rate, not a frame count) has its
packet timestamps read, without decoding. When the frames are not evenly spaced (a recorder that
dropped frames), `vfr_gaps` holds the shortest and longest gap and `fps` becomes the mean rate,
frames / duration: theris takes the frames as evenly spaced at that rate, so an output keeps the
input's duration (motion between two frames is not re-timed). MP4 states its mean rate itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av

from ..errors import InputError
from .decode import colour_fraction, decode_av_frames, image_files, is_full_range, open_container, pixel_kind, video_stream
from .integrity import expected_frame_count, snap_rate, stream_rate, video_seconds

__all__ = ["VideoInfo", "probe", "DEFAULT_IMAGE_FPS"]

DEFAULT_IMAGE_FPS = Fraction(25)  # FFmpeg's image2 default; image files carry no rate
PROBE_FRAMES = 5  # frames decoded by probe for pixel format, rotation and palette detection
PALETTE_SHARE = 0.05  # more than 5% of pixels clearly coloured -> false colour, not temperature
MAX_FPS = 10_000  # frames per second; the fastest thermal cameras record a few thousand, windowed
VFR_TOLERANCE = Fraction(1, 2)  # a gap off the nominal frame duration by more than half a frame is uneven

# container tags that describe the old file rather than the content, so are not carried over
_TECHNICAL_TAGS = {"encoder", "software", "major_brand", "minor_version", "compatible_brands", "duration"}


@dataclass(frozen=True)
class VideoInfo:
    """A probed input. `bit_depth` is the depth of the frames `read_frames` yields (8 or 16)."""

    path: str
    kind: str  # "video" or "images"
    width: int
    height: int
    fps: Fraction  # exact; for images DEFAULT_IMAGE_FPS (see fps_guessed)
    bit_depth: int  # 8 (uint8 frames) or 16 (uint16 frames)
    pix_fmt: str  # decoded pixel format, e.g. "gray16le", "yuv420p", "rgb24"
    frame_count: int | None  # container estimate (exact for images); None when unknown
    rotation: int = 0  # display rotation in degrees, counter-clockwise (PyAV's VideoFrame.rotation)
    has_audio: bool = False
    palette_suspected: bool = False  # colour video: false colour is not temperature
    significant_bits: int = 8  # bits of the pixel format: 10 for gray10le, 16 for gray16le
    colour: str = "gray"  # "gray", "yuv" or "rgb": where the grey frames come from
    color_range: str = "full"  # "limited" when YUV luma was 16..235 and read_frames stretched it
    codec: str = ""  # e.g. "ffv1", "h264", "png"
    container: str = ""  # FFmpeg format name, e.g. "matroska,webm", "image2"
    duration: Fraction | None = None  # seconds of video, from the container; None when unknown
    fps_guessed: bool = False  # True when the input has no rate of its own (image sequences)
    audio_codec: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # container tags (title, comment, ...)
    vfr_gaps: tuple[Fraction, Fraction] | None = None  # variable rate: (shortest, longest) gap in seconds

    @property
    def dtype(self) -> str:
        return "uint8" if self.bit_depth == 8 else "uint16"


def probe(path: str | Path) -> VideoInfo:
    """Describe `path` (video file, image pattern such as `frames/%05d.png`, or image directory).

    Raises InputError for a missing file, a directory without images, a file that is not a video,
    audio only, no frames, or damage within the first frames.
    """
    files = image_files(path)
    first = list(islice(decode_av_frames(path), PROBE_FRAMES))  # raises InputError on each failure
    frame = first[0]
    kind, bits = pixel_kind(frame.format.name)
    common = dict(
        path=str(path),
        width=frame.width,
        height=frame.height,
        bit_depth=8 if bits <= 8 else 16,
        pix_fmt=frame.format.name,
        rotation=int(frame.rotation or 0) % 360,
        palette_suspected=max(colour_fraction(f) for f in first) > PALETTE_SHARE,
        significant_bits=bits,
        colour=kind,
        color_range="limited" if kind == "yuv" and not is_full_range(frame) else "full",
    )
    if files is not None:
        with av.open(str(files[0])) as c:
            codec = c.streams.video[0].codec_context.name
        return VideoInfo(
            kind="images",
            fps=DEFAULT_IMAGE_FPS,
            frame_count=len(files),
            codec=codec,
            container="image2",
            duration=len(files) / DEFAULT_IMAGE_FPS,
            fps_guessed=True,
            **common,
        )
    with open_container(path) as container:
        stream = video_stream(container, path)
        fps = stream_rate(stream)
        if fps is None:
            raise InputError(f"{path}: the video stream states no frame rate; remux it with one (ffmpeg -r)")
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = video_seconds(container, stream)
        frame_count = expected_frame_count(container, stream)
        gaps = None
        if "matroska" in container.format.name:
            frame_count, fps, gaps = _matroska_timing(container, stream, fps, duration, frame_count)
        if not 0 < fps <= MAX_FPS:
            raise InputError(
                f"{path}: its header states {float(fps):.6g} frames per second, which no camera records: the header "
                "is damaged; remux it with the real rate (ffmpeg -r)"
            )
        metadata = {k: v for k, v in container.metadata.items() if k.lower() not in _TECHNICAL_TAGS}
        return VideoInfo(
            kind="video",
            fps=fps,
            frame_count=frame_count,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            codec=stream.codec_context.name,
            container=container.format.name,
            duration=duration,
            metadata=metadata,
            vfr_gaps=gaps,
            **common,
        )


def _matroska_timing(container, stream, fps: Fraction, duration: Fraction | None, count: int | None):
    """(frame count, rate, gaps) of a Matroska video from its packets' timestamps (no decoding).

    Matroska states a nominal rate and a duration, never a frame count. The count is the number of
    packets; uneven spacing makes `fps` the mean rate over the duration (see the module doc).
    """
    tb = Fraction(stream.time_base) if stream.time_base else None
    try:
        pts = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
    except av.error.FFmpegError:
        return count, fps, None  # damage: decoding reports it with the frame index
    if tb is None or len(pts) < 2:
        return (len(pts) or count), fps, None
    gaps = [(b - a) * tb for a, b in zip(pts, pts[1:])]
    shortest, longest = min(gaps), max(gaps)
    if shortest <= 0:
        return len(pts), fps, None  # repeated timestamps: not a rate question; decoding judges the file
    if longest - shortest <= VFR_TOLERANCE * shortest:  # evenly spaced: the timestamps' rate is the truth
        gap = (pts[-1] - pts[0]) * tb / len(gaps)
        if abs(1 / fps - gap) <= VFR_TOLERANCE * gap:  # the header's rate, more exact than ms timestamps
            return len(pts), fps, None
        return len(pts), snap_rate(1 / gap).limit_denominator(1_000_000), None
    seconds = duration if duration and duration > 0 else (pts[-1] - pts[0]) * tb + shortest
    mean = snap_rate(Fraction(len(pts)) / seconds).limit_denominator(1_000_000)
    return len(pts), mean, (shortest, longest)
