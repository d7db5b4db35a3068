import json

import numpy as np
import pytest
import torch
from clips import ramp_frames, write_clip
from typer.testing import CliRunner

from theris_cli.cli import app
from theris_cli.errors import InputError, UsageError
from theris_cli.eval import metrics
from theris_cli.eval.evaluate import check_methods, evaluate, evaluate_frames, find_clips, load_clip
from theris_cli.eval.results import Evaluation

runner = CliRunner()


def _smooth_frames(t: int, h: int, w: int, bits: int = 8, lo: int = 0, hi: int = 255) -> np.ndarray:
    """A warm blob drifting across a gradient: smooth enough that upscalers score in a sane range."""
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for i in range(t):
        f = 0.3 + 0.3 * x / w + 0.4 * np.exp(-((x - w / 3 - 1.5 * i) ** 2 + (y - h / 2) ** 2) / (0.05 * h * w))
        out.append(lo + np.clip(f, 0, 1) * (hi - lo))
    return np.round(np.stack(out)).astype(np.uint8 if bits == 8 else np.uint16)


def test_identity_like_method_scores_exact_on_every_subset():
    hr = torch.rand(7, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    res = evaluate_frames(hr, {"truth": lambda lr: hr.clone()})["truth"]
    for s in (res.all, res.aligned, res.interpolated):
        assert s.psnr == metrics.PSNR_CAP and s.ssim == pytest.approx(1.0, abs=1e-12)
    assert (res.all.frames, res.aligned.frames, res.interpolated.frames) == (7, 4, 3)
    assert res.tmae == 0.0


def test_subsets_split_even_and_odd_frames():
    """Error only on odd (interpolated) frames: input-aligned figures stay exact."""
    hr = torch.full((5, 1, 16, 16), 0.5)

    def odd_wrong(lr):
        out = hr.clone()
        out[1::2] += 0.1  # 20 dB on the interpolated frames
        return out

    res = evaluate_frames(hr, {"m": odd_wrong})["m"]
    assert res.aligned.psnr == metrics.PSNR_CAP
    assert res.interpolated.psnr == pytest.approx(20.0, abs=1e-4)
    assert res.all.psnr == pytest.approx((3 * metrics.PSNR_CAP + 2 * 20.0) / 5, abs=1e-4)


def test_predictions_are_clamped_before_scoring():
    hr = torch.ones(3, 1, 16, 16)
    res = evaluate_frames(hr, {"over": lambda lr: hr + 0.5})["over"]
    assert res.all.psnr == metrics.PSNR_CAP


def test_bicubic_on_a_constant_clip_is_exact(tmp_path):
    clip = write_clip(tmp_path / "flat.mkv", np.full((5, 16, 20), 100, np.uint8))
    ev = evaluate([clip], methods=["bicubic"])
    assert ev.clips[0].methods["bicubic"].all.psnr == metrics.PSNR_CAP


def test_16_bit_clip_is_scored_on_its_own_range(tmp_path):
    """The same scene as 8-bit 0..255 and as 16-bit 1000..1255 (levels = the clip's min..max) scores the same."""
    f8 = _smooth_frames(5, 32, 32)
    f8[0, 0, :2] = (0, 255)  # both extremes occur, so the 16-bit clip's min..max is 1000..1255
    a = write_clip(tmp_path / "a8.mkv", f8)
    b = write_clip(tmp_path / "b16.mkv", f8.astype(np.uint16) + 1000)
    ev = evaluate([a, b], methods=["bicubic"])
    c8, c16 = ev.clips
    assert (c8.bit_depth, c16.bit_depth, c16.levels) == (8, 16, (1000, 1255))
    assert c16.methods["bicubic"].all.psnr == pytest.approx(c8.methods["bicubic"].all.psnr, abs=1e-6)


def test_protocol_crop_and_odd_frame_count(tmp_path):
    clip = write_clip(tmp_path / "c.mkv", ramp_frames(8, 18, 23))
    hr, levels = load_clip(clip)
    assert hr.shape == (7, 1, 16, 20)  # 8 frames -> 7 (odd); 18x23 -> 16x20
    hr, _ = load_clip(clip, max_frames=4)
    assert hr.shape[0] == 3
    assert levels.bit_depth == 8 and 0 <= hr.min() and hr.max() <= 1


def test_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown method 'sharp'.*theris, bicubic, ffmpeg"):
        check_methods(["bicubic,sharp"])
    assert check_methods(["bicubic, ffmpeg", "bicubic"]) == ["bicubic", "ffmpeg"]
    short = write_clip(tmp_path / "short.mkv", ramp_frames(2, 16, 16))
    with pytest.raises(InputError, match="short.mkv: 2 frame.*at least 3"):
        evaluate([short], methods=["bicubic"])
    small = write_clip(tmp_path / "small.mkv", ramp_frames(5, 15, 40))
    with pytest.raises(InputError, match="small.mkv: 40x15 pixels.*at least 16x16"):
        evaluate([small], methods=["bicubic"])
    with pytest.raises(InputError, match="no such file"):
        find_clips([tmp_path / "missing.mkv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos or numbered image sequences"):
        find_clips([tmp_path / "empty"])


def test_folder_of_videos(tmp_path):
    for name in ("b.mkv", "a.mp4"):
        write_clip(tmp_path / "set" / name, ramp_frames(3, 16, 16))
    (tmp_path / "set" / "notes.txt").write_text("not a clip")
    assert [p.name for p in find_clips([tmp_path / "set"])] == ["a.mp4", "b.mkv"]


def test_cli_table_and_json_round_trip(tmp_path):
    clip = write_clip(tmp_path / "clip.mkv", _smooth_frames(7, 32, 40))
    out = tmp_path / "res.json"
    result = runner.invoke(
        app,
        ["evaluate", str(clip), "-w", "tiny-random", "--methods", "theris,bicubic,ffmpeg", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    for text in ("PSNR", "SSIM", "all", "in", "interp", "tMAE", "theris", "bicubic", "ffmpeg", "gain of theris"):
        assert text in result.output
    data = json.loads(out.read_text())
    ev = Evaluation.from_dict(data)
    assert json.loads(ev.to_json()) == data  # round trip, gains included
    assert Evaluation.from_dict(json.loads(ev.to_json())) == ev
    assert ev.methods == ["theris", "bicubic", "ffmpeg"] and "UNTRAINED" in ev.weights
    clip_res = ev.clips[0]
    assert (clip_res.frames, clip_res.lr_frames, clip_res.size) == (7, 4, (32, 40))
    for m in ev.methods:
        s = clip_res.methods[m]
        assert 10 < s.all.psnr < 60 and 0 < s.interpolated.ssim <= 1
        assert ev.mean[m] == s  # one clip: the mean is that clip
    assert data["gains"]["mean"]["bicubic"]["psnr_all"] == pytest.approx(
        clip_res.methods["theris"].all.psnr - clip_res.methods["bicubic"].all.psnr
    )


def test_cli_json_to_stdout_is_pure_json(tmp_path):
    clip = write_clip(tmp_path / "clip.mkv", _smooth_frames(3, 16, 16))
    result = runner.invoke(app, ["evaluate", str(clip), "--methods", "bicubic", "--json", "-"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["clips"][0]["frames"] == 3


def test_cli_unknown_method_fails_before_decoding(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nothing.mkv"), "--methods", "bicubc"])
    assert isinstance(result.exception, UsageError) and "bicubc" in str(result.exception)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_missing_cuda_is_a_clear_error(tmp_path):
    from theris_cli.errors import DeviceError

    clip = write_clip(tmp_path / "clip.mkv", _smooth_frames(3, 16, 16))
    with pytest.raises(DeviceError, match="no CUDA device"):
        evaluate([clip], methods=["theris"], weights="tiny-random", device="cuda")


def _moving_square(t=7, size=32, speed=4):
    hr = torch.full((t, 1, size, size), 0.2)
    for i in range(t):
        hr[i, 0, 10:18, 2 + speed * i:10 + speed * i] = 0.9
    return hr


def test_motion_figures_cover_only_the_moving_pixels_of_new_frames():
    hr = _moving_square()
    blend = lambda lr: torch.stack([hr[i] if i % 2 == 0 else 0.5 * (hr[i - 1] + hr[i + 1]) for i in range(7)])  # noqa: E731
    res = evaluate_frames(hr, {"truth": lambda lr: hr.clone(), "blend": blend})
    truth, mixed = res["truth"].motion, res["blend"].motion
    assert truth.pixels == mixed.pixels > 0 and 0 < truth.fraction < 0.5  # one mask for every method
    assert truth.psnr == metrics.PSNR_CAP and truth.ssim == pytest.approx(1.0)
    # a blend ghosts the square: far worse on the moving pixels than over whole frames
    assert mixed.psnr < res["blend"].interpolated.psnr - 5
    still = evaluate_frames(torch.full((5, 1, 16, 16), 0.5), {"truth": lambda lr: torch.full((5, 1, 16, 16), 0.5)})
    assert still["truth"].motion.pixels == 0 and still["truth"].motion.psnr is None


def test_motion_figures_in_json_table_and_old_json(tmp_path):
    frames = (_moving_square(t=9, size=32)[:, 0].numpy() * 255).round().astype(np.uint8)
    clip = write_clip(tmp_path / "move.mkv", frames)
    r = runner.invoke(app, ["evaluate", str(clip), "--methods", "bicubic", "--json", str(tmp_path / "ev.json")])
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.output and "move" in r.output and "moving" in r.output
    assert "noise may pass" not in r.output  # a square on a flat ground: a small mask, no caveat
    d = json.loads((tmp_path / "ev.json").read_text())
    mo = d["clips"][0]["methods"]["bicubic"]["motion"]
    assert mo["pixels"] > 0 and mo["psnr"] is not None
    assert Evaluation.from_dict(d).clips[0].methods["bicubic"].motion.pixels == mo["pixels"]
    for m in d["clips"][0]["methods"].values():  # JSON written before the motion figures
        del m["motion"]
    for m in d["mean"].values():
        del m["motion"]
    assert Evaluation.from_dict(d).clips[0].methods["bicubic"].motion is None


def test_a_mask_over_most_of_the_frame_is_flagged_in_the_clip_line(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (9, 32, 32), dtype=np.uint8)  # pure noise
    clip = write_clip(tmp_path / "noise.mkv", frames)
    r = runner.invoke(app, ["evaluate", str(clip), "--methods", "bicubic", "--json", str(tmp_path / "ev.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ev.json").read_text())["clips"][0]["methods"]["bicubic"]["motion"]["fraction"] > 0.5
    assert "over half the frame, so noise may pass the threshold" in " ".join(r.output.split())


def test_split_scores_exactly_its_clips(tmp_path, monkeypatch):
    from theris_cli import splits

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    frames = _smooth_frames(5, 16, 16)
    write_clip(tmp_path / "a" / "held.mkv", frames)
    write_clip(tmp_path / "b" / "trained.mkv", frames)
    split = splits.Split("t", "test", (splits.HeldOut("held.mkv", "a test clip"),))
    monkeypatch.setitem(splits.SPLITS, "t", split)
    ev = evaluate([tmp_path], methods=["bicubic"], split="t")
    assert [c.clip for c in ev.clips] == [str(tmp_path / "a" / "held.mkv")] and ev.split == "t"
    monkeypatch.setitem(splits.SPLITS, "u", splits.Split("u", "test", (splits.HeldOut("gone.mkv", "missing"),)))
    with pytest.raises(InputError, match="gone.mkv"):
        evaluate([tmp_path], methods=["bicubic"], split="u")


# ------------------------------------------------------------------------------ --degrade sensor

def _recorder(seen: list):
    """A method that records the LR input it is given and answers with bicubic + linear."""
    from theris_cli.protocol import bicubic_linear

    def predict(lr):
        seen.append(lr.clone())
        return bicubic_linear(lr)

    return predict


def test_degrade_sensor_gives_the_same_lr_frames_every_run_and_clean_is_make_lr(tmp_path):
    from theris_cli.protocol import make_lr

    frames = _smooth_frames(9, 32, 32)
    clip = write_clip(tmp_path / "warm.mkv", frames)
    runs: dict[str, list] = {"clean": [], "sensor": [], "sensor2": []}
    for key in runs:
        evaluate([clip], methods={"rec": _recorder(runs[key])}, degrade=key.rstrip("2"))
    hr, _ = load_clip(clip)
    assert torch.equal(runs["clean"][0], make_lr(hr))  # the clean path: the protocol's input, untouched
    assert torch.equal(runs["sensor"][0], runs["sensor2"][0])  # seeded: the same LR frames each run
    noise = runs["sensor"][0] - runs["clean"][0]
    span = float(runs["clean"][0].max() - runs["clean"][0].min())
    assert 0.003 * span < float(noise.std()) < 0.02 * span  # sensor-level noise, relative to the clip's range
    # the truth is the same: only the input was degraded
    ev_clean = evaluate([clip], methods=["bicubic"])
    ev_noisy = evaluate([clip], methods=["bicubic"], degrade="sensor")
    assert ev_noisy.clips[0].methods["bicubic"].all.psnr < ev_clean.clips[0].methods["bicubic"].all.psnr
    assert "input" in ev_noisy.protocol and "input" not in ev_clean.protocol


def test_degrade_sensor_depends_on_the_clip_name_not_its_folder(tmp_path):
    frames = _smooth_frames(5, 16, 16)
    (tmp_path / "x").mkdir()
    a = write_clip(tmp_path / "one.mkv", frames)
    b = write_clip(tmp_path / "x" / "one.mkv", frames)
    c = write_clip(tmp_path / "two.mkv", frames)
    seen: list = []
    evaluate([a, b, c], methods={"rec": _recorder(seen)}, degrade="sensor")
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])


def test_degrade_sensor_with_other_levels_applies_those_levels(tmp_path):
    from theris_cli.sensor import SensorLevels

    clip = write_clip(tmp_path / "warm.mkv", _smooth_frames(5, 16, 16))
    seen: dict[str, list] = {"clean": [], "temporal": [], "column": []}
    evaluate([clip], methods={"rec": _recorder(seen["clean"])})
    ev = evaluate([clip], methods={"rec": _recorder(seen["temporal"])}, degrade="sensor",
                  sensor_levels=SensorLevels(temporal=0.01))
    evaluate([clip], methods={"rec": _recorder(seen["column"])}, degrade="sensor", sensor_levels=SensorLevels(column=0.01))
    temporal = seen["temporal"][0] - seen["clean"][0]
    column = seen["column"][0] - seen["clean"][0]
    # the column offsets are the same down every column and in every frame (but where the clip's
    # range clips them); the temporal noise is new each frame
    assert float(column.std(dim=2).median()) < 1e-6 and float(column.std(dim=0).median()) < 1e-6
    assert float(column.std()) > 0
    assert float(temporal.std(dim=0).mean()) > 0
    assert "'temporal': 0.01" in ev.protocol["input"] and "column" not in ev.protocol["input"]


def test_cli_degrade_sensor_and_unknown_degradation(tmp_path):
    clip = write_clip(tmp_path / "warm.mkv", _smooth_frames(5, 16, 16))
    r = runner.invoke(app, ["evaluate", str(clip), "--methods", "bicubic", "--degrade", "sensor", "--json",
                            str(tmp_path / "out.json")])
    assert r.exit_code == 0, r.output
    assert "input: sensor" in r.output
    assert "sensor" in json.loads((tmp_path / "out.json").read_text())["protocol"]["input"]
    r = runner.invoke(app, ["evaluate", str(tmp_path / "nothing.mkv"), "--methods", "bicubic", "--degrade", "fog"])
    assert isinstance(r.exception, UsageError) and "fog" in str(r.exception)  # before decoding anything
