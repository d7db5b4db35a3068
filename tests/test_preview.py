"""`theris preview`: one PNG with labelled panels and a caption, the same frames as upscale, clean errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from clips import ramp_frames, write_clip
from theris_cli.cli import app
from theris_cli.errors import InputError, OutputError, UsageError
from theris_cli.engine.options import UpscaleOptions
from theris_cli.outputs import PARTIAL_MARK
from theris_cli.preview import busiest_box, make_preview, parse_time
from theris_cli.preview.image import GAP, MARGIN, PANEL_BOX

OPTS = UpscaleOptions(weights="tiny-random", device="cpu")
runner = CliRunner()


def leftovers(folder):
    return [p.name for p in folder.iterdir() if PARTIAL_MARK in p.name]


@pytest.mark.parametrize("bits", [8, 16])
def test_picture_has_three_rows_of_three_labelled_panels_and_a_caption(tmp_path, bits):
    src = write_clip(tmp_path / "clip.mkv", ramp_frames(6, 20, 24, bits=bits), fps=10)
    res = make_preview(src, tmp_path / "p.png", OPTS, at=0.2)
    with Image.open(tmp_path / "p.png") as im:
        assert im.format == "PNG" and im.size == res.size and im.mode == "L"
    titles = [r.title for r in res.rows]
    assert titles[0].startswith("input-aligned frame 2 · t = 0.20 s")
    assert titles[1].startswith("interpolated frame · t = 0.25 s (between input frames 2 and 3)")
    assert titles[2].startswith("zoom x2")
    assert [p.label for p in res.rows[0].panels] == ["input · nearest x4", "bicubic x4", "theris (UNTRAINED)"]
    assert res.rows[1].panels[1].label == "bicubic x4 + linear blend"
    for row in res.rows[:2]:
        assert all(p.image.shape == (80, 96) for p in row.panels)  # 4x the input, shown 1:1
    width, height = res.size
    assert width >= 2 * MARGIN + 3 * 96 + 2 * GAP and height > 2 * 80 + 40  # two rows of frames and the zoom
    assert "clip.mkv" in res.caption and "t = 0.20 s" in res.caption and "tiny-random" in res.caption
    assert f"{bits}-bit" in res.caption
    near = res.rows[0].panels[0].image
    assert (near[::4, ::4].repeat(4, 0).repeat(4, 1) == near).all()  # nearest neighbour: 4x4 blocks


def test_theris_panels_are_upscales_frames(tmp_path):
    # A clip as long as the window is one window in upscale too, so the frames must agree.
    from theris_cli.engine.pipeline import upscale_video
    from theris_cli.video import Levels, read_frames

    src = write_clip(tmp_path / "clip.mkv", ramp_frames(4, 16, 20), fps=5)
    res = make_preview(src, tmp_path / "p.png", OPTS, at=0.2)
    upscale_video(src, tmp_path / "up.mkv", weights="tiny-random", device="cpu")
    out = [Levels.full_range(8).to_unit(f) for f in read_frames(tmp_path / "up.mkv")]
    assert res.frame == 1
    for row, m in ((0, 2), (1, 3)):  # the written video is rounded and clipped to 0..255
        np.testing.assert_allclose(np.clip(res.rows[row].panels[2].image, 0, 1), out[m], atol=0.6 / 255)


def test_spatial_only_has_no_interpolated_row_and_the_last_frame_is_shown_with_its_predecessor(tmp_path):
    src = write_clip(tmp_path / "clip.mkv", ramp_frames(5, 16, 20), fps=5)
    res = make_preview(src, tmp_path / "a.png", UpscaleOptions(weights="tiny-random", device="cpu", temporal_factor=1))
    assert [r.title.split(" ")[0] for r in res.rows] == ["input-aligned", "zoom"]
    res = make_preview(src, tmp_path / "b.png", OPTS, at=0.8)  # frame 4, the last: nothing after it
    assert res.frame == 3 and "between input frames 3 and 4" in res.rows[1].title


def test_large_frames_are_previewed_on_their_busiest_region(tmp_path):
    frames = np.full((4, 150, 200), 60, np.uint8)
    frames[:, 100:130, 150:190] = 200  # one warm object
    src = write_clip(tmp_path / "big.mkv", frames, fps=5)
    res = make_preview(src, tmp_path / "p.png", OPTS, at=0)
    x0, y0, x1, y1 = res.region
    assert (x1 - x0, y1 - y0) == (PANEL_BOX[0] // 4, PANEL_BOX[1] // 4)
    assert x0 <= 150 and x1 >= 190 and y0 <= 100 and y1 >= 130  # the object is inside
    assert "region x" in res.rows[0].title and "of 200x150" in res.rows[0].title


def test_busiest_box_holds_the_corner_of_a_warm_square():
    a = np.zeros((40, 40))
    a[20:, 30:] = 1.0  # edges meet at (x, y) = (30, 20): the most gradient an 8x8 box can hold
    x, y = busiest_box(a, a, 8, 8)
    assert x <= 30 < x + 8 and y <= 20 < y + 8


@pytest.mark.parametrize("text,seconds", [("12.5", 12.5), ("1:02.5", 62.5), ("1:00:02", 3602.0), ("0", 0.0)])
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize(
    "args,error,message",
    [
        (["missing.mkv"], InputError, "no such file"),
        (["in.mkv", "-o", "p.jpg"], UsageError, "PNG"),
        (["in.mkv", "--at", "9"], UsageError, "past the end"),
        (["in.mkv", "--at", "soon"], UsageError, "not a time"),
        (["in.mkv", "-o", "exists.png"], OutputError, "--overwrite"),
        (["in.mkv", "--device", "tpu"], UsageError, "--device"),
    ],
)
def test_errors_are_one_line_and_leave_nothing(tmp_path, monkeypatch, args, error, message):
    monkeypatch.chdir(tmp_path)
    write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16), fps=5)
    (tmp_path / "exists.png").write_bytes(b"keep")
    res = runner.invoke(app, ["preview", *args, "-w", "tiny-random"])
    assert isinstance(res.exception, error) and message in str(res.exception)
    assert not (tmp_path / "preview.png").exists() and not (tmp_path / "p.jpg").exists()
    assert (tmp_path / "exists.png").read_bytes() == b"keep" and leftovers(tmp_path) == []


def test_a_file_truncated_after_the_window_is_refused_as_upscale_refuses_it(tmp_path):
    # preview decodes only up to its window's end for the picture, but reads on to the end of the file
    from theris_cli.engine.pipeline import upscale_video

    good = write_clip(tmp_path / "good.mkv", ramp_frames(40, 12, 16), fps=10).read_bytes()
    src = tmp_path / "cut.mkv"
    src.write_bytes(good[: 2 * len(good) // 3])
    with pytest.raises(InputError) as up:
        upscale_video(src, tmp_path / "out.mkv", OPTS)
    with pytest.raises(InputError) as pre:
        make_preview(src, tmp_path / "p.png", OPTS, at=0.1)
    assert "truncated" in str(up.value) and str(pre.value) == str(up.value)
    assert not (tmp_path / "p.png").exists() and leftovers(tmp_path) == []


def test_nan_weights_are_refused_as_upscale_refuses_them(tmp_path):
    from theris_cli.errors import WeightsError
    from theris_cli.weights import load_model

    model = load_model("tiny-random", device="cpu")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    src = write_clip(tmp_path / "in.mkv", ramp_frames(4, 12, 16), fps=5)
    with pytest.raises(WeightsError, match="NaN or infinite"):
        make_preview(src, tmp_path / "p.png", OPTS, model=model)
    assert not (tmp_path / "p.png").exists() and leftovers(tmp_path) == []


def test_false_colour_video_gets_upscales_warning(tmp_path, caplog):
    rgb = np.zeros((4, 12, 16, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, 16, dtype=np.uint8)  # a red ramp: colour, not grey
    rgb[..., 2] = 255 - rgb[..., 0]
    src = write_clip(tmp_path / "in.mkv", rgb, fps=5)
    with caplog.at_level("WARNING", logger="theris"):
        make_preview(src, tmp_path / "p.png", OPTS)
    assert "false colour" in caplog.text and (tmp_path / "p.png").is_file()


def test_cli_writes_the_png_and_says_so(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(4, 12, 16), fps=5)
    res = runner.invoke(app, ["preview", str(src), "-o", str(tmp_path / "p.png"), "-w", "tiny-random", "--at", "0:00.2"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "untrained" in res.output and (tmp_path / "p.png").is_file()


@pytest.mark.parametrize("name", ["lepton_possum.mkv", "lepton_python_cptv_v2.mkv", "vottir_horse_h264.mp4"])
def test_real_clips(shared_ir, tmp_path, name):
    res = make_preview(shared_ir / name, tmp_path / "p.png", OPTS, at=0.5)
    assert len(res.rows) == 3 and res.size[0] >= 3 * 4 * (res.region[2] - res.region[0])
    assert name in res.caption and ("16-bit" in res.caption) == name.startswith("lepton")


@pytest.mark.parametrize("h, w", [(1, 1), (1, 5), (4, 1)])
def test_a_video_of_one_pixel_row_or_column_is_previewed(tmp_path, h, w):
    frames = np.random.default_rng(0).integers(0, 255, (6, h, w), dtype=np.uint8)
    src = write_clip(tmp_path / "seq" / "%04d.png", frames)  # FFV1 cannot be one pixel wide
    res = make_preview(src, tmp_path / "p.png", OPTS)
    assert res.rows[0].panels[0].image.shape == (4 * h, 4 * w)
    assert busiest_box(np.zeros((h, w)), np.ones((h, w)), 1, 1) == (0, 0)


def test_labels_of_tiny_panels_neither_overlap_nor_hide_the_panel(tmp_path):
    from PIL import ImageDraw

    from theris_cli.preview.image import LABEL_SIZE, _font, _plate

    src = write_clip(tmp_path / "tiny.mkv", ramp_frames(6, 2, 3), fps=10)
    res = make_preview(src, tmp_path / "p.png", OPTS)
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    widest = max(_plate(draw, (0, 0), p.label, _font(LABEL_SIZE))[2] for row in res.rows for p in row.panels)
    width, height = res.size
    assert width >= 2 * MARGIN + 3 * widest + 2 * GAP  # each column holds its label's plate
    with Image.open(tmp_path / "p.png") as im:
        pixels = np.asarray(im)
    # the first row's panels (12x8 upscales of a ramp) are visible: not all under a dark plate
    top = MARGIN + 18 + 12  # the first row's frames start below its title
    assert pixels[top : top + 8, MARGIN : MARGIN + 12].max() > 100


def test_false_colour_is_said_in_the_warning_and_the_caption(tmp_path, caplog):
    rgb = np.zeros((6, 16, 20, 3), np.uint8)
    rgb[..., 0] = ramp_frames(6, 16, 20)
    rgb[..., 2] = 255 - rgb[..., 0]
    src = write_clip(tmp_path / "iron.mkv", rgb, fps=10)
    with caplog.at_level("WARNING", logger="theris"):
        res = make_preview(src, tmp_path / "p.png", OPTS)
    assert any("false colour" in r.getMessage() for r in caplog.records)
    assert "false colour" in res.caption and "white hot" not in res.caption
