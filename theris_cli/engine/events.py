"""Events in a recording that an interpolator must not smooth over, found on the decoded frames.

    det = EventDetector()
    for raw in read_frames(path):        # (H, W) uint8/uint16, as decoded
        mark = det.observe(raw)          # NEW, REPEAT, SPLICE or SHUTTER
    det.counts.summary()                 # '1 shutter event, 120 repeated frames'

Each frame is compared with the last distinct frame before it (its predecessor, unless that was a
repeat), on 2x2 block means (a quarter of the pixels: the cost is a small fraction of decoding):

- REPEAT: the frame equals its predecessor within the sensor's noise (recorders that write each
  sensor frame 2-3 times, a frozen feed, the frozen run of a flat-field correction). Equal means a
  mean absolute difference of zero; or at most ``REPEAT_TOL`` of the smallest recent change between
  distinct frames (the smallest, not the typical: after fast motion the typical change is large, and
  calm distinct frames must not pass as repeats); or, for copies that a lossy codec made slightly
  different, at most ``REPEAT_TOL`` of the change that brought in the frame they copy and
  ``NOISE_TOL`` of the frame's own noise (estimated from what its 2x2 block means leave). The upscaler treats a run of repeats as one sample held for the run's time.
- SPLICE: the frame shares nothing with its predecessor: the correlation of their 8x8 block means
  is below ``SPLICE_CORR``, and their dissimilarity (1 - correlation) is ``SPLICE_RATIO`` times the
  recent typical one (a cut of an edited or concatenated recording; a scene that changes this much
  from every frame to the next is not cut at each). Within one scene
  consecutive frames correlate at 0.6 or more even in fast close-ups; a cut between two views of
  much the same place (one trail camera's recordings joined) can correlate higher and then is not
  found: the frames on either side are blended as any two neighbours are.
- SHUTTER: a flat-field correction: the whole frame's level jumps (its mean changes by at least
  ``SHUTTER_JUMP`` times the recent typical change and twice the change of its structure), usually
  after a frozen run or a gap. Lepton cameras do this every few minutes.

Splices and shutter events are breaks: no temporal window spans one, so no output frame blends
the two sides (theris_cli.engine.samples).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

NEW, REPEAT, SPLICE, SHUTTER = "new", "repeat", "splice", "shutter"
BREAKS = (SPLICE, SHUTTER)

REPEAT_TOL = 0.2  # a repeat differs by at most this fraction of the smallest recent change between distinct frames
NOISE_TOL = 0.15  # ... or this fraction of the frame's noise (distinct still frames differ by ~0.56 of it)
SPLICE_CORR = 0.5  # correlation of 8x8 block means below which two frames share nothing
SPLICE_RATIO = 4.0  # ... and their dissimilarity at least this many times the recent typical one
SHUTTER_JUMP = 8.0  # a level jump is at least this many typical changes (mean abs, 2x2 block means)
HISTORY = 15  # recent changes between distinct frames kept (the smallest, the median)
MIN_HISTORY = 3  # changes needed before a cut or a level jump can be told from the scene's own changes


@dataclass
class EventCounts:
    """What the detector found: counts, and the frame indices of the breaks."""

    repeated: int = 0  # frames that repeat their predecessor
    splices: list[int] = field(default_factory=list)  # index of the first frame after each cut
    shutters: list[int] = field(default_factory=list)  # index of the first frame after each jump

    def summary(self) -> str:
        """'1 shutter event, 120 repeated frames' ('' when nothing was found)."""
        parts = []
        for n, one in ((len(self.shutters), "shutter event"), (len(self.splices), "splice"),
                       (self.repeated, "repeated frame")):
            if n:
                parts.append(f"{n} {one}{'s' if n != 1 else ''}")
        return ", ".join(parts)


def _half(x: np.ndarray) -> np.ndarray:
    """Means of 2x2 blocks, float32 (an odd last row or column dropped): four strided adds, several
    times quicker than a reshaped mean."""
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    if h == 0 or w == 0:
        return x.astype(np.float32)
    x = x[:h, :w].astype(np.float32, copy=False)
    return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) * np.float32(0.25)


def _blocks(x: np.ndarray, k: int) -> np.ndarray:
    """Means of k x k blocks, k a power of 2 (at least one block)."""
    while k > 1:
        x = _half(x)
        k //= 2
    return x.astype(np.float32, copy=False)


def _noise(frame: np.ndarray, small: np.ndarray) -> float:
    """Sensor noise (standard deviation) of ``frame`` from its residual to its 2x2 block means
    ``small``: for white noise of sigma, the residual's median absolute value is 0.584 sigma."""
    h, w = 2 * small.shape[0], 2 * small.shape[1]
    r = frame[:h, :w].astype(np.float32) - np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    return float(np.median(np.abs(r))) / 0.584


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt(float((a * a).sum()) * float((b * b).sum())))
    if den == 0.0:  # a flat frame: correlated with another flat frame, with nothing else
        return 1.0 if float(np.abs(a).max(initial=0)) == float(np.abs(b).max(initial=0)) == 0.0 else 0.0
    return float((a * b).sum()) / den


