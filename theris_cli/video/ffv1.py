"""FFV1 at sizes FFmpeg can read back: very large frames need more slices than the encoder picks.

`readable_ffv1` opens an encoder and a decoder given the encoder's header (no frame is encoded) and
adds a slice count where the default layout would be written unreadable.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from ..errors import OutputError
from .integrity import decoder_errors

# FFV1 slice counts tried when the encoder's own choice is one the decoder refuses ("slice count
# unsupported": FFmpeg's encoder picks them for frames of about 100 megapixels and more)
_FFV1_SLICES = (30, 64)


def readable_ffv1(path: Path, width: int, height: int, pix_fmt: str, options: dict[str, str]) -> dict[str, str]:
    """`options`, with a slice count added where needed, such that FFmpeg's FFV1 decoder can open
    what the encoder writes at this size; else an OutputError, before any frame is made.

    Both codecs are only opened (no frame is encoded): the decoder judges the slice layout the
    encoder puts in its header, which is where a very large frame fails.
    """
    tries = [dict(options)] + [{**options, "slices": str(n)} for n in _FFV1_SLICES]
    why = ""
    for opts in tries:
        why = _ffv1_opens(width, height, pix_fmt, opts)
        if not why:
            return opts
        if why.startswith("the encoder"):
            break
    raise OutputError(
        f"{path}: a {width}x{height} FFV1 video cannot be written so that FFmpeg reads it back ({why}); "
        "upscale a crop of the input (e.g. ffmpeg -vf crop=w:h:x:y) or a smaller input"
    )


def _ffv1_opens(width: int, height: int, pix_fmt: str, options: dict[str, str]) -> str:
    """'' when an FFV1 encoder opened with `options` and a decoder given its header both open, else why not."""
    who, failure = "", None
    with decoder_errors() as errors:  # their log lines are the reason, not stray output
        try:
            who = "the encoder"
            enc = av.CodecContext.create("ffv1", "w")
            enc.width, enc.height, enc.pix_fmt = width, height, pix_fmt
            enc.time_base = Fraction(1, 25)
            enc.options = dict(options)
            enc.open()
            who = "the decoder"
            dec = av.CodecContext.create("ffv1", "r")
            dec.extradata = enc.extradata
            dec.width, dec.height = width, height
            dec.open()
        except (av.error.FFmpegError, ValueError) as e:
            failure = e
    if failure is None:
        return ""
    reason = errors[-1] if errors else str(failure)
    return f"{who} refuses it: {reason.strip().rstrip('.')}"
