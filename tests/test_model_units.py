"""The CPU inference path (model/units.py: token bands, scan segments, decoder bands) computes what
the plain path computes, for every architecture switch of ModelConfig (SWITCHES names each), and
the shipped weights still give the outputs recorded before it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from standins import perturbed
from theris_cli.model import PRESETS, THERIS, ModelConfig, folds, network, units
from theris_cli.model.scan import ssd_chunked
from theris_cli.weights.load import load_model

REFERENCE = Path(__file__).parent / "data" / "reference_outputs.safetensors"
ATOL = 2e-5  # float32 rounding of a re-ordered but equal computation, on outputs of order 1


def _fixture_model(name: str) -> tuple[THERIS, dict]:
    """A network recorded in the fixture, with its weights, and all the fixture's tensors. "bi": a
    bidirectional two-group two-block network; "small": theris-small 0.1.0 (the shipped weights of
    commit 9751ac8; the package now ships newer ones)."""
    tensors = load_file(REFERENCE)
    with safe_open(REFERENCE, "pt") as f:
        config = ModelConfig.from_dict(json.loads(f.metadata()[f"{name}_config"]))
    net = THERIS(config).eval()
    prefix = f"{name}.state."
    net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return net, tensors


def _bi_model() -> tuple[THERIS, dict]:
    return _fixture_model("bi")


def _whole(net: THERIS, x: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():  # autograd on: the whole-tensor path (training's)
        return net(x).detach()


def _units(net: THERIS, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x)


def test_recorded_weights_give_the_recorded_outputs():
    """Outputs of theris-small 0.1.0 recorded with the whole-tensor path (commit 9751ac8)."""
    net, tensors = _fixture_model("small")
    for key in ("", "3"):
        x, ref = tensors[f"small.x{key}"], tensors[f"small.y{key}"]
        torch.testing.assert_close(_units(net, x), ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(_whole(net, x), ref, atol=ATOL, rtol=0)


def test_bidirectional_grouped_model_gives_the_recorded_outputs():
    net, tensors = _bi_model()
    torch.testing.assert_close(_units(net, tensors["bi.x"]), tensors["bi.y"], atol=ATOL, rtol=0)
    torch.testing.assert_close(_whole(net, tensors["bi.x"]), tensors["bi.y"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("work_tokens, decode_pixels", [(64, 40), (200, 97), (1000, 10_000)])
@pytest.mark.parametrize("model", ["small", "bi"])
def test_work_units_equal_whole_tensors(monkeypatch, work_tokens, decode_pixels, model):
    """Tiny work units force several SMB segments (forward and reversed, state handed on), TMB and
    HMB bands (HMB with a padded last band) and decoder bands with halos."""
    monkeypatch.setattr(units, "WORK_TOKENS", work_tokens)
    monkeypatch.setattr(units, "DECODE_PIXELS", decode_pixels)
    torch.manual_seed(3)
    x = torch.rand(1, 4, 1, 19, 21)
    if model == "small":
        net = load_model("theris-small")
    else:
        net, _ = _bi_model()
    torch.testing.assert_close(_units(net, x), _whole(net, x), atol=ATOL, rtol=0)


BASE = PRESETS["small"]  # still blend and still detail on, motion part off, one block
# Every architecture switch of ModelConfig, each with a network the equality test builds for it;
# test_every_switch_is_covered fails when a switch is added to ModelConfig and not here.
SWITCHES = {
    "plain small": {},
    "motion part": dict(use_motion_align=True),
    "motion matching": dict(use_motion_align=True, motion_radius=1, motion_search=2),
    "no still blend": dict(use_still_blend=False),
    "no still detail": dict(use_still_detail=False),
    "no still parts": dict(use_still_blend=False, use_still_detail=False),
    "bidirectional": dict(bidirectional=True, ngroups=2),
    "no spectral mask": dict(use_spectral_mask=False),
    "no thermal prompt": dict(use_thermal_prompt=False),
    "no SMB": dict(use_smb=False),
    "no TMB": dict(use_tmb=False),
    "no HMB": dict(use_hmb=False),
    "TMB only": dict(use_smb=False, use_hmb=False),
    "two blocks": dict(n_blocks=2),
    "no residual blocks": dict(n_blocks=0, enc_blocks=0, dec_blocks=0),
    "noise input": dict(use_noise_input=True),
    "noise input, no TSSMs": dict(use_noise_input=True, n_blocks=0),  # the TSSMs' output is the long skip
}




def test_every_switch_is_covered():
    switches = {f.name for f in dataclasses.fields(ModelConfig) if f.type in ("bool", bool)}
    covered = {k for kw in SWITCHES.values() for k, v in kw.items() if v != getattr(BASE, k)}
    covered |= {k for k in switches if getattr(BASE, k)}  # on in the base: covered by "plain small"
    assert switches <= covered, f"switches without a network in SWITCHES: {sorted(switches - covered)}"
    for kw in SWITCHES.values():
        for k, v in kw.items():
            if isinstance(v, bool) and not v:
                assert getattr(BASE, k), f"{k}=False is the base already"


@pytest.mark.parametrize("work_tokens, decode_pixels", [(64, 40), (4096, 49152)])
@pytest.mark.parametrize("switch", list(SWITCHES))
def test_work_units_equal_the_plain_path(monkeypatch, switch, work_tokens, decode_pixels):
    """`THERIS.use_work_units` chooses the path; both give the same frames, kept ones included."""
    monkeypatch.setattr(units, "WORK_TOKENS", work_tokens)
    monkeypatch.setattr(units, "DECODE_PIXELS", decode_pixels)
    net = perturbed(dataclasses.replace(BASE, **SWITCHES[switch]))
    x = torch.rand(1, 4, 1, 19, 21, generator=torch.Generator().manual_seed(8))
    keep = [1, 3, 5]
    with torch.inference_mode():
        assert net.runs_in_units(x)
        fast, fast_kept = net(x), net(x, keep=keep)
        net.use_work_units = False
        assert not net.runs_in_units(x)
        plain, plain_kept = net(x), net(x, keep=keep)
    assert float(plain.std()) > 0.01  # a network that does something, not a constant
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast_kept, plain_kept, atol=ATOL, rtol=0)


def test_training_never_takes_the_work_unit_path():
    net = THERIS(BASE)
    x = torch.rand(1, 2, 1, 8, 8)
    assert not net.runs_in_units(x)  # autograd on
    with torch.no_grad():
        assert net.runs_in_units(x)


def test_scan_in_segments_equals_one_scan():
    torch.manual_seed(0)
    b, L, h, p, g, n = 2, 70, 4, 3, 2, 5
    x, B, C = torch.randn(b, L, h, p), torch.randn(b, L, g, n), torch.randn(b, L, g, n)
    dt, A, D = torch.rand(b, L, h) * 0.2, -torch.rand(h) - 0.5, torch.randn(h)
    whole, final = ssd_chunked(x, dt, A, B, C, D, chunk_size=8, return_final_state=True)
    state, parts = None, []
    for a, e in ((0, 13), (13, 40), (40, 70)):  # segments that are not whole chunks
        y, state = ssd_chunked(x[:, a:e], dt[:, a:e], A, B[:, a:e], C[:, a:e], D, chunk_size=8,
                               initial_state=state, return_final_state=True)
        parts.append(y)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, final, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("r", [2, 3])
def test_folded_shuffle_conv_equals_conv_after_shuffle(r):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)
    x = torch.randn(2, 3 * r * r, 5, 7)
    w, b = folds.fold_shuffle_into_conv(conv.weight, conv.bias, r)
    with torch.no_grad():
        ref = conv(torch.nn.functional.pixel_shuffle(x, r))
        got = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(x, w, b, padding=1), r)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_folded_2x2_shuffle_conv_equals_conv_after_shuffle():
    """The decoder's last conv as `_decode_units` runs it: 2x2 taps, each sub-pixel at its offset."""
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)
    x = torch.randn(2, 12, 5, 7)
    w, b = folds.fold_shuffle_into_conv_2x2(conv.weight, conv.bias)
    assert w.shape == (8, 12, 2, 2)
    with torch.no_grad():
        ref = conv(torch.nn.functional.pixel_shuffle(x, 2))                         # (2, 2, 10, 14)
        out = torch.nn.functional.conv2d(x, w, b, padding=1)                         # (2, 8, 6, 8)
    got = torch.empty_like(ref)
    for di in range(2):
        for dj in range(2):
            got[:, :, di::2, dj::2] = out[:, 2 * di + dj::4, di:di + 5, dj:dj + 7]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_subpixel_major_shuffle_equals_pixel_shuffle():
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(3, 12, 3, padding=1)
    x = torch.randn(2, 3, 5, 7).contiguous(memory_format=torch.channels_last)
    w, b = folds.subpixel_major(conv.weight, conv.bias)
    with torch.no_grad():
        ref = torch.nn.functional.pixel_shuffle(conv(x), 2)
        got = folds.shuffle_subpixel_major(torch.nn.functional.conv2d(x, w, b, padding=1))
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


