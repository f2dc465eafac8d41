"""Checkpoints: everything a run needs to continue bit-identically, written atomically.

A checkpoint holds the model, optimizer and scheduler states, the RNG states, the step, the
position in the current epoch (its epoch-start shuffling state and index) and the epoch's
running sums. It is loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from layerscope.errors import ConfigError
from layerscope.writer import replacing

CHECKPOINT = "checkpoint.pt"


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


def truncate_jsonl(path: Path, keep_below: int) -> list[dict]:
    """Drop the rows of a JSON-lines file whose ``step`` is >= ``keep_below``; return the rest."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by the kill
        if row.get("step", 0) < keep_below:
            rows.append(row)
    with replacing(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def restart_logs(run_dir: Path) -> int | None:
    """A run started over in its folder drops the logs of its earlier try; 0 (TensorBoard purges from
    step 0) when there were any, else None."""
    logs = [run_dir / "metrics.jsonl", run_dir / "probes.jsonl"]
    if not any(p.exists() for p in logs):
        return None
    for path in logs:
        truncate_jsonl(path, 0)
    return 0
