import pytest
import torch

from theris_cli.protocol import crop_to_multiple, downscale, make_lr
from theris_cli.sensor import gaussian_blur
from theris_cli.train.degrade import Extras, apply_extras, block_dct_quantise


def test_downscale_shape_range_dtype():
    hr = torch.rand(3, 1, 32, 48)
    lr = downscale(hr)
    assert lr.shape == (3, 1, 8, 12)
    assert lr.dtype == hr.dtype
    assert lr.min() >= 0 and lr.max() <= 1


def test_downscale_rejects_non_multiple():
    with pytest.raises(ValueError, match="multiple of 4"):
        downscale(torch.rand(1, 30, 32))


def test_constant_frame_stays_constant():
    hr = torch.full((2, 1, 16, 16), 0.37)
    assert torch.allclose(downscale(hr), torch.full((2, 1, 4, 4), 0.37), atol=1e-6)
    clip = torch.full((4, 1, 16, 16), 0.61)
    assert torch.allclose(apply_extras(clip, torch.Generator().manual_seed(0), Extras(blur_p=1, noise_p=0, block_p=0, quant_p=0)), clip, atol=1e-5)
    assert torch.allclose(gaussian_blur(clip, 0.7), clip, atol=1e-6)
    assert torch.allclose(block_dct_quantise(clip, 0.02), clip, atol=0.03)


def test_downscale_is_area_average_of_smooth_ramp():
    # a linear ramp along x: antialiased bicubic returns the ramp at the LR pixel centres (interior)
    x = torch.arange(64, dtype=torch.float64) / 64
    hr = x.expand(16, 64).clone()
    lr = downscale(hr)
    centres = (torch.arange(16, dtype=torch.float64) * 4 + 1.5) / 64
    assert torch.allclose(lr[0, 2:-2], centres[2:-2], atol=1e-6)


def test_make_lr_keeps_even_frames():
    hr = torch.rand(7, 1, 16, 20)
    lr = make_lr(hr)
    assert lr.shape == (4, 1, 4, 5)
    assert torch.equal(lr[1], downscale(hr[2]))
    assert make_lr(torch.rand(6, 1, 8, 8)).shape == (3, 1, 2, 2)  # ceil(T/2)
    assert make_lr(torch.rand(2, 7, 1, 8, 8)).shape == (2, 4, 1, 2, 2)  # batched


def test_crop_to_multiple():
    x = torch.arange(7 * 10).reshape(1, 7, 10)
    y = crop_to_multiple(x, 4)
    assert y.shape == (1, 4, 8)
    assert torch.equal(y, x[:, :4, :8])  # top-left kept
    with pytest.raises(ValueError):
        crop_to_multiple(torch.zeros(3, 3), 4)


def test_extras_deterministic_range_shape():
    lr = torch.rand(4, 1, 16, 16)
    always = Extras(blur_p=1, noise_p=1, block_p=1, quant_p=1, noise_std=(0.02, 0.02))
    a = apply_extras(lr, torch.Generator().manual_seed(3), always)
    b = apply_extras(lr, torch.Generator().manual_seed(3), always)
    c = apply_extras(lr, torch.Generator().manual_seed(4), always)
    assert a.shape == lr.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    # 8-bit quantisation last: every value is on the 1/255 grid
    assert torch.allclose(a * 255, torch.round(a * 255), atol=1e-4)
    assert not torch.equal(a, lr)


def test_block_dct_roundtrip_fine_step():
    x = torch.rand(1, 16, 16, dtype=torch.float64)
    assert torch.allclose(block_dct_quantise(x, 1e-9), x, atol=1e-8)


# ------------------------------------------------------------------------------ sensor

