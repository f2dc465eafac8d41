"""``hydra/launcher=stacked``: a sweep's jobs that share a model shape train as one stacked model.

The launcher composes every job's config, groups jobs by ``group.group_key`` (depth, width,
activation, BN, dropout, data, loss, batch size, steps, probes, device: everything but what members
may differ in), splits each group into chunks of at most ``max_members`` and of what fits the
device's memory (loading each shape's data once, for the group that trains here), writes each job's
folder and its ``.hydra/`` records as Hydra's ``run_job`` does (in one pass over the config: ``_begin_job``),
and trains each chunk with ``group.train_group``: here, one after another (``dispatch: local``), or as
one submitit job per chunk (``submitit_local``, or ``slurm`` to spread a sweep over a cluster).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, env_override, setup_globals
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from layerscope.config.validate import GB, free_bytes, run_bytes, validate, whole
from layerscope.data.datasets import load_data
from layerscope.errors import ConfigError
from layerscope.files import write_yaml
from layerscope.heap import startup_left_out
from layerscope.runs.folder import failure, finished, objective, read_summary, stopped_by, write_summary
from layerscope.runs.results import RunResult
from layerscope.train.finish import describe
from layerscope.train.group import data_key, group_key, train_group
from layerscope.train.interrupt import Stopped

log = logging.getLogger("layerscope")
DISPATCH = ("local", "submitit_local", "slurm")
MEMORY_SHARE = 0.8  # plan groups to use at most this share of the device's free memory
SLURM_ONLY = ("partition", "setup")  # submitit options of configs/hydra/launcher/stacked.yaml that only SLURM takes
LOCAL_OPTIONS = ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb")  # those the local executor is given


def _fits(cfg: DictConfig, loaded: dict) -> int | None:
    """How many members of ``cfg``'s shape fit the device's memory; None when its config or data is
    invalid (its members then fail one by one, with their own error)."""
    try:
        device = validate(cfg)
        key = data_key(cfg)
        if key not in loaded:
            loaded[key] = load_data(cfg.data, cfg.trainer.seed)
        data = loaded[key]
    except ConfigError:
        return None
    need, free = run_bytes(cfg, data), free_bytes(device)
    if need > MEMORY_SHARE * free:
        raise ConfigError(f"one member of the stacked group '{describe(cfg)}' needs {need / GB:.2f} GB but {device} "
                          f"has {free / GB:.2f} GB free; use a smaller model.width, model.depth or trainer.batch_size")
    return int(MEMORY_SHARE * free // need)


def plan(cfgs: list[DictConfig], max_members: int, fit_memory: bool = True,
         loaded: dict | None = None) -> list[list[int]]:
    """Job indices per stacked model: jobs of one shape, at most ``max_members`` and (``fit_memory``)
    what fits this machine's device memory, for which each shape's data is loaded (into ``loaded``, by
    ``group.data_key``, when given). A job's config may still hold its ``hydra`` node."""
    groups: dict[str, list[int]] = {}
    for index, cfg in enumerate(cfgs):
        groups.setdefault(group_key(cfg), []).append(index)
    chunks, loaded = [], {} if loaded is None else loaded
    for indices in groups.values():
        fits = _fits(_task_view(cfgs[indices[0]]), loaded) if fit_memory else None
        size = min(max_members, fits or max_members)
        chunks += [indices[i:i + size] for i in range(0, len(indices), size)]
    return chunks


def _task_view(config: DictConfig) -> DictConfig:
    """A copy of a job's config without its ``hydra`` node (what its task will get)."""
    return OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])


def check_launcher(max_members: Any, dispatch: Any) -> None:
    """The launcher's own keys, before anything is written."""
    whole(1)("hydra.launcher.max_members", max_members)
    if dispatch not in DISPATCH:
        raise ConfigError(f"hydra.launcher.dispatch={dispatch!r} is unknown; choose one of: {', '.join(DISPATCH)}")


