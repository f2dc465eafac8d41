"""Checkpoints: everything a run needs to continue bit-identically, written atomically.

A checkpoint holds one run's model (the plain MLP's ``state_dict``) and optimizer state (torch.optim's
format), its generators' states (the data order at the epoch's start, dropout), the step, the position
in the current epoch and the epoch's per-step records, its summary, and under ``INITIAL`` each hidden
layer's weights at step 0 (W_0, (width, fan_in) as in the model's state_dict), from which ``weight_change``
is measured; a checkpoint without them resumes with that statistic unknown (NaN). A stacked member's
checkpoint is its single run's. It is loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from layerscope.errors import ConfigError
from layerscope.files import replacing

INITIAL = "initial_weights"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to a temporary file, then rename it over ``path``: the previous checkpoint stays whole until
    then. Serialized in memory first, so that a full disk is the OSError (ENOSPC) any other write of the run
    raises, naming ``path``, not a RuntimeError from torch's zip writer."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        with replacing(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU; a corrupt or truncated file is a one-line ConfigError.

    Generator states must stay CPU byte tensors (``Generator.set_state`` refuses others, also for a
    CUDA generator); model and optimizer states are copied to their device when loaded into them.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle, zip and EOF errors for a damaged file
        raise ConfigError(f"{path} is damaged or not a layerscope checkpoint ({type(err).__name__})") from None
