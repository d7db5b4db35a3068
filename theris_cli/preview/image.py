"""The preview's picture: rows of labelled grey panels and a one-line caption, drawn with Pillow.

Every panel is shown with the same grey stretch (white hot: warm is light, as on most thermal
cameras), taken from the input frames, so brightness compares across panels. Panels show upscaled
pixels 1:1 (at most PANEL_BOX); zoomed crops are enlarged with nearest neighbour, so each output
pixel is visible. The picture is 8-bit grey throughout (the zoom box is outlined black and white),
which keeps the PNG small and exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported only for the annotation
    from PIL import Image

PANEL_BOX = (640, 512)  # largest panel on screen, (width, height) in pixels: three fit a 1920 screen
MARGIN = 12  # pixels around the picture
GAP = 8  # pixels between panels and rows
TITLE_SIZE, LABEL_SIZE, CAPTION_SIZE = 18, 15, 16  # font sizes in pixels
BACKGROUND, TEXT, PLATE = 24, 235, 0  # grey levels: picture background, text, the plate under a label


@dataclass
class Panel:
    """One picture of the preview: unit-range values (H, W) and what to write on it."""

    label: str
    image: np.ndarray  # (H, W) float32, the video's levels mapped to [0, 1]


@dataclass
class PreviewRow:
    title: str
    panels: list[Panel]


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (Pillow >= 10.1)


def to_grey(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Unit-range values -> uint8 grey, ``lo`` black and ``hi`` white (clipped outside)."""
    scale = 255.0 / max(hi - lo, 1e-6)
    return np.clip(np.rint((x - lo) * scale), 0, 255).astype(np.uint8)


def compose(rows: list[PreviewRow], caption: str, stretch: tuple[float, float],
            box: tuple[int, int, int, int], *, zoom: int) -> "Image.Image":
    """The whole picture. ``rows``: all but the last hold frames shown 1:1; the last holds crops
    (``box`` of the row above it, in the frames' pixels), shown at ``zoom`` x."""
    from PIL import Image, ImageDraw

    lo, hi = stretch
    pictures: list[list[Image.Image]] = []
    for r, row in enumerate(rows):
        zoomed = r == len(rows) - 1
        pics = []
        for p in row.panels:
            im = Image.fromarray(to_grey(p.image, lo, hi), "L")
            if zoomed:
                im = im.resize((im.width * zoom, im.height * zoom), Image.Resampling.NEAREST)
            pics.append(im)
        pictures.append(pics)

    title_font, label_font, caption_font = _font(TITLE_SIZE), _font(LABEL_SIZE), _font(CAPTION_SIZE)
    title_h, caption_h = TITLE_SIZE + 12, CAPTION_SIZE + 16
    cols = max(len(p) for p in pictures)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    # a column is as wide as its widest label's plate too, and a row as tall: labels of small
    # panels (a tiny input) never run into the next panel or row
    label_w = max(_plate(probe, (0, 0), p.label, label_font)[2] + GAP for row in rows for p in row.panels)
    label_h = _plate(probe, (0, 0), "Ag", label_font)[3]
    col_w = max([im.width for pics in pictures for im in pics] + [label_w])
    width = 2 * MARGIN + cols * col_w + (cols - 1) * GAP
    # a panel smaller than its label's plate would vanish under it: that row's labels go beneath
    below = [any(im.width < _plate(probe, (0, 0), p.label, label_font)[2] or im.height < 2 * label_h
                 for p, im in zip(row.panels, pics)) for row, pics in zip(rows, pictures)]
    row_h = [max(im.height for im in pics) + (label_h if under else 0) for pics, under in zip(pictures, below)]
    caption_w = probe.textlength(caption, font=caption_font)
    width = max(width, int(caption_w) + 2 * MARGIN)  # the caption stays on one line
    height = MARGIN + sum(title_h + h + GAP for h in row_h) + caption_h
    canvas = Image.new("L", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    y = MARGIN
    for r, (row, pics) in enumerate(zip(rows, pictures)):
        draw.text((MARGIN, y + 4), row.title, font=title_font, fill=TEXT)
        y += title_h
        for c, (panel, im) in enumerate(zip(row.panels, pics)):
            x = MARGIN + c * (col_w + GAP)
            canvas.paste(im, (x, y))
            if r == len(rows) - 2:  # the frames the zoom row is cut from: outline the region
                x0, y0, x1, y1 = box  # black outside white: visible on any grey
                draw.rectangle((x + x0 - 1, y + y0 - 1, x + x1, y + y1), outline=0, width=1)
                draw.rectangle((x + x0, y + y0, x + x1 - 1, y + y1 - 1), outline=255, width=2)
            under = y + im.height + 1 if below[r] else y
            _label(draw, (x, under), panel.label, label_font)  # over the outline: the label stays readable
        y += row_h[r] + GAP
    draw.text((MARGIN, y + 6), caption, font=caption_font, fill=TEXT)
    return canvas


def _plate(draw, xy: tuple[int, int], text: str, font) -> tuple[int, int, int, int]:
    """The dark plate under a label at the panel corner ``xy``: (left, top, right, bottom)."""
    x, y = xy
    left, top, right, bottom = draw.textbbox((x + 6, y + 4), text, font=font)
    return int(left - 4), int(top - 3), int(right + 4), int(bottom + 3)


def _label(draw, xy: tuple[int, int], text: str, font) -> None:
    """``text`` in the panel's top-left corner on a dark plate, readable over any grey."""
    x, y = xy
    draw.rectangle(_plate(draw, xy, text, font), fill=PLATE)
    draw.text((x + 6, y + 4), text, font=font, fill=TEXT)
