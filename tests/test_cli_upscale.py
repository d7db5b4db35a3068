"""`theris upscale`: parsing, reporting and the one-line errors of the command line."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from clips import ramp_frames, write_clip
from theris_cli.cli import app
from theris_cli.errors import DeviceError, InputError, OutputError, UsageError
from theris_cli.outputs import PARTIAL_MARK

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(map(str, args)))


def test_help_shows_examples_and_options():
    res = runner.invoke(app, ["upscale", "--help"], env={"COLUMNS": "140"})
    assert res.exit_code == 0
    for text in ("Examples", "theris upscale in.mp4 out.mp4", "--temporal-factor", "--tile", "--precision",
                 "--overwrite", "--quiet", "--weights"):
        assert text in res.output


def test_upscale_end_to_end_with_tiny_random(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(5, 12, 16, bits=16))
    res = invoke("upscale", src, tmp_path / "out.mkv", "--weights", "tiny-random", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out.mkv").is_file()
    assert "wrote" in res.output and "10 frames 64x48 at 50 fps, 16-bit" in res.output
    assert "untrained" in res.output  # tiny-random is labelled as random weights
    assert "in.mkv: 10 frames" in res.output  # plain progress line: CliRunner's stderr is not a terminal


def test_quiet_prints_nothing(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16))
    res = invoke("upscale", src, tmp_path / "out.mkv", "-w", "tiny-random", "--quiet", "--temporal-factor", "1")
    assert res.exit_code == 0 and res.output == ""


@pytest.mark.parametrize(
    "args,error,message",
    [
        (["missing.mkv", "out.mkv"], InputError, "no such file"),
        (["in.mkv", "in.mkv"], OutputError, "is the input"),
        (["in.mkv", "out.mkv", "--device", "cuda:7"], DeviceError, "CUDA"),
        (["in.mkv", "out.mkv", "--precision", "fp8"], UsageError, "--precision"),
        (["in.mkv", "out.mkv", "--device", "tpu"], UsageError, "--device"),
    ],
)
def test_errors_raise_the_library_error(tmp_path, monkeypatch, args, error, message):
    monkeypatch.chdir(tmp_path)
    write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16))
    res = invoke("upscale", *args, "-w", "tiny-random")
    assert isinstance(res.exception, error) and message in str(res.exception)
    assert not (tmp_path / "out.mkv").exists()
    assert [p for p in tmp_path.iterdir() if PARTIAL_MARK in p.name] == []


def test_folder_input_goes_to_the_batch_runner(tmp_path):
    write_clip(tmp_path / "clips" / "a.mkv", ramp_frames(3, 12, 16))
    write_clip(tmp_path / "clips" / "sub" / "b.mkv", ramp_frames(2, 12, 16))
    res = invoke("upscale", tmp_path / "clips", tmp_path / "out", "-w", "tiny-random", "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "a.mkv").is_file() and (tmp_path / "out" / "sub" / "b.mkv").is_file()
    res = invoke("upscale", tmp_path / "clips", tmp_path / "out.mkv")
    assert isinstance(res.exception, UsageError) and "must be a folder too" in str(res.exception)


def test_folder_of_images_into_one_video(tmp_path):
    # the README's third input form: a folder of images into one video file
    write_clip(tmp_path / "frames" / "%04d.png", ramp_frames(3, 12, 16))
    res = invoke("upscale", tmp_path / "frames", tmp_path / "out.mkv", "-w", "tiny-random", "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    assert "6 frames" in invoke_probe(tmp_path / "out.mkv")


def invoke_probe(path):
    from theris_cli.video import probe

    return f"{probe(path).frame_count} frames"


def test_a_real_file_named_like_a_pattern_is_that_file(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16)).rename(tmp_path / "pct%d.mkv")
    res = invoke("upscale", src, tmp_path / "out%d.mkv", "-w", "tiny-random", "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out%d.mkv").is_file()


@pytest.mark.parametrize("name", ["out.webm", "out.png", "out/%05d.jpg", "out"])
def test_every_suggested_output_name_is_accepted(tmp_path, name):
    # the unknown-extension error suggested out/%05d.png, which was then refused
    import re

    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16))
    res = invoke("upscale", src, tmp_path / name, "-w", "tiny-random", "--device", "cpu", "-q")
    assert isinstance(res.exception, (OutputError, UsageError)), res.output
    advice = str(res.exception).split(": ", 1)[1]  # after the output's own name
    suggested = re.findall(r"(\.mkv|\.mp4|\.mov|\.avi|\S*%\d*d\S*)", advice)
    assert suggested and all("%" not in s for s in suggested), str(res.exception)


def test_option_ranges_are_checked_by_the_parser(tmp_path):
    res = invoke("upscale", "a.mkv", "b.mkv", "--window", "1")
    assert res.exit_code == 2


def test_main_prints_one_line_and_exits_non_zero(tmp_path):
    # Through the console entry point, as a user runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "theris_cli", "upscale", str(tmp_path / "missing.mkv"), str(tmp_path / "out.mkv")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no such file" in lines[0]


def test_demo_writes_input_and_output_and_names_the_weights(tmp_path, monkeypatch):
    import theris_cli.demo as demo
    from theris_cli.video import probe

    monkeypatch.setattr(demo, "DEMO_FRAMES", 4)  # the real demo is 27 frames; 4 keep the test short
    res = invoke("demo", "--out-dir", tmp_path / "d", "-w", "tiny-random", "--device", "cpu")
    assert res.exit_code == 0, res.output
    src, dst = tmp_path / "d" / demo.INPUT_NAME, tmp_path / "d" / demo.OUTPUT_NAME
    assert f"input:   {src}" in res.output and f"output:  {dst}" in res.output
    assert "weights: tiny-random (UNTRAINED" in res.output
    a, b = probe(src), probe(dst)
    assert (b.width, b.height) == (4 * a.width, 4 * a.height) and b.fps == 2 * a.fps
    again = invoke("demo", "--out-dir", tmp_path / "d", "-w", "tiny-random", "--device", "cpu", "-q")
    assert again.exit_code == 0, again.output  # a second demo replaces the first one's files
    assert again.output == ""  # -q: nothing at all


# ------------------------------------------------------------------------------- small promises


def test_neutral_10_bit_video_is_not_false_colour(tmp_path):
    # PyAV hands yuv444p16le out as (H, W, 3), so 'chroma' was luma rows: a false palette warning
    from theris_cli.video import probe

    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16), codec="ffv1", pix_fmt="yuv420p10le")
    assert probe(src).palette_suspected is False
    res = invoke("upscale", src, tmp_path / "out.mkv", "-w", "tiny-random", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "false colour" not in res.output


@pytest.mark.parametrize("cmd", ["upscale", "batch"])
def test_crf_out_of_the_encoders_range_is_refused_not_clamped(tmp_path, cmd):
    src = write_clip(tmp_path / "in" / "a.mkv", ramp_frames(3, 12, 16))
    args = [src, tmp_path / "out.mp4"] if cmd == "upscale" else [tmp_path / "in", tmp_path / "out", "--ext", "mp4"]
    res = invoke(cmd, *args, "--crf", "100", "-w", "tiny-random", "--device", "cpu", "-q")
    assert isinstance(res.exception, UsageError) and "--crf 100: libx264 takes 0 (best) to 51" in str(res.exception)
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out").exists()


def test_summary_states_the_bit_depth_written(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16, bits=16))
    res = invoke("upscale", src, tmp_path / "out.mp4", "--pix-fmt", "yuv420p", "-w", "tiny-random", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "8-bit (from 3 frames" in res.output and "16-bit" not in res.output


def test_ctrl_c_says_so_and_exits_130(tmp_path, monkeypatch, capsys):
    # Typer turns KeyboardInterrupt into a bare exit code 130: nothing was printed
    import theris_cli.cli as cli
    import theris_cli.engine.pipeline as pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "upscale_video", interrupted)
    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16))
    monkeypatch.setattr(sys, "argv", ["theris", "upscale", str(src), str(tmp_path / "out.mkv"), "-q"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted")


@pytest.mark.parametrize("cmd", ["upscale", "batch", "train"])
def test_help_shows_flags_without_a_type(cmd):
    res = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "160"})
    assert res.exit_code == 0 and ("--quiet" in res.output or "--amp" in res.output)
    assert "<bool>" not in res.output


def test_ctrl_c_before_any_output_claims_no_removal(tmp_path, monkeypatch, capsys):
    import theris_cli.cli as cli
    import theris_cli.engine.pipeline as pipeline
    import theris_cli.outputs as outputs

    monkeypatch.setattr(outputs, "removed_on_interrupt", [])
    monkeypatch.setattr(cli.console, "batch_running", False)
    monkeypatch.setattr(pipeline, "upscale_video", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16))
    monkeypatch.setattr(sys, "argv", ["theris", "upscale", str(src), str(tmp_path / "out.mkv"), "-q"])
    with pytest.raises(SystemExit):
        cli.main()
    err = capsys.readouterr().err.strip()
    assert err == "interrupted: no output had been started"


def test_ctrl_c_mid_output_names_the_removed_output(tmp_path, monkeypatch):
    import theris_cli.cli as cli
    import theris_cli.outputs as outputs
    from theris_cli.outputs import atomic_output

    monkeypatch.setattr(outputs, "removed_on_interrupt", [])
    monkeypatch.setattr(cli.console, "batch_running", False)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(tmp_path / "out.mkv") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    assert cli.interrupt_message() == f"interrupted: the unfinished output {tmp_path / 'out.mkv'} was removed"


def test_an_existing_folder_as_output_is_called_a_folder(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16))
    (tmp_path / "outdir").mkdir()
    res = invoke("upscale", src, tmp_path / "outdir", "-w", "tiny-random", "--device", "cpu")
    assert isinstance(res.exception, OutputError)
    assert "is a folder; give a file name such as" in str(res.exception) and "unknown output type" not in str(res.exception)


def test_a_folder_without_videos_is_not_called_a_folder_of_videos(tmp_path):
    (tmp_path / "empty").mkdir()
    res = invoke("upscale", tmp_path / "empty", tmp_path / "out.mkv")
    assert isinstance(res.exception, UsageError)
    assert "folder of videos" not in str(res.exception) and "is a folder" in str(res.exception)
    res = invoke("upscale", tmp_path / "empty", tmp_path / "outdir")  # as a batch: nothing in it, exit 1
    assert isinstance(res.exception, InputError) and "holds no videos" in str(res.exception)
    assert not (tmp_path / "outdir").exists()


def test_16_bit_mkv_with_a_codec_that_cannot_hold_it_is_told_to_leave_the_codec_out(tmp_path):
    src = write_clip(tmp_path / "in.mkv", ramp_frames(3, 12, 16, bits=16))
    res = invoke("upscale", src, tmp_path / "out.mkv", "--codec", "libx264", "-w", "tiny-random", "--device", "cpu")
    assert isinstance(res.exception, OutputError)
    msg = str(res.exception)
    assert "leave out --codec libx264" in msg and "write .mkv" not in msg
    assert not list(tmp_path.glob("out*"))


def test_ctrl_c_of_a_batch_says_its_finished_files_are_kept(tmp_path, monkeypatch, capsys):
    import theris_cli.cli as cli
    import theris_cli.engine.pipeline as pipeline
    import theris_cli.outputs as outputs

    monkeypatch.setattr(outputs, "removed_on_interrupt", [])
    monkeypatch.setattr(pipeline, "upscale_video", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    write_clip(tmp_path / "in" / "a.mkv", ramp_frames(3, 12, 16))
    monkeypatch.setattr(sys, "argv", ["theris", "batch", str(tmp_path / "in"), str(tmp_path / "out"), "-q",
                                      "-w", "tiny-random", "--device", "cpu"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("interrupted: no output had been started; finished files of the batch are kept, "
                       "rerun the same command to go on")


def test_help_shows_the_teacher_extra_and_every_output_container():
    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert '".[teacher]"' in res.output
    res = runner.invoke(app, ["upscale", "--help"], env={"COLUMNS": "250"})
    dst = next(line for line in res.output.splitlines() if "Output video" in line)
    assert all(ext in dst for ext in (".mkv", ".avi", ".mp4", ".mov"))


def test_debug_works_after_the_command_too(monkeypatch, capsys):
    import theris_cli.cli as cli

    monkeypatch.setattr(cli, "_debug", False)
    monkeypatch.setattr(sys, "argv", ["theris", "weights", "download", "no-such-model"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 1 and capsys.readouterr().err.startswith("error: unknown model")
    monkeypatch.setattr(sys, "argv", ["theris", "weights", "download", "no-such-model", "--debug"])
    from theris_cli.errors import WeightsError

    with pytest.raises(WeightsError):  # the traceback, as with `theris --debug weights ...`
        cli.main()


@pytest.mark.parametrize("code", [30, 13, 17])
def test_demo_into_a_folder_it_cannot_make_is_one_line(tmp_path, monkeypatch, code):
    import os

    def refuse(path, *a, **k):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(os, "mkdir", refuse)
    res = invoke("demo", "--out-dir", tmp_path / "ro" / "d", "-w", "tiny-random", "--device", "cpu", "-q")
    assert isinstance(res.exception, OutputError) and "\n" not in str(res.exception)
    assert "the demo folder" in str(res.exception)
