"""What the training loop trains: members (one run each, with its own folder, generators and records) stacked
into one model of one shape with their data, optimizer, loss and probes. A single run is a stack of one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig

from layerscope.data.datasets import Data
from layerscope.nets.mlp import MLP
from layerscope.nets.stacked import StackedMLP
from layerscope.optim.rules import Optimizer
from layerscope.paths import preset
from layerscope.probe.measure import Measure
from layerscope.probe.record import ProbeRecord
from layerscope.runs.folder import TRAIN_LOG, failure
from layerscope.runs.writer import RunWriter
from layerscope.theory.prediction import Prediction

log = logging.getLogger("layerscope")
DROPOUT_STREAM = 0x9E3779B97F4A7C15  # a member's dropout generator is seeded with its seed XOR this (not its data order's)


@dataclass
class Member:
    """One run of a stack: its config and folder, its own generators, and what it records."""

    cfg: DictConfig
    run_dir: Path
    label: str = ""  # what sets it apart from the other members of its group ("" when alone)
    data: int = 0  # index of its dataset among the group's distinct ones
    model: MLP | None = None  # its initialized (or resumed) plain MLP, until it is stacked
    prediction: Prediction | None = None
    start: dict[str, Any] | None = None  # its checkpoint, when it resumes
    summary: dict[str, Any] = field(default_factory=dict)
    records: list[ProbeRecord] = field(default_factory=list)
    writer: RunWriter | None = None
    figures: Any = None  # its lecture figures (``run_figures``), when it draws any
    log: logging.Logger = log
    done: bool = False
    error: Exception | None = None  # why it failed before training

    @property
    def step(self) -> int:
        """The step it starts at: its checkpoint's, else 0."""
        return self.start["step"] if self.start else 0

    def fail(self, error: Exception) -> None:
        """Its config or data was refused: it ends ``failed`` with the one-line error, before it trained."""
        self.summary, self.done, self.error = failure(str(error)), True, error

    def generators(self, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
        """Its data-order and dropout generators, seeded from ``trainer.seed`` as its single run's."""
        seed = int(self.cfg.trainer.seed)
        return (torch.Generator(device=device).manual_seed(seed),
                torch.Generator(device=device).manual_seed(seed ^ DROPOUT_STREAM))


class GroupData:
    """The group's datasets on the device: one shared, or several stacked (M, N, features)."""

    def __init__(self, datasets: list[Data], members: list[Member], device: torch.device, dtype: torch.dtype):
        on_device = [d.to(device, dtype) for d in datasets]
        self.name, self.classes = datasets[0].name, datasets[0].num_classes
        self.input_dim, self.n_train = datasets[0].input_dim, len(datasets[0].x_train)
        self.n_test = len(datasets[0].x_test)
        self.shared = len(on_device) == 1
        pick = (lambda t: t[0]) if self.shared else torch.stack
        self.x_train, self.y_train = pick([d.x_train for d in on_device]), pick([d.y_train for d in on_device])
        self.x_test, self.y_test = pick([d.x_test for d in on_device]), pick([d.y_test for d in on_device])
        self.which = torch.tensor([m.data for m in members], device=device)[:, None]  # (K, 1)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (K, B, features) and labels (K, B) at per-member indices (K, B)."""
        if self.shared:
            return self.x_train[index], self.y_train[index]
        return self.x_train[self.which, index], self.y_train[self.which, index]

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        """Labels (K, n) at per-member indices (K, n)."""
        return self.y_train[index] if self.shared else self.y_train[self.which, index]

    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test inputs and labels, shared ((N, features), (N,)) or per member."""
        if self.shared:
            return self.x_test, self.y_test
        return self.x_test[self.which[:, 0]], self.y_test[self.which[:, 0]]


@dataclass
class Stack:
    """K members of one shape, built on their device: everything the training loop needs."""

    members: list[Member]
    device: torch.device
    data: GroupData
    model: StackedMLP
    optimizer: Optimizer
    measure: Measure
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    order: list[torch.Generator]  # each member's data order
    total: int  # optimizer steps to take (0: probe only)
    steps_per_epoch: int

    @property
    def cfg(self) -> DictConfig:
        """The keys the members share (the first member's config)."""
        return self.members[0].cfg


def _log_format() -> str:
    """The single run's train.log format (configs/hydra/job_logging), its logger named layerscope as there."""
    return preset("hydra/job_logging", "layerscope")["formatters"]["full"]["format"].replace("%(name)s", "layerscope")


def _written(path: Path) -> bool:
    """Whether a handler of the root logger already writes ``path`` (Hydra's train.log of this run)."""
    return any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in logging.getLogger().handlers)


def member_log(run_dir: Path, console: bool) -> logging.Logger:
    """The logger of the run in ``run_dir``: its own train.log (unless Hydra writes it already) and, when
    ``console`` (a run alone), the console too."""
    logger = logging.getLogger(f"layerscope.run.{run_dir}")
    logger.propagate, logger.level = console, logging.INFO
    close_log(logger)
    if not _written(run_dir / TRAIN_LOG):
        handler = logging.FileHandler(run_dir / TRAIN_LOG)
        handler.setFormatter(logging.Formatter(_log_format()))
        logger.addHandler(handler)
    return logger


def close_log(logger: logging.Logger) -> None:
    """Close and drop the logger's own handlers."""
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
