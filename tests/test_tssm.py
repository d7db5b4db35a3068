"""TSSM pieces: scan orders round-trip, the Hilbert curve, the spectral mask, the Mamba-2 layer."""

from __future__ import annotations

import pytest
import torch

from theris_cli.model.config import ModelConfig
from theris_cli.model.tssm import (
    TSSM, Mamba2Layer, SpectralMask, from_hmb, from_smb, from_tmb, hilbert_order, to_hmb, to_smb, to_tmb,
)


@pytest.mark.parametrize("side", [1, 2, 4, 8, 16])
def test_hilbert_order_is_a_permutation_of_neighbours(side):
    order = hilbert_order(side)
    assert sorted(order.tolist()) == list(range(side * side))
    y, x = order // side, order % side
    steps = (y[1:] - y[:-1]).abs() + (x[1:] - x[:-1]).abs()
    assert bool((steps == 1).all()), "consecutive Hilbert steps must be 4-neighbours"
    inverse = torch.argsort(order)
    tokens = torch.randn(side * side)
    torch.testing.assert_close(tokens[order][inverse], tokens)


SHAPES = [(1, 1, 1, 1, 3), (2, 3, 5, 7, 4), (1, 7, 9, 4, 2), (2, 2, 8, 8, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_scan_orders_round_trip(shape):
    x = torch.randn(shape)
    B, T, H, W, C = shape
    assert to_smb(x).shape == (B, T * H * W, C)
    assert to_tmb(x).shape == (B * H * W, T, C)
    torch.testing.assert_close(from_smb(to_smb(x), shape), x, rtol=0, atol=0)
    torch.testing.assert_close(from_tmb(to_tmb(x), shape), x, rtol=0, atol=0)
    for w in (1, 2, 4, 8):
        seq = to_hmb(x, w)
        assert seq.shape == (B * -(-H // w) * -(-W // w), T * w * w, C)
        torch.testing.assert_close(from_hmb(seq, shape, w), x, rtol=0, atol=0)


def test_orders_visit_tokens_as_described():
    B, T, H, W = 1, 2, 4, 4
    ids = torch.arange(B * T * H * W, dtype=torch.float32).view(B, T, H, W, 1)  # id = raster index over (t, y, x)
    assert to_smb(ids)[0, :, 0].tolist() == list(range(T * H * W))
    assert to_tmb(ids)[5, :, 0].tolist() == [5, 5 + H * W]  # pixel (1, 1) through time
    hmb = to_hmb(ids, 4)[0, :, 0].long()
    order = hilbert_order(4)
    assert hmb[:16].tolist() == order.tolist() and hmb[16:].tolist() == (order + 16).tolist()


def test_hmb_windows_are_local():
    ids = torch.arange(6 * 10, dtype=torch.float32).view(1, 1, 6, 10, 1)
    seq = to_hmb(ids, 4)  # 2 x 3 windows, zero padding to 8 x 12
    assert seq.shape == (6, 16, 1)
    first = seq[0, :, 0].long()
    assert set(first.tolist()) == {y * 10 + x for y in range(4) for x in range(4)}


def test_spectral_mask_identity_at_start_and_any_size():
    m = SpectralMask(3, bins=8)
    for H, W in [(1, 1), (5, 7), (8, 8)]:
        x = torch.randn(2, 2, H, W, 3)
        torch.testing.assert_close(m(x), x)
    with torch.no_grad():
        m.gain.fill_(1.0)  # gain 1 everywhere: x + x
    x = torch.randn(1, 1, 6, 5, 3)
    torch.testing.assert_close(m(x), 2 * x, rtol=1e-5, atol=1e-5)


def test_spectral_mask_acts_on_frequency_not_position():
    m = SpectralMask(1, bins=4)
    with torch.no_grad():
        m.gain.copy_(torch.tensor([[0.0, 0.0, 0.0, -1.0]]))  # remove only the highest radial bin
    x = torch.ones(1, 1, 8, 8, 1)
    torch.testing.assert_close(m(x), x)  # a constant (DC) passes untouched


def _layer(bidirectional=False, prompt_dim=0, reverse=False):
    torch.manual_seed(0)
    return Mamba2Layer(8, d_state=4, expand=2, headdim=4, ngroups=1, d_conv=4, chunk_size=8,
                       bidirectional=bidirectional, prompt_dim=prompt_dim, reverse=reverse)


def test_dt_bias_initial_range():
    layer = _layer()
    dt = torch.nn.functional.softplus(layer.dt_bias)
    assert bool(((dt >= 1e-3 * 0.999) & (dt <= 1e-1 * 1.001)).all())


def test_forward_layer_is_causal_bidirectional_is_not():
    seq = torch.randn(2, 21, 8)
    later = seq.clone()
    later[:, 15:] += 1.0
    fwd = _layer()
    torch.testing.assert_close(fwd(seq)[:, :15], fwd(later)[:, :15])
    both = _layer(bidirectional=True)
    assert not torch.allclose(both(seq)[:, :15], both(later)[:, :15])


def test_reversed_layer_sees_only_later_tokens():
    seq = torch.randn(2, 21, 8)
    earlier = seq.clone()
    earlier[:, :6] += 1.0
    rev = _layer(reverse=True)
    torch.testing.assert_close(rev(seq)[:, 6:], rev(earlier)[:, 6:])
    assert not torch.allclose(rev(seq)[:, :6], rev(earlier)[:, :6])


def _config(**switches) -> ModelConfig:
    return ModelConfig(dim=8, d_state=4, expand=2, headdim=4, ngroups=1, d_conv=4, chunk_size=16,
                       bidirectional=False, hilbert_window=4, spectral_bins=4, time_embed_dim=6, **switches)


def test_directions_alternate():
    kw = dict(use_spectral_mask=False, use_thermal_prompt=False, use_smb=True, use_tmb=True, use_hmb=True)
    block = TSSM(_config(**kw))
    assert [block.smb.reverse, block.tmb.reverse, block.hmb.reverse] == [False, True, False]
    block = TSSM(_config(**{**kw, "use_tmb": False}), first_reversed=True)
    assert [block.smb.reverse, block.hmb.reverse] == [True, False]


def test_prompt_shift_changes_output_and_starts_at_zero():
    layer = _layer(prompt_dim=5)
    seq = torch.randn(1, 10, 8)
    e = torch.randn(1, 5)
    shift = layer.prompt(e)[:, None].expand(1, 10, 4)
    torch.testing.assert_close(layer(seq, shift), layer(seq))  # zero-initialised adapter
    with torch.no_grad():
        layer.prompt.bias.fill_(0.5)
    assert not torch.allclose(layer(seq, layer.prompt(e)[:, None].expand(1, 10, 4)), layer(seq))


@pytest.mark.parametrize("switches", [
    dict(), dict(use_smb=False), dict(use_tmb=False, use_hmb=False), dict(use_spectral_mask=False),
    dict(use_thermal_prompt=False),
])
def test_tssm_shape_and_switches(switches):
    kw = dict(use_spectral_mask=True, use_thermal_prompt=True, use_smb=True, use_tmb=True, use_hmb=True)
    kw.update(switches)
    block = TSSM(_config(**kw))
    x = torch.randn(2, 3, 5, 7, 8)
    assert block(x, torch.randn(3, 6)).shape == x.shape
    assert (block.mask is None) == (not kw["use_spectral_mask"])
    for name in ("smb", "tmb", "hmb"):
        layer = getattr(block, name)
        assert (layer is None) == (not kw[f"use_{name}"])
        if layer is not None:
            assert (layer.prompt is None) == (not kw["use_thermal_prompt"])