def test_mix_leaves_out_only_negligible_frames():
    """At an input frame's own time TDIM's mix is an identity up to rounding: the CPU path takes that
    frame alone (and warps none); between frames every frame with weight takes part."""
    net = load_model("theris-small")
    with torch.no_grad():
        mix, _ = net.tdim.coefficients(network.default_times(4), 4)
    assert [units.mixed_frames(mix[i]) for i in (0, 2, 4, 6)] == [[0], [1], [2], [3]]
    assert units.mixed_frames(mix[3]) == [0, 1, 2, 3]
    assert units.mixed_frames(torch.zeros(3, 5)) == [0, 1, 2]  # all zero: nothing is dropped


@pytest.mark.parametrize("keep", [[1, 2, 3, 4, 5], [0, 6], [3]])
def test_kept_frames_equal_those_of_the_full_call(keep):
    """`keep` leaves frames undecoded, not out of the scan: the kept frames are the full call's."""
    net = load_model("theris-small")
    torch.manual_seed(4)
    x = torch.rand(1, 4, 1, 13, 17)
    full = _units(net, x)
    with torch.inference_mode():
        part = net(x, keep=keep)
    torch.testing.assert_close(part, full[:, keep], atol=ATOL, rtol=0)
    with torch.enable_grad():
        torch.testing.assert_close(net(x, keep=keep).detach(), _whole(net, x)[:, keep], atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="keep must be indices"):
        net(x, keep=[7])


