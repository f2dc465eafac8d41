"""A stacked group: K configurations of one model shape trained together as one model, each a real run.

``train_group`` takes the members' configs and run folders. Each member is validated and built as
its single run would be (same checks, same seed, same initial weights, same data order); a member
whose config is invalid is ``failed`` with its one-line error and the others train. The loop is the
single run's, over (K,) tensors: one forward/backward pass of all members per step, the lecture's
update rules per member (``stacked_optim``), probes of all members in one transfer. A member whose
loss turns NaN/inf is masked from that step on and ends ``diverged`` at its own step. Every member
writes its own folder exactly as a single run does (events, metrics.jsonl, probes.jsonl, figures,
hparams, summary.json, and checkpoint.pt in the single-run format).

Dropout: each step draws one mask per member and layer, (K, B, width) at once, from torch's global
generator; a member's masks have its single run's distribution but are other draws than its
single run's, so with dropout a member equals its single run in distribution, not bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from layerscope import __version__
from layerscope.checkpoint import rng_state, save_checkpoint
from layerscope.data import Data, load_data
from layerscope.epoch_log import EpochLog
from layerscope.errors import ConfigError
from layerscope.interrupt import Interrupt
from layerscope.losses import build_loss
from layerscope.model import MLP
from layerscope.optim import build_optimizer, build_scheduler
from layerscope.ownership import FolderInUse, owned
from layerscope.paths import preset
from layerscope.probed_model import initialized_model, probe_measure
from layerscope.probes import Captured, ProbeRecord
from layerscope.run_files import CHECKPOINT, FINAL, TRAIN_LOG, failure, restart_logs, write_config, write_summary
from layerscope.stacked_model import StackedMLP
from layerscope.stacked_optim import COUNTS_STEPS, StackedOptimizer
from layerscope.theory import Prediction, compare, predict_run
from layerscope.trainer import (describe, epoch_row, epochs_for, evaluate, finish_run, log_epoch, new_summary, test_metrics,
                               total_steps)
from layerscope.validate import DTYPES, check_against_data, validate
from layerscope.writer import RunWriter

log = logging.getLogger("layerscope")

MEMBER_KEYS = {"init": None, "optimizer": None, "scheduler": None,
               "trainer": ("seed", "weight_decay", "l1", "clip_grad_norm", "clip_grad_value", "progress", "resume",
                           "fail_on_divergence")}
"""What members of one group may differ in (a whole group, or keys of it); everything else is the group's shape."""


def group_key(cfg: DictConfig) -> str:
    """Configs with equal keys train as one stacked model: the config less what members may differ in."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for group, keys in MEMBER_KEYS.items():
        if keys is None:
            plain.pop(group, None)
        else:
            plain[group] = {k: v for k, v in plain.get(group, {}).items() if k not in keys}
    return repr(sorted(plain.items(), key=lambda kv: kv[0]))


@dataclass
class Member:
    """One configuration of a group: its config and folder, its single-run model and what it records."""

    cfg: DictConfig
    run_dir: Path
    model: MLP | None = None  # its single-run model (CPU): initial weights, checkpoints in the single-run format
    optimizer: torch.optim.Optimizer | None = None  # its torch.optim twin: lr schedule, checkpoint format
    scheduler: Any = None
    data: int = 0  # index of its dataset among the group's distinct ones
    prediction: Prediction | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    records: list[ProbeRecord] = field(default_factory=list)
    writer: RunWriter | None = None
    log: logging.Logger = log
    done: bool = False

    def fail(self, error: str) -> None:
        """Record a one-line failure in the member's folder."""
        self.summary = failure(error)
        self.done = True
        write_summary(self.run_dir, self.summary)


@functools.cache
def _log_format() -> str:
    """The single run's train.log format (configs/hydra/job_logging), its logger named layerscope as there."""
    return preset("hydra/job_logging", "layerscope")["formatters"]["full"]["format"].replace("%(name)s", "layerscope")


