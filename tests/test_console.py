"""The terminal helpers every command uses: termination signals stop work like Ctrl-C."""

import os
import signal

import pytest

from theris_cli.commands.console import stop_on_signals
from workers import start_worker, wait_until_written


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_termination_signals_interrupt_the_block_and_are_restored(name):
    sig = getattr(signal, name)
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals():
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) == before



@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_a_batch_stopped_by_a_signal_leaves_no_partial_or_lock(tmp_path, name):
    """`theris batch`'s runner in a real process, told to stop while writing b.mp4's output."""
    import textwrap
    from pathlib import Path

    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for n in "ab":
        (in_dir / f"{n}.mp4").write_bytes(n.encode())
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_batch import fake_upscale
        from theris_cli.commands.upscale import run_batch_command
        from theris_cli.engine.options import UpscaleOptions
        def slow_on_b(src, dst, **kw):
            return fake_upscale(src, dst, **kw, delay=60 if src.name == "b.mp4" else 0)
        run_batch_command({str(in_dir)!r}, {str(out_dir)!r}, UpscaleOptions(weights="stand-in"), quiet=True,
                          upscale=slow_on_b, model=object())
        """
    )
    log = tmp_path / "worker.log"
    worker = start_worker(script, log)
    wait_until_written(worker, out_dir, "b.theris-partial-*.mkv", log)
    worker.send_signal(getattr(signal, name))
    assert worker.wait(120) != 0
    assert not list(out_dir.glob("*.theris-partial-*")) and not list((out_dir / ".theris" / "locks").iterdir())
    assert (out_dir / "a.mkv").is_file() and not (out_dir / "b.mkv").exists()
    assert list((out_dir / ".theris" / "reports").iterdir())  # the report says where it stopped
