"""read_frames(): grey frames in display order, raw values kept, damage reported by frame index."""

from __future__ import annotations

import threading
import types
from fractions import Fraction

import av
import numpy as np
import pytest
from clips import VFR_TIMES_MS, ramp_frames, write_clip, write_vfr_clip

from theris_cli.errors import InputError
from theris_cli.video import read_frames
from theris_cli.video.decode import full_to_limited, limited_to_full


def _read(path):
    return np.stack(list(read_frames(path)))


@pytest.mark.parametrize("ext", [".mkv", ".avi"])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("t", [1, 2, 7])
def test_lossless_round_trip_is_exact(tmp_path, ext, bits, t):
    frames = ramp_frames(t, 16, 24, bits=bits)
    got = _read(write_clip(tmp_path / f"a{ext}", frames, fps=Fraction(30000, 1001)))
    assert got.dtype == frames.dtype
    np.testing.assert_array_equal(got, frames)


@pytest.mark.parametrize("pix_fmt,top", [("gray10le", 1023), ("gray12le", 4095), ("gray14le", 16383)])
def test_high_bit_grey_keeps_raw_values(tmp_path, pix_fmt, top):
    frames = ramp_frames(3, 16, 24, bits=16, lo=3, hi=top)
    got = _read(write_clip(tmp_path / "a.mkv", frames, pix_fmt=pix_fmt))
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, frames)


@pytest.mark.parametrize("pattern", ["seq/%05d.png", "seq/%03d.tif", "seq/%d.png"])
@pytest.mark.parametrize("bits", [8, 16])
def test_image_sequence_round_trip(tmp_path, pattern, bits):
    frames = ramp_frames(3, 16, 24, bits=bits)
    path = write_clip(tmp_path / pattern, frames)
    np.testing.assert_array_equal(_read(path), frames)
    np.testing.assert_array_equal(_read(tmp_path / "seq"), frames)


def test_image_directory_is_read_in_natural_order(tmp_path):
    frames = ramp_frames(12, 8, 8)
    write_clip(tmp_path / "seq" / "f%d.png", frames)  # f1 .. f12: lexical order would put f10 after f1
    np.testing.assert_array_equal(_read(tmp_path / "seq"), frames)


def test_h264_limited_range_luma_is_stretched_to_full_range(tmp_path):
    # Grey 0/128/255 written as H.264 yuv420p becomes luma 16/126/235 (limited range); reading
    # must give back the full-range values, not 16..235.
    frames = np.zeros((2, 16, 48), np.uint8)
    frames[:, :, 16:32], frames[:, :, 32:] = 128, 255
    path = write_clip(tmp_path / "a.mp4", frames)
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        y = np.frombuffer(f.planes[0], np.uint8).reshape(f.height, -1)[:, : f.width]
    assert (y[0, 0], y[0, 47]) == (16, 235)
    got = _read(path)
    assert (got[0, 0, 0], got[0, 0, 47]) == (0, 255)
    assert abs(int(got[0, 0, 20]) - 128) <= 1


def test_h264_lossless_grey_comes_back_within_one_count_in_display_order(tmp_path):
    frames = ramp_frames(9, 16, 24)  # B-frames reorder packets; frames must not
    got = _read(write_clip(tmp_path / "a.mp4", frames))
    assert np.abs(got.astype(int) - frames).max() <= 1


def test_full_range_yuv_is_kept_raw(tmp_path):
    frames = ramp_frames(2, 16, 24)
    got = _read(write_clip(tmp_path / "a.mp4", frames, color_range="full"))
    np.testing.assert_array_equal(got, frames)


@pytest.mark.parametrize("bits", [8, 10])
def test_limited_full_conversion_is_exactly_invertible(bits):
    scale = 1 << (bits - 8)
    dtype = np.uint8 if bits == 8 else np.uint16
    y = np.arange(16 * scale, 235 * scale + 1).astype(dtype)
    full = limited_to_full(y, bits)
    assert full[0] == 0 and full[-1] == (1 << bits) - 1
    assert len(np.unique(full)) == len(y)  # no two luma values merge
    np.testing.assert_array_equal(full_to_limited(full, bits), y)


