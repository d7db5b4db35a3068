import pytest
import torch

from theris_cli.protocol import crop_to_multiple, downscale, make_lr
from theris_cli.train.degrade import Extras, apply_extras, block_dct_quantise, gaussian_blur


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
