"""The THERIS network: config, presets and the model. See network.py for the data flow, units.py for
the CPU inference path that runs the same network in work units."""

from theris_cli.model.config import PRESETS, SCALE, ModelConfig
from theris_cli.model.network import THERIS, default_times

__all__ = ["ModelConfig", "PRESETS", "SCALE", "THERIS", "default_times"]
