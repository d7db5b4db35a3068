"""model/still.py. The still blend: where the input frames agree, an in-between frame is the blend
of the network's frames either side; where they differ it is the network's own. The still detail:
where all the window's input frames agree, every output frame's detail over bicubic + linear is the
mean detail of the frames at the input times; where they differ the network's frames are kept. For
both: the two forward paths and `keep` agree, old checkpoints read without them, `--ablate`
switches them off."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from theris_cli.model import PRESETS, THERIS, ModelConfig
from theris_cli.model.network import default_times, interpolate_frames
from theris_cli.model.still import MOVING_ABOVE, NOISE_CAP, STILL_BELOW, STILL_DILATE, blend_sources
from theris_cli.train.settings import apply_ablations

# without the still detail, which makes every still frame's detail the same (its tests are below)
TINY = dataclasses.replace(PRESETS["tiny"], use_motion_align=True, motion_dim=8, motion_radius=1,
                           use_still_detail=False)


def _run(net: THERIS, x: torch.Tensor, path: str, **kw) -> torch.Tensor:
    if path == "whole":
        with torch.enable_grad():
            return net(x, **kw).detach()
    with torch.inference_mode():
        return net(x, **kw)


def _nets(seed: int = 0, config: ModelConfig = TINY, switch: str = "use_still_blend") -> tuple[THERIS, THERIS]:
    """A tiny net and the same weights with ``switch`` off."""
    torch.manual_seed(seed)
    on = THERIS(config).eval()
    with torch.no_grad():  # a trained decoder is not near zero: make the frames differ
        on.decoder.out.weight.mul_(100)
    off = THERIS(dataclasses.replace(config, **{switch: False})).eval()
    off.load_state_dict(on.state_dict())
    return on, off


@pytest.mark.parametrize("path", ["whole", "units"])
def test_still_pixels_are_the_blend_of_the_frames_either_side(path):
    on, off = _nets()
    torch.manual_seed(1)
    scene = torch.rand(1, 1, 1, 12, 16)
    x = (scene + (torch.rand(1, 4, 1, 12, 16) - 0.5) * STILL_BELOW).clamp(0, 1)  # noise below the gate
    y, y_off = _run(on, x, path), _run(off, x, path)
    for i in (1, 3, 5):
        blend = (y[:, i - 1] + y[:, i + 1]) / 2
        torch.testing.assert_close(y[:, i], blend, atol=1e-6, rtol=0)
        assert (y_off[:, i] - blend).abs().max() > 1e-3  # without it the frame is the network's own
    torch.testing.assert_close(y[:, ::2], y_off[:, ::2])  # the input-time frames are untouched


@pytest.mark.parametrize("path", ["whole", "units"])
def test_moving_pixels_keep_the_networks_frame(path):
    on, off = _nets()
    torch.manual_seed(2)
    x = torch.rand(1, 3, 1, 12, 16) * 0.5
    x[:, 1] = x[:, 0] + 4 * MOVING_ABOVE  # every pixel of frames 0 -> 1 changes by more than the gate
    y, y_off = _run(on, x, path), _run(off, x, path)
    torch.testing.assert_close(y[:, 1], y_off[:, 1], atol=1e-6, rtol=0)


def test_gate_reaches_the_dilation_around_a_change():
    on, off = _nets()
    x = torch.full((1, 2, 1, 16, 16), 0.5)
    x[:, 1, :, 8, 8] = 0.9  # one pixel changes
    y, y_off = _run(on, x, "units"), _run(off, x, "units")
    blend = (y[:, 0] + y[:, 2]) / 2
    near = slice(4 * (8 - STILL_DILATE) + 2, 4 * (8 + STILL_DILATE) + 2)  # inside the dilated gate
    torch.testing.assert_close(y[:, 1, :, near, near], y_off[:, 1, :, near, near], atol=1e-6, rtol=0)
    torch.testing.assert_close(y[:, 1, :, :12, :12], blend[:, :, :12, :12], atol=1e-6, rtol=0)  # far: blended


@pytest.mark.parametrize("path", ["whole", "units"])
def test_kept_frames_equal_the_full_call(path):
    on, _ = _nets()
    x = torch.rand(1, 4, 1, 12, 16)
    full = _run(on, x, path)
    for keep in ([1], [3, 5], [6, 1]):
        torch.testing.assert_close(_run(on, x, path, keep=keep), full[:, keep], atol=2e-5, rtol=0)


def test_blend_sources_adds_the_input_times_either_side():
    times = torch.tensor([0, 0.5, 1, 1.5, 2])
    assert blend_sources(times, None) is None
    assert blend_sources(times, [1]) == [0, 1, 2]
    assert blend_sources(times, [3, 4]) == [2, 3, 4]
    assert blend_sources(torch.tensor([0.5, 1.5]), [0]) == [0]  # no neighbours given: nothing to add


def test_times_without_their_neighbours_are_the_networks_own():
    on, off = _nets()
    x = torch.rand(1, 3, 1, 8, 8) * 0.001 + 0.5  # still
    times = torch.tensor([0.5, 1.5])
    torch.testing.assert_close(_run(on, x, "units", times=times), _run(off, x, "units", times=times))


def test_training_gets_gradients_through_it():
    on, _ = _nets()
    x = torch.rand(1, 3, 1, 8, 8) * 0.001 + 0.5
    on.train()
    on(x).square().mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in on.parameters())
    assert on.decoder.out.weight.grad.abs().sum() > 0


def test_configs_written_before_it_read_without_it_and_the_ablation_switches_it_off():
    d = TINY.to_dict()
    d.pop("use_still_blend")
    assert ModelConfig.from_dict(d) == dataclasses.replace(TINY, use_still_blend=False)
    assert TINY.use_still_blend
    assert not apply_ablations(TINY, ["still-blend"]).use_still_blend


# ------------------------------------------------------------------------------ still detail

TINY_DETAIL = dataclasses.replace(TINY, use_still_detail=True)


def _detail_nets() -> tuple[THERIS, THERIS]:
    """A tiny net with the still detail and the same weights without it."""
    return _nets(config=TINY_DETAIL, switch="use_still_detail")


def _detail(y: torch.Tensor, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """y minus bicubic + linear at times: (B, M, C, 4H, 4W)."""
    lin = interpolate_frames(x, times)
    B, M, C, H, W = lin.shape
    up = F.interpolate(lin.reshape(B * M, C, H, W), scale_factor=4, mode="bicubic", align_corners=False)
    return y - up.view_as(y)


def _still_window(T: int = 4) -> torch.Tensor:
    """A still scene whose frames change by less than the gate and smoothly (a level and a slope each):
    no temporal noise, so the still detail keeps each frame's change as bicubic + linear has it."""
    torch.manual_seed(1)
    scene = torch.rand(1, 1, 1, 12, 16) * 0.8 + 0.1
    slope = torch.linspace(0, 1, 16).view(1, 1, 1, 1, 16)
    level, tilt = (torch.rand(2, 1, T, 1, 1, 1) - 0.5) * STILL_BELOW / 2
    return scene + level + tilt * slope


