"""The training loop, the one every run goes through: K ≥ 1 members of one shape trained as one stacked model.

A single run is a stack of one; a sweep's jobs that share a shape are a stack of many (``group``). A step is
the plain loop's work for all members at once: each member's batch gathered from its own data order, one
forward/backward pass, each member's update rule; the step's loss is written on the device (``EpochLog``).
A probe every ``probe.every`` steps measures every layer of every member (one transfer to the host). An epoch
ends with one host sync: train and test metrics, then the next epoch's learning rates. A member whose loss
turns NaN/inf is masked from that step on (its weights keep their last healthy values) and ends ``diverged``
at the next probe or epoch end. Checkpoints, resuming from them, SIGINT/SIGTERM and the status in
summary.json work alike for every member, alone or stacked: a member is its single run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import time
from typing import Any

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from layerscope import __version__
from layerscope.config.validate import EVAL_CHUNK
from layerscope.files import truncate_jsonl
from layerscope.nets.stacked import Captured
from layerscope.optim.schedules import learning_rate
from layerscope.probe.record import ProbeRecord
from layerscope.runs.checkpoint import INITIAL, save_checkpoint
from layerscope.runs.folder import CHECKPOINT, FINAL, METRICS, PROBES, restart_logs, write_config, write_summary
from layerscope.runs.writer import RunWriter
from layerscope.theory.prediction import compare
from layerscope.train.cuda_graph import CapturedStep
from layerscope.train.epoch_log import EpochLog
from layerscope.train.finish import describe, figure_records, finish_run, run_figures
from layerscope.train.interrupt import Interrupt
from layerscope.train.members import Member, Stack, close_log

log = logging.getLogger("layerscope")


def epochs_for(total: int, steps_per_epoch: int) -> int:
    """Epochs that ``total`` optimizer steps span; the last may be partial."""
    return math.ceil(total / steps_per_epoch)


def new_summary(num_classes: int, device: torch.device) -> dict[str, Any]:
    """summary.json of a run that has begun: running, no step taken, and what it runs on."""
    return {"status": "running", "steps": 0, "epochs": 0, "diverged_at_step": None, "final": {},
            "num_classes": num_classes, "device": str(device), "torch": str(torch.__version__),
            "python": platform.python_version(), "layerscope": __version__}


@torch.no_grad()
def evaluate(model, loss_fn, x: torch.Tensor, y: torch.Tensor, chunk: int = EVAL_CHUNK) -> torch.Tensor:
    """[mean loss, accuracy] of each of K stacked members on (x, y) in eval mode, (2, K) on the device (no sync);
    ``x`` is shared (N, features) or per member (K, N, features)."""
    model.eval()
    loss_sum = correct = 0
    for start in range(0, y.shape[-1], chunk):
        logits = model(x[..., start:start + chunk, :])  # (K, n, classes)
        labels = y[..., start:start + chunk].expand(logits.shape[:-1])
        loss_sum = loss_sum + loss_fn(logits, labels) * labels.shape[-1]
        correct = correct + (logits.argmax(-1) == labels).sum(-1)
    model.train()
    return torch.stack([loss_sum, correct]) / y.shape[-1]


def test_metrics(values: list[float]) -> dict[str, float]:
    """``evaluate``'s [loss, accuracy] of one member as summary.json names them."""
    return dict(zip(("test_loss", "test_accuracy"), values))


def epoch_row(epoch: int, step: int, train: list[float], test: list[float], lr: float,
              step_losses: list[float]) -> dict[str, Any]:
    """One metrics.jsonl row: the epoch (from 1), its last step, train and test [loss, accuracy], lr, each step's loss."""
    return {"epoch": epoch + 1, "step": step, "train_loss": train[0], "train_accuracy": train[1],
            **test_metrics(test), "lr": lr, "step_losses": step_losses}


