"""VideoWriter: formats from the extension, exact rate and frames, carried audio/rotation, errors."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest
from clips import ramp_frames, write_clip

from theris_cli.errors import OutputError
from theris_cli.video import Levels, VideoWriter, probe, read_frames


def _write(path, frames, fps=Fraction(25), **kw):
    bits = 8 if frames.dtype == np.uint8 else 16
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps, bits, **kw) as w:
        for f in frames:
            w.write(f)
    return w


def _read(path):
    return np.stack(list(read_frames(path)))


@pytest.mark.parametrize("ext", [".mkv", ".avi"])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("t", [1, 4, 7])
def test_lossless_containers_round_trip_exactly_at_their_depth(tmp_path, ext, bits, t):
    frames = ramp_frames(t, 16, 24, bits=bits)
    _write(tmp_path / f"o{ext}", frames)
    info = probe(tmp_path / f"o{ext}")
    assert (info.codec, info.pix_fmt, info.bit_depth) == ("ffv1", "gray" if bits == 8 else "gray16le", bits)
    np.testing.assert_array_equal(_read(tmp_path / f"o{ext}"), frames)


@pytest.mark.parametrize("pattern", ["seq/%05d.png", "seq/%04d.tif"])
@pytest.mark.parametrize("bits", [8, 16])
def test_image_sequences_round_trip_exactly(tmp_path, pattern, bits):
    frames = ramp_frames(3, 16, 24, bits=bits)
    (tmp_path / "seq").mkdir()
    _write(tmp_path / pattern, frames)
    assert sorted(os.listdir(tmp_path / "seq"))[0] == (pattern.split("/")[1] % 1)  # numbered from 1 like FFmpeg
    np.testing.assert_array_equal(_read(tmp_path / pattern), frames)


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_h264_is_yuv420p_limited_range_and_lossless_at_crf0(tmp_path, ext):
    frames = ramp_frames(5, 16, 24)
    _write(tmp_path / f"o{ext}", frames, crf=0)
    info = probe(tmp_path / f"o{ext}")
    assert (info.codec, info.pix_fmt, info.color_range, info.bit_depth) == ("h264", "yuv420p", "limited", 8)
    # limited-range luma holds 220 levels: 256 grey levels come back within one count
    assert np.abs(_read(tmp_path / f"o{ext}").astype(int) - frames).max() <= 1


def test_h264_round_trip_of_read_frames_output_is_exact(tmp_path):
    # frames that came from limited-range video go back to the very same luma values
    src = write_clip(tmp_path / "in.mp4", ramp_frames(4, 16, 24))
    frames = _read(src)
    _write(tmp_path / "o.mp4", frames, crf=0)
    np.testing.assert_array_equal(_read(tmp_path / "o.mp4"), frames)


def test_default_crf_is_visually_lossless(tmp_path):
    frames = np.repeat(ramp_frames(1, 64, 64), 3, axis=0)  # smooth enough to judge a CRF on
    _write(tmp_path / "o.mp4", frames)
    assert np.abs(_read(tmp_path / "o.mp4").astype(int) - frames).mean() < 2.0


def test_h264_looks_ten_frames_ahead(tmp_path):
    # x264's lookahead holds every frame it looks at: 40 (its default) took 829 MiB at 2560x2048
    # (benchmarks/bench_encoder.py).
    # x264 writes the settings it ran with into the stream itself.
    _write(tmp_path / "o.mp4", ramp_frames(3, 16, 24))
    settings = (tmp_path / "o.mp4").read_bytes()
    assert b"x264 - core" in settings and b" rc_lookahead=10 " in settings


@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".mov", ".avi"])
@pytest.mark.parametrize("fps", [Fraction(60000, 1001), Fraction(30000, 1001), Fraction(9), Fraction(18)])
@pytest.mark.parametrize("t", [1, 2, 7])
def test_frame_rate_and_count_read_back_exactly(tmp_path, ext, fps, t):
    _write(tmp_path / f"o{ext}", ramp_frames(t, 16, 24), fps=fps)
    info = probe(tmp_path / f"o{ext}")
    assert info.fps == fps
    assert sum(1 for _ in read_frames(tmp_path / f"o{ext}")) == t
    exact = t / fps
    if ext == ".mkv":  # Matroska stores milliseconds: each timestamp and the total are rounded to 1 ms
        assert abs(info.duration - exact) <= Fraction(1, 1000)
    else:  # FFmpeg reports durations in microseconds
        assert abs(info.duration - exact) <= Fraction(1, 10**6)


@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".mov"])
def test_rotation_audio_and_title_survive_with_source(tmp_path, ext):
    frames = ramp_frames(6, 16, 24)
    src = write_clip(tmp_path / f"in{ext}", frames, rotation=90, audio=True, metadata={"title": "possum"})
    info = probe(src)
    frames = np.repeat(np.repeat(_read(src), 2, axis=1), 2, axis=2)  # any processing, new size
    w = _write(tmp_path / f"o{ext}", frames, fps=info.fps * 2, source=info)
    out = probe(tmp_path / f"o{ext}")
    assert out.rotation == 90 and out.has_audio and out.audio_codec == info.audio_codec
    assert out.metadata.get("title") == "possum"
    assert w.notes == []
    with av.open(str(src)) as a, av.open(str(tmp_path / f"o{ext}")) as b:
        n_in = sum(p.size > 0 for p in a.demux(audio=0))
        n_out = sum(p.size > 0 for p in b.demux(audio=0))
    assert n_in == n_out  # every audio packet copied


def test_audio_is_reencoded_when_the_container_cannot_hold_it(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(10, 16, 24), audio="libopus")
    info = probe(src)
    w = _write(tmp_path / "o.avi", _read(src), fps=info.fps, source=info)
    assert w.notes == ["audio re-encoded opus -> pcm_s16le: .avi cannot hold opus"]
    with av.open(str(src)) as a, av.open(str(tmp_path / "o.avi")) as b:
        samples = [sum(f.samples for f in c.decode(audio=0)) for c in (a, b)]
    assert samples[0] == samples[1] > 0  # the whole track, not a prefix


@pytest.mark.parametrize("src_ext,dst_ext", [(".mp4", ".mkv"), (".mkv", ".mp4"), (".mp4", ".avi"), (".mov", ".mp4")])
def test_audio_across_containers_keeps_video_count_and_duration(tmp_path, src_ext, dst_ext):
    # AAC's priming packet sits at a negative time: Matroska shifts both streams, AVI gets PCM
    src = write_clip(tmp_path / f"in{src_ext}", ramp_frames(10, 16, 24), audio=True)
    info = probe(src)
    _write(tmp_path / f"o{dst_ext}", np.repeat(_read(src), 2, axis=0), fps=info.fps * 2, source=info)
    out = probe(tmp_path / f"o{dst_ext}")
    assert out.has_audio and out.duration == info.duration == Fraction(2, 5)
    assert sum(1 for _ in read_frames(tmp_path / f"o{dst_ext}")) == 20


def test_what_cannot_be_carried_is_listed_in_notes(tmp_path):
    rotated = probe(write_clip(tmp_path / "r.mkv", ramp_frames(2, 16, 24), rotation=90, audio=True))
    w = _write(tmp_path / "o.avi", ramp_frames(2, 16, 24), source=rotated)
    assert w.notes == ["rotation (90 degrees) dropped: .avi output cannot store it"]
    (tmp_path / "seq").mkdir()
    w = _write(tmp_path / "seq" / "%03d.png", ramp_frames(2, 16, 24), source=rotated)
    assert w.notes == [
        "rotation (90 degrees) dropped: .png output cannot store it",
        "audio dropped: image sequences have no audio",
    ]
    w = _write(tmp_path / "o.mkv", ramp_frames(2, 16, 24), crf=20)
    assert w.notes == ["--crf ignored: ffv1 has no CRF (it is lossless or fixed-quality)"]


def test_16bit_into_an_8bit_codec_needs_an_explicit_pix_fmt(tmp_path):
    with pytest.raises(OutputError, match=r"o\.mp4: libx264 cannot store 16-bit video; write \.mkv .* pass --pix-fmt"):
        VideoWriter(tmp_path / "o.mp4", 24, 16, 25, 16)
    assert not (tmp_path / "o.mp4").exists()
    frames = ramp_frames(2, 16, 24, bits=16, lo=1000, hi=2000)
    _write(tmp_path / "o.mp4", frames, pix_fmt="yuv420p", crf=0, levels=Levels(1000, 2000, 16))
    got = _read(tmp_path / "o.mp4")
    assert got.dtype == np.uint8 and got.min() <= 1 and got.max() >= 254  # lo..hi spread over 0..255


def test_explicit_codec_and_pix_fmt(tmp_path):
    frames = ramp_frames(3, 16, 24, bits=16, lo=0, hi=4095)
    _write(tmp_path / "o.mkv", frames, codec="ffv1", pix_fmt="gray16le")
    np.testing.assert_array_equal(_read(tmp_path / "o.mkv"), frames)
    frames8 = ramp_frames(3, 16, 24)
    _write(tmp_path / "o2.mkv", frames8, codec="libx264", crf=0)
    assert probe(tmp_path / "o2.mkv").codec == "h264"
    _write(tmp_path / "o3.mkv", frames8, codec="ffv1", pix_fmt="yuv444p")
    np.testing.assert_array_equal(_read(tmp_path / "o3.mkv") , _read(tmp_path / "o3.mkv"))
    assert np.abs(_read(tmp_path / "o3.mkv").astype(int) - frames8).max() <= 1


def test_write_checks_shape_and_dtype(tmp_path):
    with VideoWriter(tmp_path / "o.mkv", 24, 16, 25, 8) as w:
        with pytest.raises(ValueError, match=r"expected a \(16, 24\) uint8 frame"):
            w.write(np.zeros((16, 24), np.uint16))
        w.write(np.zeros((16, 24), np.uint8))


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name,match", [
    ("o.webm", r"unknown output type \.webm; use \.mkv, \.mp4"),
    ("o.png", r"a single image cannot hold a video; write a video such as out\.mkv"),
    ("%05d.jpg", r"unknown output type \.jpg; use \.mkv, \.mp4, \.mov or \.avi$"),
])
def test_unknown_output_types(tmp_path, name, match):
    with pytest.raises(OutputError, match=match):
        VideoWriter(tmp_path / name, 24, 16, 25, 8)


def test_unknown_codec_and_pix_fmt(tmp_path):
    with pytest.raises(OutputError, match="no encoder named 'nope'"):
        VideoWriter(tmp_path / "o.mkv", 24, 16, 25, 8, codec="nope")
    with pytest.raises(OutputError, match="libx264 cannot encode gray16le"):
        VideoWriter(tmp_path / "o.mp4", 24, 16, 25, 16, pix_fmt="gray16le")
    with pytest.raises(OutputError, match="unknown pixel format 'grey'"):
        VideoWriter(tmp_path / "o.mkv", 24, 16, 25, 8, pix_fmt="grey")


def test_odd_size_into_subsampled_h264(tmp_path):
    with pytest.raises(OutputError, match=r"libx264 in yuv420p needs an even width and height, got 25x15"):
        VideoWriter(tmp_path / "o.mp4", 25, 15, 25, 8)
    frames = ramp_frames(2, 15, 25)
    _write(tmp_path / "o2.mp4", frames, pix_fmt="yuv444p", crf=0)
    assert np.abs(_read(tmp_path / "o2.mp4").astype(int) - frames).max() <= 1
    _write(tmp_path / "o.mkv", frames)
    np.testing.assert_array_equal(_read(tmp_path / "o.mkv"), frames)


def test_missing_folder(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write: folder .*nope does not exist"):
        VideoWriter(tmp_path / "nope" / "o.mkv", 24, 16, 25, 8)


def test_unwritable_folder(tmp_path):
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o500)
        target = tmp_path / "ro" / "o.mkv"
    elif os.path.isdir("/sys/kernel"):
        target = "/sys/kernel/o.mkv"  # root may write anywhere but sysfs: EACCES
    else:
        pytest.skip("no unwritable folder for root here")
    try:
        with pytest.raises(OutputError, match=r"cannot write .*o.mkv \(starting the file\): permission denied"):
            VideoWriter(target, 24, 16, 25, 8)
    finally:
        if os.geteuid() != 0:
            os.chmod(tmp_path / "ro", 0o700)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_an_output_error(tmp_path):
    # /dev/full opens fine and fails every write with ENOSPC, like a full disk
    target = tmp_path / "full.mkv"
    target.symlink_to("/dev/full")
    noise = np.random.default_rng(0).integers(0, 255, (50, 64, 64), dtype=np.uint8)
    with pytest.raises(OutputError, match=r"disk full while writing .*full\.mkv \((frame \d+|finishing the file)\)"):
        with VideoWriter(target, 64, 64, 25, 8) as w:
            for f in noise:
                w.write(f)
    assert w._closed


def test_exception_inside_with_closes_the_container(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "o.mkv", 24, 16, 25, 8) as w:
            w.write(np.zeros((16, 24), np.uint8))
            raise RuntimeError("pipeline failed")
    assert w._closed
    with pytest.raises(ValueError, match="closed"):
        w.write(np.zeros((16, 24), np.uint8))


def test_real_16bit_clip_round_trips_through_the_writer(tmp_path, shared_ir):
    src = shared_ir / "lepton_python_cptv_v2.mkv"
    info = probe(src)
    frames = _read(src)
    _write(tmp_path / "o.mkv", frames, fps=info.fps, source=info)
    np.testing.assert_array_equal(_read(tmp_path / "o.mkv"), frames)
    assert probe(tmp_path / "o.mkv").fps == info.fps


def test_very_large_ffv1_output_is_written_so_that_it_reads_back(tmp_path):
    # FFmpeg's FFV1 encoder picks a slice layout its own decoder refuses at this size ("slice count
    # unsupported"); the writer picks one it reads
    from theris_cli.video.decode import read_frames

    w, h = 12000, 9000
    frame = np.zeros((h, w), np.uint8)
    frame[::997, ::991] = 200
    with VideoWriter(tmp_path / "big.mkv", w, h, 25, 8) as wr:
        wr.write(frame)
    back = list(read_frames(tmp_path / "big.mkv"))
    assert len(back) == 1 and np.array_equal(back[0], frame)


def test_an_output_ffv1_cannot_hold_is_refused_before_any_work(tmp_path):
    with pytest.raises(OutputError, match=r"16384x16384 FFV1 video cannot be written .*Picture size") as e:
        VideoWriter(tmp_path / "huge.mkv", 16384, 16384, 25, 16)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_packet_copy_holds_the_writers_frames(tmp_path):
    """PacketCopy (the segments kept for resuming an FFV1 output) stores the destination's packets
    as they are: its file reads back as the same frames, and only FFV1 grey at the writer's depth
    is taken as what a segment's own writer would store."""
    from theris_cli.video.encode import PacketCopy

    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 65536, (24, 40), dtype=np.uint16) for _ in range(5)]
    with VideoWriter(tmp_path / "out.mkv", 40, 24, Fraction(25), 16) as w:
        assert w.stores_as(16) and not w.stores_as(8)
        copy = PacketCopy(tmp_path / "copy.mkv", w)
        w.packet_tap = copy.write
        for f in frames:
            w.write(f)
        copy.close()
    for name in ("out.mkv", "copy.mkv"):
        got = list(read_frames(tmp_path / name))
        assert len(got) == len(frames) and all(np.array_equal(a, b) for a, b in zip(got, frames)), name
    with VideoWriter(tmp_path / "out.mp4", 40, 24, Fraction(25), 8) as lossy:
        assert not lossy.stores_as(8)
