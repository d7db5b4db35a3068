"""Tiny synthetic test clips, written with PyAV (shared by every test module).

    from clips import write_clip, ramp_frames
    path = write_clip(tmp_path / "in.mkv", ramp_frames(5, 16, 24))           # 8-bit grey FFV1
    path = write_clip(tmp_path / "in.mkv", ramp_frames(5, 16, 24, bits=16))  # gray16le FFV1
    path = write_clip(tmp_path / "in.mp4", frames, fps=Fraction(30000, 1001))  # H.264 yuv420p
    path = write_clip(tmp_path / "seq" / "%04d.png", frames)                 # image sequence

Frames are `(T, H, W)` uint8/uint16 grey, or `(T, H, W, 3)` uint8 RGB (for palette and RGB
inputs). This writer is deliberately independent of `theris_cli.video.encode`, so that reader
tests do not depend on the writer under test.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# codec and pixel format per extension when the caller names none
_DEFAULT_CODEC = {".mkv": "ffv1", ".mp4": "libx264", ".mov": "libx264", ".avi": "ffv1"}


def ramp_frames(t: int, h: int, w: int, bits: int = 8, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """`(t, h, w)` frames whose values differ per pixel and per frame, between lo and hi.

    Defaults: 8-bit 0..255, 16-bit 1000..15000 (a 14-bit-ish radiometric range). A diagonal
    ramp that moves by one pixel per frame, so that frame order and position errors show.
    """
    dtype = np.uint8 if bits == 8 else np.uint16
    lo = (0 if bits == 8 else 1000) if lo is None else lo
    hi = (255 if bits == 8 else 15000) if hi is None else hi
    y, x = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w), dtype)
    for i in range(t):
        phase = ((x + 2 * y + 3 * i) % (h + w)) / max(h + w - 1, 1)  # 0..1
        out[i] = np.round(lo + phase * (hi - lo)).astype(dtype)
    out[0, 0, 0], out[0, 0, 1] = lo, hi  # the exact extremes occur, so scan_levels sees them
    return out


def write_clip(
    path: str | Path,
    frames: np.ndarray,
    fps: Fraction | int = Fraction(25),
    codec: str | None = None,
    pix_fmt: str | None = None,
    audio: bool | str = False,
    rotation: int | None = None,
    color_range: str | None = None,
    metadata: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Write `frames` to `path` and return the path.

    - `path` with a `%d`-style pattern (e.g. `seq/%04d.png`): one image per frame, numbered from 1.
    - otherwise a container from the extension: `.mkv`/`.avi` FFV1 (lossless, `gray`/`gray16le`),
      `.mp4`/`.mov` libx264 `yuv420p` at crf 0 (limited-range luma, as a camera app would write).
    - `pix_fmt`: the stream's pixel format; frames are converted to it by swscale, except uint16
      frames into `gray10le`..`gray16le`, which keep their raw values (a 14-bit camera's counts).
    - `color_range`: "limited" or "full", tagged on the stream and the frames (YUV only).
    - `audio`: add a 1 kHz tone lasting as long as the video: True for AAC (mp4/mov) or PCM
      (mkv/avi), or an encoder name such as "libopus".
    - `rotation`: display-matrix rotation in degrees (counter-clockwise, as PyAV reads it back).
    """
    path = Path(path)
    frames = np.asarray(frames)
    fps = Fraction(fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "%" in path.name:
        _write_images(path, frames)
        return path

    ext = path.suffix.lower()
    codec = codec or _DEFAULT_CODEC[ext]
    rgb = frames.ndim == 4
    if pix_fmt is None:
        if codec in ("libx264", "h264", "mpeg4", "mjpeg"):
            pix_fmt = "yuv420p"
        elif rgb:
            pix_fmt = "bgr0"
        else:
            pix_fmt = "gray" if frames.dtype == np.uint8 else "gray16le"
    t, h, w = frames.shape[:3]
    with av.open(str(path), "w") as out:
        if metadata:
            out.metadata.update(metadata)
        vs = out.add_stream(codec, rate=fps, options=options or ({"crf": "0"} if codec == "libx264" else {}))
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        tb = vs.time_base = Fraction(1) / fps  # the muxer may change the stream's; frames keep 1/fps
        rng = {"limited": 1, "full": 2}.get(color_range or "", 0)
        if rng:
            vs.codec_context.color_range = rng
        if rotation:
            vs.set_display_rotation(rotation)
        aus = None
        if audio:
            acodec = audio if isinstance(audio, str) else ("aac" if ext in (".mp4", ".mov") else "pcm_s16le")
            aus = out.add_stream(acodec, rate=48000 if acodec == "libopus" else 8000)
            aus.layout = "mono"
        for i, frame in enumerate(frames):
            if frame.dtype == np.uint16 and pix_fmt.startswith("gray"):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=pix_fmt)  # raw, not rescaled
            else:
                vf = _frame(frame)
            if vf.format.name != pix_fmt:
                vf = vf.reformat(format=pix_fmt, dst_color_range=rng or None)
            if rng:
                vf.color_range = rng
            vf.pts = i
            vf.time_base = tb
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
        if aus is not None:
            _write_tone(out, aus, seconds=float(t / fps))
    return path


