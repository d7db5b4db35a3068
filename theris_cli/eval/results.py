"""What `theris evaluate` reports, as dataclasses that round-trip through JSON: per subset of frames,
per method, per clip, and the whole evaluation with its gains over each baseline."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Iterable

SUBSETS = ("all", "aligned", "interpolated")  # frame subsets: every frame, even indices, odd indices


@dataclass
class Subset:
    """Figures over one subset of a clip's output frames (means of per-frame values)."""

    psnr: float  # dB, capped at metrics.PSNR_CAP (= exact)
    ssim: float
    frames: int


@dataclass
class Motion:
    """Figures over the moving pixels of the interpolated frames (see the module docstring, 6.)."""

    psnr: float | None  # dB; None: no moving pixel
    ssim: float | None
    pixels: int  # masked pixels over all interpolated frames
    fraction: float  # of all the interpolated frames' pixels


@dataclass
class MethodScore:
    """One method on one clip (or the mean over clips)."""

    all: Subset
    aligned: Subset
    interpolated: Subset
    tmae: float  # mean |Δpred − Δgt| of consecutive frames, grey units of the data range (lower is better)
    tpsnr: float  # PSNR of the frame differences, dB (higher is better)
    seconds: float  # wall time of the prediction (not the scoring); summed over clips in the mean
    motion: Motion | None = None  # None: not measured (JSON written before the motion figures)

    def subset(self, name: str) -> Subset:
        return getattr(self, name)

    @classmethod
    def from_dict(cls, d: dict) -> MethodScore:
        def field_of(k, v):
            if k in SUBSETS:
                return Subset(**v)
            if k == "motion":
                return None if v is None else Motion(**v)
            return v

        return cls(**{k: field_of(k, v) for k, v in d.items()})


@dataclass
class ClipScore:
    """One clip: what was scored and every method's figures."""

    clip: str  # path as given (or found in a folder)
    bit_depth: int
    levels: tuple[int, int]  # raw lo, hi mapped to 0, 1
    size: tuple[int, int]  # HR height, width after cropping to multiples of 4
    frames: int  # HR frames scored (odd)
    lr_frames: int
    methods: dict[str, MethodScore]

    @classmethod
    def from_dict(cls, d: dict) -> ClipScore:
        d = dict(d)
        d["levels"], d["size"] = tuple(d["levels"]), tuple(d["size"])
        d["methods"] = {k: MethodScore.from_dict(v) for k, v in d["methods"].items()}
        return cls(**d)


@dataclass
class Evaluation:
    """Everything `theris evaluate` reports; `to_dict()` / `from_dict()` round-trip through JSON."""

    methods: list[str]
    weights: str | None  # the model scored as "theris", as `WeightsInfo.describe()` (None: not run)
    clips: list[ClipScore]
    mean: dict[str, MethodScore]  # per method, average of the per-clip figures
    seconds: float  # wall time of the whole evaluation
    protocol: dict = field(default_factory=dict)  # how the figures were made (for the JSON reader)
    split: str | None = None  # the named split whose clips were scored, if any

    def gains(self, method: str = "theris") -> dict[str, dict[str, dict[str, float]]]:
        """{row: {baseline: {figure: method − baseline}}} for every clip and "mean".

        Figures: psnr_<subset> (dB), ssim_<subset>, tmae (baseline − method: positive = steadier).
        """
        rows = {c.clip: c.methods for c in self.clips} | {"mean": self.mean}
        out: dict[str, dict[str, dict[str, float]]] = {}
        for row, scores in rows.items():
            if method not in scores:
                continue
            ours = scores[method]
            out[row] = {b: _gain(ours, scores[b]) for b in scores if b != method}
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gains"] = self.gains()  # derived, for readers of the JSON; ignored by from_dict
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        return cls(
            methods=list(d["methods"]),
            weights=d["weights"],
            clips=[ClipScore.from_dict(c) for c in d["clips"]],
            mean={k: MethodScore.from_dict(v) for k, v in d["mean"].items()},
            seconds=d["seconds"],
            protocol=d.get("protocol", {}),
            split=d.get("split"),
        )


def _gain(ours: MethodScore, base: MethodScore) -> dict[str, float]:
    g = {f"psnr_{s}": ours.subset(s).psnr - base.subset(s).psnr for s in SUBSETS}
    g |= {f"ssim_{s}": ours.subset(s).ssim - base.subset(s).ssim for s in SUBSETS}
    g["tmae"] = base.tmae - ours.tmae
    if ours.motion is not None and base.motion is not None and ours.motion.psnr is not None \
            and base.motion.psnr is not None:
        g["psnr_motion"] = ours.motion.psnr - base.motion.psnr
        g["ssim_motion"] = ours.motion.ssim - base.motion.ssim if None not in (ours.motion.ssim, base.motion.ssim) else None
    return g


def mean_scores(scores: list[MethodScore]) -> MethodScore:
    """Average of per-clip figures (each clip once); frames and seconds are summed."""

    def avg(xs: Iterable[float]) -> float:
        xs = list(xs)
        return sum(xs) / len(xs)

    subs = {
        s: Subset(
            psnr=avg(m.subset(s).psnr for m in scores),
            ssim=avg(m.subset(s).ssim for m in scores),
            frames=sum(m.subset(s).frames for m in scores),
        )
        for s in SUBSETS
    }
    motion = None
    measured = [m.motion for m in scores if m.motion is not None]
    if measured:
        with_px = [mo for mo in measured if mo.psnr is not None]
        ssims = [mo.ssim for mo in with_px if mo.ssim is not None]
        motion = Motion(
            psnr=avg(mo.psnr for mo in with_px) if with_px else None,
            ssim=avg(ssims) if ssims else None,
            pixels=sum(mo.pixels for mo in measured),
            fraction=avg(mo.fraction for mo in measured),
        )
    return MethodScore(
        **subs,
        tmae=avg(m.tmae for m in scores),
        tpsnr=avg(m.tpsnr for m in scores),
        seconds=sum(m.seconds for m in scores),
        motion=motion,
    )
