"""THERIS end to end on tiny sizes: shapes, times, config round trip, no dead parameters."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from theris_cli.model import PRESETS, SCALE, THERIS, ModelConfig, default_times

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return THERIS(TINY).eval()


def test_scale_and_default_times():
    assert SCALE == 4
    assert default_times(1).tolist() == [0.0]
    assert default_times(4).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    with pytest.raises(ValueError):
        default_times(0)


@pytest.mark.parametrize("T", [1, 2, 3, 4])
@pytest.mark.parametrize("HW", [(1, 1), (5, 7), (9, 4), (3, 11)])
def test_output_shapes(tiny, T, HW):
    H, W = HW
    x = torch.rand(2, T, 1, H, W)
    with torch.no_grad():
        y = tiny(x)
    assert y.shape == (2, 2 * T - 1, 1, SCALE * H, SCALE * W)
    assert torch.isfinite(y).all()


def test_any_target_times(tiny):
    x = torch.rand(1, 3, 1, 6, 5)
    times = torch.tensor([0.0, 0.25, 1.0, 1.9, 2.0])
    with torch.no_grad():
        y = tiny(x, times=times)
        y_default = tiny(x)
    assert y.shape == (1, 5, 1, 24, 20)
    assert torch.isfinite(y).all()
    # TSSMs scan across frames, so each frame depends on the whole set of times asked for;
    # asking for the defaults explicitly is the same as not asking
    with torch.no_grad():
        torch.testing.assert_close(tiny(x, times=default_times(3)), y_default)


def test_times_out_of_range_are_refused(tiny):
    x = torch.rand(1, 2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tiny(x, times=torch.tensor([0.0, 1.5]))
    with pytest.raises(ValueError, match=r"\[0, 0\]"):
        tiny(torch.rand(1, 1, 1, 4, 4), times=torch.tensor([0.5]))


def test_batch_items_do_not_mix(tiny):
    x = torch.rand(3, 2, 1, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(tiny(x)[1:2], tiny(x[1:2]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_output_frame_sees_every_input_frame(bidirectional):
    # one-directional scans alternate direction, so even the first frame gets the last frame's detail
    torch.manual_seed(0)
    net = THERIS(dataclasses.replace(TINY, bidirectional=bidirectional)).eval()
    x = torch.rand(1, 3, 1, 6, 6)
    with torch.no_grad():
        y = net(x)
        for t in range(3):
            x2 = x.clone()
            x2[:, t] += 0.2
            moved = (net(x2) - y).abs().flatten(2).amax(-1)[0]  # (M,): largest change per output frame
            assert bool((moved > 1e-6).all()), f"input frame {t} does not reach outputs {moved.tolist()}"


def test_untrained_output_is_near_bicubic(tiny):
    # the decoder starts small, so an untrained net is a (noisy) bicubic + linear-in-time upscaler
    x = torch.full((1, 2, 1, 6, 6), 0.5)
    with torch.no_grad():
        y = tiny(x)
    assert (y - 0.5).abs().mean() < 0.2


def test_config_round_trip_and_json():
    for name, cfg in PRESETS.items():
        d = json.loads(json.dumps(cfg.to_dict()))
        assert ModelConfig.from_dict(d) == cfg, name
    net = THERIS(TINY)
    assert net.config is TINY


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.dim = 3


def test_from_dict_names_bad_keys():
    d = TINY.to_dict()
    with pytest.raises(ValueError, match="unknown keys.*'colour'"):
        ModelConfig.from_dict({**d, "colour": 1})
    d_missing = dict(d)
    del d_missing["d_state"]
    with pytest.raises(ValueError, match="missing keys.*'d_state'"):
        ModelConfig.from_dict(d_missing)
    with pytest.raises(ValueError, match="dim must be an int"):
        ModelConfig.from_dict({**d, "dim": 8.0})
    with pytest.raises(ValueError, match="use_hmb must be a bool"):
        ModelConfig.from_dict({**d, "use_hmb": 1})
    with pytest.raises(ValueError, match="headdim"):
        ModelConfig.from_dict({**d, "headdim": 5})
    with pytest.raises(ValueError, match="power of two"):
        ModelConfig.from_dict({**d, "hilbert_window": 6})


SWITCHES = [
    dict(),
    dict(use_spectral_mask=False),
    dict(use_thermal_prompt=False),
    dict(use_smb=False),
    dict(use_tmb=False),
    dict(use_hmb=False),
    dict(bidirectional=True),
]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(s) or "full")
def test_every_parameter_gets_a_gradient(switches):
    torch.manual_seed(0)
    net = THERIS(dataclasses.replace(TINY, n_blocks=1, **switches))
    y = net(torch.rand(2, 3, 1, 5, 6))
    (y * torch.randn_like(y)).sum().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, f"parameters without gradient: {dead}"
    names = [n for n, _ in net.named_parameters()]
    # switched-off parts have no parameters at all, so none can lie dead in a checkpoint
    if switches.get("use_spectral_mask") is False:
        assert not any(".mask." in n for n in names)
    if switches.get("use_thermal_prompt") is False:
        assert not any(".prompt." in n for n in names)
    for order in ("smb", "tmb", "hmb"):
        if switches.get(f"use_{order}") is False:
            assert not any(f".{order}." in n for n in names)
    if switches.get("bidirectional"):
        assert any("conv_rev" in n for n in names)


def test_presets_build_and_small_is_small():
    counts = {name: sum(p.numel() for p in THERIS(cfg).parameters()) for name, cfg in PRESETS.items()}
    assert counts["tiny"] < counts["small"] < counts["base"]
    assert 1_000_000 <= counts["base"] <= 10_000_000


def test_runs_under_bf16_autocast_and_in_float64(tiny):
    # training uses bf16 autocast on CUDA; the scan, FFT and norms keep float32 inside
    x = torch.rand(1, 3, 1, 5, 7)
    with torch.no_grad():
        ref = tiny(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = tiny(x)
    assert torch.isfinite(y).all() and (y.float() - ref).abs().max() < 0.05
    net64 = THERIS(TINY).double()
    assert net64(x.double()).dtype == torch.float64
