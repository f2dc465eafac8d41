"""Every place layerscope reaches into Hydra's internals (``hydra._internal``) or replaces a method of Hydra's, each
with the reason: Hydra offers no public hook for these. Nothing else in layerscope imports ``hydra._internal``.

- ``hydra._internal.utils``: Hydra's command-line parser (``parse_command_line``), its config search path
  (``config_loader``) and its error report (``report_errors_with``).
- ``ConfigLoaderImpl``: the loader Hydra composes configs with. ``get_group_options`` is replaced
  (``reuse_group_repositories``) and so is ``load_sweep_config`` (``compose_once``); both use its
  ``_parse_overrides_and_create_caching_repo`` (the repository Hydra reads a job's config groups from), and
  ``compose_once`` and ``compose`` (the lecture experiments' variants) its ``_apply_overrides_to_config`` (how
  Hydra applies a value override).
- ``hydra._internal.config_loader_impl.get_overrides_dirname``: ``hydra.job.override_dirname`` as Hydra writes it.
- ``hydra.core.utils._save_config``: how ``run_job`` writes a job's ``.hydra/`` records; replaced by
  ``write_records_once`` with the same text, written without emitting again what an earlier job's had.
- ``omegaconf.grammar_parser.parse``: how OmegaConf (Hydra's config library) parses an interpolation each time it
  resolves one; ``parse_interpolations_once`` keeps each string's parse tree.
- ``FileConfigSource.load_config`` and ``ImportlibResourcesConfigSource.load_config``: how Hydra reads a config file
  (layerscope's configs/, Hydra's own) each time it composes; ``read_config_files_once`` keeps what each read gave.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Sequence

import hydra._internal.utils as hydra_utils
import hydra.core.utils as hydra_core_utils
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.config_repository import CachingConfigRepository
from hydra._internal.sources_registry import SourcesRegistry
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.plugins.config_source import ConfigResult
from omegaconf import DictConfig, OmegaConf, base, grammar_parser, open_dict
from omegaconf import _utils as omegaconf_utils

from layerscope.config.overrides import parse
from layerscope.files import yaml_text
from layerscope.paths import config_dir

_REPOSITORIES = "_layerscope_group_repositories"
_COMPOSITIONS = "_layerscope_compositions"
_HANDED_OUT = "_layerscope_handed_out"
_HYDRA_LOAD_SWEEP_CONFIG = ConfigLoaderImpl.load_sweep_config


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


def _repository(loader: ConfigLoaderImpl, config_name: str | None, overrides: Sequence[str]) -> CachingConfigRepository:
    """The repository Hydra reads config groups from for (config, overrides), copied once per loader and pair."""
    key = (config_name, tuple(overrides))
    repositories: dict[Any, Any] = loader.__dict__.setdefault(_REPOSITORIES, {})
    if key not in repositories:
        repositories[key] = loader._parse_overrides_and_create_caching_repo(config_name, list(key[1]))[1]
    return repositories[key]


def _group_options(self: ConfigLoaderImpl, group_name: str, results_filter: ObjectType | None = ObjectType.CONFIG,
                   config_name: str | None = None, overrides: list[str] | None = None) -> list[str]:
    """Hydra's ``ConfigLoaderImpl.get_group_options``, with the repository copy made once per (config, overrides)."""
    return _repository(self, config_name, overrides or ()).get_group_options(group_name, results_filter)


def reuse_group_repositories() -> None:
    """Hydra lists a config group's options by copying its whole config repository first, once per group:
    ``layerscope --help`` and TAB completion asked for ~100 groups, 2.7 s of deep copies. One process holds one
    repository, so the copy made for a (config, overrides) pair is kept and reused for every group."""
    ConfigLoaderImpl.get_group_options = _group_options


def _about_hydra(override: Override) -> bool:
    """Whether ``override`` sets Hydra's own node (``hydra.*``, ``hydra/*``, or ``hydra`` itself)."""
    return override.is_hydra_override() or override.key_or_group == "hydra"


