"""theris: space-time super-resolution for thermal video (THERIS, CVPR 2026)."""

__version__ = "0.2.0"