def _write_images(pattern: Path, frames: np.ndarray) -> None:
    # the image2 muxer numbers files from 1; PNG stores 16-bit big-endian, TIFF little-endian
    codec = {".png": "png", ".tif": "tiff", ".tiff": "tiff"}[pattern.suffix.lower()]
    if frames.ndim == 4:
        pix_fmt = "rgb24"
    elif frames.dtype == np.uint8:
        pix_fmt = "gray"
    else:
        pix_fmt = "gray16be" if codec == "png" else "gray16le"
    with av.open(str(pattern), "w", format="image2") as out:
        vs = out.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for i, frame in enumerate(frames):
            vf = _frame(frame)
            if vf.format.name != pix_fmt:
                vf = vf.reformat(format=pix_fmt)
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode())


def _frame(frame: np.ndarray) -> av.VideoFrame:
    if frame.ndim == 3:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, np.uint8), format="rgb24")
    fmt = "gray" if frame.dtype == np.uint8 else "gray16le"
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=fmt)


def _write_tone(out, stream, seconds: float) -> None:
    rate = stream.rate
    n = max(int(round(seconds * rate)), 1)
    samples = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(n) / rate) * 32767).astype(np.int16)
    chunk = 1024
    for start in range(0, n, chunk):
        part = samples[start : start + chunk][None, :]
        af = av.AudioFrame.from_ndarray(part, format="s16", layout="mono")
        af.sample_rate = rate
        af.pts = start
        af.time_base = Fraction(1, rate)
        out.mux(stream.encode(af))
    out.mux(stream.encode())


def write_audio_only(path: Path) -> Path:
    """A short silent AAC file with no video stream (the "audio only" input error)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return Path(path)


# A recorder that dropped frames: nominal 25 fps, frames at these times (ms).
VFR_TIMES_MS = (0, 40, 80, 200, 240, 500, 540, 580, 1000, 1040, 1100, 1500)


def write_vfr_clip(path: str | Path, h: int = 12, w: int = 16, times_ms=VFR_TIMES_MS) -> Path:
    """A Matroska FFV1 grey clip, nominal 25 fps, its frames at `times_ms` (a 1 ms time base)."""
    path = Path(path)
    frames = ramp_frames(len(times_ms), h, w)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "gray"
        vs.codec_context.time_base = vs.time_base = Fraction(1, 1000)
        for t, frame in zip(times_ms, frames):
            vf = av.VideoFrame.from_ndarray(frame, format="gray")
            vf.pts, vf.time_base = t, Fraction(1, 1000)
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
    return path


# ------------------------------------------------------------------ recordings with events


def scene_frames(t: int, h: int, w: int, seed: int = 0, noise: float = 20.0) -> np.ndarray:
    """`(t, h, w)` uint16 frames of a thermal-looking scene: a smooth random background (its own per
    `seed`: two seeds share nothing) and a warm blob moving back and forth one pixel per frame, plus sensor noise
    of `noise` counts (a different draw per frame)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, (h // 4 + 2, w // 4 + 2))
    y, x = np.mgrid[0:h, 0:w]
    bg = coarse[(y // 4), (x // 4)] * 0.5 + coarse[(y // 4) + 1, (x // 4) + 1] * 0.5  # blocky, then smoothed
    kernel = np.ones(5) / 5
    bg = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, bg)
    bg = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, bg)
    bg = 6000 + 1500 * bg / max(float(np.abs(bg).max()), 1e-9)
    out = np.empty((t, h, w), np.uint16)
    cy = h / 2
    for i in range(t):
        span = max(w - 4, 1)
        cx = 2 + abs((i + span) % (2 * span) - span)  # back and forth, one pixel a frame
        blob = 3000 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * (h / 8) ** 2))
        out[i] = np.clip(bg + blob + rng.normal(0.0, noise, (h, w)), 0, 65535).round().astype(np.uint16)
    return out


def written_twice(frames: np.ndarray) -> np.ndarray:
    """Every frame twice in a row: a recorder writing a 9 Hz sensor into an 18 fps file."""
    return np.repeat(frames, 2, axis=0)


def shutter_event(frames: np.ndarray, at: int, frozen: int = 3, jump: int = -1000) -> np.ndarray:
    """A flat-field correction before frame `at`: the `frozen` frames before it repeat frame
    `at - frozen - 1` (the shutter is closed), and from `at` on the whole frame is `jump` counts off."""
    out = frames.astype(np.int64)
    out[at - frozen : at] = out[at - frozen - 1]
    out[at:] += jump
    return np.clip(out, 0, 65535).astype(frames.dtype)
