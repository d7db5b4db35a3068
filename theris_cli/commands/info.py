"""`theris info`: versions, the device and its automatic precision, the scan backend and why, the default weights."""

from __future__ import annotations

import platform

import typer

from theris_cli import __version__
from theris_cli.errors import TherisError


def rows() -> list[tuple[str, str]]:
    import torch

    from theris_cli.devices import cpu_has_bf16, precision_name, resolve_device, resolve_precision
    from theris_cli.model.kernel import kernel_status, mamba_version
    from theris_cli.model.scan import backend_info
    from theris_cli.weights import REGISTRY, default_model

    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)"
    else:
        n = torch.get_num_threads()
        device = f"cpu ({n} thread{'s' if n != 1 else ''})"
    try:
        name, reason = backend_info()
        backend = f"{name} ({reason})"
    except TherisError as e:  # THERIS_SCAN asks for what is not here: show it, it is why you ran info
        backend = f"unavailable: {e}"
    dev = resolve_device("auto")
    precision = precision_name(resolve_precision("auto", dev))
    if dev.type == "cpu":
        why = "the CPU has bfloat16 dot products" if cpu_has_bf16() else "the CPU has no bfloat16 dot products"
        precision = f"{precision} ({why})"
    name = default_model()  # the fallback's name where the shipped file is missing, never a false claim
    weights = name if REGISTRY[name].trained else f"{name} (untrained: random weights)"
    return [
        ("theris", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("device", device),
        ("auto precision", precision),
        ("scan backend", backend),
        ("mamba-ssm", mamba_version() or "not installed"),
        ("Triton kernel", kernel_status()),
        ("default weights", weights),
    ]


def info_cmd() -> None:
    """Print versions, the device and the precision `--precision auto` picks there, and which scan
    backend is in use and why.

    Example: theris info ; THERIS_SCAN=reference theris info
    """
    table = rows()
    width = max(len(k) for k, _ in table)
    for key, value in table:
        typer.echo(f"{key:<{width}}  {value}")
