"""The registry's data, the shipped default and its untrained fallback, and the maintainer tool."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re

import pytest
import torch

from theris_cli.errors import WeightsError
from theris_cli.model import PRESETS, ModelConfig
from theris_cli.weights import (
    DEFAULT_MODEL,
    FALLBACK_MODEL,
    REGISTRY,
    available_models,
    complete_weights,
    default_model,
    inspect_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from theris_cli.weights import registry
from theris_cli.weights.__main__ import main as tool_main
from theris_cli.weights.fetch import sha256_file


def test_names_feed_choices_help_and_completion():
    names = available_models()
    assert {DEFAULT_MODEL, FALLBACK_MODEL, "tiny-random"} <= set(names)
    from theris_cli.commands.args import Weights

    assert all(n in Weights.__metadata__[0].help for n in names)  # the one --weights help text
    assert complete_weights("tiny") == ["tiny-random"]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_entry_is_consistent(name):
    e = REGISTRY[name]
    assert isinstance(e.model_config(), ModelConfig)
    assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256)
    if e.source == "random":
        assert e.seed is not None and not e.trained and e.filename is None
    if e.source == "hub":
        assert e.filename
        if e.repo_id is not None:  # published: pinned to a commit, with the hash to check
            assert re.fullmatch(r"[0-9a-f]{40}", e.revision or "") and e.sha256 and e.size
        else:
            assert e.where == "Hub: not published yet"
    if e.source == "shipped" and registry.is_shipped_present(e):
        # the file in weights/ is exactly the one the registry describes
        path = registry.shipped_path(e)
        assert e.sha256 == sha256_file(path), f"record the hash: python -m theris_cli.weights --hash {path}"
        assert e.size == path.stat().st_size
        assert inspect_checkpoint(path).config == e.model_config()



def _pixel_detail(frames: torch.Tensor) -> float:
    """RMS of frames less their Gaussian blur (sigma 2 output pixels): detail finer than half an
    input pixel, where a grid or checker pattern lives (benchmarks/noise_amplification.py's measure)."""
    from theris_cli.sensor import gaussian_blur

    return float((frames - gaussian_blur(frames, 2.0)).pow(2).mean().sqrt())


def test_the_sensor_model_leaves_sensor_noise_unsharpened():
    # a smooth scene with a Lepton's noise (the evaluation's levels): theris-small sharpens the noise
    # into a pattern, theris-small-sensor comes out smoother than bicubic + linear
    entry = REGISTRY["theris-small-sensor"]
    if not registry.is_shipped_present(entry):
        pytest.skip("theris-small-sensor.safetensors is not in this checkout")
    from theris_cli.engine.infer import Upscaler
    from theris_cli.eval.baselines import bicubic
    from theris_cli.sensor import EVAL_LEVELS, degrade

    h, w = 40, 48
    y, x = torch.linspace(0, 1, h).view(h, 1), torch.linspace(0, 1, w).view(1, w)
    scene = 0.35 + 0.2 * x + 0.1 * y + 0.15 * torch.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.02)
    lr = degrade(scene.expand(9, 1, h, w).clone(), dataclasses.replace(EVAL_LEVELS, bits=0), torch.Generator().manual_seed(0))
    detail = {"bicubic": _pixel_detail(bicubic(lr))}
    for name in ("theris-small", "theris-small-sensor"):
        frames = list(Upscaler(load_model(name), precision="fp32").process(iter(lr)))
        detail[name] = _pixel_detail(torch.stack(frames[: 2 * len(lr) - 1]))
    assert detail["theris-small-sensor"] < 0.75 * detail["bicubic"] < detail["theris-small"], detail

def test_shipped_folder_is_found_from_this_install():
    folder = registry.shipped_dir()
    assert (folder / "README.md").is_file()  # weights/README.md, packaged beside the checkpoints
    assert registry.shipped_path(REGISTRY[DEFAULT_MODEL]).parent == folder


