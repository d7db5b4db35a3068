"""model/cores.py: a core that no window holds is lent to a running window's work units, which then
run on two threads; the result is the same to the bit, windows come first, errors reach the caller."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from theris_cli.engine.infer import Upscaler
from theris_cli.model.cores import CoreShare, for_each
from theris_cli.weights.load import load_model


def test_outside_a_window_it_is_a_plain_loop():
    seen = []
    for_each(5, lambda i: seen.append((i, threading.get_ident())))
    assert seen == [(i, threading.get_ident()) for i in range(5)]


def test_a_free_core_takes_units_beside_the_window():
    share = CoreShare(2)
    seen: dict[int, int] = {}

    def unit(i: int) -> None:
        time.sleep(0.02)  # long enough for the helper to take some
        seen[i] = threading.get_ident()

    with share.window():
        for_each(8, unit)
    share.close()
    assert sorted(seen) == list(range(8))  # every unit once
    assert len(set(seen.values())) == 2 and share.lent == 1


def test_no_core_is_lent_while_every_core_holds_a_window():
    share = CoreShare(2)
    other_started, release = threading.Event(), threading.Event()

    def other_window() -> None:
        with share.window():
            other_started.set()
            release.wait(5)

    t = threading.Thread(target=other_window)
    t.start()
    other_started.wait(5)
    seen = set()
    with share.window():
        for_each(4, lambda i: seen.add(threading.get_ident()))
    release.set()
    t.join()
    assert seen == {threading.get_ident()} and share.lent == 0


def test_the_helper_stops_taking_units_when_a_window_waits():
    share = CoreShare(2)
    taken: list[int] = []
    waiting = threading.Event()

    def unit(i: int) -> None:
        taken.append(threading.get_ident())
        if i == 0:  # the window's first unit: a second window asks for a core meanwhile
            threading.Thread(target=lambda: (waiting.set(), share.window().__enter__())).start()
            while not share.wanted():
                time.sleep(0.001)
        time.sleep(0.005)

    with share.window():
        for_each(40, unit)
        # the helper may finish the unit it holds, then leaves the rest to the window's thread
        assert taken.count(threading.get_ident()) >= 40 - 2


def test_an_error_in_a_unit_reaches_the_caller_and_frees_the_core():
    share = CoreShare(2)

    def unit(i: int) -> None:
        time.sleep(0.01)
        if i == 3:
            raise ValueError("unit 3")

    with pytest.raises(ValueError, match="unit 3"):
        with share.window():
            for_each(8, unit)
    assert share._busy == 0


def test_a_window_with_a_lent_core_gives_the_same_frames_to_the_bit():
    """The shipped network, one window: its encoder frames, TDIM's frames, the motion pairs, the
    spectral mask's frames, TMB and HMB's bands and the decoder's bands shared by two threads."""
    net = load_model("theris-small")
    torch.manual_seed(4)
    x = torch.rand(4, 1, 40, 36)
    for precision in ("bf16", "fp32"):
        up = Upscaler(net, precision=precision)
        alone = up.run_window(x, [1, 2, 3, 4, 5])
        share = CoreShare(2)
        with share.window():
            shared = up.run_window(x, [1, 2, 3, 4, 5])
        assert share.lent > 0
        assert torch.equal(shared, alone), precision
