"""The CPU inference path of THERIS: the same network, run in cache-sized work units.

Which path a forward takes is decided in one place, `THERIS.runs_in_units(x)`: this path when
`THERIS.use_work_units` is set (the default), autograd is off and the input is on the CPU; otherwise
the plain path, the network as its modules' ``forward`` methods write it (training, and the GPU,
which wants the largest launches it can get). Set ``net.use_work_units = False`` to run the plain
path for inference too. Both compute the same function, equal within float rounding, for every
architecture switch of `ModelConfig` (tests/test_model_units.py names each one).

What this path does differently, and why (memory that stays in cache instead of feature maps of
hundreds of MiB mapped, faulted in and unmapped on every op):

- convolutions channels-last (mkldnn's NHWC kernels), one frame at a time;
- TDIM mixes frames with fused multiply-adds into its output, leaving out frames whose weight is
  float rounding of zero (`NEGLIGIBLE_MIX`); the motion alignment warps in bands of rows (`WARP_PIXELS`);
- the TSSMs (`tssm_units`): the spectral mask frame by frame and a few channels at a time
  (`MASK_CHANNELS`), SMB as consecutive segments of its sequence that hand the scan state on, TMB
  and HMB in bands of about `WORK_TOKENS` tokens, every layer writing back into one feature map;
- body_out, the decoder, the bicubic residual and the still parts (model/still.py) in bands of LR
  rows with a halo that covers their receptive field (`DECODE_PIXELS`), one output frame at a time
  within a band, so that only the returned frames are ever whole; the decoder's last pixel shuffle
  folded into its output conv (`folds.fold_shuffle_into_conv_2x2`), the bicubic residual as two separable
  passes (`folds.bicubic_up`);
- under CPU autocast to bfloat16 (`units_lowp`), convolutions and projections in bfloat16, cast
  here rather than op by op; scans, norms, FFTs, skips and the residual stay float32.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from theris_cli.engine.hugepages import release_pages
from theris_cli.model.config import SCALE
from theris_cli.model.folds import bicubic_up, fold_shuffle_into_conv_2x2, shuffle_subpixel_major, subpixel_major
from theris_cli.model.motion import aligned_blend, warp
from theris_cli.model.still import blend_sources, noise_level, still_blend, still_detail
from theris_cli.ops import interpolate_frames
from theris_cli.model.tssm import TSSM, Mamba2Layer, SpectralMask, from_hmb, from_smb, from_tmb, to_hmb, to_tmb

# Tokens per work unit of the TSSMs. A layer's temporaries (about 130 floats a token for `small`)
# then stay a few MiB, reused from the heap and mostly in cache. Results do not depend on it
# (`_bands`, `Mamba2Layer._mix_segments`); benchmarks/bench_model.py times the path.
WORK_TOKENS = 4096

# LR pixels per band of the decoder: its x2 stage then holds tens of MiB (48 channels at 4x the
# pixels), not a whole HR window, and the halo rows recomputed around each band stay a small share.
DECODE_PIXELS = 49152

# output pixels per band of the motion alignment's warps (a few MiB of temporaries)
WARP_PIXELS = 16384

# channels per unit of the spectral mask's FFTs: a frame's spectrum of a few channels is a few
# MiB at 640x512 (whole, about 30 MiB, these temporaries grew malloc's heap frame after frame), and
# 2 to 4 channels are the fastest at 1280x1024 too
MASK_CHANNELS = 4

# TDIM weights below this share of an output's largest one are left out of the mix. At an input
# frame's own time the other frames' weights are float rounding of an identity (about 1e-8): left
# out, the frame is its own features and those frames are not warped (half of a window's warps),
# with the output within float tolerance of the plain path's.
NEGLIGIBLE_MIX = 1e-6


def units_lowp() -> Optional[torch.dtype]:
    """The dtype of this path's matrix products: bfloat16 when the caller runs the model under CPU
    autocast to bfloat16 (`infer.Upscaler` with precision bf16), else None (float32).

    This path does not let autocast cast op by op: it turns autocast off and runs its convolutions
    and projections in bfloat16 itself (convolution weights copied once per window, projection
    weights cast per call, bfloat16 activations between the convolutions of one stage), and keeps
    in float32 what needs the range or the precision: the scans and their decays, the norms, the
    spectral mask's FFT, the motion warp's coordinates, the skips and the bicubic residual the
    output is added to."""
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        return torch.bfloat16
    return None


# ---------------------------------------------------------------------------------------------
# the network: encoder, TDIM (and motion alignment), TSSMs, decoder


def decoder_halo(decoder: nn.Module) -> int:
    """LR rows each side of a decoder band that its output depends on: 3x3 convs of the residual
    blocks and body_out at LR (1 each), up1 (1), up2 at 2x and out at 4x (1/2 + 1/4, so 1); the
    bicubic residual reads 2 rows each side, inside the same margin."""
    return 2 * len(decoder.body) + 1 + 2


def forward_units(net: nn.Module, x: torch.Tensor, times: torch.Tensor, keep: Optional[list[int]] = None,
                  lowp: Optional[torch.dtype] = None, film: Optional[tuple[torch.Tensor, ...]] = None,
                  still: bool = False, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`THERIS.forward` in cache-sized work units: x (B, T, C, H, W), times (M,) -> (B, K, C, 4H, 4W)
    for the K frames ``keep`` (default all M); the still parts too where ``still`` (`decode_units`).

    Convolutions run channels-last (mkldnn's NHWC kernels) one frame at a
    time; TDIM mixes frames with fused multiply-adds into its output; the TSSMs work in token
    bands (WORK_TOKENS); the decoder and the bicubic residual run one output frame at a time
    in bands of LR rows with a halo that covers their receptive field, so every band's output
    equals the whole frame's. Equal to the whole-tensor path within float rounding
    (tests/test_model_units.py).

    lowp (bfloat16 under CPU autocast, `units_lowp`): the convolutions and the TSSMs'
    projections run in it (for CPUs with bfloat16 dot products); features
    between stages, the scans and the output stay float32.

    film: the noise input's gains and offsets (`network.NoiseFiLM`), each (B, dim), or None.
    noise: with ``still``, the frames' temporal noise the still parts look past (`still.noise_level`).
    """
    B, T, C, H, W = x.shape
    M = times.numel()
    cl = torch.channels_last
    dim = net.config.dim
    feats = x.new_empty(B, T, H, W, dim)                                       # (B, T, H, W, dim)
    encoder = _in_dtype(net.encoder, lowp)
    for t in range(T):
        feats[:, t] = encoder(x[:, t].to(lowp or x.dtype, memory_format=cl)).permute(0, 2, 3, 1)
    if film is not None:
        feats.mul_(film[0].view(B, 1, 1, 1, dim)).add_(film[1].view(B, 1, 1, 1, dim))
    mix, e = net.tdim.coefficients(times, T)                                  # (M, T, dim), (M, E)
    mix = mix.to(x.dtype)
    interp = x.new_empty(B, M, H, W, dim)                                      # TDIM's output frames
    v = None
    if net.motion is None:
        for i in range(M):
            first, *rest = mixed_frames(mix[i])
            out = torch.mul(feats[:, first], mix[i, first], out=interp[:, i])
            for t in rest:
                out.addcmul_(feats[:, t], mix[i, t])
    else:
        # pairs shared with the window before are taken from the network's memo (`PairMemo`),
        # while the features are the encoder's alone (the noise input's gains are the window's)
        memo = getattr(net, "pair_memo", None) if film is None else None
        if memo is not None:
            memo.follow(net)
        if lowp is None:
            pair_v = net.motion.velocities(x, feats.permute(0, 1, 4, 2, 3), memo)
        else:
            motion = _in_dtype(net.motion, lowp)
            if net.motion.radius > 0:  # the matching conv in float32, on the float32 frames
                motion.match.float()    # (`MotionAlign._matched`)
            pair_v = motion.velocities(x, feats.permute(0, 1, 4, 2, 3).to(lowp), memo).float()
        v = net.motion.at_times(pair_v, times)
        aligned_mix_into(feats, mix, v, times, interp)
    del feats
    # The long skip is read by the decoder only, in its dtype: under bfloat16 a bfloat16 copy of
    # TDIM's output is kept and the first TSSM runs in place on the float32 map, so a window holds
    # one float32 feature map and a half-size copy instead of two float32 maps (the same values).
    skip = interp if lowp is None else interp.to(lowp)
    z = interp
    for k, block in enumerate(net.blocks):
        z = tssm_units(block, z, e.to(z.dtype), lowp, inplace=k == 0 and lowp is not None)  # (B, M, H, W, dim)
    del interp
    if film is not None:  # in place, unless z is still the long skip (no TSSMs)
        z = (z.mul if z is skip else z.mul_)(film[2].view(B, 1, 1, 1, dim)).add_(film[3].view(B, 1, 1, 1, dim))
    return decode_units(net, x, times, z, skip, keep, v, lowp, still, noise, release=True)