def log_epoch(logger: logging.Logger, row: dict[str, Any], epochs: int) -> None:
    """The log line of one epoch's metrics."""
    logger.info("epoch %d/%d  step %d  train loss %.4f acc %.3f  test loss %.4f acc %.3f  lr %.3g", row["epoch"], epochs,
                row["step"], row["train_loss"], row["train_accuracy"], row["test_loss"], row["test_accuracy"], row["lr"])


class Trainer:
    """The training loop of a stack: steps, probes, epoch ends, divergence, checkpoints, signals, summaries."""

    def __init__(self, stack: Stack) -> None:
        s = self.s = stack
        cfg, members = stack.cfg, stack.members
        self.alone = len(members) == 1
        self.batch, self.every, self.checkpoint_every = cfg.trainer.batch_size, cfg.probe.every, cfg.trainer.checkpoint_every
        self.epochs = epochs_for(s.total, s.steps_per_epoch)
        self.resumed = members[0].start  # members of one stack resume from one step
        self.step = members[0].step
        self.clock = torch.full((), self.step, dtype=torch.long, device=s.device)  # the step, for the device
        self.first_bad = torch.full((len(members),), -1, dtype=torch.long, device=s.device)  # masks updates
        self.index = torch.zeros(len(members), self.batch, dtype=torch.long, device=s.device)  # each batch's rows
        self.epoch_log = EpochLog(s.steps_per_epoch, self.batch, (len(members),), s.device, s.data.x_train.dtype)
        l1 = [float(m.cfg.trainer.l1) for m in members]
        self.l1 = torch.tensor(l1, device=s.device, dtype=s.data.x_train.dtype) if any(l1) else None
        self.fast = CapturedStep(self._train_step, s.model.zero_grad, s.model.generators) if cfg.trainer.cuda_graph else None
        self.interrupt = Interrupt()
        # a figure is begun as its probe is recorded where the training leaves a CPU idle (a GPU trains, or fewer
        # threads than CPUs), else as the loop ends: drawn beside a loop on every core, it stalls all its threads
        self.figures_now = s.device.type == "cuda" or torch.get_num_threads() < (os.cpu_count() or 1)
        self.started = time.perf_counter()
        self.finished: float | None = None  # when the loop ended: the final checkpoint and the summary share it

    @property
    def active(self) -> list[tuple[int, Member]]:
        """The members still training, with their row."""
        return [(k, m) for k, m in enumerate(self.s.members) if not m.done]

    def run(self) -> None:
        """Train every member (or only probe), then write each one's figures, hparams and summary.json."""
        s = self.s
        try:
            for m in s.members:
                self._begin(m)
            self._header()
            if s.total and self.resumed is None:  # the test curve's step 0: the initial weights
                for m, initial in zip(s.members, evaluate(s.model, s.loss_fn, *s.data.test()).T.tolist()):
                    m.summary["initial"] = test_metrics(initial)
            self.started = time.perf_counter()
            # the bar's console handler replaces the root's for the run, its level dropped: only with a bar
            redirect = logging_redirect_tqdm() if s.cfg.trainer.progress else contextlib.nullcontext()
            with self.interrupt, redirect, tqdm(
                    total=s.total, initial=self.step, unit="step", leave=False,
                    desc="train" if self.alone else f"{len(s.members)} stacked",
                    disable=None if s.cfg.trainer.progress else True) as self.bar:
                if s.total == 0:
                    self._probe_only()
                for epoch in range(self.resumed["epoch"] if self.resumed else 0, self.epochs):
                    if self._epoch(epoch):
                        break
            self.finished = time.perf_counter()
            for m in s.members:  # the rest of each one's figures, all begun at once; a stopped run draws none
                if m.figures is not None and m.summary["status"] == "interrupted":
                    m.figures.cancel()
                    m.figures = None
                elif m.figures is not None:
                    for record in figure_records(m.records, m.cfg.probe.figures):
                        m.figures.begin(record)
            for k, m in self.active:
                m.summary["status"] = "completed"
                if s.total:  # the final state, for resuming a longer run or reading the weights
                    self._checkpoint(k, self.epochs, 0, s.order[k].get_state(), [])
            for m in s.members:
                steps, seconds = m.summary["steps"], self._seconds(m)
                m.summary.update(train_seconds=seconds, probes=len(m.records),
                                 samples_per_second=steps * self.batch / seconds if steps and seconds else None)
            for m in s.members:
                finish_run(m.cfg, m.summary, m.writer, m.summary["steps"], m.log,
                           m.figures.futures() if m.figures is not None else [])
        finally:
            for m in s.members:
                if m.figures is not None:  # stopped (a signal, an error): the figures not yet begun are not drawn
                    m.figures.cancel()
                if m.writer is not None:
                    m.writer.close()
                close_log(m.log)

    def _begin(self, m: Member) -> None:
        """The member's folder at the start: its config, its summary (running), its logs cut back to its
        checkpoint (or emptied, when it starts over) and its TensorBoard writer."""
        if m.start:
            m.summary = {**m.start["summary"], "status": "running"}
            m.records = [ProbeRecord.from_json(r) for r in truncate_jsonl(m.run_dir / PROBES, self.step)]
            purge = self.step + (m.start["position"] == 0)  # written as an epoch began: after the last one's row
            truncate_jsonl(m.run_dir / METRICS, purge)
        else:
            m.summary = new_summary(self.s.data.classes, self.s.device)
            if len(self.s.members) > 1:
                m.summary["stacked"] = {"members": len(self.s.members), "runs": [str(x.run_dir) for x in self.s.members]}
            purge = restart_logs(m.run_dir)
        m.writer = RunWriter(m.run_dir, purge_step=purge, activation_range=self.s.measure.activation.bounds)
        if m.cfg.probe.figures:
            m.figures = run_figures(describe(m.cfg), m.run_dir, many=not self.alone)
        write_config(m.run_dir, m.cfg)
        write_summary(m.run_dir, m.summary)

    def _header(self) -> None:
        s = self.s
        where = f"on {s.device} ({s.data.name}, {s.data.n_train} train / {s.data.n_test} test), {s.total} steps"
        for m in s.members:
            alone = "" if self.alone else f", one of {len(s.members)} stacked members"
            m.log.info("layerscope %s: %s %s%s -> %s", __version__, describe(m.cfg), where, alone, m.run_dir)
        if not self.alone:
            cfg = s.cfg
            differ = sorted({part.split("=")[0] for m in s.members for part in m.label.split(",") if part})
            log.info("stacked group of %d: %dx%d %s, bn %s %s; the members differ in %s", len(s.members),
                     cfg.model.depth, cfg.model.width, cfg.activation.name, cfg.bn.placement, where,
                     ", ".join(differ) or "nothing (one configuration, several folders)")

    def _forward_backward(self, probing: bool) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
        """Losses (K,), logits (K, B, classes) of the batch in ``index`` and, when probing, the measurement taken
        before the update."""
        s = self.s
        captured = Captured() if probing else None
        x, y = s.data.batch(self.index)
        logits = s.model(x, captured)
        losses = s.loss_fn(logits, y)
        total = losses.sum()
        if self.l1 is not None:
            total = total + (self.l1 * sum(w.abs().sum((1, 2)) for w in s.model.linear_weights())).sum()
        s.model.zero_grad()
        total.backward()
        measured = (s.measure(captured, s.model.weights(), s.model.weight_grads(), s.model.initial_weights())
                    if probing else None)
        return losses.detach(), logits.detach(), measured

    def _train_step(self, probing: bool = False) -> dict | None:
        """One step of every member on the rows in ``index``. It reads fixed buffers only and never syncs, so
        ``trainer.cuda_graph`` can capture it; with ``probing`` the pass is measured, and the update's size after it."""
        s = self.s
        losses, logits, measured = self._forward_backward(probing)
        self.first_bad.copy_(torch.where((self.first_bad < 0) & ~torch.isfinite(losses), self.clock, self.first_bad))
        grads = s.model.grads()
        if not s.model.per_parameter:
            s.model.zero_grad()  # the gathered copy is what the update reads
        s.optimizer.step(grads, self.first_bad < 0)
        self.epoch_log.add(losses, logits)
        self.clock.add_(1)
        if probing:
            s.measure.update_ratio(measured, s.model.weights())
        return measured

    def _probe_only(self) -> None:
        """One forward/backward pass on each member's first batch, measured, no update."""
        s = self.s
        self.index.copy_(torch.stack([torch.randperm(s.data.n_train, device=s.device, generator=g)[:self.batch]
                                      for g in s.order]))
        self._keep(self._forward_backward(probing=True)[2], 0)

    def _epoch(self, epoch: int) -> bool:
        """Train one epoch (or its rest, after a resume); True when no member is left."""
        s, batch = self.s, self.batch
        continuing = self.resumed is not None and epoch == self.resumed["epoch"]
        if continuing:
            for m, g in zip(s.members, s.order):
                g.set_state(m.start["epoch_generator"])
        epoch_generators = [g.get_state() for g in s.order]
        order = torch.stack([torch.randperm(s.data.n_train, device=s.device, generator=g)
                             for g in s.order])  # (K, N): each member's own data order
        begin = self.resumed["position"] if continuing else 0
        self.epoch_log.start(begin, [torch.stack([m.start["sums"][i] for m in s.members], 1).to(s.device)
                                     for i in range(2)] if continuing and begin else None)
        s.optimizer.set_lr([learning_rate(m.cfg.optimizer, m.cfg.scheduler, epoch) for m in s.members])
        epoch_steps = min(s.steps_per_epoch, s.total - (self.step - begin))
        i = begin - 1
        for i in range(begin, epoch_steps):
            self.index.copy_(order[:, i * batch:(i + 1) * batch])
            probing = self.step % self.every == 0 or self.step == s.total - 1
            if probing:  # measured, eagerly
                measured = self._train_step(probing=True)
            elif self.fast is not None:
                self.fast()
            else:
                self._train_step()
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
        labels = s.data.labels(order[:, :(i + 1) * batch]).view(len(s.members), i + 1, batch)
        return self._end_epoch(epoch, self.epoch_log.totals(i + 1, labels.transpose(0, 1)), self.epoch_log.losses[:i + 1])

    def _keep(self, measured: dict, step: int, epoch: int = 0) -> None:
        """Log each active member's probe record (one transfer); end the members that diverged."""
        records, first_bad = self.s.measure.records(measured, step, extra=self.first_bad)
        for k, m in self.active:
            record, bad = records[k], int(first_bad[k])
            if 0 <= bad < step:
                self._diverged(m, bad, epoch)  # masked since: its weights stopped there
                continue
            if step == 0 and m.prediction is not None:
                record.theory = compare(m.prediction, record.stats)
            m.writer.probe(record)
            m.records.append(record)
            if m.figures is not None and self.figures_now and (m.cfg.probe.figures == "every" or len(m.records) == 1):
                m.figures.begin(record)  # drawn while the run trains on
            if not record.finite and bad < 0:
                self.first_bad[k] = bad = step
            if bad >= 0 and self.s.total:
                self._diverged(m, bad, epoch)

    def _diverged(self, m: Member, at_step: int, epoch: int) -> None:
        m.summary.update(status="diverged", diverged_at_step=at_step, steps=self.step, epochs=epoch + 1)
        m.done = True
        m.log.warning("diverged: the loss became NaN/inf at step %d; %s stops here", at_step,
                      "the run" if self.alone else "this member (masked)")

    def _end_epoch(self, epoch: int, totals: torch.Tensor, step_losses: torch.Tensor) -> bool:
        """Evaluate and log the epoch (one host sync); True when no member is left."""
        s = self.s
        lrs = [learning_rate(m.cfg.optimizer, m.cfg.scheduler, epoch + 1) for m in s.members]  # as the schedule stepped
        test = evaluate(s.model, s.loss_fn, *s.data.test())  # (2, K)
        host = torch.cat([totals[:2], test.to(totals.dtype), self.first_bad[None].to(totals.dtype),
                          step_losses]).T.tolist()
        line = []
        for k, m in self.active:
            train_loss, train_accuracy, test_loss, test_accuracy, bad = host[k][:5]
            m.summary["steps"], m.summary["epochs"] = self.step, epoch + 1
            if bad >= 0 or not (math.isfinite(train_loss) and math.isfinite(train_accuracy)):
                self._diverged(m, int(bad) if bad >= 0 else self.step, epoch)
                line.append(f"[{m.label}] diverged")
                continue
            row = epoch_row(epoch, self.step, [train_loss, train_accuracy], [test_loss, test_accuracy], lrs[k],
                            host[k][5:])
            m.writer.epoch(row)
            m.summary["final"] = {key: row[key] for key in FINAL}
            log_epoch(m.log, row, self.epochs)
            line.append(f"[{m.label}] {train_loss:.4f} {test_accuracy:.3f}")
            if self.alone:
                self.bar.set_postfix(loss=f"{train_loss:.3f}", test_acc=f"{test_accuracy:.3f}")
        if not self.alone:
            log.info("epoch %d/%d  step %d  train loss, test acc: %s", epoch + 1, self.epochs, self.step,
                     "; ".join(line) or "no member left")
        return not self.active

    def _checkpoint_all(self, epoch: int, position: int, epoch_generators: list[torch.Tensor]) -> None:
        """A checkpoint of every active member whose state is healthy (no NaN/inf loss, finite weights)."""
        healthy = ((self.first_bad < 0) & torch.isfinite(self.s.model.flat).all(1)).tolist()
        for k, m in self.active:
            if healthy[k]:
                self._checkpoint(k, epoch, position, epoch_generators[k], self.epoch_log.saved(position, k))

    def _checkpoint(self, k: int, epoch: int, position: int, epoch_generator: torch.Tensor, sums: list) -> None:
        """Member k's checkpoint, in the single-run format (the plain MLP's state_dict, torch.optim's state)."""
        s, m = self.s, self.s.members[k]
        save_checkpoint(m.run_dir / CHECKPOINT, {
            "step": self.step, "epoch": epoch, "position": position, "epoch_generator": epoch_generator,
            "sums": sums, "model": s.model.member_state(k), "optimizer": s.optimizer.member_state(k, s.model.unstack),
            "dropout": s.model.generators[k].get_state(), "summary": {**m.summary, "train_seconds": self._seconds(m)},
            INITIAL: s.model.member_initial(k)})

    def _seconds(self, m: Member) -> float:
        """The member's training time so far: this process's and, for a resumed run, what its checkpoint recorded."""
        before = m.start["summary"].get("train_seconds", 0.0) if m.start else 0.0
        return before + (self.finished or time.perf_counter()) - self.started

    def _interrupted(self, epoch: int, position: int, epoch_generators: list[torch.Tensor]) -> bool:
        """SIGINT/SIGTERM: checkpoint every healthy member, mark each active one interrupted; True (the loop ends)."""
        self._checkpoint_all(epoch, position, epoch_generators)
        for _, m in self.active:
            m.summary.update(status="interrupted", interrupted_at_step=self.step, signal=self.interrupt.name,
                             steps=self.step)
            m.done = True
            m.log.warning("%s: stopped after step %d, its checkpoint written", self.interrupt.name, self.step)
        if not self.alone:
            log.warning("%s: the stacked group stopped after step %d", self.interrupt.name, self.step)
        return True