def _sets_a_value(parsed: list[Override], repository: CachingConfigRepository) -> list[bool]:
    """Which of ``parsed`` set a value (Hydra's rule for a config override, ``defaults_list.Overrides``); the rest
    choose the defaults list."""
    return [not _about_hydra(o) and not o.is_sweep_override()
            and (isinstance(o.value(), dict) or not repository.group_exists(o.key_or_group)) for o in parsed]


def _compose_from_selection(loader: ConfigLoaderImpl, master_config: DictConfig,
                            sweep_overrides: list[str]) -> DictConfig:
    """One job's config: Hydra's composition of its defaults-list selection, made once, then its value overrides."""
    config_name = master_config.hydra.job.config_name
    master_overrides = [str(line) for line in master_config.hydra.overrides.hydra]
    parsed = parse(sweep_overrides)
    repository = _repository(loader, config_name,
                              master_overrides + [o.input_line for o in parsed if o.is_hydra_override()])
    values = _sets_a_value(parsed, repository)
    selection = [line for line, value in zip(sweep_overrides, values) if not value]
    key = (config_name, tuple(master_overrides), tuple(selection))
    compositions: dict[Any, bytes] = loader.__dict__.setdefault(_COMPOSITIONS, {})
    if key not in compositions:  # kept pickled: unpickling copies it 3x faster than deepcopy
        compositions[key] = pickle.dumps(_HYDRA_LOAD_SWEEP_CONFIG(loader, master_config, selection))
    cfg = pickle.loads(compositions[key])
    ConfigLoaderImpl._apply_overrides_to_config([o for o, value in zip(parsed, values) if value], cfg)

    app_overrides = [o for o in parsed if not o.is_hydra_override()]
    task = cfg.hydra.overrides.task
    task.clear()
    task.extend([o.input_line for o in app_overrides])
    with open_dict(cfg.hydra):
        for name in cfg.hydra.job.env_copy:
            cfg.hydra.job.env_set[name] = os.environ[name]
    cfg.hydra.runtime.cwd = os.getcwd()
    dirname = cfg.hydra.job.config.override_dirname
    cfg.hydra.job.override_dirname = get_overrides_dirname(overrides=app_overrides, kv_sep=dirname.kv_sep,
                                                           item_sep=dirname.item_sep,
                                                           exclude_keys=dirname.exclude_keys)
    OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
    return cfg