def test_tiny_random_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = load_model("tiny-random")
    after = torch.rand(3)
    b = load_model("tiny-random")
    assert torch.equal(expected, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.config == PRESETS["tiny"] and not a.training and not a.weights_info.trained


@pytest.fixture
def without_shipped_file(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "shipped_dir", lambda: tmp_path / "empty")


@pytest.fixture
def with_shipped_file(tmp_path, monkeypatch):
    """A shipped default (a tiny network standing in for the trained one) recorded in the registry."""
    folder = tmp_path / "shipped"
    entry = REGISTRY[DEFAULT_MODEL]
    path = save_checkpoint(folder / entry.filename, load_model("tiny-random"), metadata={"trained": "yes"})
    monkeypatch.setattr(registry, "shipped_dir", lambda: folder)
    recorded = dataclasses.replace(entry, config="tiny", sha256=sha256_file(path), size=path.stat().st_size)
    monkeypatch.setitem(REGISTRY, DEFAULT_MODEL, recorded)
    return path


def test_default_falls_back_to_a_labelled_untrained_model(without_shipped_file, caplog):
    assert default_model() == FALLBACK_MODEL
    with caplog.at_level(logging.WARNING):
        model = load_model()
    assert "RANDOM weights" in caplog.text and DEFAULT_MODEL in caplog.text
    info = model.weights_info
    assert (info.name, info.trained) == (FALLBACK_MODEL, False)
    assert "UNTRAINED" in info.describe()
    assert model.config == PRESETS["small"]


def test_default_loads_the_shipped_file_when_present(with_shipped_file):
    assert default_model() == DEFAULT_MODEL
    model = load_model()
    info = model.weights_info
    assert (info.name, info.source, info.path, info.trained) == (DEFAULT_MODEL, "shipped", with_shipped_file, True)


def test_a_changed_shipped_file_is_refused(with_shipped_file):
    data = bytearray(with_shipped_file.read_bytes())
    data[-1] ^= 0xFF
    with_shipped_file.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum mismatch.*expected SHA-256 [0-9a-f]{64}, got [0-9a-f]{64}"):
        load_model()
    assert with_shipped_file.exists()  # never deletes from the package


def test_hash_tool_prints_the_registry_fields(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "m.safetensors", load_model("tiny-random"), extra_tensors={"o": torch.zeros(4)})
    assert tool_main(["--hash", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f'sha256="{hashlib.sha256(path.read_bytes()).hexdigest()}"' in out
    assert 'config="tiny"' in out and f"size={path.stat().st_size}" in out
    assert "extra tensors" in err  # told to export a copy without optimizer state

    ship = tmp_path / "ship.safetensors"
    assert tool_main(["--export", str(path), str(ship)]) == 0
    assert inspect_checkpoint(ship).n_extra == 0
    assert f'sha256="{sha256_file(ship)}"' in capsys.readouterr().out

    assert tool_main(["--export", str(path), str(ship), "--set", "use_still_blend=false"]) == 0
    assert not inspect_checkpoint(ship).config.use_still_blend
    assert "use_still_blend set to False" in capsys.readouterr().out
    assert tool_main(["--export", str(path), str(ship), "--set", "motion_search=3"]) == 0
    assert inspect_checkpoint(ship).config.motion_search == 3
    assert "motion_search set to 3" in capsys.readouterr().out
    assert tool_main(["--export", str(path), str(ship), "--set", "use_still_blend=maybe"]) == 1
    assert "expected NAME=true, NAME=false or NAME=INTEGER" in capsys.readouterr().err


def test_hash_tool_refuses_other_files(tmp_path, capsys):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"not a checkpoint at all")
    assert tool_main(["--hash", str(path)]) == 1
    assert "error:" in capsys.readouterr().err


def _tiny(seed: int, **changes):
    """The tiny network with `changes` to its config, every weight drawn from `seed` (the noise input's
    too, so that a fine-tune is told apart from a fresh part)."""
    from theris_cli.model import THERIS

    torch.manual_seed(seed)
    net = THERIS(dataclasses.replace(PRESETS["tiny"], **changes))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def _run(net, x):
    with torch.no_grad():
        return net(x, torch.tensor([0.0, 0.5, 1.0]))


def test_blend_tool_moves_a_fine_tune_back_towards_its_base(tmp_path, capsys):
    base = save_checkpoint(tmp_path / "base.safetensors", _tiny(0))
    tuned_net = _tiny(1, use_noise_input=True)  # a fine-tune that added the noise input
    tuned = save_checkpoint(tmp_path / "tuned.safetensors", tuned_net)
    out = tmp_path / "blend.safetensors"
    x = torch.rand(1, 2, 1, 8, 8)

    assert tool_main(["--blend", str(base), str(tuned), str(out), "--weight", "0"]) == 0
    assert f'sha256="{sha256_file(out)}"' in capsys.readouterr().out
    blend = load_model(str(out))
    assert blend.config.use_noise_input and blend.weights_info.trained
    torch.testing.assert_close(_run(blend, x), _run(load_model(str(base)), x))  # weight 0: the base's function

    assert tool_main(["--blend", str(base), str(tuned), str(out), "--weight", "0.25"]) == 0
    state, a, b = load_model(str(out)).state_dict(), load_model(str(base)).state_dict(), tuned_net.state_dict()
    name = next(k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k]))
    torch.testing.assert_close(state[name], 0.75 * a[name] + 0.25 * b[name])
    film = next(k for k in b if k not in a)
    torch.testing.assert_close(state[film], 0.25 * b[film])  # the noise input from zero
    meta = load_checkpoint(out).metadata["blend"]
    assert meta["weight"] == 0.25 and meta["base"] == "base.safetensors"


@pytest.mark.parametrize("case,message", [
    ("not its base", "does not start at zero"),
    ("base has more", "lacks"),
    ("weight", "must lie in 0..1"),
    ("no weight", "--blend needs --weight"),
])
def test_blend_tool_refuses_what_is_not_a_fine_tune_of_its_base(tmp_path, capsys, case, message):
    base = save_checkpoint(tmp_path / "base.safetensors", _tiny(0))
    tuned = save_checkpoint(tmp_path / "tuned.safetensors", _tiny(1, use_motion_align=True, motion_dim=8))
    args = ["--blend", str(base), str(tuned), str(tmp_path / "out.safetensors"), "--weight", "0.5"]
    if case == "base has more":
        args[1:3] = [str(tuned), str(base)]
    elif case == "weight":
        args[-1] = "1.5"
    elif case == "no weight":
        args = args[:-2]
    assert tool_main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err, err
    assert not (tmp_path / "out.safetensors").exists()
