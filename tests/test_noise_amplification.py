"""benchmarks/noise_amplification.py: the frame-to-frame measure leaves out the output pairs on
either side of a flat-field correction, for both methods, and counts every other pair."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from noise_amplification import break_pairs, energies  # noqa: E402


def _clip_with_a_shutter_event(frames: int = 12, at: int = 7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    scene = torch.linspace(0.3, 0.6, 48).view(1, 48).expand(40, 48)
    lr = torch.stack([scene + 0.003 * torch.randn(40, 48, generator=gen) for _ in range(frames)])
    lr[at:] += 0.25  # the whole frame's level jumps: a flat-field correction
    return lr.unsqueeze(1)


def test_the_pairs_across_a_shutter_event_are_found():
    assert break_pairs(_clip_with_a_shutter_event(at=7)) == [12, 13]  # outputs 12 -> 13 -> 14 span LR 6 -> 7
    calm = _clip_with_a_shutter_event()
    calm[7:] -= 0.25
    assert break_pairs(calm) == []


def test_left_out_pairs_do_not_count_and_the_rest_do():
    out = torch.zeros(5, 1, 8, 8)
    out[2, :, :4] = 1.0  # a pattern in one frame: the pairs (1, 2) and (2, 3) change
    mask = torch.ones(8, 8, dtype=torch.bool)
    _, all_pairs = energies(out, mask)
    _, without = energies(out, mask, skip=[1, 2])
    assert all_pairs > 0 and without == 0.0
    _, one_left = energies(out, mask, skip=[1])
    assert 0 < one_left < all_pairs