def _load_sweep_config(self: ConfigLoaderImpl, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
    """Hydra's ``ConfigLoaderImpl.load_sweep_config``, composing once per defaults-list selection. A job's config is
    handed out twice, the same object: a sweeper composes every job to check its batch and drops the result, then
    its launcher composes the job again to run it."""
    key = (id(master_config), tuple(sweep_overrides))
    composed: dict[Any, DictConfig] = self.__dict__.setdefault(_HANDED_OUT, {})
    if key in composed:
        return composed.pop(key)
    try:
        cfg = _compose_from_selection(self, master_config, list(sweep_overrides))
    except Exception:  # noqa: BLE001 - Hydra composes the job itself, to report the mistake as Hydra does
        return _HYDRA_LOAD_SWEEP_CONFIG(self, master_config, sweep_overrides)
    composed[key] = cfg
    return cfg


def compose_once() -> None:
    """A sweep's sweeper composes every job to check the batch and its launcher composes it again, ~0.1-0.3 s each
    time, though jobs differ mostly in values (``optimizer.lr=0.01``). Hydra's composition is made once per
    defaults-list selection (config-group choices and ``hydra.*`` overrides) and kept in the loader; each job
    gets a copy with its value overrides applied by Hydra's own ``_apply_overrides_to_config``, and the ``hydra``
    node's per-job entries set as Hydra sets them. A job that fails this way is composed by Hydra itself."""
    ConfigLoaderImpl.load_sweep_config = _load_sweep_config


def compose(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """``hydra.compose(config_name, overrides)`` (inside ``paths.configs_context``), composed by Hydra once per
    defaults-list selection in this process, its value overrides applied to a copy as Hydra applies them: the
    lecture experiments compose ~60 variants that differ mostly in values (~0.2 s each by Hydra)."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    parsed = parse(list(overrides))
    values = _sets_a_value(parsed, _repository(loader, config_name, []))
    if any(_about_hydra(o) for o in parsed):
        return hydra_compose(config_name, overrides=list(overrides))
    selection = tuple(line for line, value in zip(overrides, values) if not value)
    compositions: dict[Any, bytes] = loader.__dict__.setdefault(_COMPOSITIONS, {})
    key = ("compose", config_name, selection)
    if key not in compositions:
        compositions[key] = pickle.dumps(hydra_compose(config_name, overrides=list(selection)))
    cfg = pickle.loads(compositions[key])
    try:
        ConfigLoaderImpl._apply_overrides_to_config([o for o, value in zip(parsed, values) if value], cfg)
    except Exception:  # noqa: BLE001 - Hydra composes it itself, to report the mistake as Hydra does
        return hydra_compose(config_name, overrides=list(overrides))
    return cfg


def _save_config(cfg: Any, filename: str, output_dir: Path) -> None:
    """Hydra's ``hydra.core.utils._save_config``: the same file, through ``files.yaml_text``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(str(output_dir / filename), "w", encoding="utf-8") as file:
        file.write(yaml_text(OmegaConf.to_container(cfg, enum_to_str=True)))


def write_records_once() -> None:
    """Hydra's ``run_job`` writes each job's config.yaml, hydra.yaml and overrides.yaml with PyYAML's pure-Python
    emitter (~7 ms a job); ``files.yaml_text`` writes the same text and emits an entry once per process."""
    hydra_core_utils._save_config = _save_config


@functools.lru_cache(maxsize=1024)
def _parse(value: str, parser_rule: str = "configValue", lexer_mode: str = "DEFAULT_MODE") -> Any:
    """OmegaConf's ``grammar_parser.parse``, once per string: its parse tree is only read (by OmegaConf's resolver)."""
    return grammar_parser.parse(value, parser_rule, lexer_mode)


def parse_interpolations_once() -> None:
    """OmegaConf parses an interpolation (``${now:%H-%M-%S}``) with its ANTLR grammar each time it resolves it, ~0.5 ms:
    a sweep's launcher resolves each job's folder (``hydra.sweep.dir``, ``subdir``) and the same strings again and
    again. Each string is parsed once per process (a string that fails to parse raises each time, as before)."""
    base.parse = omegaconf_utils.parse = _parse


_READ_CONFIG: dict[type, Callable[..., ConfigResult]] = {}  # Hydra's own load_config of each source patched
_CONFIG_FILES: dict[tuple, bytes] = {}  # each config file Hydra read, by source, path and version, pickled


def _config_file(self, config_path: str) -> ConfigResult:
    """Hydra's ``load_config`` of a file or package config source, read and parsed once per version of the file: a
    copy of that read each time (Hydra changes what it loads, e.g. it takes the defaults list out)."""
    version = None  # a package's file (Hydra's own configs) does not change while the process runs
    if self.scheme() == "file":
        with contextlib.suppress(OSError):  # a missing file: Hydra's own read reports it
            stat = os.stat(os.path.join(self.path, self._normalize_file_name(config_path)))
            version = (stat.st_mtime_ns, stat.st_size)
    key = (type(self), self.provider, self.path, config_path, version)
    if key not in _CONFIG_FILES:
        _CONFIG_FILES[key] = pickle.dumps(_READ_CONFIG[type(self)](self, config_path))
    return pickle.loads(_CONFIG_FILES[key])


def read_config_files_once() -> None:
    """Hydra reads every config file it composes from again for each composition, ~2-4 ms a file with PyYAML in pure
    Python (a lecture experiment's variant reads ~20). Each file is read once while it is unchanged. The sources
    patched are the classes Hydra registers: it executes its plugin modules anew when it first scans them."""
    Plugins.instance()
    for scheme in ("file", "pkg"):
        source = SourcesRegistry.instance().resolve(scheme)
        if source.load_config is not _config_file:
            _READ_CONFIG[source], source.load_config = source.load_config, _config_file
