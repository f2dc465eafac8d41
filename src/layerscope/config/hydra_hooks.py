"""Every place layerscope reaches into Hydra's internals (``hydra._internal``) or replaces a method of Hydra's, each
with the reason: Hydra offers no public hook for these. Nothing else in layerscope imports ``hydra._internal``."""

from __future__ import annotations

import argparse
import copy
from typing import Any, Callable, Sequence

import hydra._internal.utils as hydra_utils
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.object_type import ObjectType
from omegaconf import DictConfig

from layerscope.paths import config_dir

_REPOSITORIES = "_layerscope_group_repositories"


def parse_command_line(argv: Sequence[str]) -> argparse.Namespace:
    """The command line as Hydra's own parser reads it (all overrides, flags between them too): checked before
    Hydra starts, so that what it would report with a traceback or miss is one line instead."""
    return hydra_utils.get_args_parser().parse_intermixed_args(argv)


def config_loader() -> ConfigLoaderImpl:
    """A loader over configs/: Hydra's override parser needs one to read a sweep's values before Hydra runs."""
    return ConfigLoaderImpl(config_search_path=hydra_utils.create_config_search_path(config_dir()))


def report_errors_with(run_and_report: Callable[[Callable[[], Any]], Any]) -> Callable[[Callable[[], Any]], Any]:
    """Route Hydra's error report through ``run_and_report`` (Hydra prints a configuration mistake in several
    lines and has no hook for it); returns Hydra's own, for the errors that are not the user's."""
    original = hydra_utils.run_and_report
    hydra_utils.run_and_report = run_and_report
    return original


def _group_options(self: ConfigLoaderImpl, group_name: str, results_filter: ObjectType | None = ObjectType.CONFIG,
                   config_name: str | None = None, overrides: list[str] | None = None) -> list[str]:
    """Hydra's ``ConfigLoaderImpl.get_group_options``, with the repository copy made once per (config, overrides)."""
    key = (config_name, tuple(overrides or ()))
    repositories: dict[Any, Any] = self.__dict__.setdefault(_REPOSITORIES, {})
    if key not in repositories:
        repositories[key] = self._parse_overrides_and_create_caching_repo(config_name, list(key[1]))[1]
    return repositories[key].get_group_options(group_name, results_filter)


def reuse_group_repositories() -> None:
    """Hydra lists a config group's options by copying its whole config repository first, once per group:
    ``layerscope --help`` and TAB completion asked for ~100 groups, 2.7 s of deep copies. One process holds one
    repository, so the copy made for a (config, overrides) pair is kept and reused for every group."""
    ConfigLoaderImpl.get_group_options = _group_options


def remember_compositions(loader: Any) -> None:
    """Compose each job once: Hydra's sweeper composes every job to validate the batch, then the launcher would
    again (~0.2 s a job), and Hydra hands the launcher no compositions; the second time gets a copy of the first."""
    compose, cache = loader.load_sweep_config, {}

    def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key not in cache:
            cache[key] = compose(master_config, sweep_overrides)
        return copy.deepcopy(cache[key])

    loader.load_sweep_config = load_sweep_config