def _run_log(run_dir: Path) -> logging.Logger:
    """A logger that writes into the member's own train.log (the console gets the group's lines)."""
    logger = logging.getLogger(f"layerscope.run.{run_dir}")
    logger.propagate, logger.level = False, logging.INFO
    handler = logging.FileHandler(run_dir / TRAIN_LOG)
    handler.setFormatter(logging.Formatter(_log_format()))
    logger.addHandler(handler)
    return logger


def _datasets(members: list[Member], device: torch.device) -> list[Data]:
    """Load each distinct dataset once: members share one unless a seeded draw or split differs."""
    fixed: dict[str, Data] = {}  # datasets that do not depend on the seed, by config
    seeded: dict[tuple[str, int], Data] = {}
    out: list[Data] = []
    for m in (m for m in members if not m.done):
        key, seed = repr(OmegaConf.to_container(m.cfg.data, resolve=True)), m.cfg.trainer.seed
        try:
            data = fixed.get(key) or seeded.get((key, seed)) or load_data(m.cfg.data, seed)
            (seeded.__setitem__((key, seed), data) if data.seeded else fixed.__setitem__(key, data))
            check_against_data(m.cfg, data, device)
        except ConfigError as err:
            m.fail(str(err))
            continue
        if not any(d is data for d in out):
            out.append(data)
        m.data = next(i for i, d in enumerate(out) if d is data)
    return out


def _build(member: Member, data: Data) -> None:
    """The member's model, optimizer and schedule, built and checked as its single run builds them."""
    cfg = member.cfg
    member.model = initialized_model(cfg, data)
    member.optimizer = build_optimizer(member.model.parameters(), cfg.optimizer, cfg.trainer.weight_decay)
    member.scheduler = build_scheduler(member.optimizer, cfg.scheduler)
    member.prediction = predict_run(cfg, data.input_dim, float(data.x_train.square().mean()))


