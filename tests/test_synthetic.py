import torch

from theris_cli.train.synthetic import SceneConfig, SyntheticThermal, heat_residual


def test_same_seed_same_clip_other_seed_other_clip():
    a = SyntheticThermal(5, 32, 40, seed=7).clip(3)
    b = SyntheticThermal(5, 32, 40, seed=7).clip(3)
    c = SyntheticThermal(5, 32, 40, seed=8).clip(3)
    d = SyntheticThermal(5, 32, 40, seed=7).clip(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_clip_is_the_same_alone_or_in_a_batch():
    gen = SyntheticThermal(4, 48, 48, seed=2)
    batch = gen.batch(10, 6)
    for i in (0, 3, 5):
        assert torch.equal(gen.clip(10 + i), batch[i])


def test_shapes_and_ranges_any_size():
    for t, h, w in ((7, 64, 64), (3, 20, 36), (1, 8, 8)):
        x = SyntheticThermal(t, h, w, seed=1).batch(0, 3)
        assert x.shape == (3, t, 1, h, w) and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1 and torch.isfinite(x).all()
        assert (x.amax(dim=(1, 2, 3, 4)) - x.amin(dim=(1, 2, 3, 4)) > 0.1).all()  # not flat


def test_eight_bit_agc_lies_on_the_8_bit_grid_and_is_per_clip():
    cfg = SceneConfig(raw14_p=0.0, squeeze_p=0.0)
    x = SyntheticThermal(5, 32, 32, seed=3, config=cfg).batch(0, 2)
    assert torch.allclose(x * 255, torch.round(x * 255), atol=1e-3)
    # one stretch for the whole clip: some frame reaches near 0 and 1, not necessarily every frame
    assert (x.amin(dim=(1, 2, 3, 4)) == 0).all() and (x.amax(dim=(1, 2, 3, 4)) == 1).all()


def test_diffusion_only_scene_obeys_the_heat_equation():
    gen = SyntheticThermal(7, 40, 40, seed=0, config=SceneConfig.diffusion_only((0.2, 0.4)))
    for i in range(3):
        rel, d = heat_residual(gen.clip(i))
        assert rel < 0.1, rel
        assert 0.15 < d < 0.45  # the fitted diffusivity is the one drawn (px^2 per frame)
    # moving bodies, camera motion and sensor noise are not conduction: the residual is large
    busy = SyntheticThermal(7, 40, 40, seed=0, config=SceneConfig(body_count_p=(0, 0, 0, 0, 1), pan_p=1.0))
    for i in range(3):
        assert heat_residual(busy.clip(i))[0] > 0.5


def test_batches_are_consecutive_clips():
    gen = SyntheticThermal(3, 16, 16, seed=5)
    first, second = gen.batch(0, 2), gen.batch(2, 2)
    assert torch.equal(second[1], gen.clip(3)) and torch.equal(first[0], gen.clip(0))
