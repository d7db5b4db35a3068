"""Device and precision choices: the one place that reads ``--device`` and ``--precision``.

    parse_device("CUDA:1")          -> "cuda:1"   (syntax only: UsageError for "tpu")
    resolve_device("auto")          -> torch.device("cuda") where there is a GPU, else cpu
    resolve_precision("auto", dev)  -> bf16/fp16 on CUDA; on the CPU bf16 where it has bfloat16
                                       dot products (`cpu_has_bf16`), else fp32

Used by upscale, batch, evaluate, preview, train and weight loading, so every command accepts the
same spellings and says the same thing when a device is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from theris_cli.errors import DeviceError, UsageError

if TYPE_CHECKING:
    import torch

DEVICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# torch is imported where a device is resolved, not here: the CLI reads these names at start-up


def _dtypes() -> dict:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_device(spec: str | torch.device) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, lower-cased; UsageError for anything else.

    Syntax only: whether the device exists here is `resolve_device`'s question.
    """
    s = str(spec).strip().lower()
    if s in ("auto", "cpu", "cuda") or (s.startswith("cuda:") and s[5:].isdigit()):
        return s
    raise UsageError(f"--device {str(spec)!r} is not understood; use {DEVICES}")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU; ``cuda[:N]`` must exist."""
    import torch

    spec = parse_device(spec)
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {spec}: no CUDA device is available here; use --device cpu (or auto)")
    dev = torch.device(spec)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here "
            f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
        )
    return dev


def parse_precision(spec: str) -> str:
    """``auto``, ``fp32``, ``fp16`` or ``bf16``, lower-cased; UsageError for anything else."""
    s = str(spec).strip().lower()
    if s not in PRECISIONS:
        raise UsageError(f"--precision {spec!r} is not understood; use one of {', '.join(PRECISIONS)}")
    return s


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX). There the
    model's convolutions and projections run faster in bf16 than in fp32 (`benchmarks/bench_bf16.py`
    prints by how much). Without them bf16 is emulated in software, so auto keeps fp32 there."""
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)  # private probes: absent in some builds, so asked gently
        try:
            if check is not None and check():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails means "not known to be there"
            pass
    return False


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bf16 on CUDA where supported, else fp16 on CUDA; on the CPU bf16 where it has
    bfloat16 dot products (`cpu_has_bf16`), else fp32."""
    import torch

    spec = parse_precision(spec)
    if spec == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    if spec == "fp16" and device.type == "cpu":
        raise DeviceError("--precision fp16 needs a CUDA device; on the CPU use fp32 (or bf16)")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("--precision bf16 is not supported by this GPU; use fp16 or fp32")
    return _dtypes()[spec]


def precision_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _dtypes().items()}[dtype]
