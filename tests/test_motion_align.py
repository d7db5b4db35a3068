"""Motion alignment (model/motion.py): the warp moves content where the velocity says, a new or
added part starts as the network without it, and the CPU work-unit path computes what the
whole-tensor path does."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from theris_cli.model import PRESETS, THERIS, ModelConfig
from theris_cli.model import motion
from theris_cli.model.motion import MotionAlign, aligned_blend, warp
from theris_cli.model.network import interpolate_frames
from theris_cli.train.loop import load_init_state
from theris_cli.errors import TrainingError

TINY = PRESETS["tiny"]
TINY_MOTION = dataclasses.replace(TINY, use_motion_align=True, motion_dim=8)


def _moving(net: THERIS, seed: int = 0) -> THERIS:
    """The net with a random, non-zero velocity head (a trained part would not be zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.motion.head.weight.copy_(torch.randn(net.motion.head.weight.shape, generator=g) * 0.3)
        net.motion.head.bias.copy_(torch.tensor([1.5, -0.7]))
    return net


def test_warp_moves_content_by_whole_pixels():
    img = torch.zeros(1, 1, 6, 8)
    img[0, 0, 2, 3] = 1.0
    disp = torch.zeros(1, 2, 6, 8)
    disp[:, 0], disp[:, 1] = -2.0, 1.0  # sample 2 px left, 1 px down: the dot appears 2 right, 1 up
    out = warp(img, disp)
    assert out[0, 0, 1, 5] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(1.0)
    torch.testing.assert_close(warp(img, torch.zeros_like(disp)), img)


def test_warp_of_a_band_equals_those_rows_of_the_whole_frame():
    img = torch.rand(2, 3, 9, 7)
    disp = torch.randn(2, 2, 9, 7) * 2
    whole = warp(img, disp)
    torch.testing.assert_close(warp(img, disp[:, :, 3:7], (3, 7)), whole[:, :, 3:7])


def _stripes(width: int, rows: int = 4, period: float = 6.0) -> torch.Tensor:
    """(1, 1, rows, width) vertical stripes in [0, 1]: a sub-pixel error in x shows in every pixel."""
    xs = torch.arange(width, dtype=torch.float32)
    return (0.5 + 0.5 * torch.sin(2 * torch.pi * xs / period)).expand(1, 1, rows, width).contiguous()


@pytest.mark.parametrize("operands", ["float32", "bfloat16"])
def test_warp_under_bf16_autocast_samples_where_float32_does(operands):
    """A 0.3 px shift of a 1280-wide frame under CPU bf16 autocast, with float32 operands or with
    the bf16 ones that autocast's convolutions hand over (features, velocities): in bfloat16 the
    sampling positions near x = 1280 lie 8 px apart and the result misses by up to 0.9."""
    img = _stripes(1280)
    disp = torch.zeros(1, 2, *img.shape[2:])
    disp[:, 0] = 0.3
    want = warp(img, disp)
    dtype = getattr(torch, operands)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = warp(img.to(dtype), disp.to(dtype))
    assert got.dtype == dtype
    assert (got.float() - want).abs().max() < 0.02
    # and the shift did happen: 0.3 px of these stripes moves pixels by up to about 0.15
    assert (want - img).abs().max() > 0.1


def test_aligned_blend_under_bf16_autocast_matches_float32():
    """The bicubic residual's frames moved along bf16 velocities (as autocast's convs give them)."""
    x = torch.stack([_stripes(1280), _stripes(1280)], dim=1)                  # (1, 2, 1, 4, 1280)
    v = torch.full((1, 1, 2, 4, 1280), 0.3)
    v[:, :, 1] = 0.0
    times = torch.tensor([0.5])
    want = aligned_blend(x, v, times)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = aligned_blend(x, v.bfloat16(), times)
    assert (got.float() - want).abs().max() < 0.02


def test_velocities_are_float32_under_bf16_autocast():
    torch.manual_seed(0)
    part = MotionAlign(1, 4, 8, radius=1, search=2)
    with torch.no_grad():
        part.head.bias.copy_(torch.tensor([40.3, -0.7]))  # bfloat16 rounds 40.3 to 40.25
    x, feats = torch.rand(1, 3, 1, 8, 12), torch.rand(1, 3, 4, 8, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = part.velocities(x, feats)
    assert v.dtype == torch.float32
    want = part.velocities(x, feats)
    assert (v - want).abs().max() < 0.02


def test_velocity_at_times_interpolates_between_pair_midpoints():
    v = torch.stack([torch.full((2, 3, 3), 1.0), torch.full((2, 3, 3), 3.0)])[None]  # pairs (0,1), (1,2)
    at = MotionAlign.at_times(v, torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]))
    assert at[0, :, 0, 0, 0].tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]


