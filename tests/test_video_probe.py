"""probe(): size, exact frame rate, bit depth, colour, rotation, audio, and one-line errors."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from clips import ramp_frames, write_audio_only, write_clip

from theris_cli.errors import InputError
from theris_cli.video import VideoInfo, probe


def test_probe_8bit_mkv(tmp_path):
    path = write_clip(tmp_path / "a.mkv", ramp_frames(5, 16, 24))
    info = probe(path)
    assert isinstance(info, VideoInfo)
    assert (info.kind, info.width, info.height, info.fps, info.bit_depth) == ("video", 24, 16, Fraction(25), 8)
    assert (info.pix_fmt, info.colour, info.codec, info.frame_count) == ("gray", "gray", "ffv1", 5)
    assert info.duration == Fraction(1, 5)
    assert not info.has_audio and not info.palette_suspected and info.rotation == 0


def test_probe_16bit_and_high_bit_grey_formats(tmp_path):
    assert probe(write_clip(tmp_path / "a.mkv", ramp_frames(3, 16, 24, bits=16))).bit_depth == 16
    info = probe(write_clip(tmp_path / "b.mkv", ramp_frames(3, 16, 24, bits=16, lo=0, hi=16383), pix_fmt="gray14le"))
    assert (info.bit_depth, info.significant_bits, info.pix_fmt) == (16, 14, "gray14le")


@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".avi", ".mov"])
@pytest.mark.parametrize("fps", [Fraction(30000, 1001), Fraction(9), Fraction(24000, 1001), Fraction(25, 2)])
def test_probe_reads_the_exact_frame_rate(tmp_path, ext, fps):
    info = probe(write_clip(tmp_path / f"a{ext}", ramp_frames(3, 16, 24), fps=fps))
    assert info.fps == fps and isinstance(info.fps, Fraction)
    assert info.frame_count == 3  # container estimate, right for these clean files


def test_probe_yuv_is_limited_range_luma(tmp_path):
    info = probe(write_clip(tmp_path / "a.mp4", ramp_frames(3, 16, 24)))
    assert (info.colour, info.color_range, info.pix_fmt, info.bit_depth) == ("yuv", "limited", "yuv420p", 8)
    info = probe(write_clip(tmp_path / "b.mp4", ramp_frames(3, 16, 24), color_range="full"))
    assert info.color_range == "full"


def _false_colour(t, h, w):
    """An 'iron'-like palette: hue follows temperature."""
    v = ramp_frames(t, h, w).astype(np.float64) / 255
    rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1) * 0 + (1 - v) * 0.6], -1)
    return np.round(rgb * 255).astype(np.uint8)


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_probe_flags_false_colour_video(tmp_path, ext):
    assert probe(write_clip(tmp_path / f"a{ext}", _false_colour(3, 16, 24))).palette_suspected


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_probe_grey_rgb_or_yuv_is_not_palette(tmp_path, ext):
    grey = ramp_frames(3, 16, 24)
    info = probe(write_clip(tmp_path / f"a{ext}", np.repeat(grey[..., None], 3, axis=-1)))
    assert not info.palette_suspected
    assert info.colour == ("rgb" if ext == ".mkv" else "yuv")


@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".mov"])
def test_probe_rotation_and_audio(tmp_path, ext):
    frames = ramp_frames(5, 16, 24)
    path = write_clip(tmp_path / f"a{ext}", frames, rotation=90, audio=True, metadata={"title": "hedgehog"})
    info = probe(path)
    assert info.rotation == 90
    assert info.has_audio and info.audio_codec in ("aac", "pcm_s16le")
    assert info.metadata.get("title") == "hedgehog"
    assert probe(write_clip(tmp_path / f"b{ext}", ramp_frames(2, 16, 24), rotation=-90)).rotation == 270


@pytest.mark.parametrize("pattern", ["seq/%04d.png", "seq/%d.tif"])
def test_probe_image_sequence(tmp_path, pattern):
    path = write_clip(tmp_path / pattern, ramp_frames(4, 16, 24, bits=16))
    info = probe(path)
    assert (info.kind, info.frame_count, info.bit_depth, info.width, info.height) == ("images", 4, 16, 24, 16)
    assert info.fps == Fraction(25) and info.fps_guessed
    assert probe(tmp_path / "seq").frame_count == 4  # the directory works too


def test_probe_single_frame(tmp_path):
    info = probe(write_clip(tmp_path / "a.mp4", ramp_frames(1, 16, 24)))
    assert info.frame_count == 1


# ------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.mp4: no such file"):
        probe(tmp_path / "nope.mp4")


def test_directory_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="is a directory with no images"):
        probe(tmp_path)


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is text, not a video\n" * 20)
    with pytest.raises(InputError, match=r"notes\.mp4: not a video FFmpeg can read"):
        probe(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mkv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mkv: "):
        probe(path)


def test_audio_only(tmp_path):
    path = write_audio_only(tmp_path / "tone.m4a")
    with pytest.raises(InputError, match=r"tone\.m4a: has no video stream \(audio only\)"):
        probe(path)


@pytest.mark.parametrize("ext", [".avi", ".mkv"])
def test_zero_frames(tmp_path, ext):
    path = tmp_path / f"zero{ext}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 8, 8, "gray"
        out.start_encoding()
        out.mux(stream.encode())
    # AVI keeps an empty stream ("no video frames"); Matroska without a frame has no stream at all
    with pytest.raises(InputError, match=rf"zero\{ext}: (contains no video frames|ends before its first video frame)"):
        probe(path)


def test_pattern_without_files(tmp_path):
    with pytest.raises(InputError, match="no image matches this pattern"):
        probe(tmp_path / "frames" / "%05d.png")


def test_probe_all_shared_clips(shared_ir):
    clips = sorted(p for p in shared_ir.iterdir() if p.suffix in (".mkv", ".mp4"))
    assert clips
    for path in clips:
        info = probe(path)
        assert info.width > 0 and info.height > 0 and info.fps > 0 and info.frame_count
        assert info.bit_depth == (16 if "lepton" in path.name or "16" in path.name else 8), path.name
        assert not info.palette_suspected, path.name


@pytest.mark.parametrize("rate", [0xFFFFFFFF, 0x7FFFFFFF])
def test_absurd_frame_rate_in_the_header_is_one_line(tmp_path, rate):
    # AVI's dwRate (frames per dwScale seconds) damaged: 4e9 fps overflowed the writer (a traceback)
    path = write_clip(tmp_path / "a.avi", ramp_frames(3, 8, 8))
    data = bytearray(path.read_bytes())
    at = data.find(b"strh") + 4 + 28  # past the tag: chunk size (4), then dwRate at 24
    data[at : at + 4] = rate.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        probe(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
