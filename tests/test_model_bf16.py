"""The shipped network under bf16 autocast: the whole-tensor path (training's, and the GPU's) is as
close to float32 as the CPU work-unit path, which keeps scans and coordinates in float32 itself.
Sampling positions rounded to bfloat16 lie up to 2 px apart at 320 px wide, so this fails wherever
a warp's coordinates follow autocast's dtype (model/motion.py `warp`)."""

from __future__ import annotations

import pytest
import torch

from theris_cli.weights.load import load_model


def _moving_scene(H: int, W: int, frames: int = 4) -> torch.Tensor:
    """(1, T, 1, H, W) in [0, 1]: a warm blob drifting 2.5 px right and 1 px down per frame over a
    textured background, with a little sensor noise."""
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    out = []
    for t in range(frames):
        cx, cy = 0.3 * W + 2.5 * t, 0.5 * H + t
        blob = 0.5 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 30)
        out.append(0.3 + blob + 0.1 * torch.sin(xx / 3) * torch.cos(yy / 5))
    g = torch.Generator().manual_seed(5)
    return (torch.stack(out)[None, :, None] + 0.01 * torch.rand(1, frames, 1, H, W, generator=g)).clamp(0, 1)


def test_whole_tensor_path_under_bf16_autocast_is_as_close_to_fp32_as_the_units_path():
    net = load_model("theris-small")
    assert net.config.use_motion_align  # the shipped network warps: what this test is about
    x = _moving_scene(16, 320)
    with torch.inference_mode():
        ref = net(x)                                           # float32
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        units = net(x)                                         # the CPU work-unit path, bf16
    with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole = net(x).detach().float()                        # the whole-tensor path, bf16

    def errors(y):
        e = (y.float() - ref).abs()
        return float(e.max()), float(e.pow(2).mean().sqrt())

    (units_max, units_rms), (whole_max, whole_rms) = errors(units), errors(whole)
    assert units_max > 0 and whole_max > 0  # bf16 did run on both paths
    assert whole_rms <= 1.5 * units_rms, (whole_rms, units_rms)
    assert whole_max <= 1.5 * units_max, (whole_max, units_max)


@pytest.mark.gpu
@pytest.mark.parametrize("scan_backend", ["reference", "mamba"])
def test_cuda_bf16_window_of_the_shipped_network_is_as_close_to_fp32_as_the_cpu_bf16_path(monkeypatch, scan_backend):
    """The GPU's default precision on the shipped network (motion part included), whole-tensor path,
    with either scan: no further from the CPU's float32 output than the CPU's own bf16 path, within
    a factor for the GPU's bf16 scan inputs."""
    from theris_cli.model import kernel, scan

    if scan_backend == "mamba" and kernel._import_kernel()[0] is None:
        pytest.skip(kernel._import_kernel()[1])
    monkeypatch.setenv("THERIS_SCAN", scan_backend)
    scan.reset_backend()
    try:
        net = load_model("theris-small")
        x = _moving_scene(16, 640)
        with torch.inference_mode():
            ref = net(x)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            cpu_rms = float((net(x) - ref).pow(2).mean().sqrt())
        gpu = net.cuda()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            y = gpu(x.cuda()).float().cpu()
        assert float((y - ref).pow(2).mean().sqrt()) <= 3 * cpu_rms
    finally:
        scan.reset_backend()
