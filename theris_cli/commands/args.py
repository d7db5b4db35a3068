"""Options that several commands share, declared once: one help text and one completion each.

    def upscale_cmd(..., weights: args.Weights = None, device: args.Device = "auto", ...)

Defaults stay in the signatures (Typer reads them there); the help of each says the default.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from theris_cli.devices import DEVICES, PRECISIONS
from theris_cli.engine.options import MIN_TEMPORAL_FACTOR, MIN_TILE, MIN_WINDOW
from theris_cli.weights.registry import DEFAULT_MODEL, available_models, complete_weights


def complete_devices(incomplete: str) -> list[str]:
    """Shell completion for --device: the spellings theris accepts, with the GPUs that are here."""
    names = ["auto", "cpu", "cuda"]
    try:
        import torch

        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except Exception:  # completion must never fail loudly
        pass
    return [n for n in names if n.startswith(incomplete.lower())]


def complete_precisions(incomplete: str) -> list[str]:
    return [p for p in PRECISIONS if p.startswith(incomplete.lower())]


Weights = Annotated[Optional[str], typer.Option(
    "--weights", "-w", autocompletion=complete_weights, show_default=False,
    help=f"Model weights: a registry name ({', '.join(available_models())}; see `theris weights list`), "
    "a .safetensors file, or hf://owner/repo/file (optionally @revision). Loaded once per command. "
    f"Default: {DEFAULT_MODEL}.",
)]
Device = Annotated[str, typer.Option(
    "--device", autocompletion=complete_devices,
    help=f"Where the model runs: {DEVICES} (auto: the first GPU if there is one, else the CPU).",
)]
Precision = Annotated[str, typer.Option(
    "--precision", autocompletion=complete_precisions,
    help="auto, fp32, fp16 or bf16 (auto: bf16, or fp16 where unsupported, on CUDA; on the CPU bf16 where it "
    "has bfloat16 instructions (AVX512-BF16, AMX), else fp32).",
)]
Window = Annotated[int, typer.Option(
    "--window", min=MIN_WINDOW, help="Input frames the model sees at once (k+1); neighbouring windows overlap by two.",
)]
Tile = Annotated[Optional[int], typer.Option(
    "--tile", min=MIN_TILE, show_default=False,
    help="Tile side in input pixels, for frames too large for memory. Default: whole frames where they "
    "fit, else chosen from free memory (RAM or GPU).",
)]
TemporalFactor = Annotated[int, typer.Option(
    "--temporal-factor", min=MIN_TEMPORAL_FACTOR, help="Output frames per input frame (1: spatial only; 2: double the frame rate).",
)]
Codec = Annotated[Optional[str], typer.Option(
    "--codec", show_default=False,
    help="Video codec, e.g. ffv1, libx264, libx265. Default: from the output's extension.",
)]
Crf = Annotated[Optional[int], typer.Option(
    "--crf", min=0, show_default=False,
    help="Quality for H.264/H.265 (lower is better). Default: the codec's visually lossless setting (17).",
)]
PixFmt = Annotated[Optional[str], typer.Option(
    "--pix-fmt", show_default=False,
    help="Output pixel format, e.g. gray16le, yuv420p. Default: fits the input and codec.",
)]
Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress display and no summary; errors, warnings and failed files are still shown.",
)]
ModelName = Annotated[str, typer.Argument(
    metavar="NAME", show_default=False, autocompletion=complete_weights,
    help=f"Registry name: one of {', '.join(available_models())}.",
)]
WeightsSpec = Annotated[str, typer.Argument(
    metavar="NAME", show_default=False, autocompletion=complete_weights,
    help=f"Registry name (one of {', '.join(available_models())}) or hf://owner/repo/file.safetensors.",
)]
OptionalModelName = Annotated[Optional[str], typer.Argument(
    metavar="NAME", show_default=False, autocompletion=complete_weights,
    help=f"Registry name (one of {', '.join(available_models())}), a checkpoint path or hf://owner/repo/file. "
    "Default: every registered model.",
)]
Events = Annotated[bool, typer.Option(
    "--events/--no-events",
    help="Find repeated frames (each sensor frame written 2-3 times, a frozen feed), splices and shutter "
    "(flat-field correction) jumps: repeats are interpolated as one frame, and no output frame blends "
    "across a splice or a jump. Default: on.",
)]
Resume = Annotated[bool, typer.Option(
    "--resume/--no-resume",
    help="Keep the work in segments beside the output (OUT.theris-unfinished/) so that the same command "
    "continues after a crash or kill; --no-resume deletes unfinished work, starts over and keeps no segments "
    "(they take the whole output's size, lossless, until the end). Default: resume.",
)]