def test_rgb_grey_is_exact_and_colour_becomes_luma(tmp_path):
    grey = ramp_frames(2, 16, 24)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    np.testing.assert_array_equal(_read(write_clip(tmp_path / "a.mkv", rgb)), grey)
    red = np.zeros((1, 8, 8, 3), np.uint8)
    red[..., 0] = 200
    assert _read(write_clip(tmp_path / "b.mkv", red))[0, 0, 0] == 60  # 0.299 * 200


def test_read_frames_is_a_generator(tmp_path):
    frames = read_frames(write_clip(tmp_path / "a.mkv", ramp_frames(3, 8, 8)))
    assert isinstance(frames, types.GeneratorType)
    assert next(frames).shape == (8, 8)
    frames.close()


def test_shared_clips_decode_fully(shared_ir):
    n = sum(1 for _ in read_frames(shared_ir / "lepton_python_cptv_v2.mkv"))
    assert n == 99


# ------------------------------------------------------------------------------- damage


def _noisy(t=20, h=32, w=48, bits=8):
    rng = np.random.default_rng(0)  # noise: no codec can shrink it, so bytes map to frames evenly
    return rng.integers(0, 255 if bits == 8 else 60000, (t, h, w), dtype=np.uint8 if bits == 8 else np.uint16)


def _read_until_error(path):
    got = []
    with pytest.raises(InputError) as e:
        for frame in read_frames(path):
            got.append(frame)
    return len(got), str(e.value)


@pytest.mark.parametrize("bits", [8, 16])
def test_truncated_mkv_is_an_error_at_the_frame_where_it_stops(tmp_path, bits):
    path = write_clip(tmp_path / "a.mkv", _noisy(bits=bits))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    n, msg = _read_until_error(path)
    assert 0 < n < 20
    # the demuxer logs "File ended prematurely"; a clean cut at a cluster edge ends silently and is
    # caught by comparing the count with the duration in the header
    assert msg.startswith(str(path)) and f"at frame {n} (counting from 0)" in msg and "truncated" in msg
    assert "\n" not in msg


def test_mkv_cut_at_a_cluster_boundary_is_an_error(tmp_path):
    # Matroska starts a new cluster every few seconds: at 1 fps, 8 frames make two clusters. Cut
    # there, no packet is damaged: PyAV alone reads 4 frames and stops without an error. The
    # demuxer's log ("File ended prematurely") or, failing that, the header's duration tells.
    path = write_clip(tmp_path / "a.mkv", _noisy(t=8, h=8, w=8), fps=1)
    data = path.read_bytes()
    cluster_id = bytes.fromhex("1F43B675")
    assert data.count(cluster_id) == 2
    path.write_bytes(data[: data.rindex(cluster_id)])
    n, msg = _read_until_error(path)
    assert 0 < n < 8 and "truncated" in msg and f"at frame {n} (counting from 0)" in msg


def test_mkv_cut_before_the_first_frame(tmp_path):
    path = write_clip(tmp_path / "a.mkv", _noisy(t=8, h=8, w=8), fps=1)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(bytes.fromhex("1F43B675"))])
    n, msg = _read_until_error(path)
    assert n == 0 and "ends before its first video frame (empty or truncated file)" in msg


def test_truncated_avi_is_an_error_with_the_frame_index(tmp_path):
    path = write_clip(tmp_path / "a.avi", _noisy())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    n, msg = _read_until_error(path)
    assert 0 < n < 20 and f"at frame {n} (counting from 0)" in msg


def test_truncated_mp4_is_not_a_readable_video(tmp_path):
    # mp4 keeps its index (moov) at the end: a cut file cannot even be opened
    path = write_clip(tmp_path / "a.mp4", _noisy())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    n, msg = _read_until_error(path)
    assert n == 0 and "not a video FFmpeg can read" in msg and "truncated" in msg


