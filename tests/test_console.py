"""The terminal helpers every command uses: termination signals stop work like Ctrl-C."""

import os
import signal

import pytest

from theris_cli.commands.console import stop_on_signals


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_termination_signals_interrupt_the_block_and_are_restored(name):
    sig = getattr(signal, name)
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals():
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) == before

