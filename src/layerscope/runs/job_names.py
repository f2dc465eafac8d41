"""Sweep job folders named by their swept overrides (``activation=relu,init=he_normal``), safe as file names.

Before a sweep starts, ``SweptNames`` (a Hydra callback) finds the command's swept overrides (``a,b``,
``range(...)``, ``choice(...)``, ``glob(...)`` and ``hydra.sweeper.params``) and excludes every other
task override from Hydra's ``hydra.job.override_dirname`` (through
``hydra.job.config.override_dirname.exclude_keys``, added to the sweep's Hydra overrides, so every
launcher recomposes each job with it). ``hydra.sweep.subdir: ${layerscope.job_name:}`` then names each job
folder by that ``override_dirname``, made safe: characters other than letters, digits and ``._,=+-`` become
``_``, names are cut to ``MAX_NAME`` characters, and a name that was changed either way ends in
``~`` and 8 hex digits of a hash of the unchanged text, so two jobs never share a folder by accident; a
job with no swept override gets its number, and under a sweeper that chooses values while it runs
(Optuna, which may try one point twice) every name starts with the job number. The name is computed from the job's own config, so the
basic, joblib, submitit/SLURM and stacked launchers all give the same names, and rerunning the same
command (``skip_completed=true``) finds the same folders. A sweep that lists one value twice would
give two jobs one folder and is refused.

This module imports nothing heavy: Hydra loads it at start-up (``hydra_plugins/layerscope_job_names``).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from layerscope.config.overrides import parse
from layerscope.errors import ConfigError
from layerscope.files import read_yaml, write_text

MAX_NAME = 120
"""Longest job folder name (file systems allow 255 bytes; TensorBoard shows it as the run's name)."""
UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")
RESOLVER = "layerscope.job_name"
RUN_RESOLVER = "layerscope.run_name"
EXCLUDE_KEYS = "hydra.job.config.override_dirname.exclude_keys"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
"""Hydra's own sweeper: it lists every job before the first runs, so a repeated value is refused up front."""


def safe_name(dirname: str) -> str:
    """``dirname`` as a file name: unsafe characters become ``_``, at most MAX_NAME characters, and a hash
    of the original (``~1a2b3c4d``) when either changed it."""
    name = UNSAFE.sub("_", dirname)
    if name == dirname and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(dirname.encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - len(digest) - 1]}~{digest}"


def job_name(*, _root_: DictConfig) -> str:
    """A sweep job's folder name: its ``hydra.job.override_dirname`` made safe, or its number when empty; under a
    sweeper that picks the values while it runs (Optuna...), which may pick the same ones twice, ``<number>-<name>``."""
    job = _root_.hydra.job
    dirname = str(OmegaConf.select(job, "override_dirname", default="") or "")
    number = str(OmegaConf.select(job, "num", default="???"))
    if not dirname:
        return number
    planned = OmegaConf.select(_root_, "hydra.sweeper._target_", default=BASIC_SWEEPER) == BASIC_SWEEPER
    return safe_name(dirname) if planned else f"{number}-{safe_name(dirname)}"


def run_name(*, _root_: DictConfig) -> str:
    """A single run's folder name after its time: ``_`` and its overrides (``hydra.job.override_dirname``, less
    ``trainer.resume`` and ``trainer.progress``) made safe, ``_activation=relu,init=he_normal``; '' without any."""
    dirname = str(OmegaConf.select(_root_, "hydra.job.override_dirname", default="") or "")
    return f"_{safe_name(dirname)}" if dirname else ""