@pytest.mark.parametrize("path", ["whole", "units"])
def test_still_frames_share_the_mean_detail_of_the_input_time_frames(path):
    on, off = _detail_nets()
    x = _still_window()
    times = default_times(4)
    d_on, d_off = _detail(_run(on, x, path), x, times), _detail(_run(off, x, path), x, times)
    mean = d_off[:, ::2].mean(dim=1)  # the input times 0, 1, 2, 3
    for i in range(times.numel()):
        torch.testing.assert_close(d_on[:, i], mean, atol=2e-5, rtol=0)
    assert (d_off[:, 0] - d_off[:, 2]).abs().max() > 1e-3  # without it each frame has its own detail


@pytest.mark.parametrize("path", ["whole", "units"])
def test_a_change_anywhere_in_the_window_keeps_the_networks_frames(path):
    on, off = _detail_nets()
    x = _still_window()
    x[:, 3] += 4 * MOVING_ABOVE  # the last input frame differs everywhere by more than the gate
    torch.testing.assert_close(_run(on, x, path), _run(off, x, path), atol=1e-6, rtol=0)


@pytest.mark.parametrize("path", ["whole", "units"])
def test_kept_frames_equal_the_full_call_with_the_still_detail(path):
    on, _ = _detail_nets()
    x = _still_window()
    x[..., :6, :] += torch.rand(1, 4, 1, 6, 16) * 0.2  # moving above, still below
    full = _run(on, x, path)
    for keep in ([1], [3, 5], [6, 0]):
        torch.testing.assert_close(_run(on, x, path, keep=keep), full[:, keep], atol=2e-5, rtol=0)


def test_still_detail_leaves_times_without_an_input_time_as_they_are():
    on, off = _detail_nets()
    x = _still_window(T=3)
    times = torch.tensor([0.5, 1.5])
    torch.testing.assert_close(_run(on, x, "units", times=times), _run(off, x, "units", times=times))


def test_training_gets_gradients_through_the_still_detail():
    on, _ = _detail_nets()
    on.train()
    on(_still_window(T=3)).square().mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in on.parameters())
    assert on.decoder.out.weight.grad.abs().sum() > 0


