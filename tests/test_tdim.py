"""TDIM: the DCT basis, exact reproduction at the input times, any target time."""

from __future__ import annotations

import pytest
import torch

from theris_cli.model.tdim import TDIM, dct_basis, distance_to_input
from theris_cli.ops import dct_matrix


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_dct_is_orthonormal(n):
    D = dct_matrix(n, torch.float64)
    torch.testing.assert_close(D @ D.T, torch.eye(n, dtype=torch.float64))
    torch.testing.assert_close(D.T @ D, torch.eye(n, dtype=torch.float64))


def test_basis_at_integer_times_is_the_inverse_dct():
    n = 4
    phi = dct_basis(torch.arange(n, dtype=torch.float64), n)  # (t, n)
    torch.testing.assert_close(phi, dct_matrix(n, torch.float64).T)


def _tdim_with_zero_kappa(dim):
    tdim = TDIM(dim, time_embed_dim=8, decay_bins=4).double()
    with torch.no_grad():  # softplus(-1e4) = 0 exactly: W = 1
        tdim.kappa[-1].weight.zero_()
        tdim.kappa[-1].bias.fill_(-1e4)
    return tdim


@pytest.mark.parametrize("T", [1, 2, 3, 4])
def test_zero_kappa_reproduces_inputs_at_input_times(T):
    tdim = _tdim_with_zero_kappa(3)
    feats = torch.randn(2, T, 3, 5, 6, dtype=torch.float64)
    times = torch.arange(2 * T - 1, dtype=torch.float64) / 2
    out, e = tdim(feats, times)
    assert out.shape == (2, 2 * T - 1, 3, 5, 6) and e.shape == (2 * T - 1, 8)
    torch.testing.assert_close(out[:, ::2], feats, rtol=0, atol=1e-12)


def test_trained_kappa_still_reproduces_inputs():
    # W = exp(-kappa w^2 dt) is 1 wherever dt = 0, whatever kappa has learnt
    tdim = TDIM(3, time_embed_dim=8, decay_bins=4).double()
    with torch.no_grad():
        tdim.kappa[-1].bias.fill_(2.0)
    feats = torch.randn(1, 4, 3, 2, 2, dtype=torch.float64)
    out, _ = tdim(feats, torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(out, feats, rtol=0, atol=1e-12)


def test_zero_kappa_is_cosine_interpolation_of_a_constant_and_a_cosine():
    tdim = _tdim_with_zero_kappa(1)
    T = 4
    t = torch.arange(T, dtype=torch.float64)
    signal = 0.3 + torch.cos(torch.pi * 2 * (t + 0.5) / T)  # DCT mode n = 2 plus a constant
    feats = signal.view(1, T, 1, 1, 1)
    times = torch.tensor([0.25, 1.5, 2.75], dtype=torch.float64)
    out, _ = tdim(feats, times)
    torch.testing.assert_close(out.flatten(), 0.3 + torch.cos(torch.pi * 2 * (times + 0.5) / T))


def test_decay_damps_high_frequencies_between_frames():
    tdim = TDIM(1, time_embed_dim=8, decay_bins=4).double()
    with torch.no_grad():
        tdim.kappa[-1].weight.zero_()
        tdim.kappa[-1].bias.fill_(5.0)
    feats = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64).view(1, 4, 1, 1, 1)
    out, _ = tdim(feats, torch.tensor([1.5], dtype=torch.float64))
    ref, _ = _tdim_with_zero_kappa(1)(feats, torch.tensor([1.5], dtype=torch.float64))
    assert out.abs().item() < ref.abs().item()


def test_distance_to_input():
    d = distance_to_input(torch.tensor([0.0, 0.25, 0.5, 1.0, 2.9]))
    torch.testing.assert_close(d, torch.tensor([0.0, 0.25, 0.5, 0.0, 0.1]))
