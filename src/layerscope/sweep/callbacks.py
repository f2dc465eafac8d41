"""layerscope's Hydra callbacks (configs/train.yaml ``hydra.callbacks``): light to import, since Hydra builds
them before any job; what they need of torch or matplotlib loads when they run."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from layerscope.heap import startup_left_out
from layerscope.runs.folder import stopped_by
from layerscope.sweep.progress import sweep_line
from layerscope.train.interrupt import exit_status

DIVERGED_EXIT = 3  # the exit status of a run or sweep that diverged with trainer.fail_on_divergence=true


class SweepProgress(Callback):
    """Hydra callback: one line per finished sweep job, with how far the sweep is and about how long is left."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return  # a single run: its own last line says how it ended
        if "stacked" in str(config.hydra.launcher.get("_target_", "")).lower():
            return  # its jobs' folders are made before training; each stacked model shows its own bar
        output = Path(config.hydra.runtime.output_dir)
        print(sweep_line(output.parent, output.name, time.perf_counter() - self.started), file=sys.stderr, flush=True)


class SweepReport(Callback):
    """Hydra callback: write the sweep report when a multirun ends; exit 1 when a job failed, 3 when a job with
    ``trainer.fail_on_divergence=true`` diverged, 130/143 when stopped.

    A diverged job is a result, not a failure, unless it asked otherwise; a failed one (an invalid config,
    a crash) makes the sweep's exit status 1, so scripts and CI can trust it.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        with startup_left_out():
            from layerscope.sweep.report import collect, failures, tally, write_sweep_report  # matplotlib: only now

            path = write_sweep_report(sweep_dir)
            jobs = collect(sweep_dir)
        print(*failures(jobs), f"{tally(jobs)}; see {path}", sep="\n", file=sys.stderr)
        stopped = stopped_by(job.result.summary for job in jobs)
        if stopped:
            print(f"layerscope: {stopped}: the sweep stopped; continue it with the same command and "
                  f"trainer.resume=true skip_completed=true hydra.sweep.dir={sweep_dir}", file=sys.stderr)
            sys.exit(exit_status(stopped))
        if any(job.result.status == "failed" for job in jobs):
            sys.exit(1)
        diverged = [job for job in jobs if job.result.status == "diverged"
                    and job.result.config.get("trainer", {}).get("fail_on_divergence")]
        if diverged:
            print(f"layerscope: error: {len(diverged)} job(s) diverged (trainer.fail_on_divergence=true): "
                  f"{', '.join(job.result.run_dir.name for job in diverged)}", file=sys.stderr)
            sys.exit(DIVERGED_EXIT)
