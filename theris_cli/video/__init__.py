"""Reading and writing video with PyAV: probe, grey frames, the fixed levels map, the writer.

    from theris_cli.video import probe, read_frames, scan_levels, Levels, VideoWriter
"""

from .decode import read_frames
from .encode import VideoWriter
from .levels import Levels, scan_levels
from .probe import VideoInfo, probe

__all__ = ["probe", "VideoInfo", "read_frames", "scan_levels", "Levels", "VideoWriter"]