def reproducible_matmuls() -> None:
    """MKL's strict reproducibility mode for this process and the jobs it starts: a CPU matmul's result then does
    not depend on its operands' memory alignment, so a member's numbers do not depend on its place in the stack
    (without it one machine's MKL gave a member's test loss another last bit in a 2- than in a 4-member stack).
    MKL reads ``MKL_CBWR`` when it first runs, so this must come before any matmul; it costs a stacked step a few
    percent on the CPU, which is why single runs leave it to MKL. A ``MKL_CBWR`` the user set is kept."""
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def _output_dir(config: DictConfig) -> Path:
    """The job's folder, as Hydra's ``run_job`` computes it; with the job's ``HydraConfig`` set first where the sweep's
    folder reads it (``${hydra:...}``), which takes a copy of the config."""
    if "${hydra:" in str(OmegaConf.to_container(config.hydra.sweep, resolve=False)):
        HydraConfig.instance().set_config(config)
    return Path(str(OmegaConf.select(config, "hydra.sweep.dir"))) / str(OmegaConf.select(config, "hydra.sweep.subdir"))


def _begin_job(hydra_context: HydraContext, config: DictConfig, folder: Path) -> tuple[DictConfig, JobReturn]:
    """What Hydra's ``run_job`` leaves of a job before its task runs, made in one pass over the config: the folder, its
    ``.hydra/`` records (config.yaml, hydra.yaml, overrides.yaml, as ``run_job`` writes them) and the job's start
    and end callbacks; the job's task config (``config`` itself, less its ``hydra`` node) and its JobReturn. Unlike
    ``run_job`` it neither configures the job's logging (each member logs to its own train.log) nor sets
    ``HydraConfig`` to the job's (the launcher sets it once)."""
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(folder)
    plain = OmegaConf.to_container(config, enum_to_str=True)
    hydra = plain.pop("hydra")
    folder.mkdir(parents=True, exist_ok=True)
    if config.hydra.output_subdir is not None:
        records = folder / str(config.hydra.output_subdir)
        records.mkdir(parents=True, exist_ok=True)
        for name, data in (("config.yaml", plain), ("hydra.yaml", {"hydra": hydra}),
                           ("overrides.yaml", hydra["overrides"]["task"])):
            write_yaml(records / name, data)
    ret = JobReturn(overrides=list(hydra["overrides"]["task"]), working_dir=os.getcwd(),
                    task_name=str(config.hydra.job.name), status=JobStatus.COMPLETED)
    with env_override(dict(config.hydra.job.env_set)):
        hydra_context.callbacks.on_job_start(config=config, task_function=_no_task)
    hydra_context.callbacks.on_job_end(config=config, job_return=ret)
    with read_write(config), open_dict(config):
        del config["hydra"]
    ret.cfg = config
    return config, ret


def _no_task(cfg: DictConfig) -> None:
    """The task the callbacks are told of: the launcher trains the jobs itself, in stacks."""


def _submitit(work: list[tuple[list[DictConfig], list[str]]], dispatch: str, options: DictConfig) -> list:
    """Train each chunk as one submitit job and wait for them: each job's summaries, or its exception."""
    import submitit

    executor = submitit.AutoExecutor(folder=options.folder, cluster="local" if dispatch == "submitit_local" else "slurm")
    params = {k: v for k, v in OmegaConf.to_container(options, resolve=True).items() if k != "folder" and v is not None}
    if dispatch == "slurm":
        params = {f"slurm_{k}" if k in SLURM_ONLY else k: v for k, v in params.items()}
    else:
        params = {k: v for k, v in params.items() if k in LOCAL_OPTIONS}
    executor.update_parameters(**params)
    results = []
    if dispatch == "submitit_local":  # one machine, one device: one stacked model at a time, as planned
        work_now = [[w] for w in work]
    else:
        work_now = [work]
    for batch in work_now:
        jobs = [executor.submit(train_group, cfgs, dirs) for cfgs, dirs in batch]
        for job in jobs:
            try:
                results.append(job.result())
            except Exception as err:  # noqa: BLE001 - a node's failure belongs to its members
                results.append(err)
    return results


def _local(work: list[tuple[list[DictConfig], list[str]]], loaded: dict | None = None) -> list[list[dict]]:
    """Train the stacks one after another (with the datasets ``plan`` loaded). A group that fails fails its members
    (each says why) and the next group trains; after a SIGINT/SIGTERM the groups not begun are marked interrupted."""
    results: list[list[dict]] = []
    stopped = None
    for cfgs, run_dirs in work:
        if stopped is None:
            try:
                results.append(train_group(cfgs, run_dirs, loaded))
            except Stopped as stop:  # outside the training loop (data, figures): its members say interrupted
                stopped = stop.name
                results.append([read_summary(Path(d)) for d in run_dirs])
            except Exception as err:  # noqa: BLE001 - a group's crash is its members' failure; the sweep goes on
                log.error("a stacked group of %d failed: %s", len(cfgs), f"{type(err).__name__}: {err}".splitlines()[0])
                results.append([read_summary(Path(d)) for d in run_dirs])
            stopped = stopped or stopped_by(results[-1])
            continue
        summary = {"status": "interrupted", "signal": stopped, "steps": 0, "interrupted_at_step": 0}
        for run_dir in run_dirs:
            write_summary(Path(run_dir), summary)
        results.append([summary] * len(cfgs))
    return results


