"""A run's hyper-parameters as TensorBoard's HPARAMS dashboard and ``load_sweep`` show them: every setting
flattened (``init.std``, ``optimizer.lr``), a config group by the name of its choice (``init: normal_1``), and
which of them differ between the jobs of its sweep (those TensorBoard marks as differing and shows first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from layerscope.config.overrides import parse
from layerscope.files import read_yaml
from layerscope.paths import config_dir
from layerscope.runs.job_names import recorded_overrides, sweep_values, swept_overrides

SECTIONS = ("activation", "init", "optimizer", "bn", "scheduler", "data", "loss", "model", "trainer")
"""The config sections a run's hyper-parameters come from; those that are config groups are named by their choice."""
LEFT_OUT = ("progress", "device", "threads", "root", "resume")
"""Settings that say where or how a run ran, not what it trained."""


def _name(key: str) -> str:
    """A hyper-parameter's name for an override's key: a group's ``name``/``placement`` is the group itself."""
    return key.rsplit(".", 1)[0] if key.endswith((".name", ".placement")) else key


def choices(run_dir: Path) -> dict[str, str]:
    """The config group choices Hydra recorded for a run (``.hydra/hydra.yaml``): {"init": "normal_1", ...}."""
    recorded = ((read_yaml(run_dir / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}).get("runtime") or {}
    return {group: str(choice) for group, choice in (recorded.get("choices") or {}).items()
            if group in SECTIONS and choice is not None}


def hyperparameters(cfg: DictConfig | dict, chosen: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings a sweep can vary, flattened (``activation``, ``init.std``, ``optimizer.lr``...); a config group
    is named by its choice in ``chosen`` (``normal_1``), else by its ``name``."""
    container = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, Any] = {}
    for section in SECTIONS:
        for key, value in (container.get(section) or {}).items():
            if key in LEFT_OUT or isinstance(value, (dict, list)):
                continue
            name = section if key in ("name", "placement") else f"{section}.{key}"
            flat[name] = "null" if value is None else value
    flat.update({group: choice for group, choice in (chosen or {}).items() if group in flat})
    return flat


def _group_keys(group: str, options: list[str]) -> set[str]:
    """The keys of config group ``group`` that its ``options`` set differently (``init``: normal, normal_1 ->
    ``init.std``); a key only some of them have differs too."""
    files = [read_yaml(Path(config_dir()) / group / f"{option}.yaml") for option in options]
    flat = [{k: v for k, v in (f or {}).items() if k not in ("name", "placement", "defaults")} for f in files]
    return {f"{group}.{k}" for k in set().union(*flat) if len({repr(f.get(k)) for f in flat}) > 1}


def varied(run_dir: Path) -> list[str]:
    """The hyper-parameters that differ between the jobs of the sweep ``run_dir`` belongs to: each swept key, and for
    a swept config group the keys its choices set differently (``init=normal,normal_1``: ``init``, ``init.std``),
    less those every job overrides to one value; for a single run, the keys its command line set."""
    swept, fixed = sweep_values(run_dir)
    if not swept:
        return [_name(o.key_or_group) for o in parse(recorded_overrides(run_dir) or [])
                if o.key_or_group.split(".")[-1] not in LEFT_OUT]
    keys = [_name(key) for key in swept]
    for group, options in swept.items():
        if group in SECTIONS and len(options) > 1:
            keys += sorted(_group_keys(group, options) - fixed)
    return list(dict.fromkeys(keys))


def dashboard_hparams(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(every hyper-parameter, those that differ between the runs compared, this run's or not) of a run folder; a
    key a run was given that ``hyperparameters`` lacks (``experiment``, ``probe.every``) is added as written."""
    params = hyperparameters(cfg, choices(run_dir))
    given = swept_overrides(run_dir) or {o.key_or_group: o.get_value_element_as_str()
                                         for o in parse(recorded_overrides(run_dir) or []) if not o.is_delete()}
    for key, value in given.items():
        params.setdefault(_name(key), value)
    return params, tuple(varied(run_dir))
