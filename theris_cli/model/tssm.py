"""TSSM, the thermal-sensing state-space block: a spectral mask, then Mamba-2 layers that scan the
(T', H, W) token grid in three orders (SMB, TMB, HMB), with C shifted by a thermal prompt.

Features inside the TSSMs are channels-last, (B, T, H, W, C), so tokens are rows.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from theris_cli.model.config import ModelConfig
from theris_cli.model.scan import selective_scan

# ---------------------------------------------------------------------------------------------
# scan orders: pure index arithmetic between the grid (B, T, H, W, C) and sequences (b, L, C)


def to_smb(x: torch.Tensor) -> torch.Tensor:
    """Spatial-first: (B, T, H, W, C) -> (B, T*H*W, C), frame after frame, raster order inside."""
    B, T, H, W, C = x.shape
    return x.reshape(B, T * H * W, C)


def from_smb(seq: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return seq.reshape(shape)


def to_tmb(x: torch.Tensor) -> torch.Tensor:
    """Temporal-first: (B, T, H, W, C) -> (B*H*W, T, C), one sequence per pixel, through time."""
    B, T, H, W, C = x.shape
    return x.permute(0, 2, 3, 1, 4).reshape(B * H * W, T, C)


def from_tmb(seq: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    B, T, H, W, C = shape
    return seq.reshape(B, H, W, T, C).permute(0, 3, 1, 2, 4)


@lru_cache(maxsize=None)
def _hilbert_order(side: int) -> tuple[int, ...]:
    # classic d -> (x, y) conversion (Wikipedia "Hilbert curve"), side a power of two
    order = []
    for d in range(side * side):
        x = y = 0
        t, s = d, 1
        while s < side:
            rx = 1 & (t // 2)
            ry = 1 & (t ^ rx)
            if ry == 0:
                if rx == 1:
                    x, y = s - 1 - x, s - 1 - y
                x, y = y, x
            x += s * rx
            y += s * ry
            t //= 4
            s *= 2
        order.append(y * side + x)
    return tuple(order)


def hilbert_order(side: int) -> torch.Tensor:
    """Raster index of the pixel at each step of the Hilbert curve over a side x side window, (side^2,).
    Neighbours on the curve are neighbours in the image, which the raster order breaks at row ends."""
    assert side >= 1 and side & (side - 1) == 0, f"Hilbert window side must be a power of two, got {side}"
    return torch.tensor(_hilbert_order(side), dtype=torch.long)


def to_hmb(x: torch.Tensor, window: int) -> torch.Tensor:
    """Local Hilbert: (B, T, H, W, C) -> (B*nh*nw, T*window^2, C). H and W are zero-padded up to a
    multiple of the window; each window is a sequence of its tokens, frame after frame, each frame
    in Hilbert order. `from_hmb` crops the padding again."""
    B, T, H, W, C = x.shape
    ph, pw = (-H) % window, (-W) % window
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    nh, nw = (H + ph) // window, (W + pw) // window
    x = x.reshape(B, T, nh, window, nw, window, C).permute(0, 2, 4, 1, 3, 5, 6)  # (B,nh,nw,T,wy,wx,C)
    x = x.reshape(B * nh * nw, T, window * window, C)
    x = x[:, :, hilbert_order(window).to(x.device)]
    return x.reshape(B * nh * nw, T * window * window, C)


def from_hmb(seq: torch.Tensor, shape: tuple[int, ...], window: int) -> torch.Tensor:
    B, T, H, W, C = shape
    nh, nw = -(-H // window), -(-W // window)
    inverse = torch.argsort(hilbert_order(window)).to(seq.device)
    x = seq.reshape(B * nh * nw, T, window * window, C)[:, :, inverse]
    x = x.reshape(B, nh, nw, T, window, window, C).permute(0, 3, 1, 4, 2, 5, 6)
    return x.reshape(B, T, nh * window, nw * window, C)[:, :, :H, :W]


# ---------------------------------------------------------------------------------------------
# layers


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()  # the mean square in float32 under half-precision autocast (no-op on CPU)
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class SpectralMask(nn.Module):
    """x + irfft2(rfft2(x) * m): m per channel over `bins` radial-frequency bins, linearly
    interpolated at each frequency's radius (cycles/pixel, scaled so the corner is 1), so the same
    parameters apply to any frame size. m = 0 at start: the identity."""

    def __init__(self, dim: int, bins: int):
        super().__init__()
        self.bins = bins
        self.gain = nn.Parameter(torch.zeros(dim, bins))

    def mask(self, H: int, W: int, device) -> torch.Tensor:
        """(H, W//2 + 1, C) gains for an rfft2 of an H x W frame."""
        fy = torch.fft.fftfreq(H, device=device)
        fx = torch.fft.rfftfreq(W, device=device)
        radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / math.sqrt(0.5)  # in [0, 1]
        pos = radius * (self.bins - 1)
        lo = pos.floor().long().clamp(max=self.bins - 1)
        hi = (lo + 1).clamp(max=self.bins - 1)
        frac = (pos - lo.float())[..., None]
        g = self.gain.t()                                                             # (bins, C)
        return g[lo] * (1 - frac) + g[hi] * frac

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, H, W, C) -> same. FFT in float32 (half-precision FFTs need power-of-two sizes)."""
        H, W = x.shape[2], x.shape[3]
        m = self.mask(H, W, x.device)
        spec = torch.fft.rfft2(x.float(), dim=(2, 3), norm="ortho")
        y = torch.fft.irfft2(spec * m, s=(H, W), dim=(2, 3), norm="ortho")
        return x + y.to(x.dtype)


def _norm_linear(norm: RMSNorm, linear: nn.Linear, x: torch.Tensor, lowp: Optional[torch.dtype] = None,
                 residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """linear(norm(x)) without autograd, or ``residual`` + linear(norm(x)) when a residual is given.
    The norm's weight is folded into the linear's (a tiny matrix) and its per-token scale (in
    float32, as RMSNorm's) is applied on the narrower side: the input of in_proj (no residual), the
    output of out_proj (with the residual, scale and sum in one pass). So the norm costs one
    reduction and one multiply instead of four passes.

    ``lowp``: the product in that dtype, as a 2-D matrix product. Without a residual the result
    stays in it: its consumers (the causal conv, the gate, the scan) read it and compute in float32,
    so no conversion pass of its own. The sum with a residual is float32."""
    assert linear.bias is None, "folds into a bias-free linear"
    scale = torch.linalg.vector_norm(x.float(), dim=-1, keepdim=True).pow_(2).div_(x.shape[-1]).add_(norm.eps).rsqrt_()
    weight = linear.weight * norm.weight  # (out, in) * (in,): the norm's gain on each input channel
    scale_input = residual is None
    if lowp is not None:
        inp = torch.mul(x, scale, out=x.new_empty(x.shape, dtype=lowp)) if scale_input else x.to(lowp)
        out = torch.mm(inp.reshape(-1, x.shape[-1]), weight.to(lowp).t()).view(*x.shape[:-1], -1)
    else:
        out = F.linear(x * scale if scale_input else x, weight)
    return out if scale_input else torch.addcmul(residual, out, scale)


class CausalDepthwiseConv(nn.Module):
    """Causal depthwise conv along the sequence, channels last: (b, L, C) -> (b, L, C).
    Written as `width` shifted multiply-adds (fused, into one output): on CPU this beats nn.Conv1d on
    the transposed tensor forward and backward, and needs no transposes.
    `prev` (b, width-1, C): the inputs just before this segment (None: zeros, the sequence start)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.width = width
        bound = 1.0 / math.sqrt(width)  # nn.Conv1d's default init for a depthwise conv (fan_in = width)
        self.weight = nn.Parameter(torch.empty(width, channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(channels).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, L, C = x.shape
        k = self.width - 1
        if not torch.is_grad_enabled() and L > 0:  # one copy into the padded input, float32 (x may be bf16)
            dtype = torch.promote_types(x.dtype, self.weight.dtype)
            if prev is None:  # a contiguous zero fill (a fill of the strided head rows alone is slow)
                xp = x.new_zeros(b, L + k, C, dtype=dtype)
            else:
                xp = x.new_empty(b, L + k, C, dtype=dtype)
                xp[:, :k] = prev
            xp[:, k:] = x
            # as a depthwise 2-D convolution on the (b, C, 1, L + k) channels-last view: one mkldnn
            # kernel instead of the shifted multiply-adds below
            taps = self.weight.t().reshape(C, 1, 1, self.width).to(xp.dtype)
            y = F.conv2d(xp.view(b, 1, L + k, C).permute(0, 3, 1, 2), taps, self.bias.to(xp.dtype), groups=C)
            return y.permute(0, 2, 3, 1).reshape(b, L, C)
        elif prev is None:
            xp = F.pad(x, (0, 0, k, 0))  # zeros before the first token: causal
        else:
            xp = torch.cat([prev.to(x.dtype), x], dim=1)
        y = torch.addcmul(self.bias, xp[:, :L], self.weight[0])
        for k in range(1, self.width):
            y = y.addcmul_(xp[:, k:k + L], self.weight[k])
        return y

    def tail(self, x: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The last width-1 inputs up to and including segment ``x``: the next segment's ``prev``."""
        k = self.width - 1
        if prev is None:
            prev = x.new_zeros(x.shape[0], k, x.shape[2])
        return torch.cat([prev.to(x.dtype), x[:, -k:]], dim=1)[:, -k:] if k else x[:, :0]


class Mamba2Layer(nn.Module):
    """A Mamba-2 mixer on token sequences, pre-norm and residual: (b, L, dim) -> (b, L, dim).

    in_proj -> z, x, B, C, dt; causal depthwise conv on (x, B, C); SiLU; dt = softplus(dt + dt_bias);
    A = -exp(A_log) per head; y = scan(x, dt, A, B, C + shift) + D x; RMSNorm(y * SiLU(z)); out_proj.
    `shift` is the thermal prompt: Psi(e_i) of each token's frame, (1 or b, L, ngroups * d_state).
    Bidirectional: the reversed sequence is scanned too (own conv, shared everything else) and added.
    `reverse` (one direction only): the sequence is scanned from its last token to its first.
    """

    def __init__(
        self, dim: int, *, d_state: int, expand: int, headdim: int, ngroups: int, d_conv: int,
        chunk_size: int, bidirectional: bool, prompt_dim: int = 0, reverse: bool = False,
        dt_min: float = 1e-3, dt_max: float = 1e-1,
    ):
        super().__init__()
        self.reverse = reverse and not bidirectional  # scan last token first (bidirectional does both)
        self.d_inner = expand * dim
        self.nheads = self.d_inner // headdim
        self.headdim, self.ngroups, self.d_state = headdim, ngroups, d_state
        self.chunk_size, self.bidirectional = chunk_size, bidirectional
        conv_dim = self.d_inner + 2 * ngroups * d_state
        self.norm = RMSNorm(dim)
        self.in_proj = nn.Linear(dim, 2 * self.d_inner + 2 * ngroups * d_state + self.nheads, bias=False)
        self.conv = CausalDepthwiseConv(conv_dim, d_conv)
        self.conv_rev = CausalDepthwiseConv(conv_dim, d_conv) if bidirectional else None
        # dt bias so that softplus(dt_bias) lies in [dt_min, dt_max], log-uniform (Mamba's init)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        # A in [-16, -1]: decay rates spread over heads (Mamba-2's init)
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.nheads))  # skip connection of the scan, per head
        self.out_norm = RMSNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, dim, bias=False)
        # thermal prompt Psi: time embedding -> shift of C; zero at start, so it begins as plain Mamba
        self.prompt = nn.Linear(prompt_dim, ngroups * d_state) if prompt_dim else None
        if self.prompt is not None:
            nn.init.zeros_(self.prompt.weight)
            nn.init.zeros_(self.prompt.bias)

    def forward(self, seq: torch.Tensor, shift: Optional[torch.Tensor] = None,
                lowp: Optional[torch.dtype] = None) -> torch.Tensor:
        """seq (b, L, dim), shift (1 or b, L, ngroups*d_state) or None -> (b, L, dim).
        lowp: the dtype of the projections on the CPU work-unit path (`units.units_lowp`), None: float32."""
        if self.reverse:  # the forward scan of the flipped sequence, flipped back
            return self._mix(seq.flip(1), None if shift is None else shift.flip(1), lowp=lowp).flip(1)
        return self._mix(seq, shift, lowp=lowp)

    def _mix_segments(self, seq: torch.Tensor, shift_at: Optional[Callable], out: torch.Tensor, *,
                      tokens: int, lowp: Optional[torch.dtype] = None) -> torch.Tensor:
        """The same as `_mix`, in consecutive segments of about ``tokens`` tokens (a whole number of
        chunks) that hand the conv inputs and the scan state on: a long sequence (SMB: every token of
        the window) without sequence-sized temporaries. `reverse`: segments from the last token on.
        shift_at(lo, hi): the shift of tokens lo:hi, (1 or b, hi-lo, g*n), or None for no shift.
        Writes into ``out`` (b, L, dim), which may be ``seq`` itself: a segment is read before it is
        written and never read again."""
        b, L, _ = seq.shape
        seg = max(1, tokens // b // self.chunk_size) * self.chunk_size
        conv_state = ssm_state = None
        for a in range(0, L, seg):  # positions in scan order
            lo, hi = (L - min(L, a + seg), L - a) if self.reverse else (a, min(L, a + seg))
            piece = seq[:, lo:hi]
            sh = None if shift_at is None else shift_at(lo, hi)
            if self.reverse:
                piece, sh = piece.flip(1), None if sh is None else sh.flip(1)
            y, conv_state, ssm_state = self._mix(piece, sh, conv_state, ssm_state, return_state=True, lowp=lowp)
            out[:, lo:hi] = y.flip(1) if self.reverse else y
        return out

    def _mix(
        self, seq: torch.Tensor, shift: Optional[torch.Tensor],
        conv_state: Optional[torch.Tensor] = None, ssm_state: Optional[torch.Tensor] = None,
        return_state: bool = False, lowp: Optional[torch.dtype] = None,
    ):
        """One direction (both when bidirectional) over seq (b, L, dim) from the given states (None:
        the sequence start) -> out, or (out, conv_state, ssm_state) with ``return_state``.
        lowp: in_proj and out_proj in that dtype (no autograd only; see `units.units_lowp`)."""
        b, L, _ = seq.shape
        g, n, h, p = self.ngroups, self.d_state, self.nheads, self.headdim
        inplace = not torch.is_grad_enabled()  # fused in-place elementwise work where autograd allows
        assert inplace or lowp is None, "the bfloat16 projections are for inference"
        proj = _norm_linear(self.norm, self.in_proj, seq, lowp) if inplace else self.in_proj(self.norm(seq))
        z, xbc, dt = torch.split(proj, [self.d_inner, self.d_inner + 2 * g * n, h], dim=-1)
        A = -torch.exp(self.A_log.float())  # dt's bias and softplus are the scan's (fused on the GPU)
        if self.bidirectional:  # both directions in one scan call: reversed copies stacked on the batch
            assert conv_state is None and ssm_state is None and not return_state, "bidirectional layers run whole"
            xbc = F.silu(torch.cat([self.conv(xbc), self.conv_rev(xbc.flip(1))], dim=0))
            dt = torch.cat([dt, dt.flip(1)], dim=0)
            if shift is not None:
                shift = torch.cat([shift.expand(b, -1, -1), shift.expand(b, -1, -1).flip(1)], dim=0)
        else:
            next_conv = self.conv.tail(xbc, conv_state) if return_state else None
            xbc = F.silu(self.conv(xbc, conv_state), inplace=inplace)
        x, Bm, Cm = torch.split(xbc, [self.d_inner, g * n, g * n], dim=-1)
        if inplace:  # the scan multiplies x twice: contiguous rows vectorise, the strided view does not
            x = x.contiguous()
        if shift is not None:
            Cm = Cm.add_(shift.to(Cm.dtype)) if inplace else Cm + shift.to(Cm.dtype)
        bb = x.shape[0]
        y = selective_scan(
            x.reshape(bb, L, h, p), dt, A, Bm.reshape(bb, L, g, n), Cm.reshape(bb, L, g, n),
            self.D, self.chunk_size, initial_state=ssm_state, return_final_state=return_state,
            dt_bias=self.dt_bias, dt_softplus=True,
        )
        if return_state:
            y, ssm_state = y
        y = y.reshape(bb, L, self.d_inner)
        if self.bidirectional:
            y = y[:b] + y[b:].flip(1)
        if inplace:
            # z is a strided view of the projection: SiLU runs on a contiguous float32 copy instead
            # (transcendental kernels vectorise contiguous rows only; the gate's product is then
            # float32 by float32)
            out = _norm_linear(self.out_norm, self.out_proj, y.mul_(F.silu(z.to(torch.float32).contiguous())), lowp, residual=seq)
        else:
            out = seq + self.out_proj(self.out_norm(y * F.silu(z)))
        return (out, next_conv, ssm_state) if return_state else out


class TSSM(nn.Module):
    """Spectral mask, then SMB, TMB and HMB Mamba-2 layers (each optional), on (B, T, H, W, C).
    Built from the model config; `first_reversed`: the first of its one-directional layers scans
    backward (then they alternate)."""

    def __init__(self, config: ModelConfig, *, first_reversed: bool = False):
        super().__init__()
        c = config
        self.window = c.hilbert_window
        self.mask = SpectralMask(c.dim, c.spectral_bins) if c.use_spectral_mask else None

        # One-directional scans alternate direction layer by layer (SMB forward, TMB backward, ...):
        # with causal scans only, the first frame would never see the later ones (TDIM hands input
        # frames over unchanged), so a window's first output could not use the frames after it.
        enabled = [name for name, on in (("smb", c.use_smb), ("tmb", c.use_tmb), ("hmb", c.use_hmb)) if on]
        self.smb = self.tmb = self.hmb = None
        for i, name in enumerate(enabled):
            setattr(self, name, Mamba2Layer(
                c.dim, d_state=c.d_state, expand=c.expand, headdim=c.headdim, ngroups=c.ngroups,
                d_conv=c.d_conv, chunk_size=c.chunk_size, bidirectional=c.bidirectional,
                prompt_dim=c.time_embed_dim if c.use_thermal_prompt else 0,
                reverse=(i % 2 == 1) != first_reversed,
            ))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x (B, T, H, W, C) features of the T target frames, e (T, E) their time embeddings -> same.
        (The CPU inference path runs the same block in work units: `units.tssm_units`.)"""
        B, T, H, W, C = shape = x.shape
        if self.mask is not None:
            x = self.mask(x)
        if self.smb is not None:
            shift = None if self.smb.prompt is None else self.smb.prompt(e).repeat_interleave(H * W, dim=0)[None]
            x = from_smb(self.smb(to_smb(x.contiguous()), shift), shape)
        if self.tmb is not None:
            shift = None if self.tmb.prompt is None else self.tmb.prompt(e)[None]
            x = from_tmb(self.tmb(to_tmb(x), shift), shape)
        if self.hmb is not None:
            w = self.window
            shift = None if self.hmb.prompt is None else self.hmb.prompt(e).repeat_interleave(w * w, dim=0)[None]
            x = from_hmb(self.hmb(to_hmb(x, w), shift), shape, w)
        return x