def register_resolver() -> None:
    """Make ``${layerscope.job_name:}`` and ``${layerscope.run_name:}`` resolvable (idempotent); done on import, so
    that a joblib or submitit worker that unpickles ``SweptNames`` with the sweep's Hydra context has them too."""
    for name, resolver in ((RESOLVER, job_name), (RUN_RESOLVER, run_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolver()


def _parsed(lines: list[str]) -> list:
    return parse(lines)


def _values(override) -> list[str]:
    """A discrete sweep's values as written into each job's override (a glob needs the config: none)."""
    try:
        return list(override.sweep_string_iterator())
    except Exception:  # noqa: BLE001 - glob(...) expands only with Hydra's config loader
        return []


def _sweep_overrides(task: list[str], params: dict | None) -> list:
    """A multirun's overrides, parsed: the command line's (``task``) and ``hydra.sweeper.params``."""
    return _parsed([str(o) for o in task] + [f"{k}={v}" for k, v in (params or {}).items()])


def swept_keys(hydra: DictConfig) -> set[str]:
    """The keys a multirun sweeps: command-line sweeps and ``hydra.sweeper.params``; a value listed twice is refused."""
    params = hydra.sweeper.get("params")
    overrides = _sweep_overrides(list(hydra.overrides.task), OmegaConf.to_container(params, resolve=True) if params else None)
    sweeps = [o for o in overrides if o.is_sweep_override()]
    for override in sweeps:
        values = _values(override) if override.is_discrete_sweep() else []
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"{override.input_line} lists {override.key_or_group}={twice[0]} twice, so two jobs "
                              f"would share one folder; list each value once")
    return {o.key_or_group for o in sweeps}


class SweptNames(Callback):
    """Hydra callback: before a sweep, exclude every task override that is not swept from the job folder names."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = config.hydra
        try:
            swept = swept_keys(hydra)
        except ConfigError as err:  # Hydra turns a callback's exception into a warning: end here, as cli() would
            print(f"layerscope: error: {err}", file=sys.stderr)
            sys.exit(2)
        fixed = [o.key_or_group for o in _parsed([str(o) for o in hydra.overrides.task]) if o.key_or_group not in swept]
        exclude = list(dict.fromkeys([*OmegaConf.select(config, EXCLUDE_KEYS, default=[]), *fixed]))
        override = f"{EXCLUDE_KEYS}=[{','.join(repr(str(k)) for k in exclude)}]"
        with read_write(hydra), open_dict(hydra):
            hydra.overrides.hydra.append(override)  # every job is composed from these (load_sweep_config)


def _load_record(folder: Path, name: str) -> Any:
    """A file Hydra recorded in a job folder's ``.hydra/`` (hydra.yaml, overrides.yaml), None when it has none."""
    return read_yaml(folder / ".hydra" / name)


def _hydra_record(folder: Path) -> dict:
    """The ``hydra`` node a job folder's ``.hydra/hydra.yaml`` recorded ({} when there is none)."""
    return (_load_record(folder, "hydra.yaml") or {}).get("hydra") or {}


def recorded_overrides(folder: Path) -> list[str] | None:
    """The command-line overrides of the run in ``folder`` as typed (``.hydra/overrides.yaml``), None when it
    has no such record."""
    if not (folder / ".hydra" / "overrides.yaml").exists():
        return None
    return [str(o) for o in _load_record(folder, "overrides.yaml") or []]


def record_overrides(folder: Path, overrides: list[str]) -> None:
    """Record a run's overrides in ``folder/.hydra/overrides.yaml``, as Hydra does for a command-line run."""
    (folder / ".hydra").mkdir(exist_ok=True)
    write_text(folder / ".hydra" / "overrides.yaml", yaml.safe_dump([str(o) for o in overrides]))


def job_number(folder: Path) -> int | None:
    """A sweep job folder's job number (``hydra.job.num``), None for a folder that is no sweep job."""
    hydra = _hydra_record(folder)
    num = hydra.get("job", {}).get("num") if hydra.get("mode") == "MULTIRUN" else None
    return num if isinstance(num, int) else None


def swept_overrides(folder: Path) -> dict[str, str]:
    """The overrides a sweep job's folder is named by, {key: value as written}; {} for a single run's folder."""
    hydra = _hydra_record(folder)
    if hydra.get("mode") != "MULTIRUN":
        return {}
    exclude = set(hydra["job"]["config"]["override_dirname"]["exclude_keys"])
    return {o.key_or_group: o.get_value_element_as_str() for o in _parsed(list(hydra["overrides"]["task"]))
            if o.key_or_group not in exclude}


def sweep_values(folder: Path) -> tuple[dict[str, list[str]], set[str]]:
    """The sweep a job folder belongs to, from its ``multirun.yaml``: ({swept key: its values as written (none
    for a range a sweeper samples)}, the keys every job sets to one value); ({}, set()) for a single run's folder."""
    if _hydra_record(folder).get("mode") != "MULTIRUN":
        return {}, set()
    master = (read_yaml(folder.parent / "multirun.yaml") or {}).get("hydra") or {}
    if not master:  # a sweep folder made elsewhere: this job's own swept values
        return {k: [v] for k, v in swept_overrides(folder).items()}, set()
    overrides = _sweep_overrides(master["overrides"]["task"], (master.get("sweeper") or {}).get("params"))
    swept = {o.key_or_group: _values(o) if o.is_discrete_sweep() else [] for o in overrides if o.is_sweep_override()}
    return swept, {o.key_or_group for o in overrides if not o.is_sweep_override()}
