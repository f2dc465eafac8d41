"""Runs go to the training loop in stacks: ``run`` trains one configuration (a stack of one), ``train_group``
several of one model shape as one stacked model, each member a real run in its own folder.

Each member is validated and built as its single run would be (same checks, same seed, same initial
weights, same data order, same dropout masks: every random draw from the member's own generators), so a
member's numbers do not depend on which members share its stack. A member whose config is invalid fails
alone with its one-line error; the others train. With ``trainer.resume=true`` each member continues from
its own checkpoint (one that is missing or unreadable starts over, and says so): members that resume from
one step train as one stack, those at another step as another.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from layerscope.config.validate import DTYPES, check_against_data, check_data_size, validate
from layerscope.data.datasets import Data, load_data
from layerscope.errors import ConfigError
from layerscope.nets.losses import build_loss
from layerscope.nets.stacked import StackedMLP
from layerscope.optim.rules import Optimizer
from layerscope.runs.checkpoint import INITIAL, load_checkpoint
from layerscope.runs.folder import CHECKPOINT, failure, has_ended, read_summary, write_summary
from layerscope.runs.ownership import FolderInUse, owned
from layerscope.theory.prediction import predict_run
from layerscope.train.finish import differences
from layerscope.train.interrupt import Stopped
from layerscope.train.loop import Trainer
from layerscope.train.members import GroupData, Member, Stack, member_log
from layerscope.train.probed_model import initialized_model, probe_measure

log = logging.getLogger("layerscope")

MEMBER_KEYS = {"init": None, "optimizer": None, "scheduler": None,
               "trainer": ("seed", "weight_decay", "l1", "clip_grad_norm", "clip_grad_value", "progress", "resume",
                           "fail_on_divergence")}
"""What members of one group may differ in (a whole group, or keys of it); everything else is the group's shape."""


