"""Hydra's handle on layerscope's stacked launcher (``hydra/launcher=stacked``); the work is in ``layerscope.sweep.launcher``.

Hydra imports every plugin module at start-up, so this one imports nothing heavy.
"""

from __future__ import annotations

from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StackedLauncher(Launcher):
    """Trains the sweep's jobs that share a model shape as one stacked model each."""

    def __init__(self, max_members: Any, dispatch: Any, submitit: Any) -> None:  # configs/hydra/launcher/stacked.yaml
        self.max_members, self.dispatch, self.submitit = max_members, dispatch, submitit
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from layerscope.sweep.launcher import check_launcher, reproducible_matmuls

        check_launcher(self.max_members, self.dispatch)  # before the sweeper writes anything
        reproducible_matmuls()
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from layerscope.sweep.launcher import launch

        return launch(self, job_overrides, initial_job_idx)
