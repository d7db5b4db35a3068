import numpy as np
import pytest
import torch

from theris_cli.eval import baselines
from theris_cli.eval.baselines import bicubic, ffmpeg, ffmpeg_lanczos, ffmpeg_minterpolate

STEP8 = 1 / 255  # one 8-bit level: minterpolate works on 8-bit frames


def _moving_ramp(t: int, h: int = 16, w: int = 24, speed: float = 0.7) -> torch.Tensor:
    """(t, 1, h, w) LR frames: a diagonal ramp sliding right by `speed` pixels per frame."""
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.clip((60 + 6 * (x - speed * i) + 2 * y) / 255, 0, 1) for i in range(t)]
    return torch.tensor(np.stack(frames), dtype=torch.float32).unsqueeze(1)


@pytest.mark.parametrize("method", [bicubic, ffmpeg])
def test_output_count_and_size(method):
    lr = _moving_ramp(4)
    assert method(lr).shape == (7, 1, 64, 96)  # 2T-1 frames at 4x
    assert method(lr[:1]).shape == (1, 1, 64, 96)  # one input: nothing to interpolate


def test_bicubic_on_a_constant_clip_is_exact():
    lr = torch.full((3, 1, 8, 12), 0.37)
    out = bicubic(lr)
    assert out.shape == (5, 1, 32, 48)
    assert (out - 0.37).abs().max().item() < 1e-6


def test_bicubic_midpoints_are_the_blend_of_their_neighbours():
    out = bicubic(_moving_ramp(5))
    torch.testing.assert_close(out[1::2], 0.5 * (out[0:-1:2] + out[2::2]))


def test_ffmpeg_input_aligned_frames_are_lanczos_of_the_inputs():
    lr = _moving_ramp(6)
    up = ffmpeg_lanczos(lr)
    out = ffmpeg(lr)
    torch.testing.assert_close(out[0::2], up)
    # lanczos is a centred x4 resampler like bicubic: no shift, only a slightly different kernel
    assert (up - bicubic(lr)[0::2]).abs().mean().item() < 2e-3


def test_minterpolate_keeps_inputs_at_even_times_and_emits_every_frame():
    """The traps: minterpolate's first/last frames and its timestamps. Output 2i must be input i."""
    up = ffmpeg_lanczos(_moving_ramp(6))
    mi = ffmpeg_minterpolate(up)
    assert mi.shape[0] == 11  # last midpoint and last input present (padding works)
    torch.testing.assert_close(mi[0::2], torch.round(up * 255) / 255, atol=1e-6, rtol=0)
    # moving content: each midpoint lies between its neighbours, nearer to neither
    for i in range(5):
        d_prev = (mi[2 * i + 1] - mi[2 * i]).abs().mean()
        d_next = (mi[2 * i + 1] - mi[2 * i + 2]).abs().mean()
        assert 0.3 < d_prev / d_next < 3, (i, d_prev, d_next)


def test_ffmpeg_midpoints_of_a_linear_ramp_in_time_are_the_averages():
    """Static scene warming up linearly: the midpoint is the mean of its neighbours (within 8 bits)."""
    y, x = np.mgrid[0:16, 0:16]
    scene = torch.tensor(0.3 + 0.2 * np.exp(-((x - 8) ** 2 + (y - 7) ** 2) / 20), dtype=torch.float32)
    lr = torch.stack([scene + 0.004 * i for i in range(6)]).unsqueeze(1)  # (6, 1, 16, 16)
    out = ffmpeg(lr)
    mid = 0.5 * (out[0:-1:2] + out[2::2])
    assert (out[1::2] - mid).abs().max().item() <= 2 * STEP8


def test_ffmpeg_on_a_constant_clip_is_exact_to_8_bits():
    out = ffmpeg(torch.full((3, 1, 8, 8), 0.3))
    assert (out[0::2] - 0.3).abs().max().item() < 1e-4  # 16-bit lanczos path
    assert (out[1::2] - 0.3).abs().max().item() <= 0.5 * STEP8 + 1e-6  # 8-bit minterpolate


def test_registry_of_baselines():
    assert set(baselines.BASELINES) == {"bicubic", "ffmpeg"}
    with pytest.raises(ValueError, match="LR grey clip"):
        bicubic(torch.zeros(3, 8, 8))