def group_key(cfg: DictConfig) -> str:
    """Configs with equal keys train as one stacked model: the config less what members may differ in (and less a
    sweep job's ``hydra`` node)."""
    plain = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
             for key in cfg if key != "hydra"}
    for group, keys in MEMBER_KEYS.items():
        if keys is None:
            plain.pop(group, None)
        else:
            plain[group] = {k: v for k, v in plain.get(group, {}).items() if k not in keys}
    return repr(sorted(plain.items(), key=lambda kv: kv[0]))


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or, with ``trainer.max_steps=0``, only probe) one configuration into ``run_dir``; its summary.
    An invalid config raises its ConfigError (the CLI's one line) before anything is written there."""
    member = Member(cfg, Path(run_dir))
    member.run_dir.mkdir(parents=True, exist_ok=True)
    _train([member], {})
    if member.error is not None:
        raise member.error
    return member.summary


def data_key(cfg: DictConfig) -> tuple[str, int]:
    """What a run's dataset depends on: its ``data`` config and (for a seeded draw or split) its seed."""
    return repr(OmegaConf.to_container(cfg.data, resolve=True)), int(cfg.trainer.seed)


def train_group(cfgs: list[DictConfig], run_dirs: list[Path], loaded: dict[tuple[str, int], Data] | None = None
                ) -> list[dict[str, Any]]:
    """Train configs that share a model shape as one stacked model; each member's summary, in order.

    Members are stacked in optimizer order (each rule updates a block of rows); summaries come back in the
    order given. A member whose folder another process holds fails without writing there. ``loaded``: datasets
    this process loaded before (``data_key``: dataset), taken from it when used.
    """
    order = sorted(range(len(cfgs)), key=lambda i: str(cfgs[i].optimizer.get("name")))
    members = [Member(cfgs[i], Path(run_dirs[i])) for i in order]
    with contextlib.ExitStack() as held:
        for m in members:
            try:
                held.enter_context(owned(m.run_dir))
            except FolderInUse as err:  # another process's folder: nothing is written there
                m.summary, m.done, m.error = failure(str(err)), True, err
        try:
            _train(members, loaded or {})
        finally:
            for m in members:
                if m.error is not None and not isinstance(m.error, FolderInUse):
                    write_summary(m.run_dir, m.summary)
    by_input = dict(zip(order, members))
    return [by_input[i].summary for i in range(len(cfgs))]


def _train(members: list[Member], loaded: dict[tuple[str, int], Data]) -> None:
    """Check and build the members, then train them a stack per starting step. However this ends, every
    member's folder says how: a crash fails the members it stopped, a signal outside the loop interrupts them."""
    try:
        stacks = _build(members, loaded)
        for stack in stacks:
            Trainer(stack).run()
    except (Exception, Stopped) as err:
        for m in members:
            if m.error is not None or has_ended(read_summary(m.run_dir)):
                continue
            if isinstance(err, Stopped):
                m.summary = {**m.summary, "status": "interrupted", "signal": err.name,
                             "interrupted_at_step": m.summary.get("steps", m.step)}
            else:
                m.summary = failure(f"{type(err).__name__}: {err}".splitlines()[0])
            with contextlib.suppress(OSError):
                write_summary(m.run_dir, m.summary)
        raise


def _build(members: list[Member], loaded: dict[tuple[str, int], Data]) -> list[Stack]:
    """Check and build every member that owns its folder (a bad config fails that member alone); the stacks."""
    device = None
    for m in members:
        if not m.done:
            try:
                device = validate(m.cfg)
                check_data_size(m.cfg)
            except ConfigError as err:
                m.fail(err)
    trained = [m for m in members if not m.done]
    if not trained:
        return []
    if device.type == "cuda":
        torch.cuda.set_device(device)  # streams and graphs (trainer.cuda_graph) belong to the current device
    if trained[0].cfg.trainer.threads:  # part of the group's shape: every member asks for the same
        torch.set_num_threads(trained[0].cfg.trainer.threads)
    datasets = _datasets(trained, device, loaded)
    for m, label in zip(trained, differences([m.cfg for m in trained], [m.run_dir for m in trained])):
        m.label, m.log = label, member_log(m.run_dir, console=len(members) == 1)
        if not m.done:
            try:
                _member(m, datasets[m.data], device)
            except ConfigError as err:
                m.fail(err)
    trained = [m for m in trained if not m.done]
    used = sorted({m.data for m in trained})
    for m in trained:
        m.data = used.index(m.data)
    by_step = itertools.groupby(sorted(trained, key=lambda m: m.step), key=lambda m: m.step)
    return [_stack(list(group), [datasets[i] for i in used], device) for _, group in by_step]


def _datasets(members: list[Member], device: torch.device, loaded: dict[tuple[str, int], Data]) -> list[Data]:
    """Load each distinct dataset once (taking those in ``loaded``, loaded before): members share one unless a
    seeded draw or split differs."""
    fixed: dict[str, Data] = {}  # datasets that do not depend on the seed, by config
    seeded: dict[tuple[str, int], Data] = {}
    out: list[Data] = []
    for m in members:
        key, seed = data_key(m.cfg)
        try:
            data = (fixed.get(key) or seeded.get((key, seed)) or loaded.pop((key, seed), None)
                    or load_data(m.cfg.data, seed))
            (seeded.__setitem__((key, seed), data) if data.seeded else fixed.__setitem__(key, data))
            check_against_data(m.cfg, data, device)
        except ConfigError as err:
            m.fail(err)
            continue
        if not any(d is data for d in out):
            out.append(data)
        m.data = next(i for i, d in enumerate(out) if d is data)
    return out


def _member(m: Member, data: Data, device: torch.device) -> None:
    """The member's initial (or resumed) model and its mean-field prediction, built as its single run builds them."""
    if device.type != "cuda" and m.cfg.trainer.cuda_graph:
        raise ConfigError(f"trainer.cuda_graph=true needs a CUDA device, not {device}; use trainer.cuda_graph=false")
    m.model = initialized_model(m.cfg, data)
    m.prediction = predict_run(m.cfg, data.input_dim, float(data.x_train.square().mean()))
    m.start = _checkpoint(m) if m.cfg.trainer.resume else None
    if m.start:
        m.model.load_state_dict(m.start["model"])


def _checkpoint(m: Member) -> dict[str, Any] | None:
    """The member's checkpoint to continue from; None (it starts over, and says why in one line) when it has none
    or cannot read it."""
    path = m.run_dir / CHECKPOINT
    if not path.exists():
        m.log.info("no checkpoint in %s: starting at step 0", m.run_dir)
        return None
    try:
        state = load_checkpoint(path)
        if len(state.get("sums", [])) not in (0, 2) or "epoch_generator" not in state:
            raise ConfigError(f"{path} was written by an older layerscope")
    except ConfigError as err:
        m.log.warning("%s: starting over at step 0", err)
        return None
    m.log.info("resuming from the checkpoint at step %d (%s)", state["step"], _recorded(read_summary(m.run_dir)))
    return state


def _recorded(summary: dict[str, Any]) -> str:
    """How the run's summary.json says it ended, for the resume message."""
    status = summary.get("status")
    if status in (None, "running"):
        return "the run was left incomplete: its process ended without a status"
    if status == "interrupted":
        return f"the run was interrupted by {summary.get('signal')} after step {summary.get('interrupted_at_step')}"
    return f"the run {status} after step {summary.get('steps')}"


def _stack(members: list[Member], datasets: list[Data], device: torch.device) -> Stack:
    """Members that start at one step, stacked on their device with their data, optimizer, loss and probes."""
    cfg = members[0].cfg
    dtype = DTYPES[cfg.trainer.dtype]
    generators = [m.generators(device) for m in members]
    dropout = [g[1] for g in generators]
    for m, g in zip(members, dropout):
        if m.start and "dropout" in m.start:
            g.set_state(m.start["dropout"])
    model = StackedMLP([m.model for m in members], cfg.activation, device, dtype, dropout)
    for m in members:
        m.model = None  # the stack holds the weights now
    optimizer = Optimizer(model.chunks, [m.cfg.optimizer for m in members],
                          [m.cfg.trainer.weight_decay for m in members],
                          [m.cfg.trainer.clip_grad_norm for m in members],
                          [m.cfg.trainer.clip_grad_value for m in members])
    for k, m in enumerate(members):
        if m.start:
            optimizer.load_member_state(k, m.start["optimizer"], model.restack)
            model.set_initial(k, m.start.get(INITIAL))  # an older checkpoint has none: weight_change unknown
    data = GroupData(datasets, members, device, dtype)
    steps_per_epoch = data.n_train // cfg.trainer.batch_size
    max_steps = cfg.trainer.max_steps
    total = max_steps if max_steps is not None else cfg.trainer.epochs * steps_per_epoch
    return Stack(members, device, data, model, optimizer, probe_measure(cfg), build_loss(cfg.loss),
                 [g[0] for g in generators], total, steps_per_epoch)
