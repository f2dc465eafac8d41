"""The experiments of experiments/, checked by name before anything is composed (no torch here)."""

from __future__ import annotations

import difflib

from layerscope.errors import ConfigError
from layerscope.paths import choices


def check_experiment(name: str) -> None:
    """``experiment=<name>`` must name a file of experiments/ (Hydra skips a missing optional one silently)."""
    names = choices("experiment")
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"experiment={name} is not an experiment; {hint}choose one of: {', '.join(names)}")
