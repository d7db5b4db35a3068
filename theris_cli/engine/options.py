"""UpscaleOptions: the settings that travel together from the command line to the upscaler.

    opts = UpscaleOptions(weights="theris-small", device="cpu", tile=128)   # validated here, once
    upscale_video("in.mp4", "out.mkv", opts)
    run_batch("in/", "out/", opts)            # the same object; output_fields() are hashed into each record

One frozen object instead of the same nine keywords in every signature: a value is checked when the
object is made (UsageError, one line), and `dataclasses.replace(opts, tile=64)` makes a checked copy. What the
options *are* is kept apart from where they are applied: the device is parsed here, found (CUDA
present?) only when the work starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, Optional

from theris_cli.devices import parse_device, parse_precision
from theris_cli.errors import UsageError

__all__ = ["UpscaleOptions", "check_options", "MIN_WINDOW", "MIN_TILE", "MIN_TEMPORAL_FACTOR", "DEFAULT_WINDOW",
           "DEFAULT_TEMPORAL_FACTOR"]

# Limits and defaults, declared here once: the CLI's options, the upscaler and the library all use these.
MIN_WINDOW = 2  # input frames: a window must span at least one interval to interpolate in
DEFAULT_WINDOW = 4  # input frames the model sees at once (k + 1): what the shipped weights are made for
MIN_TILE = 16  # LR pixels: smaller tiles are refused, and out-of-memory halving gives up below this
MIN_TEMPORAL_FACTOR = 1  # output frames per input frame (1: spatial only)
DEFAULT_TEMPORAL_FACTOR = 2  # output frames per input frame: the frame rate doubled


def check_options(window: int = DEFAULT_WINDOW, tile: int | None = None,
                  temporal_factor: int = DEFAULT_TEMPORAL_FACTOR) -> None:
    """UsageError for values of --window, --tile, --temporal-factor that cannot work."""
    if window < MIN_WINDOW:
        raise UsageError(f"--window must be at least {MIN_WINDOW} input frames, got {window}")
    if temporal_factor < MIN_TEMPORAL_FACTOR:
        raise UsageError(f"--temporal-factor must be a positive integer, got {temporal_factor}")
    if tile is not None and tile < MIN_TILE:
        raise UsageError(f"--tile must be at least {MIN_TILE} LR pixels, got {tile}")


@dataclass(frozen=True)
class UpscaleOptions:
    """How to upscale: the model, where and how it runs, and how the output is encoded.

    Every field has the CLI's default; see `theris upscale --help` for each one's meaning.
    """

    weights: Optional[str] = None  # registry name, .safetensors path or hf://...; None: the default model
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    precision: str = "auto"  # auto, fp32, fp16 or bf16
    window: int = DEFAULT_WINDOW  # input frames the model sees at once (k + 1)
    tile: Optional[int] = None  # tile side in LR pixels; None: whole frames where they fit
    temporal_factor: int = DEFAULT_TEMPORAL_FACTOR  # output frames per input frame
    codec: Optional[str] = None  # None: from the output's extension
    crf: Optional[int] = None  # None: the codec's visually lossless setting
    pix_fmt: Optional[str] = None  # None: fits the input and the codec
    events: bool = True  # treat repeated frames, splices and shutter events (theris_cli.engine.events)

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", parse_device(self.device))
        object.__setattr__(self, "precision", parse_precision(self.precision))
        check_options(window=self.window, tile=self.tile, temporal_factor=self.temporal_factor)
        if self.crf is not None and self.crf < 0:
            raise UsageError(f"--crf must be 0 or more, got {self.crf}")

    @classmethod
    def of(cls, options: Optional["UpscaleOptions"] = None, **fields: Any) -> "UpscaleOptions":
        """``options`` with ``fields`` changed (either may be left out): library functions take an
        UpscaleOptions, or its fields as keywords, as in ``upscale_video(src, dst, tile=64)``."""
        base = options if options is not None else cls()
        return dataclasses.replace(base, **fields) if fields else base

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def output_fields(self) -> dict[str, Any]:
        """The fields that change what is written (all but the device, which only changes where the
        work runs): what a batch completion record must match for a file to count as done."""
        d = self.to_dict()
        del d["device"]
        if d["events"]:  # the default: left out so that records written before the option still match
            del d["events"]
        return d
