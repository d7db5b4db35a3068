"""Whether a decode saw the whole, undamaged stream: FFmpeg's error reports, strict decoder
settings, the container's own promises (frame counts, durations) and Matroska's CRC-32 elements.

    strict(stream)                      # before the first packet: report damage instead of hiding it
    with decoder_errors() as errors:    # FFmpeg's error-level log lines of the work inside
        frames = packet.decode()
    check_complete(path, container, stream, n, end, read)   # after the last packet

What can be caught, and what cannot:

- H.264 and HEVC: every error the decoder logs is an error here. The codec carries no checksum:
  a damaged span that still parses decodes to other pixels without any sign (in
  tests/test_fuzz_inputs.py, about a third of the byte damage that changes an H.264 clip's
  frames). FFmpeg's stricter
  `err_detect` flags catch none of those in that suite, so they are not set for these codecs
  (they could only refuse valid files from unusual encoders).
- FFV1 version 3 with slice CRCs (what theris writes): every damaged slice fails its CRC.
- Matroska written by FFmpeg (and other muxers that write them) carries a CRC-32 element in each
  top-level element (clusters, tracks, cues); every one is verified, so damage inside any of them
  is caught whatever the codec, FFV1 without slice CRCs included.
- FFV1 without slice CRCs (level 1, or level 3 with `slicecrc=0`) in a container without CRC-32
  elements (AVI, Matroska from a muxer that writes none): the codec has no redundancy to check, so
  damage inside a frame decodes to other pixel values without any sign. Cuts are caught (counts
  and durations against the header); a frame lost from such a Matroska file leaves the timestamp
  gap of a frame a recorder dropped, which probe reports as a variable frame rate.
- PNG: chunk CRCs are checked. TIFF, raw frames: no checksum of their own.
"""

from __future__ import annotations

import logging
import re
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import av.logging

from ..errors import InputError

# FFmpeg decoder options: check what the codec can check and stop at the first error ("explode"),
# so that damage is an error rather than concealed pixels. For the lossless codecs whose checks
# these are (PNG's chunk CRCs, FFV1's slices); the TIFF decoder explodes on tags it merely warns
# about, and for H.264 the flags refuse nothing more in the fuzz suite (see the module doc).
# Error concealment stays on: with "ec" 0 the H.264 decoder flags every frame of a valid file corrupt.
STRICT_DECODING = {"err_detect": "crccheck+bitstream+buffer+explode"}
STRICT_CODECS = frozenset({"ffv1", "png"})

_CLUSTER_CHUNK = 1 << 20  # bytes read at a time while verifying a Matroska element's CRC-32


def strict(stream) -> None:
    """Set `STRICT_DECODING` on a stream's decoder (before its first packet: it is opened then)."""
    if stream.codec_context.name in STRICT_CODECS:
        stream.codec_context.options = dict(STRICT_DECODING)


# ---------------------------------------------------------------------------------------------
# FFmpeg's error log

_log_lock = threading.Lock()


def _keep_error_logs() -> None:
    """Make sure PyAV hands FFmpeg's error-level logs to Python, for the rest of the process.

    PyAV drops every log while its level is None (its default). The level is switched on once and
    never off again: switching it off while a decoder elsewhere is still logging loses that log
    (FFmpeg checks the level in C, PyAV again under the GIL, and then compares with None: the
    TypeError PyAV then prints from its callback). Identical lines must each arrive (damage
    seen by probe and again by the decode). A NullHandler on "libav" keeps stray lines (outside a
    capture) off stderr unless the application configured logging itself.
    """
    with _log_lock:
        if av.logging.get_level() is None:
            logging.getLogger("libav").addHandler(logging.NullHandler())
            av.logging.set_level(av.logging.ERROR)
        av.logging.set_skip_repeated(False)


@contextmanager
def decoder_errors() -> Iterator[list[str]]:
    """Collect the error-level FFmpeg log lines of work done inside, in this thread.

    FFmpeg conceals damage (FFV1 'slice CRC mismatch', Matroska 'File ended prematurely') and goes
    on; its log is the only sign. The capture is local to the calling thread, and callers decode
    without FFmpeg threads (see `decode_av_frames`), so every line of this decode's demuxer and
    decoder is here before the call returns, and nothing from another thread (an encoder, a
    second decode) ever is: the same file gives the same outcome on every run.
    """
    _keep_error_logs()
    errors: list[str] = []
    with av.logging.Capture(local=True) as logs:
        yield errors
    errors.extend(m.strip() for level, _name, m in logs if level <= av.logging.ERROR and m.strip())


