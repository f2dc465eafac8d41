"""Checkpoints: everything a run needs to continue bit-identically, written atomically.

A checkpoint holds the model, optimizer and scheduler states, the RNG states, the step, the
position in the current epoch (its epoch-start shuffling state and index) and the epoch's
running sums. It is loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from layerscope.errors import ConfigError
from layerscope.run_files import replacing


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to a temporary file, then rename it over ``path``."""
    with replacing(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU; a corrupt or truncated file is a one-line ConfigError.

    Generator states must stay CPU byte tensors (``Generator.set_state`` refuses others, also for a
    CUDA generator); model and optimizer states are copied to their device when loaded into them.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle, zip and EOF errors for a damaged file
        raise ConfigError(f"{path} is damaged or not a layerscope checkpoint ({type(err).__name__}); "
                          f"delete it to start the run over") from None


def rng_state() -> dict[str, Any]:
    """torch's CPU (and CUDA) generator states."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