class GroupData:
    """The group's datasets on the device: one shared, or several stacked (M, N, features)."""

    def __init__(self, datasets: list[Data], members: list[Member], device: torch.device, dtype: torch.dtype):
        on_device = [d.to(device, dtype) for d in datasets]
        self.name, self.classes = datasets[0].name, datasets[0].num_classes
        self.input_dim, self.n_train = datasets[0].input_dim, len(datasets[0].x_train)
        self.n_test = len(datasets[0].x_test)
        self.shared = len(on_device) == 1
        pick = (lambda t: t[0]) if self.shared else torch.stack
        self.x_train, self.y_train = pick([d.x_train for d in on_device]), pick([d.y_train for d in on_device])
        self.x_test, self.y_test = pick([d.x_test for d in on_device]), pick([d.y_test for d in on_device])
        self.which = torch.tensor([m.data for m in members], device=device)[:, None]  # (K, 1)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (K, B, features) and labels (K, B) at per-member indices (K, B)."""
        if self.shared:
            return self.x_train[index], self.y_train[index]
        return self.x_train[self.which, index], self.y_train[self.which, index]

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        """Labels (K, n) at per-member indices (K, n)."""
        return self.y_train[index] if self.shared else self.y_train[self.which, index]

    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test inputs and labels, shared ((N, features), (N,)) or per member."""
        if self.shared:
            return self.x_test, self.y_test
        return self.x_test[self.which[:, 0]], self.y_test[self.which[:, 0]]


class GroupTrainer:
    """The training loop of K stacked members: steps, probes, epoch ends, checkpoints, summaries."""

    def __init__(self, members: list[Member], datasets: list[Data], device: torch.device) -> None:
        self.members = members
        cfg = self.cfg = members[0].cfg
        t = cfg.trainer
        dtype = DTYPES[t.dtype]
        self.device = device
        self.data = GroupData(datasets, members, device, dtype)
        self.model = StackedMLP([m.model for m in members], cfg.activation, device, dtype)
        self.optimizer = StackedOptimizer(self.model.chunks, [m.cfg.optimizer for m in members],
                                          [m.cfg.trainer.weight_decay for m in members],
                                          [m.cfg.trainer.clip_grad_norm for m in members],
                                          [m.cfg.trainer.clip_grad_value for m in members])
        self.measure = probe_measure(cfg)
        self.loss_fn = build_loss(cfg.loss)
        l1 = [float(m.cfg.trainer.l1) for m in members]
        self.l1 = torch.tensor(l1, device=device, dtype=dtype) if any(l1) else None
        self.generators = [torch.Generator(device=device).manual_seed(m.cfg.trainer.seed) for m in members]
        self.batch, self.every, self.checkpoint_every = t.batch_size, cfg.probe.every, t.checkpoint_every
        self.total, self.steps_per_epoch = total_steps(cfg, datasets[0])
        self.epochs = epochs_for(self.total, self.steps_per_epoch)
        self.step = 0
        self.first_bad = torch.full((len(members),), -1, dtype=torch.long, device=device)  # masks a member's updates
        self.epoch_log = EpochLog(self.steps_per_epoch, self.batch, (len(members),), device, dtype)
        self.interrupt = Interrupt()
        for m in members:
            m.summary = {**new_summary(self.data.classes, device),
                         "stacked": {"members": len(members), "runs": [str(x.run_dir) for x in members]}}
            m.writer = RunWriter(m.run_dir, purge_step=restart_logs(m.run_dir),
                                 activation_range=self.measure.activation.bounds)
            m.log = _run_log(m.run_dir)
            write_config(m.run_dir, m.cfg)
            m.log.info("layerscope %s: %s on %s (%s), %d steps, one of %d stacked members -> %s", __version__,
                       describe(m.cfg), device, self.data.name, self.total, len(members), m.run_dir)

    @property
    def active(self) -> list[tuple[int, Member]]:
        """The members still training."""
        return [(k, m) for k, m in enumerate(self.members) if not m.done]

    def run(self) -> None:
        """Train every member (or only probe), then write each one's figures, hparams and summary."""
        log.info("stacked group of %d: %s on %s (%s), %d steps", len(self.members), describe(self.cfg), self.device,
                 self.data.name, self.total)
        if self.total:  # the test curve's step 0: the initial weights
            for m, initial in zip(self.members, evaluate(self.model, self.loss_fn, *self.data.test()).T.tolist()):
                m.summary["initial"] = test_metrics(initial)
        started = time.perf_counter()
        with self.interrupt, tqdm(total=self.total, unit="step", desc=f"{len(self.members)} stacked", leave=False,
                                  disable=None if self.cfg.trainer.progress else True) as self.bar:
            if self.total == 0:
                self._probe_only()
            for epoch in range(self.epochs):
                if self._epoch(epoch):
                    break
        seconds = time.perf_counter() - started
        for k, m in self.active:
            m.summary["status"] = "completed"
            if self.total:
                self._checkpoint(k, self.epochs, 0, self.generators[k].get_state(), [])
        for m in self.members:
            m.summary.update(train_seconds=seconds, probes=len(m.records),
                             samples_per_second=m.summary["steps"] * self.batch / seconds if m.summary["steps"] else None)
            finish_run(m.cfg, m.summary, m.records, m.writer, m.summary["steps"], m.log,
                       figures=m.summary["status"] != "interrupted")
            for handler in m.log.handlers:
                handler.close()
            m.log.handlers.clear()

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor,
                          probing: bool) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
        """Losses (K,), logits and, when probing, the measurement taken before the update."""
        captured = Captured() if probing else None
        logits = self.model(x, captured)  # (K, B, classes)
        losses = self.loss_fn(logits, y)  # (K,)
        total = losses.sum()
        if self.l1 is not None:
            total = total + (self.l1 * sum(w.abs().sum((1, 2)) for w in self.model.linear_weights())).sum()
        self.model.zero_grad()
        total.backward()
        measured = self.measure(captured, self.model.weights(), self.model.weight_grads()) if probing else None
        return losses.detach(), logits.detach(), measured

    def _probe_only(self) -> None:
        """One forward/backward pass on each member's first batch, measured, no update."""
        index = torch.stack([torch.randperm(self.data.n_train, device=self.device, generator=g)[:self.batch]
                             for g in self.generators])
        _, _, measured = self._forward_backward(*self.data.batch(index), probing=True)
        self._keep(measured, 0)

    def _epoch(self, epoch: int) -> bool:
        """Train one epoch; True when no member is left."""
        epoch_generators = [g.get_state() for g in self.generators]
        order = torch.stack([torch.randperm(self.data.n_train, device=self.device, generator=g)
                             for g in self.generators])  # (K, N): each member's own data order
        self.epoch_log.start()
        epoch_steps = min(self.steps_per_epoch, self.total - self.step)
        i = -1
        for i in range(epoch_steps):
            x, y = self.data.batch(order[:, i * self.batch:(i + 1) * self.batch])
            probing = self.step % self.every == 0 or self.step == self.total - 1
            losses, logits, measured = self._forward_backward(x, y, probing)
            self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(losses), self.step, self.first_bad)
            grads = self.model.grads()
            if not self.model.per_parameter:
                self.model.zero_grad()  # the gathered copy is what the update reads
            self.optimizer.step(grads, self.first_bad < 0)
            self.epoch_log.add(losses, logits)
            if probing:
                self.measure.update_ratio(measured, self.model.weights())
            self.step += 1
            self.bar.update()
            if probing:
                self._keep(measured, self.step - 1, epoch)
                if not self.active:
                    break
            if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self._checkpoint_all(epoch, i + 1, epoch_generators)
            if self.interrupt.received:
                return self._interrupted(epoch, i + 1, epoch_generators)
        labels = self.data.labels(order[:, :(i + 1) * self.batch]).view(len(self.members), i + 1, self.batch)
        return self._end_epoch(epoch, self.epoch_log.totals(i + 1, labels.transpose(0, 1)), self.epoch_log.losses[:i + 1])

    def _checkpoint_all(self, epoch: int, position: int, epoch_generators: list[torch.Tensor]) -> None:
        """A checkpoint of every active member whose state is healthy (no NaN/inf loss, finite weights)."""
        healthy = ((self.first_bad < 0) & torch.isfinite(self.model.flat).all(1)).tolist()
        saved = self.epoch_log.saved(position)
        for k, m in self.active:
            if healthy[k]:
                self._checkpoint(k, epoch, position, epoch_generators[k], [t[:, k] for t in saved])

    def _interrupted(self, epoch: int, position: int, epoch_generators: list[torch.Tensor]) -> bool:
        """SIGINT/SIGTERM: checkpoint every active member, mark each interrupted; True (the loop ends)."""
        self._checkpoint_all(epoch, position, epoch_generators)
        for _, m in self.active:
            m.summary.update(status="interrupted", interrupted_at_step=self.step, signal=self.interrupt.name,
                             steps=self.step)
            m.done = True
        log.warning("%s: the stacked group stopped after step %d", self.interrupt.name, self.step)
        return True

    def _keep(self, measured: dict, step: int, epoch: int = 0) -> None:
        """Log each active member's probe record (one transfer); end the members that diverged."""
        records, first_bad = self.measure.records(measured, step, extra=self.first_bad)
        for k, m in self.active:
            record = records[k]
            if int(first_bad[k]) >= 0 and int(first_bad[k]) < step:
                self._diverged(m, int(first_bad[k]), epoch)  # masked since: its weights stopped there
                continue
            if step == 0 and m.prediction is not None:
                record.theory = compare(m.prediction, record.stats)
            m.writer.probe(record)
            m.records.append(record)
            if not record.finite and int(first_bad[k]) < 0:
                self.first_bad[k] = step
                first_bad[k] = step
            if int(first_bad[k]) >= 0 and self.total:
                self._diverged(m, int(first_bad[k]), epoch)

    def _diverged(self, m: Member, at_step: int, epoch: int) -> None:
        m.summary.update(status="diverged", diverged_at_step=at_step, steps=self.step, epochs=epoch + 1)
        m.done = True
        m.log.warning("diverged: the loss became NaN/inf at step %d; this member stops here (masked)", at_step)

    def _end_epoch(self, epoch: int, totals: torch.Tensor, step_losses: torch.Tensor) -> bool:
        """Step each member's schedule, evaluate, log the epoch (one host sync); True when no member is left."""
        lrs = []
        for m in self.members:
            with warnings.catch_warnings():  # its torch.optim twin never steps: the stacked rows do
                warnings.simplefilter("ignore", UserWarning)
                m.scheduler.step()
            lrs.append(m.optimizer.param_groups[0]["lr"])
        self.optimizer.set_lr(lrs)
        test = evaluate(self.model, self.loss_fn, *self.data.test())  # (2, K)
        host = torch.cat([totals[:2], test.to(totals.dtype), self.first_bad[None].to(totals.dtype),
                          step_losses]).T.tolist()
        for k, m in self.active:
            train_loss, train_accuracy, test_loss, test_accuracy, bad = host[k][:5]
            m.summary["steps"], m.summary["epochs"] = self.step, epoch + 1
            if bad >= 0 or not (math.isfinite(train_loss) and math.isfinite(train_accuracy)):
                self._diverged(m, int(bad) if bad >= 0 else self.step, epoch)
                continue
            row = epoch_row(epoch, self.step, [train_loss, train_accuracy], [test_loss, test_accuracy], lrs[k],
                            host[k][5:])
            m.writer.epoch(row)
            m.summary["final"] = {key: row[key] for key in FINAL}
            log_epoch(m.log, row, self.epochs)
        return not self.active

    def _checkpoint(self, k: int, epoch: int, position: int, epoch_generator: torch.Tensor, sums: list) -> None:
        """Member k's checkpoint, in the single-run format (``trainer.resume`` can continue it alone)."""
        m = self.members[k]
        block = next(b for b in self.optimizer.blocks if b.start <= k < b.stop)
        states = {key: self.model.unstack(block.rows(key, k)) for key in block.state}
        for i, p in enumerate(m.model.parameters()):  # torch.optim's state of parameter i
            m.optimizer.state[p] = {key: values[i].clone() for key, values in states.items()}
            if block.name in COUNTS_STEPS:
                m.optimizer.state[p]["step"] = torch.tensor(float(block.steps))
        save_checkpoint(m.run_dir / CHECKPOINT, {
            "step": self.step, "epoch": epoch, "position": position, "epoch_generator": epoch_generator,
            "sums": [t.cpu() for t in sums], "model": self.model.member_state(k, m.model),
            "optimizer": m.optimizer.state_dict(), "scheduler": m.scheduler.state_dict(), "rng": rng_state(),
            "summary": m.summary})


