"""Still detail (model/still.py): where all the window's input frames agree, every output frame's
detail over bicubic + linear is the mean detail of the frames at the input times; where they differ
the network's frames are kept; both forward paths and `keep` agree; old checkpoints read without it;
`--ablate still-detail` switches it off."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from theris_cli.model import PRESETS, THERIS, ModelConfig
from theris_cli.model.network import default_times, interpolate_frames
from theris_cli.model.still import MOVING_ABOVE, STILL_BELOW
from theris_cli.train.settings import apply_ablations

TINY = dataclasses.replace(PRESETS["tiny"], use_motion_align=True, motion_dim=8, motion_radius=1)


def _nets(seed: int = 0) -> tuple[THERIS, THERIS]:
    """A tiny net with the still detail and the same weights without it."""
    torch.manual_seed(seed)
    on = THERIS(TINY).eval()
    with torch.no_grad():  # a trained decoder is not near zero: make the frames' details differ
        on.decoder.out.weight.mul_(100)
    off = THERIS(dataclasses.replace(TINY, use_still_detail=False)).eval()
    off.load_state_dict(on.state_dict())
    return on, off


def _run(net: THERIS, x: torch.Tensor, path: str, **kw) -> torch.Tensor:
    if path == "whole":
        with torch.enable_grad():
            return net(x, **kw).detach()
    with torch.inference_mode():
        return net(x, **kw)


def _detail(y: torch.Tensor, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """y minus bicubic + linear at times: (B, M, C, 4H, 4W)."""
    lin = interpolate_frames(x, times)
    B, M, C, H, W = lin.shape
    up = F.interpolate(lin.reshape(B * M, C, H, W), scale_factor=4, mode="bicubic", align_corners=False)
    return y - up.view_as(y)


def _still_window(T: int = 4, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    scene = torch.rand(1, 1, 1, 12, 16) * 0.8 + 0.1
    return scene + (torch.rand(1, T, 1, 12, 16) - 0.5) * STILL_BELOW  # noise below the gate


@pytest.mark.parametrize("path", ["whole", "units"])
def test_still_frames_share_the_mean_detail_of_the_input_time_frames(path):
    on, off = _nets()
    x = _still_window()
    times = default_times(4)
    d_on, d_off = _detail(_run(on, x, path), x, times), _detail(_run(off, x, path), x, times)
    mean = d_off[:, ::2].mean(dim=1)  # the input times 0, 1, 2, 3
    for i in range(times.numel()):
        torch.testing.assert_close(d_on[:, i], mean, atol=2e-5, rtol=0)
    assert (d_off[:, 0] - d_off[:, 2]).abs().max() > 1e-3  # without it each frame has its own detail


@pytest.mark.parametrize("path", ["whole", "units"])
def test_a_change_anywhere_in_the_window_keeps_the_networks_frames(path):
    on, off = _nets()
    x = _still_window()
    x[:, 3] += 4 * MOVING_ABOVE  # the last input frame differs everywhere by more than the gate
    torch.testing.assert_close(_run(on, x, path), _run(off, x, path), atol=1e-6, rtol=0)


@pytest.mark.parametrize("path", ["whole", "units"])
def test_kept_frames_equal_the_full_call(path):
    on, _ = _nets()
    x = _still_window()
    x[..., :6, :] += torch.rand(1, 4, 1, 6, 16) * 0.2  # moving above, still below
    full = _run(on, x, path)
    for keep in ([1], [3, 5], [6, 0]):
        torch.testing.assert_close(_run(on, x, path, keep=keep), full[:, keep], atol=2e-5, rtol=0)


def test_times_without_an_input_time_are_the_networks_own():
    on, off = _nets()
    x = _still_window(T=3)
    times = torch.tensor([0.5, 1.5])
    torch.testing.assert_close(_run(on, x, "units", times=times), _run(off, x, "units", times=times))


def test_training_gets_gradients_through_it():
    on, _ = _nets()
    on.train()
    on(_still_window(T=3)).square().mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in on.parameters())
    assert on.decoder.out.weight.grad.abs().sum() > 0


def test_configs_written_before_it_read_without_it_and_the_ablation_switches_it_off():
    d = TINY.to_dict()
    d.pop("use_still_detail")
    assert ModelConfig.from_dict(d) == dataclasses.replace(TINY, use_still_detail=False)
    assert TINY.use_still_detail
    assert not apply_ablations(TINY, ["still-detail"]).use_still_detail