class EventDetector:
    """Marks each frame of a stream NEW, REPEAT, SPLICE or SHUTTER (see the module's docstring).

    The first frame is NEW. State: the last distinct frame (reduced) and the last ``HISTORY``
    changes between distinct frames, so memory does not grow with the recording.
    """

    def __init__(self) -> None:
        self.prev: np.ndarray | None = None  # 2x2 block means of the last distinct frame
        self.changes: deque[float] = deque(maxlen=HISTORY)  # mean abs change of the structure
        self.diffs: deque[float] = deque(maxlen=HISTORY)  # mean abs difference
        self.dissim: deque[float] = deque(maxlen=HISTORY)  # 1 - correlation
        self.arrival = 0.0  # mean abs difference that brought in the last distinct frame
        self.counts = EventCounts()
        self.index = 0

    def observe(self, frame: np.ndarray) -> str:
        """The mark of ``frame`` (H, W), the next frame of the stream."""
        small = _blocks(frame, 2)
        mark = self._mark(small, frame)
        if mark == REPEAT:
            self.counts.repeated += 1
        else:
            if mark == SPLICE:
                self.counts.splices.append(self.index)
                self.changes.clear()  # another scene: its own typical change
                self.diffs.clear()
                self.dissim.clear()
            elif mark == SHUTTER:
                self.counts.shutters.append(self.index)
            self.prev = small
        self.index += 1
        return mark

    def _mark(self, small: np.ndarray, frame: np.ndarray) -> str:
        prev = self.prev
        if prev is None:
            return NEW
        if prev.shape != small.shape:
            return SPLICE  # (read_frames refuses a size change; a guard)
        d = small - prev
        mad = float(np.abs(d).mean())
        if mad == 0.0 or (self.diffs and mad <= REPEAT_TOL * min(self.diffs)):
            return REPEAT
        if mad <= REPEAT_TOL * self.arrival and mad <= NOISE_TOL * _noise(frame, small):
            return REPEAT
        coarse = _blocks(small, 4)
        a, b = (coarse, _blocks(prev, 4)) if coarse.size >= 16 else (small, prev)  # tiny frames: 2x2 blocks
        dissim = 1.0 - _correlation(a, b)
        if (len(self.dissim) >= MIN_HISTORY and dissim > 1.0 - SPLICE_CORR
                and dissim >= SPLICE_RATIO * float(np.median(self.dissim))):
            self.arrival = mad
            return SPLICE
        level = float(d.mean())
        structure = float(np.abs(d - level).mean())
        typical = float(np.median(self.changes)) if self.changes else 0.0
        if (len(self.changes) >= MIN_HISTORY and abs(level) >= SHUTTER_JUMP * typical
                and abs(level) >= 2.0 * structure):
            self.arrival = mad
            return SHUTTER
        self.changes.append(structure)
        self.diffs.append(mad)
        self.dissim.append(dissim)
        self.arrival = mad
        return NEW