def damaged(path: str | Path, index: int, detail: str) -> InputError:
    return InputError(
        f"{path}: corrupt or truncated at frame {index} (counting from 0): {detail.rstrip('.!')}; "
        "re-copy or re-export the file"
    )


def reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).strip().rstrip(".") or type(e).__name__


# ---------------------------------------------------------------------------------------------
# the container's promises


def check_complete(path, container, stream, n: int, end: Fraction | None, read: int) -> None:
    """A stream that ended without an error can still be cut short or damaged; the container says so.

    Matroska cut at a cluster boundary just ends: its header still states the duration, so the
    last frame must end within half a frame of it (by timestamps, not by count: variable-rate
    video has fewer frames than duration x nominal rate). AVI states its frame count (more frames
    than it: a damaged index, whose bytes a decoder without checksums takes for a frame). MP4 states
    its sample count: every sample must be read as a packet (not decoded into a frame: an edit
    list may hide frames, whose packets FFmpeg still hands out marked as discarded). Matroska's
    CRC-32 elements are verified last (see the module doc).
    """
    fmt = container.format.name
    expected = expected_frame_count(container, stream)
    if "mp4" in fmt and stream.frames and read < stream.frames:
        raise InputError(
            f"{path}: its sample table lists {stream.frames} frames but only {read} could be read: damaged at "
            f"frame {n} (counting from 0); re-copy or re-export the file"
        )
    if "matroska" in fmt:
        bad = matroska_crc_damage(path)
        if bad is not None:
            raise InputError(
                f"{path}: damaged: {bad} (its CRC-32 does not match the data); re-copy or re-export the file"
            )
        header_end, rate = _matroska_end(container, stream), stream_rate(stream)
        if end is not None and header_end is not None and rate:
            slack = 1 / (2 * rate) + Fraction(1, 500)  # half a frame, plus durations rounded to 1 ms
            if header_end - end > slack:
                raise InputError(
                    f"{path}: its last frame ends at {float(end):.3f} s but its header says the video runs to "
                    f"{float(header_end):.3f} s: truncated or damaged at frame {n} (counting from 0); re-copy or re-export the file"
                )
            return
    if fmt == "avi" and stream.frames and n > stream.frames:  # e.g. a damaged index read as frames
        raise InputError(
            f"{path}: holds {n} frames but its header lists {stream.frames}: its index or header is damaged; "
            "re-copy or re-export the file"
        )
    if ("matroska" in fmt or fmt == "avi") and expected is not None and n < expected - ("matroska" in fmt):
        raise InputError(
            f"{path}: ends after {n} frames but its header promises {'about ' if 'matroska' in fmt else ''}{expected}: "
            f"truncated or damaged at frame {n} (counting from 0); re-copy or re-export the file"
        )