def aligned_mix_into(feats: torch.Tensor, mix: torch.Tensor, v: torch.Tensor, times: torch.Tensor,
                     interp: torch.Tensor) -> None:
    """`motion.aligned_mix` into interp (B, M, H, W, dim), in bands of rows: feats (B, T, H, W,
    dim), mix (M, T, dim), v (B, M, 2, H, W). A frame at its own time is not resampled, and a frame
    whose weight is negligible (`_mixed_frames`) is left out."""
    B, T, H, W, dim = feats.shape
    rows = max(1, WARP_PIXELS // max(B * W, 1))
    frames = [feats[:, t].permute(0, 3, 1, 2) for t in range(T)]              # (B, dim, H, W) views
    for i in range(times.numel()):
        used = mixed_frames(mix[i])
        own = [t for t in used if float(t - times[i]) == 0]  # the frame at this time: not moved
        moved_frames = [t for t in used if t not in own]
        if not moved_frames:  # an input frame's own time: nothing to warp, the whole frame at once
            out = torch.mul(feats[:, own[0]], mix[i, own[0]], out=interp[:, i])
            for t in own[1:]:
                out.addcmul_(feats[:, t], mix[i, t])
            continue
        for r0 in range(0, H, rows):
            r1 = min(H, r0 + rows)
            # grid_sample returns (B, dim, h, W) contiguous: the moved frames are summed in that
            # layout (a multiply-add on the permuted view is strided, hence slow) and transposed once
            acc = None
            for t in moved_frames:
                moved = warp(frames[t], v[:, i, :, r0:r1] * float(t - times[i]), (r0, r1))
                gain = mix[i, t].view(1, dim, 1, 1)
                acc = moved.mul_(gain) if acc is None else acc.addcmul_(moved, gain)
            out = interp[:, i, r0:r1]
            out.copy_(acc.permute(0, 2, 3, 1))
            for t in own:
                out.addcmul_(feats[:, t, r0:r1], mix[i, t])

def decode_units(net: nn.Module, x: torch.Tensor, times: torch.Tensor, z: torch.Tensor, interp: torch.Tensor,
                 keep: Optional[list[int]] = None, v: Optional[torch.Tensor] = None,
                 lowp: Optional[torch.dtype] = None, still: bool = False, noise: Optional[torch.Tensor] = None,
                 release: bool = False) -> torch.Tensor:
    """body_out + long skip, decoder and bicubic residual, in bands of LR rows, frame by frame:
    x (B, T, C, H, W), z and interp (B, M, H, W, dim) (interp, the long skip, in float32 or in
    lowp), v (B, M, 2, H, W) the motion alignment's velocities or None -> (B, K, C, 4H, 4W) for the
    K frames ``keep`` (default all M).
    lowp: body_out and the decoder in that dtype, the bicubic residual added in float32.
    still: the network's still blend and still detail too (`THERIS.forward`), band by band: the
    frames they read (`still.blend_sources`, or all) are decoded into a band's buffer, blended there
    and the kept ones copied out, so that no other output frame than the K returned is ever whole.
    noise: (B,) the frames' temporal noise the still parts look past (`still.noise_level`; worked out
    here when not given).
    release: z and interp are the caller's to drop: the memory of their rows is handed back as
    soon as the bands have read them (`hugepages.release_pages`), so that the output frames fill
    the memory the feature maps leave rather than adding to them."""
    B, T, C, H, W = x.shape
    keep = list(range(times.numel())) if keep is None else keep
    c = net.config
    host = times.tolist()
    decoded = keep  # indices into times of the frames decoded
    if still:
        blend, detail = c.use_still_blend, c.use_still_detail
        noise = noise_level(x) if noise is None else noise
        wanted = None if detail else blend_sources(torch.tensor(host), keep)
        decoded = list(range(times.numel())) if wanted is None else wanted
        at = times[decoded]
        at_host = torch.tensor([host[i] for i in decoded])
        lin = interpolate_frames(x, at) if detail else None                    # (B, D, C, H, W)
        picks = [decoded.index(i) for i in keep]
    targets = times[decoded]                                                   # the bicubic residual's frames
    y = x.new_empty(B, len(keep), C, SCALE * H, SCALE * W)
    halo = decoder_halo(net.decoder)
    w_out, b_out = fold_shuffle_into_conv_2x2(net.decoder.out.weight, net.decoder.out.bias)
    body_out, decoder = _in_dtype(net.body_out, lowp), _in_dtype(net.decoder, lowp)
    w_up1, b_up1 = subpixel_major(net.decoder.up1.weight, net.decoder.up1.bias)
    if lowp is not None:
        w_out, b_out, w_up1, b_up1 = (t.to(lowp) for t in (w_out, b_out, w_up1, b_up1))
    # even bands of at least 4 halos, so that the margins cost at most half again of the band
    n_bands = max(1, min(-(-B * H * W // DECODE_PIXELS), H // (4 * halo)))
    rows = -(-H // n_bands)
    read = [0] * times.numel()  # rows of each frame of z and interp that are released (`release`)

    def done(upto: int) -> None:  # rows before `upto` of every frame will not be read again
        for i in range(times.numel()):
            upto_i = upto if i in decoded else H
            if release and upto_i > read[i]:
                for b in range(B):
                    for t in {z.data_ptr(): z, interp.data_ptr(): interp}.values():
                        release_pages(t[b, i, read[i]:upto_i])
                read[i] = upto_i

    done(0)  # the frames never decoded
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        lo, hi = max(0, r0 - halo), min(H, r1 + halo)
        # the bicubic residual's LR frames at the band's rows (B, D, C, hi - lo, W): pixel by pixel
        # the same as of whole frames
        base = interpolate_frames(x[..., lo:hi, :], targets) if v is None else \
            aligned_blend(x, v[:, decoded, :, lo:hi], targets, (lo, hi))
        # the band's output frames: y's rows, or a buffer of the decoded frames for the still parts
        band = y[:, :, :, SCALE * r0:SCALE * r1] if not still else \
            x.new_empty(B, len(decoded), C, SCALE * (r1 - r0), SCALE * W)
        for k, i in enumerate(decoded):
            zb = z[:, i, lo:hi].permute(0, 3, 1, 2)                            # (B, dim, h, W) NHWC
            sb = interp[:, i, lo:hi].permute(0, 3, 1, 2)
            # mixed-dtype elementwise ops are slow on the CPU (a bf16 += fp32 view is slower than a
            # conversion and a bf16 sum), so every operand is converted first
            d = body_out(zb.to(lowp or zb.dtype, memory_format=torch.channels_last)).add_(sb.to(lowp or sb.dtype))
            out = decoder_folded(decoder, d, w_out, b_out, w_up1, b_up1).float()  # (B, 4C, 2h+1, 2W+1)
            bic = bicubic_up(base[:, k])                                          # (B, C, 4h, 4W)
            # the last pixel shuffle, the residual's sum and the store, one pass per sub-pixel:
            # out's channel c*4 + 2*di + dj at (i + di, j + dj) is output pixel (2i + di, 2j + dj)
            # of channel c (`fold_shuffle_into_conv_2x2`)
            n2, a2, a4 = 2 * (r1 - r0), 2 * (r0 - lo), SCALE * (r0 - lo)
            pixels = bic[:, :, a4:a4 + 2 * n2].unflatten(2, (n2, 2)).unflatten(4, (2 * W, 2))
            store = band[:, k].unflatten(2, (n2, 2)).unflatten(4, (2 * W, 2))
            for di in range(2):
                for dj in range(2):
                    sub = out[:, 2 * di + dj::4, a2 + di:a2 + di + n2, dj:dj + 2 * W]
                    torch.add(sub, pixels[:, :, :, di, :, dj], out=store[:, :, :, di, :, dj])
        if still:
            if blend:
                still_blend(x, at_host, band, noise, (r0, r1))
            if detail:
                still_detail(x, lin, at_host, band, noise, (r0, r1))
            for k, i in enumerate(picks):  # frame by frame: band[:, picks] would be a copy of them all
                y[:, k, :, SCALE * r0:SCALE * r1] = band[:, i]
        done(r1 - halo)  # the next band reads from its first row less the halo
    return y

def decoder_folded(dec: nn.Module, x: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor, w_up1: torch.Tensor,
                   b_up1: torch.Tensor) -> torch.Tensor:
    """`Decoder.forward` with its last pixel shuffle moved after the output conv: (N, dim, h, w)
    -> (N, 4C, 2h+1, 2w+1), whose channel c*4 + 2*di + dj read at rows di.. and columns dj.. is
    sub-pixel (di, dj) of the decoder's output channel c (N, C, 4h, 4w).

    w_out, b_out: the output conv from `fold_shuffle_into_conv_2x2`, so it runs at 2x on 48
    channels as 2x2 taps instead of at 4x on 12, and the 4x feature map is never built.
    w_up1, b_up1: the first x2 stage from `subpixel_major` (channels-last input), so its pixel
    shuffle is a copy of whole pixels rather than pixel_shuffle's strided gather.
    dec: the decoder to run (the network's, or its bfloat16 copy from `_in_dtype`)."""
    x = dec.body(x)
    x = shuffle_subpixel_major(F.leaky_relu_(F.conv2d(x, w_up1, b_up1, padding=1), 0.1))
    x = F.leaky_relu_(dec.up2(x), 0.1)  # elementwise, so before the shuffle as well as after it
    return F.conv2d(x, w_out, b_out, padding=1)  # the caller shuffles, as it adds the residual


def mixed_frames(weights: torch.Tensor) -> list[int]:
    """The input frames that take part in one output frame's mix: weights (T, dim) -> the indices t
    whose largest |weight| is at least NEGLIGIBLE_MIX of the largest one (never empty)."""
    peak = weights.abs().amax(dim=1)                                               # (T,)
    return [t for t, keep in enumerate((peak >= NEGLIGIBLE_MIX * peak.max()).tolist()) if keep]


def _in_dtype(module: nn.Module, dtype: Optional[torch.dtype]) -> nn.Module:
    """``module`` itself (dtype None), or a copy with its parameters in ``dtype``: the CPU path's
    bfloat16 convolutions (tens of KiB of weights, copied once per window)."""
    return module if dtype is None else copy.deepcopy(module).to(dtype)


# ---------------------------------------------------------------------------------------------
# the TSSM block


def _bands(n: int, per_row: int, multiple: int = 1) -> list[tuple[int, int]]:
    """Split ``n`` rows of ``per_row`` tokens into bands of about WORK_TOKENS tokens, each a
    multiple of ``multiple`` rows (except the last): [(r0, r1), ...]."""
    rows = max(multiple, WORK_TOKENS // max(per_row, 1) // multiple * multiple)
    return [(r, min(n, r + rows)) for r in range(0, n, rows)]


def spectral_mask_frames(mask: SpectralMask, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """`SpectralMask.forward` frame by frame and MASK_CHANNELS channels at a time into one output:
    no full-video complex temporaries, nor a whole frame's (each 1-D transform is the same
    whichever lines it is batched with). x (B, T, H, W, C) -> same; ``inplace``: written into x
    (each unit is read whole before it is written)."""
    H, W, C = x.shape[2], x.shape[3], x.shape[4]
    m = mask.mask(H, W, x.device)
    out = x if inplace else torch.empty(x.shape, dtype=x.dtype, device=x.device)
    for t in range(x.shape[1]):
        for c0 in range(0, C, MASK_CHANNELS):
            c = slice(c0, min(C, c0 + MASK_CHANNELS))
            xt = x[:, t, :, :, c]                                                   # (B, H, W, c)
            # rfft2 as its two 1-D passes, the same arithmetic, which suits channels-last frames
            spec = torch.fft.rfft(xt.float(), dim=2, norm="ortho")
            spec = torch.fft.fft(spec, dim=1, norm="ortho").mul_(m[:, :, c])
            y = torch.fft.irfft(torch.fft.ifft(spec, dim=1, norm="ortho"), n=W, dim=2, norm="ortho")
            torch.add(xt, y.to(x.dtype), out=out[:, t, :, :, c])
    return out


def mamba_units(layer: Mamba2Layer, seq: torch.Tensor, shift: Optional[torch.Tensor],
                lowp: Optional[torch.dtype]) -> torch.Tensor:
    """`Mamba2Layer.forward`, a long one-directional sequence in segments of about WORK_TOKENS."""
    b, L, _ = seq.shape
    if not layer.bidirectional and b * L > 2 * WORK_TOKENS:
        shift_at = None if shift is None else lambda lo, hi: shift[:, lo:hi]  # noqa: E731
        return layer._mix_segments(seq, shift_at, out=seq.clone(), tokens=WORK_TOKENS, lowp=lowp)
    return layer(seq, shift, lowp)


def tssm_units(block: TSSM, x: torch.Tensor, e: torch.Tensor, lowp: Optional[torch.dtype] = None,
               inplace: bool = False) -> torch.Tensor:
    """`TSSM.forward` in work units and in one output buffer: each layer
    reads a unit (a band of rows, a segment of the SMB sequence) and writes its result back in
    its place, so a block allocates one feature map, not one per layer (none with ``inplace``:
    then x, contiguous, is the output buffer)."""
    B, T, H, W, C = x.shape
    if inplace:
        assert x.is_contiguous(), "an in-place TSSM works on a contiguous (B, T, H, W, C) map"
        if block.mask is not None:
            spectral_mask_frames(block.mask, x, inplace=True)
    else:  # (B, T, H, W, C), contiguous, ours
        x = spectral_mask_frames(block.mask, x) if block.mask is not None else x.clone()
    if block.smb is not None:
        seq = x.view(B, T * H * W, C)
        shift_at = None
        if block.smb.prompt is not None:
            per_frame = block.smb.prompt(e)                                          # (T, g*n)
            frame = torch.arange(T * H * W, device=x.device) // (H * W)
            shift_at = lambda lo, hi: per_frame[frame[lo:hi]][None]  # noqa: E731
        if block.smb.bidirectional:
            x.copy_(from_smb(mamba_units(block.smb, seq, None if shift_at is None else shift_at(0, T * H * W), lowp), x.shape))
        else:
            block.smb._mix_segments(seq, shift_at, out=seq, tokens=WORK_TOKENS, lowp=lowp)
    tmb_shift = None if block.tmb is None or block.tmb.prompt is None else block.tmb.prompt(e)[None]
    if block.hmb is None:
        if block.tmb is not None:
            _tmb_rows(block, x, tmb_shift, 0, H, lowp)
        return x
    w = block.window
    shift = None if block.hmb.prompt is None else block.hmb.prompt(e).repeat_interleave(w * w, dim=0)[None]
    per_row = B * T * (W + (-W) % w)  # tokens per LR row of the padded frame
    if per_row * w <= WORK_TOKENS:
        rows, cols = _bands(H, per_row, multiple=w), [(0, W)]
    else:  # a row of windows is more than a unit: one window row, split into columns
        rows, cols = _bands(H, WORK_TOKENS, multiple=w), _bands(W, B * T * w, multiple=w)
    for r0, r1 in rows:
        # TMB's pixels are independent, so it runs band by band too, just before HMB reads the
        # same rows (then still in cache): the same result as TMB over the whole frame first
        if block.tmb is not None:
            _tmb_rows(block, x, tmb_shift, r0, r1, lowp)
        _hmb_rows(block, x, shift, (r0, r1), cols, lowp)
    return x

def _tmb_rows(block: TSSM, x: torch.Tensor, shift: Optional[torch.Tensor], r0: int, r1: int,
              lowp: Optional[torch.dtype]) -> None:
    """TMB over rows r0:r1 of x (B, T, H, W, C), in place: each pixel one sequence through time,
    bands of rows of about WORK_TOKENS tokens as work units; where one row holds more (wide frames),
    each row in spans of columns, so the unit stays the same size however wide the frame."""
    B, T, H, W, C = x.shape
    cols = [(0, W)] if B * T * W <= WORK_TOKENS else _bands(W, B * T)
    for a, b in _bands(r1 - r0, B * T * W):
        for c0, c1 in cols:
            band = x[:, :, r0 + a:r0 + b, c0:c1]
            band.copy_(from_tmb(mamba_units(block.tmb, to_tmb(band), shift, lowp), band.shape))

def _hmb_rows(block: TSSM, x: torch.Tensor, shift: Optional[torch.Tensor], rows: tuple[int, int],
              cols: list[tuple[int, int]], lowp: Optional[torch.dtype]) -> None:
    """HMB over a band of window rows of x (B, T, H, W, C), in place, one work unit per span of
    ``cols``: each Hilbert window one sequence."""
    B, T, H, W, C = x.shape
    w = block.window
    r0, r1 = rows
    flat = x.view(-1, C)
    for c0, c1 in cols:
        if (r1 - r0) % w or (c1 - c0) % w:  # a padded unit at the frame's edge
            band = x[:, :, r0:r1, c0:c1]
            band.copy_(from_hmb(mamba_units(block.hmb, to_hmb(band, w), shift, lowp), band.shape, w))
            continue
        # gathered in scan order and scattered back by one index: one pass each way instead of
        # the permutes and copies of to_hmb and from_hmb
        tokens = _hmb_tokens(x.shape, (r0, r1), (c0, c1), w)
        seq = flat.index_select(0, tokens).view(-1, T * w * w, C)
        flat.index_copy_(0, tokens, mamba_units(block.hmb, seq, shift, lowp).view(-1, C))


def _hmb_tokens(shape: tuple[int, ...], rows: tuple[int, int], cols: tuple[int, int], window: int) -> torch.Tensor:
    """Flat indices into a contiguous (B, T, H, W, C) grid's tokens (its ``view(-1, C)`` rows) of the
    unit rows x cols, in `to_hmb`'s order; the unit a whole number of windows. (n,) int64."""
    B, T, H, W, _ = shape
    (r0, r1), (c0, c1) = rows, cols
    ids = (torch.arange(B * T).view(B, T, 1, 1) * (H * W) + torch.arange(r0, r1).view(1, 1, -1, 1) * W
           + torch.arange(c0, c1).view(1, 1, 1, -1))
    return to_hmb(ids.unsqueeze(-1), window).reshape(-1)
