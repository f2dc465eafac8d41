"""The ``layerscope`` console script: Hydra entry point, sweep-job handling, resuming a run.

torch, matplotlib and TensorBoard load only when a run starts: the modules that need them are imported
inside the functions that use them, so ``--help``, ``--cfg``, ``--info`` and TAB completion answer at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict
from omegaconf.errors import OmegaConfBaseException

from layerscope.cli.errors import check_command_line
from layerscope.cli.errors import install as install_error_lines
from layerscope.config.hydra_hooks import (compose_once, parse_interpolations_once, read_config_files_once,
                                           reuse_group_repositories, write_records_once)
from layerscope.config.overrides import parse, quoted
from layerscope.errors import ConfigError
from layerscope.heap import keep_freed_pages, startup_left_out
from layerscope.paths import HYDRA_VERSION_BASE, config_dir, outputs
from layerscope.runs.folder import (
    CHECKPOINT,
    failure,
    finished,
    has_ended,
    holds_run,
    objective,
    read_summary,
    write_summary,
)
from layerscope.runs.job_names import recorded_overrides
from layerscope.runs.ownership import FolderInUse, check_target, owned
from layerscope.sweep.callbacks import DIVERGED_EXIT
from layerscope.train.interrupt import Stopped, exit_status, stopping

log = logging.getLogger("layerscope")
install_error_lines()
reuse_group_repositories()
compose_once()
write_records_once()
parse_interpolations_once()
read_config_files_once()


def _fail(run_dir: Path, err: BaseException) -> str:
    """Record ``err`` in summary.json as ``failed`` where it can still be written; return its one line."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, OmegaConfBaseException) and err.full_key:
        message = f"{err.full_key}: {message}"
    error = message if isinstance(err, (ConfigError, OmegaConfBaseException)) else f"{type(err).__name__}: {message}"
    with contextlib.suppress(OSError):
        write_summary(run_dir, failure(error))
    return error


