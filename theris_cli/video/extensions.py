"""Which file names are inputs: one list for upscale, batch, evaluate and train."""

from __future__ import annotations

# Containers FFmpeg reads that cameras and recorders produce; matched case-insensitively.
VIDEO_EXTENSIONS = frozenset(
    "mkv mp4 avi mov m4v webm ts mts m2ts mpg mpeg wmv flv 3gp ogv mxf nut y4m asf".split()
)
# Still-image formats that carry 8- and 16-bit grey frames; a folder of numbered ones is one input.
# Not jpg: numbered JPEGs are usually separate camera stills (FLIR0001.jpg, ...), not a video.
FRAME_EXTENSIONS = frozenset("png tif tiff pgm".split())