def test_configs_written_before_the_still_detail_read_without_it_and_the_ablation_switches_it_off():
    d = TINY_DETAIL.to_dict()
    d.pop("use_still_detail")
    assert ModelConfig.from_dict(d) == TINY
    assert PRESETS["tiny"].use_still_detail
    assert not apply_ablations(TINY_DETAIL, ["still-detail"]).use_still_detail


def test_inference_writes_the_same_still_frames_as_training_computes():
    """Without autograd the still blend and the still detail work in place, in a frame's worth of
    temporaries: the same values as the autograd path's out-of-place sums, bit for bit."""
    from theris_cli.model.still import still_blend, still_detail

    torch.manual_seed(3)
    x = torch.rand(1, 4, 1, 10, 12)
    x[..., :6] = x[:, :1, ..., :6] + torch.rand(1, 4, 1, 10, 6) * STILL_BELOW / 2  # left half still
    times = default_times(4)
    y = torch.randn(1, 7, 1, 40, 48)
    lin = interpolate_frames(x, times)
    with torch.enable_grad():
        ref = still_detail(x, lin, times, still_blend(x, times, y.clone()))
    with torch.inference_mode():
        mine = still_detail(x, lin, times, still_blend(x, times, y.clone()))
    assert torch.equal(mine, ref)


# ------------------------------------------------------------------------------ temporal noise


def test_noise_level_measures_white_temporal_noise_and_ignores_smooth_changes():
    from theris_cli.model.still import noise_level

    torch.manual_seed(3)
    scene = torch.rand(1, 1, 1, 64, 80)
    for sigma in (0.003, 0.008):
        x = scene + sigma * torch.randn(2, 4, 1, 64, 80)
        assert torch.allclose(noise_level(x), torch.full((2,), sigma), rtol=0.05)
    assert noise_level(_still_window()).item() < 1e-6  # levels and slopes changing, no noise
    assert noise_level(scene.expand(1, 1, 1, 64, 80)).item() == 0  # one frame: nothing to measure
    wholesale = torch.rand(1, 4, 1, 64, 80)  # every frame a new scene: no noise level, at most the cap
    assert noise_level(wholesale).item() == pytest.approx(NOISE_CAP)


def test_spatial_noise_level_measures_pixel_noise_and_ignores_planes():
    from theris_cli.model.still import spatial_noise_level

    torch.manual_seed(5)
    plane = torch.linspace(0, 1, 80).view(1, 1, 1, 1, 80) * 0.5 + torch.linspace(0, 1, 64).view(1, 1, 1, 64, 1) * 0.2
    assert spatial_noise_level(plane.expand(1, 2, 1, 64, 80)).item() < 1e-6
    x = plane + 0.01 * torch.randn(2, 3, 1, 64, 80)
    assert torch.allclose(spatial_noise_level(x), torch.full((2,), 0.01), rtol=0.05)


def _noisy_still_window(sigma: float = 0.01) -> torch.Tensor:
    """A still scene with a sensor's temporal noise: frame differences well above the gate's STILL_BELOW."""
    torch.manual_seed(4)
    scene = F.interpolate(torch.rand(1, 1, 8, 10), size=(32, 40), mode="bilinear", align_corners=False)
    return scene.view(1, 1, 1, 32, 40) * 0.6 + 0.2 + sigma * torch.randn(1, 4, 1, 32, 40)


@pytest.mark.parametrize("path", ["whole", "units"])
def test_a_noisy_still_scene_comes_out_steadier_than_its_input(path):
    net, _ = _nets(config=dataclasses.replace(TINY, use_still_detail=True))
    x = _noisy_still_window()
    from theris_cli.model.still import _gate

    assert _gate(x.amax(dim=1) - x.amin(dim=1), x.dtype).mean() > 0.9  # a gate without a noise floor: moving
    times = default_times(4)
    y = _run(net, x, path)
    lin = interpolate_frames(x, times)
    base = F.interpolate(lin[0], scale_factor=4, mode="bicubic", align_corners=False)  # bicubic + linear
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the frame's edge
    change = (y[0, 1:] - y[0, :-1])[inner].abs().mean()
    assert change < 0.25 * (base[1:] - base[:-1])[inner].abs().mean()


