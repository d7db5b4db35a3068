"""Damage that FFmpeg conceals without a word, caught by video/integrity.py's checks."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from clips import write_clip  # noqa: E402

from theris_cli.errors import InputError  # noqa: E402
from theris_cli.video.decode import read_frames  # noqa: E402
from theris_cli.video.integrity import matroska_crc_damage  # noqa: E402


def _noise(t=6, h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (t, h, w), dtype=np.uint8)


def _zero_inside_packet(path: Path, index: int, offset: int, length: int) -> None:
    with av.open(str(path)) as c:
        pos, size = [(p.pos, p.size) for p in c.demux(video=0) if p.size][index]
    data = bytearray(path.read_bytes())
    at = pos + min(offset, size - length)
    data[at : at + length] = bytes(length)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("options", [{"level": "1"}, {"level": "3", "slicecrc": "0"}], ids=["level1", "level3-nocrc"])
def test_ffv1_without_slice_crcs_damaged_in_matroska_is_refused(tmp_path, options):
    # FFV1 without slice CRCs decodes damaged bytes to other pixels without any log; the Matroska
    # cluster's CRC-32 element is what reveals it
    src = write_clip(tmp_path / "in.mkv", _noise(), options=options)
    assert len(list(read_frames(src))) == 6 and matroska_crc_damage(src) is None
    _zero_inside_packet(src, 3, 100, 50)
    with pytest.raises(InputError, match=r"in\.mkv: damaged: cluster at byte \d+ \(its CRC-32 does not match"):
        list(read_frames(src))


def test_every_matroska_element_crc_is_checked(tmp_path):
    # damage in the track list (the codec's parameters) is caught as well as in a cluster
    src = write_clip(tmp_path / "in.mkv", _noise(), options={"level": "1"})
    data = bytearray(src.read_bytes())
    at = data.find(b"V_FFV1")  # the codec ID's bytes, in the track list
    tracks = data.rfind(bytes.fromhex("1654AE6B"), 0, at)  # the element holding it (the seek head names it too)
    data[at + 2] ^= 0x20
    src.write_bytes(bytes(data))
    assert matroska_crc_damage(src) == f"track list at byte {tracks}"


def test_matroska_without_crc_elements_is_not_judged(tmp_path):
    src = tmp_path / "nocrc.mkv"
    with av.open(str(src), "w", options={"write_crc32": "0"}) as out:
        vs = out.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = 32, 24, "gray"
        for i, f in enumerate(_noise()):
            vf = av.VideoFrame.from_ndarray(f, format="gray")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
    assert bytes.fromhex("BF84") not in src.read_bytes()[200:]  # no CRC-32 element after the header
    assert matroska_crc_damage(src) is None
    assert len(list(read_frames(src))) == 6


def test_lossless_decoders_run_strict(tmp_path):
    # err_detect with explode for the codecs whose checks it switches on; a valid file still decodes
    from theris_cli.video.integrity import STRICT_CODECS, STRICT_DECODING, strict

    src = write_clip(tmp_path / "seq" / "%04d.png", _noise())
    with av.open(str(tmp_path / "seq" / "0001.png")) as c:
        strict(c.streams.video[0])
        assert c.streams.video[0].codec_context.options == STRICT_DECODING
    assert {"ffv1", "png"} <= STRICT_CODECS and "h264" not in STRICT_CODECS
    assert len(list(read_frames(src))) == 6


def test_avi_with_more_frames_than_its_header_is_refused(tmp_path):
    # a bogus idx1 size makes the demuxer scan, and read the index's own bytes as a 7th packet,
    # which FFV1 without slice CRCs decodes without a word
    src = write_clip(tmp_path / "in.avi", _noise(), options={"level": "1"})
    data = bytearray(src.read_bytes())
    at = data.rfind(b"idx1") + 4
    data[at : at + 4] = bytes.fromhex("90c03b61")
    src.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"in\.avi: holds 7 frames but its header lists 6"):
        list(read_frames(src))