def _vint(buf: bytes, at: int, keep_marker: bool) -> tuple[int, int] | None:
    """(value, length) of the EBML variable-length integer at `at`, or None where none can be."""
    if at >= len(buf) or buf[at] == 0:
        return None
    length = 9 - buf[at].bit_length()
    if at + length > len(buf):
        return None
    value = int.from_bytes(buf[at : at + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
        if value == (1 << (7 * length)) - 1:
            return -1, length  # unknown size (a live stream): nothing to verify against
    return value, length


def matroska_crc_damage(path: str | Path) -> str | None:
    """Where a Matroska file's first top-level element with a wrong CRC-32 is ('cluster at byte
    1234'), or None when every CRC-32 it carries matches (or it carries none).

    Each top-level element (level 1: SeekHead, Info, Tracks, Cluster, Cues, ...) may begin with a
    CRC-32 element (ID 0xBF, 4 bytes, little-endian) over the rest of its data. FFmpeg's demuxer
    skips them; they are the only check on codecs without their own (FFV1 without slice CRCs).
    The walk stops quietly where the structure itself is broken: decoding reports that.
    """
    names = {0x1F43B675: "cluster", 0x1654AE6B: "track list", 0x1C53BB6B: "cue index", 0x1549A966: "segment info"}
    with open(path, "rb") as f:
        head = f.read(64)
        ebml = _vint(head, 0, True)
        if ebml is None or ebml[0] != 0x1A45DFA3:
            return None
        size = _vint(head, ebml[1], False)
        if size is None or size[0] < 0:
            return None
        at = ebml[1] + size[1] + size[0]  # the Segment
        f.seek(at)
        head = f.read(16)
        seg_id, seg_size = _vint(head, 0, True), None
        if seg_id is not None and seg_id[0] == 0x18538067:
            seg_size = _vint(head, seg_id[1], False)
        if seg_size is None:
            return None
        at += seg_id[1] + seg_size[1]
        seg_end = at + seg_size[0] if seg_size[0] >= 0 else None
        while seg_end is None or at < seg_end:
            f.seek(at)
            head = f.read(18)
            eid = _vint(head, 0, True)
            esize = eid and _vint(head, eid[1], False)
            if not esize or esize[0] < 0:
                return None
            body = at + eid[1] + esize[1]
            if head[eid[1] + esize[1] : eid[1] + esize[1] + 2] == b"\xbf\x84" and esize[0] >= 6:
                stored = int.from_bytes(head[eid[1] + esize[1] + 2 : eid[1] + esize[1] + 6], "little")
                f.seek(body + 6)
                crc, left = 0, esize[0] - 6
                while left > 0:
                    chunk = f.read(min(left, _CLUSTER_CHUNK))
                    if not chunk:
                        return None  # cut short: the length checks report a truncation
                    crc, left = zlib.crc32(chunk, crc), left - len(chunk)
                if crc != stored:
                    return f"{names.get(eid[0], 'element')} at byte {at}"
            at = body + esize[0]
    return None


def expected_frame_count(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
    """The container's own frame count, or duration x rate; an estimate, never trusted as truth."""
    if stream.frames:
        return int(stream.frames)
    rate, seconds = stream_rate(stream), video_seconds(container, stream)
    if rate is None or seconds is None or seconds <= 0:
        return None
    return int(round(seconds * rate))


def video_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Fraction | None:
    """How long the video stream lasts by the container's word (seconds), or None.

    The stream's own duration where the container keeps one (MP4, AVI); else the file's duration
    less the video's late start (Matroska, where copied AAC priming can start the video late).
    """
    if stream.duration is not None and stream.time_base is not None:
        return stream.duration * stream.time_base
    tagged = _tag_seconds(stream.metadata.get("DURATION"))  # Matroska's per-track tag: where the track ends
    if tagged is not None:
        return tagged - _start_seconds(stream)
    if container.duration is None:
        return None
    seconds = Fraction(container.duration, av.time_base)
    if container.start_time is not None and stream.start_time is not None and stream.time_base is not None:
        seconds -= stream.start_time * stream.time_base - Fraction(container.start_time, av.time_base)
    return seconds


def _start_seconds(stream: av.video.stream.VideoStream) -> Fraction:
    if stream.start_time is None or not stream.time_base:
        return Fraction(0)
    return stream.start_time * Fraction(stream.time_base)


def _matroska_end(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Fraction | None:
    """Where a Matroska video track ends by its header, in seconds on the stream's clock: the
    track's DURATION tag, else the segment's duration (which counts from 0, not from the first frame)."""
    tagged = _tag_seconds(stream.metadata.get("DURATION"))
    if tagged is not None:
        return tagged
    return Fraction(container.duration, av.time_base) if container.duration is not None else None


def _tag_seconds(tag: str | None) -> Fraction | None:
    """'HH:MM:SS.nnnnnnnnn' (FFmpeg's and mkvmerge's DURATION tag) in seconds, else None."""
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", (tag or "").strip())
    if not m:
        return None
    return int(m[1]) * 3600 + int(m[2]) * 60 + Fraction(m[3])


def stream_rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    """Frames per second as an exact Fraction: average rate, else guessed rate, else 1/time_base.

    Matroska stores the rate as a frame duration in whole nanoseconds, and FFmpeg turns it back into
    a fraction with terms up to 30000: 30000/1001 survives, 60000/1001 comes back as 19001/317.
    So a rate within 1e-6 of a whole number, an NTSC rate (n * 1000/1001) or a fraction over at
    most 100 is snapped to it.
    """
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return snap_rate(Fraction(rate))
    if stream.time_base:
        return snap_rate(1 / Fraction(stream.time_base))
    return None


def snap_rate(rate: Fraction) -> Fraction:
    """The simplest common rate within a relative 1e-6 of `rate`, else `rate` itself."""
    ntsc = Fraction(1000, 1001)
    candidates = (Fraction(round(rate)), round(rate / ntsc) * ntsc, rate.limit_denominator(100))
    for simple in candidates:
        if simple > 0 and abs(simple - rate) <= rate * Fraction(1, 10**6):
            return simple
    return rate