def test_truncated_faststart_mp4_is_an_error_with_the_frame_index(tmp_path):
    # with the index first (movflags=faststart, as web uploads are) the cut is in the media data
    path = tmp_path / "a.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i, f in enumerate(_noisy()):
            vf = av.VideoFrame.from_ndarray(f, format="gray").reformat(format="yuv420p")
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode())
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    path.write_bytes(data[: int(len(data) * 0.8)])
    n, msg = _read_until_error(path)
    assert 0 < n < 20 and f"corrupt or truncated at frame {n} (counting from 0)" in msg


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_corrupt_bytes_mid_stream_are_an_error_with_the_frame_index(tmp_path, ext):
    # FFV1 checks slice CRCs and H.264 flags concealed frames; FFmpeg hands out a frame either way
    path = write_clip(tmp_path / f"a{ext}", _noisy())
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 200] = bytes(200)
    path.write_bytes(bytes(data))
    n, msg = _read_until_error(path)
    assert 0 < n < 20
    assert msg.startswith(str(path)) and f"at frame {n} (counting from 0)" in msg and "corrupt" in msg


def _zero_mid(path, count=200):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + count] = bytes(count)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("ext", [".mkv", ".avi", ".mp4"])
def test_damage_is_caught_on_every_run_while_another_thread_decodes(tmp_path, ext):
    # the repro: the log capture raced with FFmpeg's decoder threads and with the other
    # decode switching PyAV's log level off, so the damage was missed on some runs
    bad = _zero_mid(write_clip(tmp_path / f"bad{ext}", _noisy()))
    good = write_clip(tmp_path / f"good{ext}", _noisy(t=6))
    stop = threading.Event()
    counts: list[int] = []  # frames of each whole decode of the good file, checked in this thread

    def decode_good():
        while True:  # at least one whole decode, however the threads are scheduled
            counts.append(sum(1 for _ in read_frames(good)))
            if stop.is_set():
                return

    other = threading.Thread(target=decode_good, daemon=True)
    other.start()
    try:
        outcomes = {_read_until_error(bad) for _ in range(10)}
    finally:
        stop.set()
        other.join()
    assert counts and set(counts) == {6}, counts  # the good file, decoded beside the bad one, stays whole
    assert len(outcomes) == 1, outcomes
    ((n, msg),) = outcomes
    assert 0 < n < 20 and f"corrupt or truncated at frame {n} (counting from 0)" in msg


def test_an_error_logged_by_another_thread_is_not_this_files_damage(tmp_path):
    # a process-wide capture took any "ffv1" error line, e.g. from an encoder or a second decode
    path = write_clip(tmp_path / "a.mkv", _noisy(t=30))
    stop = threading.Event()

    def log_errors():
        while not stop.is_set():
            av.logging.log(av.logging.ERROR, "ffv1", "slice CRC mismatch 12345678!")

    other = threading.Thread(target=log_errors, daemon=True)
    other.start()
    try:
        counts = [sum(1 for _ in read_frames(path)) for _ in range(5)]
    finally:
        stop.set()
        other.join()
    assert counts == [30] * 5


def test_variable_frame_rate_is_complete_not_truncated(tmp_path):
    path = write_vfr_clip(tmp_path / "vfr.mkv")
    assert len(list(read_frames(path))) == len(VFR_TIMES_MS)


