"""Overlapping windows share their motion (model/motion.py, `PairMemo`): a window's first pair of
frames is the window before's last, and its velocities are taken instead of computed again, with
the same frames out to the bit, whichever path runs the windows and however many side by side."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from standins import perturbed
from theris_cli.engine.infer import Upscaler
from theris_cli.engine.samples import upscale_marked
from theris_cli.model import PRESETS, THERIS
from theris_cli.model.motion import PairMemo

MATCHING = dataclasses.replace(PRESETS["small"], dim=8, headdim=8, motion_dim=8, use_motion_align=True,
                               motion_radius=1, motion_search=2)


def _net(config=MATCHING) -> THERIS:
    return perturbed(config, seed=3, scale=0.05)


def _frames(n: int, h: int = 16, w: int = 20) -> list[torch.Tensor]:
    """A texture moving one pixel right and down per frame, (1, h, w) each."""
    g = torch.Generator().manual_seed(5)
    big = torch.rand(1, h + n, w + n, generator=g)
    return [big[:, n - i:n - i + h, n - i:n - i + w].clone() for i in range(n)]


def _without_memo(monkeypatch) -> None:
    monkeypatch.setattr(Upscaler, "pair_memo", lambda self: contextlib.nullcontext())


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("path", ["process", "marked"])
def test_shared_pairs_are_reused_with_the_same_frames_to_the_bit(monkeypatch, workers, precision, path):
    frames = _frames(10)  # windows of 4 input frames, 2 apart: 4 windows, 3 shared pairs

    def run(up: Upscaler) -> list[torch.Tensor]:
        up.workers = workers
        if path == "process":
            return list(up.process(iter(frames)))
        return list(upscale_marked(up, ((f, "new") for f in frames)))

    net = _net()
    reused = Upscaler(net, window=4, precision=precision)
    out = run(reused)
    # windows side by side start together: a window computes the pair itself where the one before
    # has not yet, with the same result
    assert reused.pairs_reused == 3 if workers == 1 else 0 <= reused.pairs_reused <= 3
    assert net.pair_memo is None  # the network keeps no motion once the stream has ended
    with monkeypatch.context() as m:
        _without_memo(m)
        computed = Upscaler(net, window=4, precision=precision)
        plain = run(computed)
    assert computed.pairs_reused == 0
    assert len(out) == len(plain) == 20
    assert all(torch.equal(a, b) for a, b in zip(out, plain))


def test_a_network_with_the_noise_input_computes_every_pair():
    # its encoder's features carry the window's own noise gains, so pairs differ from window to window
    net = _net(dataclasses.replace(MATCHING, use_noise_input=True))
    up = Upscaler(net, window=4)
    list(up.process(iter(_frames(10))))
    assert up.pairs_reused == 0


def test_a_network_without_the_motion_part_runs_as_before():
    net = _net(PRESETS["tiny"])
    up = Upscaler(net, window=4)
    assert len(list(up.process(iter(_frames(6))))) == 12
    assert up.pairs_reused == 0 and net.pair_memo is None


def test_a_pair_is_found_by_its_frames_and_what_it_was_computed_with():
    memo = PairMemo(capacity=2)
    a, b = torch.rand(1, 4, 5), torch.rand(1, 4, 5)
    v = torch.rand(2, 4, 5)
    memo.put("fp32", a, b, v)
    kept = a.clone()
    a.add_(1)  # the memo holds copies: the caller's buffers may be reused
    assert memo.get("fp32", a, b) is None
    a.copy_(kept)
    assert torch.equal(memo.get("fp32", a, b), v)
    assert memo.get("bf16", a, b) is None  # computed another way
    assert memo.get("fp32", b, a) is None  # the other order is another pair
    other = b.clone()
    other[0, 3, 4] += 1e-6
    assert memo.get("fp32", a, other) is None
    assert memo.get("fp32", a[:, :3], b[:, :3]) is None  # another size (a tile)
    assert memo.hits == 1


def test_the_memo_keeps_the_newest_pairs():
    memo = PairMemo(capacity=2)
    frames = [torch.full((1, 2, 2), float(i)) for i in range(4)]
    for i in range(3):
        memo.put("t", frames[i], frames[i + 1], frames[i].expand(2, 2, 2))
    assert memo.get("t", frames[0], frames[1]) is None
    assert memo.get("t", frames[1], frames[2]) is not None and memo.get("t", frames[2], frames[3]) is not None


def test_upscale_reports_the_windows_and_the_pairs_they_shared(tmp_path):
    from clips import scene_frames, write_clip
    from theris_cli.engine.pipeline import upscale_video

    src = write_clip(tmp_path / "in.mkv", scene_frames(8, 16, 20), fps=10)  # windows at 0, 2, 4
    res = upscale_video(src, tmp_path / "out.mkv", model=_net(), device="cpu", precision="fp32")
    assert res.frames_out == 16
    assert (res.windows, res.motion_pairs_reused) == (3, 2)


def test_pairs_are_forgotten_when_the_weights_change():
    net = _net()
    frames = torch.stack(_frames(6))  # (6, 1, h, w): windows at 0 and 2 share frames 2 and 3
    first, second = frames[None, 0:4], frames[None, 2:6]
    net.pair_memo = memo = PairMemo()
    with torch.inference_mode():
        net(first)
        with torch.no_grad():
            net.motion.body[0].weight.mul_(1.5)  # a training step between the windows
        changed = net(second)
        assert memo.hits == 0
        net(first)
        again = net(second)  # its last pair from its own earlier run, its first from the window before
        assert memo.hits == 2
        net.pair_memo = None
        fresh = net(second)
    assert torch.equal(changed, fresh) and torch.equal(again, fresh)
