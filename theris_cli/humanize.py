"""Durations and sizes as people read them, the same in every progress line, table and summary."""

from __future__ import annotations

import math


def duration(seconds: float | None) -> str:
    """``m:ss`` under an hour, ``h:mm:ss`` from one; ``?`` when unknown (None, NaN, infinite)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(int(round(seconds)), 0)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def size(n: int | None) -> str:
    """Bytes in decimal units, as file managers show them (``812 B``, ``1.2 MB``); "" when unknown."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""
