"""The terminal view of a training run (`theris train`): one live rich line on a terminal, plain
lines otherwise. Beside the other progress displays (progress.py, batch_display.py).

    with TrainReporter() as reporter:
        train(settings, data, out, on_event=reporter)
"""

from __future__ import annotations

import time

from theris_cli.commands.console import is_terminal
from theris_cli.humanize import duration


class TrainReporter:
    """Progress of a run: one live rich line on a terminal, plain lines otherwise."""

    def __init__(self, stream=None, plain: bool | None = None):
        import sys

        self.stream = stream if stream is not None else sys.stderr
        self.plain = (not is_terminal(self.stream)) if plain is None else plain
        self.live = None
        self.val_text = ""
        self.start_step = 0
        self.t0 = time.perf_counter()

    def __enter__(self) -> TrainReporter:
        if not self.plain:
            from rich.console import Console
            from rich.live import Live

            self.live = Live("", console=Console(file=self.stream, highlight=False), refresh_per_second=2, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()

    def message(self, msg: str) -> None:
        """A line of its own (above the live line on a terminal)."""
        self._print(msg)

    def _print(self, msg: str) -> None:
        if self.live is not None:
            self.live.console.print(msg, highlight=False, soft_wrap=True)
        else:
            print(msg, file=self.stream, flush=True)

    def __call__(self, e: dict) -> None:
        kind = e["event"]
        if kind == "start":
            self.start_step, self.t0 = e["step"], time.perf_counter()
            self._print(f"training {e['params']:,} parameters on {e['device']}"
                        f"{' (bf16 autocast)' if e['amp'] else ''}, steps {e['step']}..{e['steps']}")
        elif kind == "step":
            done = e["step"] - self.start_step
            rate = done / max(time.perf_counter() - self.t0, 1e-9)
            eta = (e["steps"] - e["step"]) / rate if rate > 0 else float("inf")
            eta = min(eta, e.get("budget_left_s", eta))
            line = (f"step {e['step']}/{e['steps']}  loss {e['loss']:.4f} (tfm {e['tfm']:.4f}, "
                    f"temporal {e.get('temporal', 0.0):.4f}, D {_num(e.get('D'))}, "
                    f"{e['train_gain']:+.2f} dB)  "
                    f"lr {e['lr']:.2e}  {e['samples_per_s']:.1f} samples/s  ETA {duration(eta)}{self.val_text}")
            if self.live is not None:
                self.live.update(line)
            else:
                self._print(line)
        elif kind == "val":
            self.val_text = f"  val {e['gain']:+.2f} dB (interp {e['gain_interp']:+.2f})"
            parts = "".join(f"; {g} {e['gain_' + g]:+.2f} dB (interp {e['gain_interp_' + g]:+.2f})"
                            for g in ("real", "synthetic") if "gain_" + g in e)
            self._print(f"validation at step {e['step']}: {e['psnr']:.2f} dB vs bicubic+linear {e['psnr_bicubic']:.2f} dB "
                        f"({e['gain']:+.2f} dB); interpolated frames {e['psnr_interp']:.2f} vs "
                        f"{e['psnr_bicubic_interp']:.2f} dB ({e['gain_interp']:+.2f} dB){parts}")
        elif kind == "checkpoint":
            self._print(f"checkpoint at step {e['step']}: {e['path']}")


def _num(x) -> str:
    return "?" if x is None else f"{x:.3f}"