@pytest.mark.parametrize("path", ["whole", "units"])
def test_a_change_that_stands_out_of_the_noise_keeps_the_networks_frames(path):
    on, _ = _nets(config=dataclasses.replace(TINY, use_still_detail=True))
    off = THERIS(dataclasses.replace(TINY, use_still_blend=False, use_still_detail=False)).eval()
    off.load_state_dict(on.state_dict())  # the network's own frames
    x = _noisy_still_window(0.004)
    x[:, 3, :, :, :12] += 0.25  # the left part of the last frame changes far above the noise
    y_on, y_off = _run(on, x, path), _run(off, x, path)
    # frames 0.5 and 1.5 lie between still frames and are blended there; the others are the network's own
    left = (slice(None), [0, 2, 4, 5, 6], slice(None), slice(None), slice(0, 4 * (12 - STILL_DILATE) - 8))
    torch.testing.assert_close(y_on[left], y_off[left], atol=1e-6, rtol=0)
    assert (y_on - y_off)[..., 4 * (12 + STILL_DILATE) + 8:].abs().max() > 1e-3  # the still part is changed


def test_a_slow_pan_reads_as_less_noise_than_in_a_single_difference():
    from theris_cli.model.still import noise_level

    torch.manual_seed(6)
    texture = 0.1 * F.interpolate(torch.rand(1, 1, 24, 60), scale_factor=2, mode="bicubic", align_corners=False)
    # the texture moving half a pixel a frame, no noise: one difference alone looks like noise
    x = torch.stack([texture[..., 8:56, 20 + t:100 + t] for t in range(4)], dim=1)  # (1, 4, 1, 48, 80)
    x = F.avg_pool3d(x.transpose(1, 2), (1, 1, 2), stride=(1, 1, 2)).transpose(1, 2)  # pixels of two: half a pixel a frame
    single = noise_level(x[:, :2]).item()  # two frames: a single difference
    assert 0.002 < single < NOISE_CAP
    assert noise_level(x).item() < 0.6 * single


@pytest.mark.parametrize("rows", [(0, 3), (3, 7), (7, 10), (2, 3), (0, 10)])
def test_a_band_of_rows_gets_the_whole_frames_still_values(rows):
    """`still_blend` and `still_detail` on the output rows of a band of LR rows (the CPU path's
    bands) give those rows of the whole frame's result, bit for bit, at the frame's edges too."""
    from theris_cli.model.still import still_blend, still_detail

    torch.manual_seed(4)
    # frame differences of every size: the gate's linear part (between STILL_BELOW and MOVING_ABOVE)
    # too, where a row its neighbourhood misses changes the result
    x = torch.rand(1, 1, 1, 10, 12) + torch.rand(1, 4, 1, 10, 12) * torch.rand(1, 1, 1, 10, 12) * 2 * MOVING_ABOVE
    times = default_times(4)
    y = torch.randn(1, 7, 1, 40, 48)
    lin = interpolate_frames(x, times)
    r0, r1 = rows
    with torch.inference_mode():
        whole = still_detail(x, lin, times, still_blend(x, times, y.clone()))
        band = y[:, :, :, 4 * r0:4 * r1].clone()
        band = still_detail(x, lin, times, still_blend(x, times, band, rows=rows), rows=rows)
    assert torch.equal(band, whole[:, :, :, 4 * r0:4 * r1])


@pytest.mark.parametrize("decode_pixels", [20, 60, 10_000])
def test_the_cpu_path_blends_in_bands_what_whole_frames_give(monkeypatch, decode_pixels):
    """The work-unit path decodes and applies the still parts band by band (units.decode_units):
    the same frames, bit for bit, as decoding whole frames and applying them to those."""
    from theris_cli.model import units
    from theris_cli.model.still import still_blend, still_detail

    monkeypatch.setattr(units, "DECODE_PIXELS", decode_pixels)
    on, _ = _detail_nets()
    net = THERIS(dataclasses.replace(on.config, use_still_blend=True)).eval()
    net.load_state_dict(on.state_dict())
    torch.manual_seed(5)  # tall enough for 4 bands (each at least 4 decoder halos of rows)
    x = torch.rand(1, 1, 1, 88, 12) + torch.rand(1, 4, 1, 88, 12) * torch.rand(1, 1, 1, 88, 12) * 2 * MOVING_ABOVE
    times = default_times(4)
    assert units.decoder_halo(net.decoder) * 4 * 4 <= 88
    with torch.inference_mode():
        parts = dict(use_still_blend=False, use_still_detail=False)
        plain = THERIS(dataclasses.replace(net.config, **parts)).eval()
        plain.load_state_dict(net.state_dict())
        y = plain(x, times)  # every frame decoded whole, no still parts
        ref = still_detail(x, interpolate_frames(x, times), times, still_blend(x, times, y))
        for keep in (None, [1, 2, 3, 4, 5], [6, 0]):
            got = net(x, times, keep=keep)
            assert torch.equal(got, ref if keep is None else ref[:, keep])