def _job_threads(cfg: DictConfig) -> None:
    """Parallel jobs on one machine share its cores: unless set, give each job cores / n_jobs threads."""
    launcher = HydraConfig.get().launcher
    if cfg.trainer.threads is None and "Joblib" in str(launcher.get("_target_", "")):
        jobs = launcher.get("n_jobs") or 1
        jobs = os.cpu_count() if jobs < 0 else jobs
        with open_dict(cfg):
            cfg.trainer.threads = max(1, (os.cpu_count() or 1) // max(1, jobs))




@hydra.main(config_path=config_dir(), config_name="train", version_base=HYDRA_VERSION_BASE)
def main(cfg: DictConfig) -> float:
    """Console entry point ``layerscope``: one run, or one job of a sweep (``-m``); returns the run's
    ``objective``, which a sweeper that optimizes (``hydra/sweeper=optuna``) minimizes.

    The job owns its folder while it works (``ownership``) and leaves a status there however it
    ends. In a sweep a job's failure is recorded in its summary.json and the sweep goes on.
    """
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.get("skip_completed") and finished(run_dir):
        log.info("skipped: %s already holds a finished run (skip_completed=true)", run_dir)
        return objective(read_summary(run_dir))
    if sweep:
        _job_threads(cfg)
    if cfg.probe.get("figures") and not cfg.get("grid"):  # workers ready to draw when the run ends, started before torch
        from layerscope.probe.figure_workers import warm

        warm((os.cpu_count() or 1) if sweep else 1, cfg.model.depth)
    from layerscope.train.group import run  # torch

    summary: dict[str, Any] = {"status": "failed"}
    try:
        with owned(run_dir), stopping(), startup_left_out():
            if not (cfg.trainer.get("resume") and has_ended(read_summary(run_dir))):  # a run to resume keeps its
                write_summary(run_dir, {"status": "running"})  # record of how it ended until it goes on
            summary = (_grid() if cfg.get("grid") else run)(cfg, run_dir)
    except Stopped as stop:
        _stopped(run_dir, stop)
    except FolderInUse as err:  # another process's folder: write nothing there
        _end(sweep, str(err))
    except (ConfigError, OmegaConfBaseException) as err:
        _end(sweep, _fail(run_dir, err))
    except OSError as err:  # a full disk, a folder made read-only: the run cannot write its files
        _fail(run_dir, err)
        _end(sweep, f"cannot write {err.filename or run_dir}: {err.strerror or err}; make room (or fix the "
                    f"folder's permissions), then {_again(run_dir)}")
    except Exception as err:
        error = _fail(run_dir, err)
        if not sweep:
            raise
        log.error("job %s failed: %s", HydraConfig.get().job.num, error)
    else:
        if summary["status"] == "interrupted":
            print(f"layerscope: {summary['signal']}: the run stopped after step {summary['steps']} in {run_dir}; "
                  f"continue it with the same command and trainer.resume=true", file=sys.stderr)
            sys.exit(exit_status(summary["signal"]))
        if summary["status"] == "diverged" and cfg.trainer.get("fail_on_divergence") and not sweep:
            print(f"layerscope: error: the run diverged at step {summary['diverged_at_step']} "
                  f"(trainer.fail_on_divergence=true)", file=sys.stderr)
            sys.exit(DIVERGED_EXIT)  # a sweep's jobs go on; it exits so when it ends (callbacks.SweepReport)
    return objective(summary)


def _grid():
    """The probe grid's runner (``experiment=probe_grid``), imported only for it: it draws with matplotlib."""
    from layerscope.lecture.grid import run_grid

    return run_grid


def _end(sweep: bool, error: str) -> None:
    """A single run ends with the error's one line and exit status 2; a sweep logs it and goes on."""
    if not sweep:
        print(f"layerscope: error: {error}", file=sys.stderr)
        sys.exit(2)
    log.error("job %s failed: %s", HydraConfig.get().job.num, error)


def _stopped(run_dir: Path, stop: Stopped) -> None:
    """A signal outside the training loop: the folder says interrupted, the process exits 128 + signal."""
    summary = read_summary(run_dir)
    if not has_ended(summary):
        with contextlib.suppress(OSError):
            write_summary(run_dir, {**summary, "status": "interrupted", "signal": stop.name,
                                    "interrupted_at_step": summary.get("steps", 0)})
    print(f"layerscope: {stop.name}: the run stopped in {run_dir}; {_again(run_dir)}", file=sys.stderr)
    sys.exit(exit_status(stop.signum))


def _again(run_dir: Path) -> str:
    """How to go on with a run that stopped early."""
    if (run_dir / CHECKPOINT).exists():
        return "continue it with the same command and trainer.resume=true"
    return "run the same command again (it had no checkpoint to continue from)"


def _task_overrides(overrides: list[str]) -> list[str]:
    """The overrides that define a run: not Hydra's own, not flags, not ``trainer.resume``."""
    return sorted(o for o in overrides if not o.startswith("-") and not o.lstrip("+~").startswith(("hydra.", "hydra/"))
                  and not o.lstrip("+~").startswith("trainer.resume="))


def _earlier_overrides(folder: Path) -> list[str] | None:
    overrides = recorded_overrides(folder)
    return None if overrides is None else _task_overrides(overrides)


def _resume_target(same: list[str]) -> Path | None:
    """The newest unfinished run folder (with a checkpoint) whose command equals ``same``."""
    root = outputs() / "runs"
    for folder in sorted(root.glob("*/*"), reverse=True):
        if (folder / CHECKPOINT).exists() and not finished(folder) and _earlier_overrides(folder) == same:
            return folder
    return None


def _target(argv: list[str]) -> Path | None:
    """The existing folder a single run will write into (``hydra.run.dir=``, or the run it resumes), checked.

    Checked before Hydra writes ``.hydra/`` there: a folder another process holds, or one that holds a
    run of another command, is refused and left as it was.
    """
    if "-m" in argv or "--multirun" in argv:
        _check_sweep_folder(argv)
        return None
    same = _task_overrides(argv)
    resume = any(a.lstrip("+").lower() == "trainer.resume=true" for a in argv)
    explicit = [_value(a) for a in argv if a.lstrip("+").startswith("hydra.run.dir=")]
    if explicit and "${" not in explicit[-1]:
        folder = Path(explicit[-1])
        check_target(folder, same, _earlier_overrides(folder), resume)
        return folder if folder.is_dir() else None
    folder = _resume_target(same) if resume else None
    if folder is not None:
        check_target(folder, same, None, resume)
        sys.argv.append(f"hydra.run.dir={quoted(folder)}")
    return folder


def _value(override: str) -> str:
    """An override's value as Hydra reads it (quotes removed); as typed when Hydra cannot parse it (it says why)."""
    try:
        return str(parse([override])[0].value())
    except Exception:  # noqa: BLE001 - Hydra reports the mistake itself, in one line
        return override.split("=", 1)[1]


def _thread_error(args: threading.ExceptHookArgs) -> None:
    """A write error in TensorBoard's writer thread reaches the run through its next write: no second report."""
    if not issubclass(args.exc_type, OSError):
        threading.__excepthook__(args)


def _check_sweep_folder(argv: list[str]) -> None:
    """A sweep into a folder that holds runs only finishes that sweep (``skip_completed=true``)."""
    given = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("hydra.sweep.dir=")]
    if not given or "${" in given[-1] or any(a.lstrip("+").lower() == "skip_completed=true" for a in argv):
        return
    folder = Path(given[-1])
    taken = [d for d in folder.iterdir() if d.is_dir() and holds_run(d)] if folder.is_dir() else []
    if taken:
        raise ConfigError(f"hydra.sweep.dir={folder} already holds {len(taken)} run(s); add skip_completed=true to "
                          f"finish that sweep, or choose a new folder")


def cli() -> None:
    """Console entry point ``layerscope``; a run that reuses a folder holds it from before Hydra writes there."""
    threading.excepthook = _thread_error
    keep_freed_pages()
    try:
        with stopping():
            check_command_line(sys.argv[1:])
            folder = _target(sys.argv[1:])
            with owned(folder) if folder is not None else contextlib.nullcontext():
                main()
    except ConfigError as err:
        print(f"layerscope: error: {err}", file=sys.stderr)
        sys.exit(2)
    except Stopped as stop:  # outside any run's loop: while starting, or between a sweep's jobs
        print(f"layerscope: {stop.name}: stopped", file=sys.stderr)
        sys.exit(exit_status(stop.signum))


if __name__ == "__main__":
    cli()