def _warm_figure_workers(config: DictConfig) -> None:
    """Start the figure workers now, where the sweep's groups train here and its first job draws figures: they load
    matplotlib on the CPUs this process leaves idle while it composes, builds and trains."""
    if config.probe.get("figures") and not config.get("grid"):
        from layerscope.probe.figure_workers import warm

        warm(os.cpu_count() or 1, config.model.depth)


def _stacks(chunks: list[list[int]]) -> str:
    """'3 x 16, 1 x 4': how many stacked models of how many members."""
    sizes: dict[int, int] = {}
    for chunk in chunks:
        sizes[len(chunk)] = sizes.get(len(chunk), 0) + 1
    return ", ".join(f"{n} x {size}" for size, n in sorted(sizes.items(), reverse=True)) or "none"


def _forget_sweep(sweep_dir: Path) -> None:
    """Remove the sweep folder Hydra made for a sweep refused before any job ran (it holds multirun.yaml only)."""
    if sweep_dir.is_dir() and [p.name for p in sweep_dir.iterdir()] == ["multirun.yaml"]:
        (sweep_dir / "multirun.yaml").unlink()
        sweep_dir.rmdir()
        if not any(sweep_dir.parent.iterdir()):
            sweep_dir.parent.rmdir()


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Compose, group, write the job folders, train every group; one JobReturn per job, in order."""
    with startup_left_out():
        return _launch(launcher, job_overrides, initial_job_idx)


def _launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    hydra_cfg = launcher.config.hydra
    configure_log(hydra_cfg.hydra_logging, hydra_cfg.verbose)
    configs = []
    for number, overrides in enumerate(job_overrides, start=initial_job_idx):
        config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = number
        if not configs and launcher.dispatch == "local":
            _warm_figure_workers(config)
        configs.append(config)
    folders = [_output_dir(c) for c in configs]
    HydraConfig.instance().set_config(configs[-1])  # as after run_job: ${hydra:...} in a job's config reads it
    loaded: dict = {}  # the datasets plan loads, for the groups trained here
    skipped = {i for i, config in enumerate(configs) if config.get("skip_completed") and finished(folders[i])}
    todo = [i for i in range(len(configs)) if i not in skipped]
    try:
        chunks = [[todo[i] for i in chunk]  # on SLURM the nodes' GPUs are not this machine's: max_members alone
                  for chunk in plan([configs[i] for i in todo], launcher.max_members, launcher.dispatch != "slurm",
                                    loaded)]
    except ConfigError:
        _forget_sweep(Path(str(hydra_cfg.sweep.dir)))
        raise
    Path(str(hydra_cfg.sweep.dir)).mkdir(parents=True, exist_ok=True)
    tasks, returns = {}, {}
    for i in todo:  # each job's folder and .hydra/, as every launcher writes them
        tasks[i], returns[i] = _begin_job(launcher.hydra_context, configs[i], folders[i])
    for i in skipped:
        returns[i] = JobReturn(overrides=list(job_overrides[i]), cfg=_task_view(configs[i]), status=JobStatus.COMPLETED,
                               _return_value=objective(RunResult.load(folders[i]).summary))
    log.info("stacked launcher: %d jobs, %d skipped as finished, stacked as %s", len(configs), len(skipped),
             _stacks(chunks))
    work = [([tasks[i] for i in chunk], [str(folders[i]) for i in chunk]) for chunk in chunks]
    if launcher.dispatch == "local":
        results = _local(work, loaded)
    else:
        results = _submitit(work, launcher.dispatch, launcher.submitit)
    for chunk, result in zip(chunks, results):
        for position, i in enumerate(chunk):
            if isinstance(result, Exception):
                summary = failure(f"{type(result).__name__}: {result}".splitlines()[0])
                write_summary(folders[i], summary)
            else:
                summary = result[position]
            returns[i].return_value, returns[i].status = objective(summary), JobStatus.COMPLETED  # as main's
    return [returns[i] for i in range(len(configs))]
