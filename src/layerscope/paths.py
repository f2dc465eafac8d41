"""Where the Hydra config tree is, for an editable checkout and for an installed wheel."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
HYDRA_VERSION_BASE = "1.3"  # the Hydra defaults layerscope's configs are written for
OUTPUTS_VARIABLE = "LAYERSCOPE_OUTPUTS"  # configs/train.yaml's hydra.run.dir and hydra.sweep.dir read it too


def outputs() -> Path:
    """Where runs, sweeps, reports and benchmarks are written: ``$LAYERSCOPE_OUTPUTS``, else ``outputs/``."""
    return Path(os.environ.get(OUTPUTS_VARIABLE, "outputs"))


def config_dir() -> str:
    """Absolute path of ``configs/``: shipped inside the wheel, or the checkout's top-level folder."""
    for candidate in (PACKAGE / "configs", PACKAGE.parents[1] / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"layerscope cannot find its configs/ (looked in {PACKAGE / 'configs'} and "
                            f"{PACKAGE.parents[1] / 'configs'}); reinstall the package")


def configs_context() -> Any:
    """A context in which ``hydra.compose("train", overrides=...)`` composes layerscope's configs."""
    from hydra import initialize_config_dir

    return initialize_config_dir(config_dir=config_dir(), version_base=HYDRA_VERSION_BASE)


def choices(group: str) -> list[str]:
    """The choices of config group ``group`` (``activation``: elu, gelu, ...), its yaml files; none for no group."""
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


def preset(group: str, name: str) -> dict:
    """The config group file ``configs/<group>/<name>.yaml`` as a dict, e.g. the lecture's optimizer hyper-parameters."""
    return copy.deepcopy(_preset(group, name))


@functools.lru_cache(maxsize=None)
def _preset(group: str, name: str) -> dict:
    from omegaconf import OmegaConf  # read once per process: a sweep's members ask for the same files

    return OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / group / f"{name}.yaml"))