def test_matched_cost_volumes_stored_in_bfloat16_are_the_float32_ones_converted():
    """Without autograd the cost volumes go straight into a buffer of the dtype the CNN reads them
    in (`matched_rows(near=...)`): the values converting the float32 volumes gives, to the bit."""
    from theris_cli.model.motion import matched_rows

    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(2, 6, 9, 11, generator=g), torch.randn(2, 6, 9, 11, generator=g)
    with torch.inference_mode():
        est, near = matched_rows(a, b, 3, 2, 5.0)
        buf = torch.empty(2, 2 * 25, 9, 11, dtype=torch.bfloat16)
        est2, _ = matched_rows(a, b, 3, 2, 5.0, near=buf[:, 25:])
    assert torch.equal(est2, est) and torch.equal(buf[:, 25:], near.to(torch.bfloat16))


def test_aligned_blend_of_a_band_of_rows_is_those_rows_of_the_whole_frames():
    """The CPU decoder's bands (units.decode_units) take the bicubic residual's frames row band by
    row band: the same values, to the bit, as the whole frames' rows."""
    g = torch.Generator().manual_seed(3)
    x, v = torch.rand(1, 4, 1, 30, 17, generator=g), torch.randn(1, 7, 2, 30, 17, generator=g) * 3
    times = torch.arange(7) / 2
    whole = aligned_blend(x, v, times)
    for lo, hi in ((0, 9), (4, 22), (21, 30)):
        assert torch.equal(aligned_blend(x, v[:, :, :, lo:hi], times, (lo, hi)), whole[:, :, :, lo:hi])


def test_aligned_blend_at_zero_velocity_is_the_linear_blend():
    x = torch.rand(1, 3, 1, 5, 6)
    times = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0])
    blend = aligned_blend(x, torch.zeros(1, 5, 2, 5, 6), times)
    torch.testing.assert_close(blend, interpolate_frames(x, times))


def test_aligned_blend_follows_a_moving_dot():
    """A dot at column 1 then 3: the midpoint of the blend along velocity 2 px/frame is one dot at
    column 2, where blending without motion gives two half dots."""
    x = torch.zeros(1, 2, 1, 3, 6)
    x[0, 0, 0, 1, 1] = 1.0
    x[0, 1, 0, 1, 3] = 1.0
    v = torch.zeros(1, 1, 2, 3, 6)
    v[:, :, 0] = 2.0
    mid = aligned_blend(x, v, torch.tensor([0.5]))[0, 0, 0]
    assert mid[1, 2] == pytest.approx(1.0)
    assert mid.sum() == pytest.approx(1.0)


def test_a_new_motion_part_starts_as_the_network_without_it():
    torch.manual_seed(0)
    plain = THERIS(TINY).eval()
    aligned = THERIS(TINY_MOTION).eval()
    load_init_state(aligned, plain.state_dict())
    x = torch.rand(1, 4, 1, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), plain(x), atol=1e-5, rtol=0)


def test_weights_that_do_not_fit_are_refused_with_what_differs():
    net = THERIS(TINY_MOTION)
    state = {k: v for k, v in THERIS(TINY).state_dict().items() if not k.startswith("encoder.head")}
    with pytest.raises(TrainingError, match="encoder.head"):
        load_init_state(net, state)


@pytest.mark.parametrize("keep", [None, [1, 4]])
def test_units_path_equals_whole_tensor_path_with_motion(keep):
    torch.manual_seed(1)
    net = _moving(THERIS(TINY_MOTION).eval())
    x = torch.rand(2, 4, 1, 11, 13)
    with torch.enable_grad():
        whole = net(x, keep=keep).detach()
    with torch.inference_mode():
        units = net(x, keep=keep)
    torch.testing.assert_close(units, whole, atol=2e-5, rtol=0)
    with torch.no_grad():
        plain = THERIS(dataclasses.replace(TINY_MOTION, use_motion_align=False)).eval()
        plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("motion.")})
        assert (plain(x, keep=keep) - units).abs().max() > 1e-3  # the velocity really moved something


