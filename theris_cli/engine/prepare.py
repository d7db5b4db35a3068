"""Everything that happens before the first frame is upscaled, in one place for every command.

    run = prepare(src, dst, opts, overwrite=False, check_output=check_output_name)   # upscale, preview
    net = load_network(opts, device)                                                 # evaluate: no one video

The order is the cheapest check first, so that a mistake is reported before any slow step:

1. options (already validated by UpscaleOptions), device and precision: does the device exist here?
2. the input exists (a file, an image pattern or a folder of images) and the output's name and
   destination are usable;
3. probe: frame rate, size, bit depth; warnings for false-colour (palette) and variable-frame-rate video;
4. levels: the video's fixed map to the network's [0, 1] (a full decode pass for 16-bit video);
5. the weights: loaded, refused when they hold NaN or infinities, and a warning when the window or
   temporal factor leave what they were trained for.

`upscale_video` and `make_preview` start with `prepare`, `evaluate` (many clips, no output video)
with `load_network`: a check added here holds for each of them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch

from theris_cli.devices import resolve_device, resolve_precision
from theris_cli.engine.infer import Upscaler
from theris_cli.engine.options import UpscaleOptions
from theris_cli.errors import InputError, UsageError, WeightsError
from theris_cli.outputs import check_destination

if TYPE_CHECKING:  # imported where used: PyAV loads only when a video is read
    from theris_cli.video import Levels, VideoInfo

log = logging.getLogger("theris")

__all__ = ["Network", "Prepared", "prepare", "load_network", "check_input", "check_output_name"]


# ------------------------------------------------------------------------------------------------
# input and output


def check_input(src: str | Path) -> Path:
    """Fail early, in one line, on inputs that are certainly wrong (probe checks the rest)."""
    from theris_cli.video.decode import image_files
    from theris_cli.video.inputs import is_image_folder

    src = Path(src)
    if "%" in src.name and not src.exists():  # an image-sequence pattern such as frames/%05d.png: probe resolves it
        return src
    if src.is_dir():  # a folder of numbered images is one sequence; anything else is refused here
        if is_image_folder(src):
            return src
        try:
            image_files(src)  # raises the video reader's one-line reason
        except InputError as e:
            raise InputError(f"{e} (a folder of videos takes a folder as output: theris batch)") from None
    if not src.exists():
        raise InputError(f"{src}: no such file; check the path")
    return src


def check_output_name(dst: Path) -> None:
    """Refuse output names the video writer cannot take, before any work."""
    from theris_cli.video.encode import output_kind

    if output_kind(dst) == "images":
        # One file a frame cannot be renamed into place at once, so it could be left half written.
        raise UsageError(f"{dst}: image-sequence output is not supported; write a video (.mkv keeps 16 bits losslessly)")


# ------------------------------------------------------------------------------------------------
# the network


@dataclass
class Network:
    """A loaded network, checked, and how it runs."""

    model: torch.nn.Module
    name: str  # registry name or file name
    trained: Optional[bool]  # False: random weights; None: not known
    options: UpscaleOptions
    device: torch.device
    warnings: list[str] = field(default_factory=list)

    def upscaler(self, **fields) -> Upscaler:
        """An Upscaler running this network with the options (``fields`` change some of them)."""
        return Upscaler(self.model, self.options, **fields)


def load_weights(weights: Optional[str], device: torch.device,
                 model: Optional[torch.nn.Module] = None) -> tuple[torch.nn.Module, str, Optional[bool]]:
    """The network for ``weights`` (default: the registry's default) on ``device``, its name, and
    whether it is trained (None: not known). An already loaded ``model`` is used as it is."""
    if model is None:
        from theris_cli.weights import DEFAULT_MODEL, load_model

        weights = weights or DEFAULT_MODEL
        model = load_model(weights, device=str(device))
    winfo = getattr(model, "weights_info", None)  # set by load_model: name, trained or random
    name = winfo.name if winfo is not None else (weights or "custom")
    return model, str(name), (winfo.trained if winfo is not None else None)


def check_finite_weights(model: torch.nn.Module, label: str) -> None:
    """Refuse weights holding NaN or infinities: they make every output frame NaN (black video)."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    bad = [name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise WeightsError(
            f"{label}: {len(bad)} of its {len(tensors)} tensors hold NaN or infinite values (first: {bad[0]}); "
            "the checkpoint is broken: re-download it or retrain"
        )


def load_network(options: UpscaleOptions, device: torch.device,
                 model: Optional[torch.nn.Module] = None) -> Network:
    """Load ``options.weights`` (or take ``model``), refuse non-finite weights, warn (once per
    process) when the window or temporal factor leave what the weights were trained for."""
    from theris_cli.weights.checkpoint import contract_warning

    model, name, trained = load_weights(options.weights, device, model)
    check_finite_weights(model, name)
    warnings = []
    outside = contract_warning(model, window=options.window, temporal_factor=options.temporal_factor)
    if outside:
        log.warning("%s", outside)
        warnings.append(outside)
    return Network(model, name, trained, options, device, warnings)


# ------------------------------------------------------------------------------------------------
# one video


@dataclass
class Prepared:
    """One video, checked and ready: what upscale and preview start from."""

    src: Path
    dst: Path
    info: VideoInfo
    levels: Levels
    network: Network
    warnings: list[str]  # said once on the log already; kept for the result
    seconds: dict[str, float]  # busy seconds: levels, load


def video_warnings(src: Path, info: VideoInfo) -> list[str]:
    """Warnings about what the video is: false colour, variable frame rate (each logged here)."""
    warnings: list[str] = []
    if info.palette_suspected:
        warnings.append(
            f"{src} looks like false colour (a palette), not temperature: it is upscaled from its luma, "
            "which the model was not trained on; export grey (radiometric) video from the camera if you can"
        )
    if info.vfr_gaps:
        lo, hi = info.vfr_gaps
        warnings.append(
            f"{src} has a variable frame rate (frames {float(lo) * 1000:.0f} to {float(hi) * 1000:.0f} ms apart): its "
            f"{info.frame_count} frames are taken as evenly spaced at the mean {float(info.fps):.4g} fps, so the "
            "output lasts as long as the input"
        )
    for msg in warnings:
        log.warning(msg)
    return warnings


def prepare(
    src: str | Path,
    dst: str | Path,
    options: UpscaleOptions,
    *,
    model: Optional[torch.nn.Module] = None,
    overwrite: bool = False,
    check_output: Callable[[Path], None] = check_output_name,
) -> Prepared:
    """Check, probe, scan levels and load the weights for upscaling ``src`` into ``dst`` (module
    docstring: the order). ``check_output(dst)``: what the command requires of the output's name."""
    from theris_cli.video import probe, scan_levels

    dev = resolve_device(options.device)
    resolve_precision(options.precision, dev)
    src, dst = check_input(src), Path(dst)
    check_output(dst)
    check_destination(dst, overwrite=overwrite, src=src)

    info = probe(src)
    warnings = video_warnings(src, info)

    t = time.perf_counter()
    levels = scan_levels(src)  # a full decode pass for 16-bit input (min/max), free for 8-bit
    seconds = {"levels": time.perf_counter() - t}

    t = time.perf_counter()
    network = load_network(options, dev, model)
    warnings += network.warnings
    seconds["load"] = time.perf_counter() - t
    return Prepared(src, dst, info, levels, network, warnings, seconds)
