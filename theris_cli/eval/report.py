"""The terminal report of `theris evaluate`: rich tables of the figures and of theris's gains."""

from __future__ import annotations

from pathlib import Path

from theris_cli.eval.results import SUBSETS, ClipScore, Evaluation


def render(ev: Evaluation) -> list:
    """Rich renderables: the figures per clip and method, what each clip was, and (when theris was
    scored) its gain over each baseline. About 85 columns wide."""
    from rich import box
    from rich.table import Table

    def table(title: str, first: str, second: str) -> Table:
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        t.add_column(first, no_wrap=True, max_width=28)
        t.add_column(second, no_wrap=True)
        return t

    t = table("PSNR (dB) and SSIM on [0, 1]: all frames, input-aligned (in), interpolated (interp)", "clip", "method")
    for s in ("all", "in", "interp"):
        t.add_column(f"PSNR\n{s}", justify="right", no_wrap=True)
    for s in ("all", "in", "interp"):
        t.add_column(f"SSIM\n{s}", justify="right", no_wrap=True)
    t.add_column("tMAE\n‰", justify="right", no_wrap=True)  # per mille of the data range
    t.add_column("PSNR\nmove", justify="right", no_wrap=True)  # moving pixels of the interpolated frames
    t.add_column("SSIM\nmove", justify="right", no_wrap=True)
    t.add_column("time\ns", justify="right", no_wrap=True)
    labelled = [(_label(c.clip), c.methods) for c in ev.clips]
    if len(ev.clips) > 1:
        labelled.append((f"mean ({len(ev.clips)} clips)", ev.mean))
    for label, scores in labelled:
        for j, m in enumerate(ev.methods):
            sc = scores[m]
            t.add_row(
                label if j == 0 else "",
                m,
                *(f"{sc.subset(s).psnr:.2f}" for s in SUBSETS),
                *(f"{sc.subset(s).ssim:.4f}" for s in SUBSETS),
                f"{1e3 * sc.tmae:.2f}",
                _fmt(sc.motion.psnr if sc.motion else None, ".2f"),
                _fmt(sc.motion.ssim if sc.motion else None, ".4f"),
                f"{sc.seconds:.1f}",
                end_section=j == len(ev.methods) - 1,
            )
    out: list = [t]

    lines = [
        f"  {c.clip}: {c.frames} frames ({c.lr_frames} in) {c.size[1]}x{c.size[0]}, {c.bit_depth}-bit, "
        f"levels {c.levels[0]}..{c.levels[1]}{_moving(c)}"
        for c in ev.clips
    ]
    out.append("clips (HR frames scored, LR inputs, HR size, levels mapped to 0..1, moving pixels of the "
               "interpolated frames):\n" + "\n".join(lines))

    gains = ev.gains()
    if gains:
        g = table("gain of theris over each baseline (PSNR dB, SSIM; tMAE‰: how much lower)", "clip", "vs")
        for s in ("all", "in", "interp"):
            g.add_column(f"ΔPSNR\n{s}", justify="right", no_wrap=True)
        for s in ("all", "in", "interp"):
            g.add_column(f"ΔSSIM\n{s}", justify="right", no_wrap=True)
        g.add_column("ΔtMAE\n‰", justify="right", no_wrap=True)
        g.add_column("ΔPSNR\nmove", justify="right", no_wrap=True)
        for row, per_base in gains.items():
            if row == "mean" and len(ev.clips) < 2:
                continue
            label = f"mean ({len(ev.clips)} clips)" if row == "mean" else _label(row)
            for j, (b, d) in enumerate(per_base.items()):
                g.add_row(
                    label if j == 0 else "",
                    b,
                    *(f"{d[f'psnr_{s}']:+.2f}" for s in SUBSETS),
                    *(f"{d[f'ssim_{s}']:+.4f}" for s in SUBSETS),
                    f"{1e3 * d['tmae']:+.2f}",
                    _fmt(d.get("psnr_motion"), "+.2f"),
                    end_section=j == len(per_base) - 1,
                )
        out.append(g)
    return out


def _label(clip: str) -> str:
    return Path(clip).name


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


# A motion mask over more than this share of the in-between frames gets a caveat in its clip line:
# there noise (or a moving camera) passes the threshold too (`benchmarks/motion_masks.py` compares
# the mask with one on smoothed frames; docs/evaluation.md)
WIDE_MASK = 0.5


def _moving(c: ClipScore) -> str:
    mo = next((m.motion for m in c.methods.values() if m.motion is not None), None)
    if mo is None:
        return ""
    wide = ": over half the frame, so noise may pass the threshold" if mo.fraction > WIDE_MASK else ""
    return f", moving {mo.pixels:,} px ({100 * mo.fraction:.1f} %{wide})"
