"""The ``layerscope`` console script: Hydra entry point, sweep-job handling, resuming a run."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from layerscope.checkpoint import CHECKPOINT
from layerscope.cli_errors import install as install_error_lines
from layerscope.errors import ConfigError
from layerscope.grid import run_grid
from layerscope.paths import config_dir
from layerscope.results import finished
from layerscope.trainer import run
from layerscope.writer import write_json_atomic

log = logging.getLogger("layerscope")
install_error_lines()


def _fail(run_dir: Path, err: BaseException) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, OmegaConfBaseException) and err.full_key:
        message = f"{err.full_key}: {message}"
    error = message if isinstance(err, (ConfigError, OmegaConfBaseException)) else f"{type(err).__name__}: {message}"
    write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": error})
    return error


def _job_threads(cfg: DictConfig) -> None:
    """Parallel jobs on one machine share its cores: unless set, give each job cores / n_jobs threads."""
    launcher = HydraConfig.get().launcher
    if cfg.trainer.threads is None and "Joblib" in str(launcher.get("_target_", "")):
        jobs = launcher.get("n_jobs") or 1
        jobs = os.cpu_count() if jobs < 0 else jobs
        with open_dict(cfg):
            cfg.trainer.threads = max(1, (os.cpu_count() or 1) // max(1, jobs))


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Console entry point ``layerscope``: one run, or one job of a sweep (``-m``).

    In a sweep a job's failure is recorded in its summary.json and the sweep goes on.
    """
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.get("skip_completed") and finished(run_dir):
        log.info("skipped: %s already holds a finished run (skip_completed=true)", run_dir)
        return
    if sweep:
        _job_threads(cfg)
    try:
        summary = (run_grid if cfg.get("grid") else run)(cfg, run_dir)
    except (ConfigError, OmegaConfBaseException) as err:
        print(f"layerscope: error: {_fail(run_dir, err)}", file=sys.stderr)
        if not sweep:
            sys.exit(2)
    except Exception as err:
        error = _fail(run_dir, err)
        if not sweep:
            raise
        log.error("job %s failed: %s", HydraConfig.get().job.num, error)
    else:
        if summary["status"] == "interrupted":
            print(f"layerscope: {summary['signal']}: the run stopped after step {summary['steps']} in {run_dir}; "
                  f"continue it with the same command and trainer.resume=true", file=sys.stderr)
            sys.exit(128 + signal.Signals[summary["signal"]].value)
        if summary["status"] == "diverged" and cfg.trainer.get("fail_on_divergence"):
            print(f"layerscope: error: the run diverged at step {summary['diverged_at_step']} "
                  f"(trainer.fail_on_divergence=true)", file=sys.stderr)
            sys.exit(3)


def _resume_target(argv: list[str]) -> Path | None:
    """The newest unfinished run folder whose command equals ``argv`` (less ``trainer.resume``)."""
    if "-m" in argv or "--multirun" in argv or any(a.startswith("hydra.run.dir=") for a in argv):
        return None
    same = sorted(a for a in argv if not a.startswith("trainer.resume="))
    root = Path(os.environ.get("LAYERSCOPE_OUTPUTS", "outputs")) / "runs"
    for folder in sorted(root.glob("*/*"), reverse=True):
        overrides = folder / ".hydra" / "overrides.yaml"
        if not (folder / CHECKPOINT).exists() or not overrides.exists() or finished(folder):
            continue
        earlier = sorted(str(o) for o in OmegaConf.load(overrides) if not str(o).startswith("trainer.resume="))
        if earlier == same:
            return folder
    return None


def cli() -> None:
    """Console entry point ``layerscope``; with ``trainer.resume=true`` it reopens the run it continues."""
    argv = sys.argv[1:]
    if any(a.lower() == "trainer.resume=true" for a in argv):
        target = _resume_target(argv)
        if target is not None:
            sys.argv.append(f"hydra.run.dir={target}")
    main()


if __name__ == "__main__":
    cli()