def test_variable_frame_rate_cut_short_is_still_truncation(tmp_path):
    path = write_vfr_clip(tmp_path / "vfr.mkv")
    data = path.read_bytes()
    cluster = bytes.fromhex("1F43B675")
    path.write_bytes(data[: data.rindex(cluster)] if data.count(cluster) > 1 else data[: len(data) * 2 // 3])
    n, msg = _read_until_error(path)
    assert 0 < n < len(VFR_TIMES_MS) and "truncated" in msg and f"at frame {n} (counting from 0)" in msg


def test_mkv_starting_late_is_complete(tmp_path):
    # video that starts at 1 s (after a cut, or beside earlier audio): the header's duration counts from 0
    path = tmp_path / "late.mkv"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = 16, 12, "gray"
        for i, frame in enumerate(ramp_frames(10, 12, 16)):
            vf = av.VideoFrame.from_ndarray(frame, format="gray")
            vf.pts = 25 + i
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
    assert len(list(read_frames(path))) == 10


def test_avi_cut_at_a_packet_boundary_is_an_error(tmp_path):
    # a clean cut before the last frame's chunk: no packet is damaged and the index is gone, so
    # the demuxer just stops; the header's frame count tells (found by tests/test_fuzz_inputs.py)
    path = write_clip(tmp_path / "a.avi", _noisy(t=6))
    with av.open(str(path)) as c:
        last = [p.pos for p in c.demux(video=0) if p.size][-1]
    path.write_bytes(path.read_bytes()[:last])
    n, msg = _read_until_error(path)
    assert n == 5 and "ends after 5 frames but its header promises 6" in msg


def test_mp4_cut_before_its_sample_description_is_one_line(tmp_path):
    # the stream then has no codec context: an AttributeError traceback (found by the fuzzing suite)
    path = write_clip(tmp_path / "a.mp4", _noisy(t=6))
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"stsd") - 4])
    n, msg = _read_until_error(path)
    assert n == 0 and str(path) in msg and "\n" not in msg


def test_mp4_whose_sample_table_lists_more_frames_than_can_be_read_is_an_error(tmp_path):
    # a damaged stts (sample durations) left 1 of 6 frames readable and passed as a short success
    path = write_clip(tmp_path / "a.mp4", _noisy(t=6), options={"crf": "0", "bf": "0"})
    data = bytearray(path.read_bytes())
    at = data.index(b"stts") + 4 + 12  # version/flags, entry count, first entry's count: its delta
    data[at : at + 4] = (0x7FFFFFFF).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    n, msg = _read_until_error(path)
    assert "its sample table lists 6 frames but only" in msg and f"damaged at frame {n}" in msg


def test_mp4_edit_list_hiding_frames_is_not_damage(tmp_path):
    # a copy cut with `ffmpeg -ss ... -c copy`: an edit list hides the first samples; FFmpeg still
    # hands their packets out (marked discarded), so every sample is read and the file is whole
    src = write_clip(tmp_path / "a.mp4", ramp_frames(8, 16, 24), options={"crf": "0", "bf": "0"})
    dst = tmp_path / "trimmed.mp4"
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ins = inp.streams.video[0]
        outs = out.add_stream_from_template(ins)
        for p in (q for q in inp.demux(ins) if q.size):
            p.pts -= 2 * p.duration  # two frames before 0: the muxer writes an edit list hiding them
            p.dts -= 2 * p.duration
            p.stream = outs
            out.mux(p)
    assert len(list(read_frames(dst))) == 6


def test_image_changing_size_mid_sequence(tmp_path):
    write_clip(tmp_path / "seq" / "%03d.png", ramp_frames(2, 8, 8))
    write_clip(tmp_path / "other" / "%03d.png", ramp_frames(1, 8, 10))
    (tmp_path / "other" / "001.png").rename(tmp_path / "seq" / "003.png")
    n, msg = _read_until_error(tmp_path / "seq")
    assert n == 2 and "frame 2 is 10x8 gray, but the video started as 8x8 gray" in msg


def test_corrupt_image_in_sequence_names_it(tmp_path):
    write_clip(tmp_path / "seq" / "%03d.png", ramp_frames(3, 8, 8))
    (tmp_path / "seq" / "002.png").write_bytes(b"not a png")
    n, msg = _read_until_error(tmp_path / "seq" / "%03d.png")
    assert n == 1 and "002.png (frame 1) cannot be read" in msg