def train_group(cfgs: list[DictConfig], run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Train configs that share a model shape as one stacked model; each member's summary, in order.

    Members are trained in optimizer order (each optimizer updates a block of rows); summaries come
    back in the order given.
    """
    order = sorted(range(len(cfgs)), key=lambda i: str(cfgs[i].optimizer.get("name")))
    members = [Member(cfgs[i], Path(run_dirs[i])) for i in order]
    with contextlib.ExitStack() as held:
        for m in members:
            try:
                held.enter_context(owned(m.run_dir))
            except FolderInUse as err:  # another process's folder: nothing is written there
                m.summary, m.done = failure(str(err)), True
        _train(members)
    by_input = dict(zip(order, members))
    return [by_input[i].summary for i in range(len(cfgs))]


def _train(members: list[Member]) -> None:
    """Check, build and train the members that own their folders; a member with a bad config fails alone."""
    device = None
    for m in members:
        if m.done:
            continue
        try:
            device = validate(m.cfg)
        except ConfigError as err:
            m.fail(str(err))
    datasets = _datasets(members, device)
    for m in members:
        if not m.done:
            try:
                _build(m, datasets[m.data])
            except ConfigError as err:
                m.fail(str(err))
    trained = [m for m in members if not m.done]
    if trained:
        if trained[0].cfg.trainer.threads:  # part of the group's shape: every member asks for the same
            torch.set_num_threads(trained[0].cfg.trainer.threads)
        used = sorted({m.data for m in trained})
        for m in trained:
            m.data = used.index(m.data)
        GroupTrainer(trained, [datasets[i] for i in used], device).run()