@pytest.mark.parametrize("work_tokens, decode_pixels", [(64, 40), (4096, 49152)])
def test_bf16_units_path_is_close_to_fp32(monkeypatch, work_tokens, decode_pixels):
    """Under CPU autocast to bf16 (`--precision bf16`, the CPU's auto where it has bfloat16 dot
    products) the work-unit path runs its convolutions and projections in bf16: a float32 result
    within bf16's rounding of the fp32 one (its cost on split v1: docs/performance.md)."""
    monkeypatch.setattr(units, "WORK_TOKENS", work_tokens)
    monkeypatch.setattr(units, "DECODE_PIXELS", decode_pixels)
    net = load_model("theris-small")
    torch.manual_seed(5)
    x = torch.rand(1, 4, 1, 19, 21)
    ref = _units(net, x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
    assert low.dtype == torch.float32
    err = (low - ref).abs()
    assert float(err.max()) > 0  # bf16 did run
    assert float(err.max()) < 2e-2 and float(err.pow(2).mean().sqrt()) < 2e-3


@pytest.mark.parametrize("shape, r", [((1, 1, 7, 9), 4), ((2, 3, 1, 5), 4), ((1, 1, 12, 10), 2), ((1, 1, 2, 2), 3)])
def test_separable_bicubic_equals_interpolate(shape, r):
    """The decoder's bicubic residual as two separable passes: PyTorch's bicubic, borders included."""
    torch.manual_seed(6)
    x = torch.rand(*shape)
    ref = torch.nn.functional.interpolate(x, scale_factor=r, mode="bicubic", align_corners=False)
    torch.testing.assert_close(folds.bicubic_up(x, r), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("work_tokens", [64, 4096])
def test_tssm_in_place_equals_tssm_into_its_own_map(monkeypatch, work_tokens):
    """The first TSSM under bfloat16 runs in place on TDIM's map (one float32 feature map a window
    instead of two): the same values as a block that writes its own map, bit for bit."""
    monkeypatch.setattr(units, "WORK_TOKENS", work_tokens)
    net = load_model("theris-small")
    torch.manual_seed(6)
    x = torch.randn(1, 5, 19, 21, net.config.dim)
    e = torch.randn(5, net.config.time_embed_dim)
    with torch.inference_mode():
        ref = units.tssm_units(net.blocks[0], x, e, torch.bfloat16)
        mine = x.clone()
        out = units.tssm_units(net.blocks[0], mine, e, torch.bfloat16, inplace=True)
    assert out.data_ptr() == mine.data_ptr()
    assert torch.equal(out, ref)
    assert not torch.equal(x, mine)  # the input map itself was written


def test_bf16_window_keeps_the_long_skip_in_bf16_with_the_same_outputs():
    """Under bfloat16 the decoder's long skip is kept as a bfloat16 copy (it is read in bfloat16):
    the same output as a float32 skip converted band by band, bit for bit."""
    net = load_model("theris-small")
    torch.manual_seed(7)
    x = torch.rand(1, 4, 1, 23, 18)
    times = network.default_times(4)
    z = torch.randn(1, 7, 23, 18, net.config.dim)
    interp = torch.randn(1, 7, 23, 18, net.config.dim)
    with torch.inference_mode():
        fp32_skip = units.decode_units(net, x, times, z, interp, [1, 2, 3], None, torch.bfloat16)
        bf16_skip = units.decode_units(net, x, times, z, interp.to(torch.bfloat16), [1, 2, 3], None, torch.bfloat16)
    assert torch.equal(fp32_skip, bf16_skip)


@pytest.mark.parametrize("switch", ["plain small", "motion part", "no still parts"])
def test_releasing_the_rows_the_decoder_has_read_changes_no_output(monkeypatch, switch):
    """units.decode_units hands back the memory of z's and the skip's rows once its bands have
    read them (release=True, as forward_units calls it): the same frames, to the bit, as keeping
    them, with bands of several sizes and frames left undecoded (keep)."""
    net = perturbed(dataclasses.replace(BASE, **SWITCHES[switch]))
    B, T, M, H, W = 1, 4, 7, 88, 13
    x = torch.rand(B, T, 1, H, W, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(10)
    z, skip = torch.randn(B, M, H, W, BASE.dim, generator=g), torch.randn(B, M, H, W, BASE.dim, generator=g)
    v = torch.randn(B, M, 2, H, W, generator=g) if net.motion is not None else None
    times = network.default_times(T)
    still = net.config.use_still_blend or net.config.use_still_detail
    for pixels in (13 * 20, 13 * 27):  # 4 bands; 3 uneven ones
        monkeypatch.setattr(units, "DECODE_PIXELS", pixels)
        for keep in (None, [2, 3, 4]):
            with torch.inference_mode():
                kept = units.decode_units(net, x, times, z, skip, keep, v, still=still)
                released = units.decode_units(net, x, times, z.clone(), skip.clone(), keep, v, still=still,
                                              release=True)
            assert torch.equal(released, kept), (pixels, keep)


def test_the_spectral_mask_in_channel_units_equals_the_whole_frames(monkeypatch):
    """units.spectral_mask_frames: MASK_CHANNELS channels at a time, the same values to the bit."""
    net = perturbed(BASE)
    x = torch.randn(1, 3, 20, 24, BASE.dim, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        monkeypatch.setattr(units, "MASK_CHANNELS", BASE.dim)
        whole = units.spectral_mask_frames(net.blocks[0].mask, x)
        monkeypatch.setattr(units, "MASK_CHANNELS", 5)
        assert torch.equal(units.spectral_mask_frames(net.blocks[0].mask, x), whole)
        ref = net.blocks[0].mask(x)
    torch.testing.assert_close(whole, ref, atol=ATOL, rtol=0)