def _smooth_clip(t=4, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(t, 1, h, w, generator=g) * 0.4 + 0.3
    return torch.nn.functional.avg_pool2d(x, 5, 1, 2)


def test_sensor_levels_are_what_they_say():
    from theris_cli.sensor import SensorLevels, degrade

    flat = torch.full((64, 1, 48, 48), 0.5)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    noisy = degrade(flat, SensorLevels(temporal=0.01), gen()) - 0.5
    assert abs(float(noisy.std()) - 0.01) < 0.001
    assert float(noisy.mean(0).std()) < 0.002  # temporal: averages away over frames
    fixed = degrade(flat, SensorLevels(pixel=0.01), gen()) - 0.5
    assert abs(float(fixed.std()) - 0.01) < 0.001
    assert torch.allclose(fixed[0], fixed[-1])  # fixed pattern: the same in every frame
    cols = degrade(flat, SensorLevels(column=0.01), gen()) - 0.5
    assert torch.allclose(cols[:, :, :1].expand_as(cols), cols)  # one offset per column
    assert abs(float(cols[0, 0, 0].std()) - 0.01) < 0.004
    drift = degrade(flat[:8], SensorLevels(drift=0.01), gen()) - 0.5
    assert torch.allclose(drift[0], torch.zeros(1, 48, 48)) and float(drift[-1].std()) > 0.005
    flick = degrade(flat, SensorLevels(flicker_offset=0.01), gen()) - 0.5
    per_frame = flick.mean(dim=(1, 2, 3))
    assert torch.allclose(flick, per_frame.view(-1, 1, 1, 1).expand_as(flick), atol=1e-6)
    assert float(per_frame.std()) > 0.005
    shot = degrade(torch.cat([torch.full((64, 1, 8, 8), 0.04), torch.full((64, 1, 8, 8), 0.64)], 2),
                   SensorLevels(shot=0.02), gen())
    dark, bright = shot[:, :, :8].std(), shot[:, :, 8:].std()
    assert 3 < float(bright / dark) < 5  # std grows with sqrt(level): 0.8 / 0.2


def test_sensor_degrade_is_seeded_and_leaves_the_clip_alone_when_off():
    from theris_cli.sensor import EVAL_LEVELS, SensorLevels, degrade

    clip = _smooth_clip()
    assert torch.allclose(degrade(clip, SensorLevels(), torch.Generator().manual_seed(0)), clip, atol=1e-6)
    a = degrade(clip, EVAL_LEVELS, torch.Generator().manual_seed(5))
    b = degrade(clip, EVAL_LEVELS, torch.Generator().manual_seed(5))
    c = degrade(clip, EVAL_LEVELS, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == clip.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(torch.round(a * 255) / 255, a)  # 8-bit output levels


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_compression_keeps_the_clip_and_loses_more_at_higher_crf(codec):
    from theris_cli.sensor import compress

    clip = _smooth_clip(t=5, h=20, w=28)  # not multiples of 16: padded for the encoder, cropped back
    good, bad = compress(clip, codec, 12), compress(clip, codec, 40)
    assert good.shape == clip.shape and bad.shape == clip.shape
    err_good, err_bad = (good - clip).abs().mean(), (bad - clip).abs().mean()
    assert err_good < 0.01 and err_bad > err_good


def test_sensor_ranges_draw_reproducibly_and_training_batches_get_them():
    from theris_cli.train.dataset import ClipMixer, SyntheticSource
    from theris_cli.train.degrade import SensorRanges, apply_sensor

    r = SensorRanges(codec_p=0.5)
    draws = [r.draw(torch.Generator().manual_seed(i)) for i in range(40)]
    assert draws[3] == r.draw(torch.Generator().manual_seed(3))
    assert {d.codec for d in draws} == {"", "libx264", "libx265"}
    assert all(0 <= d.temporal <= r.temporal[1] and r.crf[0] <= d.crf <= r.crf[1] for d in draws)
    clip = _smooth_clip()
    assert torch.equal(apply_sensor(clip, torch.Generator().manual_seed(2), r),
                       apply_sensor(clip, torch.Generator().manual_seed(2), r))
    synth = SyntheticSource(5, 16, seed=0, pool=4, chunk=2, every=4)
    clean = ClipMixer(None, synth, 1.0, 5, 16, seed=0)
    noisy = ClipMixer(None, SyntheticSource(5, 16, seed=0, pool=4, chunk=2, every=4), 1.0, 5, 16, seed=0, sensor_p=1.0)
    (lr_c, hr_c), (lr_n, hr_n) = clean.batch(3, 2), noisy.batch(3, 2)
    assert torch.equal(hr_c, hr_n)  # the truth is never degraded
    assert not torch.equal(lr_c, lr_n)
    assert torch.equal(noisy.batch(3, 2)[0], lr_n)  # the same step, the same noise
