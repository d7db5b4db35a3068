"""Temporal windows and spatial tiles: coverage, overlap, and the frame-count rule."""

from fractions import Fraction

import pytest

from theris_cli.engine.windows import (
    Tile,
    Window,
    local_times,
    plan_tiles,
    plan_windows,
    temporal_stride,
    tile_from_memory,
    time_weight,
    window_targets,
)


def test_default_window_shares_one_interval():
    assert temporal_stride(4) == 2  # k = 3: neighbours share 2 input frames
    assert temporal_stride(2) == 1
    assert temporal_stride(8) == 6
    with pytest.raises(ValueError):
        temporal_stride(1)


@pytest.mark.parametrize("n", range(1, 30))
@pytest.mark.parametrize("window", [2, 3, 4, 5, 8])
def test_windows_cover_every_frame_and_stay_inside(n, window):
    ws = plan_windows(n, window)
    assert ws[0].start == 0 and ws[-1].end == n - 1
    assert all(w.length == min(n, window) and 0 <= w.start and w.end <= n - 1 for w in ws)
    for a, b in zip(ws, ws[1:]):
        assert a.start < b.start <= a.end, "consecutive windows must overlap in at least one frame"
        if window > 2:
            assert a.end - b.start >= 1, "neighbours share a whole input interval"


def test_short_and_single_frame_videos_are_one_window():
    assert plan_windows(1, 4) == [Window(0, 1)]
    assert plan_windows(3, 4) == [Window(0, 3)]
    assert plan_windows(4, 4) == [Window(0, 4)]
    assert plan_windows(7, 4) == [Window(0, 4), Window(2, 4), Window(3, 4)]  # last one flush with the end
    assert plan_windows(0, 4) == []


def test_times_and_output_range():
    assert local_times(4, 2) == [Fraction(m, 2) for m in range(7)]
    assert local_times(3, 3) == [0, Fraction(1, 3), Fraction(2, 3), 1, Fraction(4, 3), Fraction(5, 3), 2]
    assert local_times(1, 2) == [0]
    assert Window(2, 4).output_range(2) == range(4, 11)


def test_time_weights_cross_fade_over_the_overlap():
    # Windows 0..3 and 2..5 overlap over input times 2..3: A's weight falls as B's rises.
    f = 2
    a = [time_weight(m, f, 4, first=True, last=False) for m in range(7)]
    b = [time_weight(m, f, 4, first=False, last=True) for m in range(7)]
    shared_a, shared_b = a[4:7], b[0:3]  # output times 2, 2.5, 3
    fa = [x / (x + y) for x, y in zip(shared_a, shared_b)]
    assert fa[0] > 0.99 and fa[1] == pytest.approx(0.5) and fa[2] < 0.01
    assert time_weight(0, 2, 1, True, True) == 1.0
    assert fa[0] == 1 and fa[2] == 0  # a crossed edge has weight 0: the neighbour predicts that time
    assert all(w > 0 for w in a[:6] + b[1:]) and a[6] == 0 and b[0] == 0


def test_window_targets_leave_out_crossed_edges_only():
    assert window_targets(4, 2, first=False, last=False) == [1, 2, 3, 4, 5]
    assert window_targets(4, 2, first=True, last=False) == [0, 1, 2, 3, 4, 5]
    assert window_targets(4, 2, first=False, last=True) == [1, 2, 3, 4, 5, 6]
    assert window_targets(4, 2, first=True, last=True) == list(range(7))  # the only window: every time
    assert window_targets(3, 1, first=False, last=False) == [1]
    assert window_targets(4, 3, first=False, last=False) == list(range(1, 9))
    assert window_targets(1, 2, first=True, last=True) == [0]
    assert window_targets(2, 2, first=False, last=False) == [0, 1, 2]  # windows of 2 share only their edges


@pytest.mark.parametrize("window", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_every_output_time_is_predicted_with_weight_and_nearly_once(window, factor):
    for n in range(1, 24):
        plan = plan_windows(n, window)
        count: dict[int, int] = {}
        for w in plan:
            first, last = w.start == 0, w.end == n - 1
            for j in window_targets(w.length, factor, first, last):
                assert time_weight(j, factor, w.length, first, last) > 0
                m = w.output_range(factor)[j]
                count[m] = count.get(m, 0) + 1
        assert sorted(count) == list(range(factor * (n - 1) + 1)), f"n={n}: an output time is never predicted"
        if window >= 3 and n > window and (n - window) % temporal_stride(window) == 0:
            # no extra window flush with the end: only the inner times of each shared interval are
            # predicted twice (none at factor 1)
            assert sum(count.values()) - len(count) <= (factor - 1) * (len(plan) - 1), f"n={n}"


@pytest.mark.parametrize("h,w", [(12, 16), (37, 53), (64, 64), (5, 100)])
@pytest.mark.parametrize("tile,overlap", [(8, 2), (16, 4), (20, 8), (32, 16)])
def test_tiles_cover_the_frame_with_overlap(h, w, tile, overlap):
    tiles = plan_tiles(h, w, tile, overlap)
    covered = [[0] * w for _ in range(h)]
    for t in tiles:
        assert 0 <= t.y0 < t.y1 <= h and 0 <= t.x0 < t.x1 <= w
        assert t.y1 - t.y0 == min(tile, h) and t.x1 - t.x0 == min(tile, w)
        for y in range(t.y0, t.y1):
            for x in range(t.x0, t.x1):
                covered[y][x] += 1
    assert all(c >= 1 for row in covered for c in row)
    ys = sorted({(t.y0, t.y1) for t in tiles})
    for (a0, a1), (b0, b1) in zip(ys, ys[1:]):
        assert a1 - b0 >= min(overlap, tile // 2)


def test_no_tile_means_whole_frame():
    assert plan_tiles(12, 16, None, 4) == [Tile(0, 12, 0, 16)]
    assert plan_tiles(12, 16, 64, 4) == [Tile(0, 12, 0, 16)]


def test_tile_from_memory():
    assert tile_from_memory(10**9, 100.0, 64, 64) is None  # whole frame fits
    t = tile_from_memory(10**6, 100.0, 1000, 1000)  # 5000 px fit -> 70 -> 64
    assert t == 64
    assert tile_from_memory(10, 100.0, 1000, 1000) == 8  # never below the minimum multiple