def test_motion_part_trains():
    torch.manual_seed(2)
    net = THERIS(TINY_MOTION)
    net(torch.rand(1, 3, 1, 8, 8)).square().mean().backward()
    assert net.motion.head.weight.grad.abs().sum() > 0


def test_configs_written_before_the_part_existed_read_without_it():
    d = TINY.to_dict()
    for k in ("use_motion_align", "motion_dim"):
        d.pop(k)
    assert ModelConfig.from_dict(d) == TINY
    assert THERIS(TINY).motion is None


def test_inference_pairs_are_the_training_pairs_channels_last():
    """Without autograd the velocity net's input pairs are built channels-last; same values."""
    torch.manual_seed(6)
    x = torch.rand(2, 4, 1, 5, 7)
    feats = torch.rand(2, 4, 5, 7, 3).permute(0, 1, 4, 2, 3)  # channels-last features, as the CPU path has them
    both = torch.cat([x, feats], dim=2)
    ref = torch.cat([both[:, :-1], both[:, 1:]], dim=2).flatten(0, 1)
    got = motion._pairs_channels_last(x, feats)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


# ------------------------------------------------------------------------------ matching (--motion-radius)

TINY_MATCHING = dataclasses.replace(TINY_MOTION, motion_radius=3)


def _textured(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random texture (1, 1, h, w): distinct enough everywhere to be matched."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 1, h, w, generator=g), 3, 1, 1)


def test_correlation_peaks_at_the_shift_between_the_maps():
    a = torch.nn.functional.normalize(torch.randn(1, 4, 12, 14, generator=torch.Generator().manual_seed(3)), dim=1)
    b = torch.roll(a, shifts=(-1, 2), dims=(2, 3))  # a(x, y) = b(x + 2, y - 1): content 2 px right, 1 px up
    cost = motion.correlation(a, b, 3)
    best = motion.displacement_grid(3, torch.float32, torch.device("cpu"))[cost.argmax(dim=1)]   # (1, h, w, 2)
    assert best[0, 4:-4, 4:-4].reshape(-1, 2).unique(dim=0).tolist() == [[2.0, -1.0]]


def test_matching_estimate_finds_a_shift_without_training():
    """Random features of a texture still match: the matching estimate of a pattern moving 4 px right
    and 2 px up per frame (2 and 1 at the matching's half resolution) is that velocity away from the
    borders, before any training."""
    torch.manual_seed(4)
    net = THERIS(TINY_MATCHING).eval()
    with torch.no_grad():
        net.motion.log_temperature.fill_(8.0)  # a sharp soft argmax: the estimate is the best offset
    frame = _textured(32, 36)
    x = torch.stack([torch.roll(frame, shifts=(-2 * t, 4 * t), dims=(2, 3)) for t in range(3)], dim=1)
    with torch.no_grad():
        v = net.pair_velocities(x)
    off = (v[0, :, :, 8:-8, 8:-8] - torch.tensor([4.0, -2.0]).view(1, 2, 1, 1)).norm(dim=1)
    assert float(off.median()) < 0.05 and float(off.quantile(0.9)) < 0.25  # a few ambiguous pixels


def _patch_features(net: THERIS) -> THERIS:
    """The net's matching features made the frame's 3x3 patches about 0.5 (known, distinct features
    of a random frame, instead of random weights), and its soft argmax sharp."""
    with torch.no_grad():
        m = net.motion.match
        m.weight.zero_()
        m.bias.zero_()
        for k in range(9):
            m.weight[k, 0, k // 3, k % 3] = 1.0
            m.bias[k] = -0.5
        net.motion.log_temperature.fill_(8.0)
    return net


def test_a_wider_search_finds_a_shift_beyond_the_cost_volume():
    """A pattern moving 6 px right and 2 px up per frame (3 and 1 at half resolution): a matching of
    radius 1 cannot reach it; with a search of 4 (`ModelConfig.motion_search`) the estimate is that
    velocity, with the same weights."""
    near = _patch_features(THERIS(dataclasses.replace(TINY_MOTION, motion_radius=1)).eval())
    wide = THERIS(dataclasses.replace(TINY_MOTION, motion_radius=1, motion_search=4)).eval()
    wide.load_state_dict(near.state_dict())  # no weights of its own
    frame = torch.rand(1, 1, 40, 44, generator=torch.Generator().manual_seed(0))  # no offset nearly as good
    x = torch.stack([torch.roll(frame, shifts=(-2 * t, 6 * t), dims=(2, 3)) for t in range(3)], dim=1)
    truth = torch.tensor([6.0, -2.0]).view(1, 2, 1, 1)
    with torch.no_grad():
        off = [(net.pair_velocities(x)[0, :, :, 10:-10, 10:-10] - truth).norm(dim=1) for net in (near, wide)]
    assert float(off[0].median()) > 2.0
    assert float(off[1].max()) < 0.05


def test_offsets_beyond_the_radius_win_only_when_clearly_better():
    cost = torch.zeros(1, 25, 1, 1)  # a cost volume of radius 2: channel (dy + 2) * 5 + (dx + 2)
    cost[0, 13] = 0.9  # offset (1, 0), within radius 1
    for lead, winner in ((motion.SEARCH_MARGIN / 2, 1.0), (2 * motion.SEARCH_MARGIN, 2.0)):
        cost[0, 14] = 0.9 + lead  # offset (2, 0), beyond it
        got = motion.soft_argmax(cost, 1, 1000.0)
        torch.testing.assert_close(got.flatten(), torch.tensor([winner, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(motion.soft_argmax(cost, 2, 1000.0).flatten(), torch.tensor([2.0, 0.0]))


def test_the_cnn_reads_the_cost_volume_of_its_radius_whatever_the_search():
    g = torch.Generator().manual_seed(6)
    a, b = (torch.nn.functional.normalize(torch.randn(2, 4, 9, 10, generator=g), dim=1) for _ in range(2))
    wide = motion.correlation(a, b, 3)
    torch.testing.assert_close(motion._within(wide, 3, 1), motion.correlation(a, b, 1), rtol=0, atol=0)


def test_configs_written_before_the_search_read_without_it():
    d = TINY_MATCHING.to_dict()
    d.pop("motion_search")
    assert ModelConfig.from_dict(d).motion_search == 0
    with pytest.raises(ValueError, match="motion_search"):
        dataclasses.replace(TINY_MATCHING, motion_search=TINY_MATCHING.motion_radius - 1)


def test_weights_without_matching_load_into_a_network_with_it():
    torch.manual_seed(5)
    before = _moving(THERIS(TINY_MOTION))
    grown = THERIS(TINY_MATCHING)
    load_init_state(grown, before.state_dict())  # no error: the matching parts are new
    torch.testing.assert_close(grown.motion.head.weight, before.motion.head.weight)
    assert torch.equal(grown.motion.cost_in.weight, torch.zeros_like(grown.motion.cost_in.weight))


def test_units_path_equals_whole_tensor_path_with_matching():
    torch.manual_seed(7)
    net = _moving(THERIS(TINY_MATCHING).eval())
    with torch.no_grad():
        net.motion.cost_in.weight.normal_(0, 0.1)  # a trained one is not zero
    x = torch.rand(1, 4, 1, 11, 13)
    with torch.enable_grad():
        whole = net(x).detach()
    with torch.inference_mode():
        units = net(x)
    torch.testing.assert_close(units, whole, atol=2e-5, rtol=0)


def test_configs_written_before_matching_read_without_it():
    d = TINY_MOTION.to_dict()
    d.pop("motion_radius")
    assert ModelConfig.from_dict(d).motion_radius == 0
    assert not hasattr(THERIS(TINY_MOTION).motion, "match")


def test_pair_velocities_teach_the_motion_part_only():
    torch.manual_seed(8)
    net = THERIS(TINY_MATCHING)
    net.pair_velocities(torch.rand(1, 3, 1, 8, 8)).square().mean().backward()
    assert net.motion.match.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.encoder.parameters())
