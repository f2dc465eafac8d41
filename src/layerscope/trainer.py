"""One run: validate and build everything (``prepare``), then train with probes (``Trainer``)."""

from __future__ import annotations

import logging
import math
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from layerscope import __version__
from layerscope.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from layerscope.cuda_graph import CapturedStep, set_capturable
from layerscope.data import Data, load_data
from layerscope.epoch_log import EpochLog
from layerscope.errors import ConfigError
from layerscope.interrupt import Interrupt
from layerscope.job_names import swept_overrides
from layerscope.losses import build_loss
from layerscope.model import MLP
from layerscope.optim import build_optimizer, build_scheduler
from layerscope.plots import compact_figure, lecture_figure, render
from layerscope.probed_model import attach_probe, initialized_model
from layerscope.probes import Probe, ProbeRecord
from layerscope.run_files import (CHECKPOINT, FINAL, METRICS, PROBES, probe_figure, restart_logs, truncate_jsonl,
                                  write_config, write_summary)
from layerscope.theory import Prediction, compare, predict_run
from layerscope.validate import DTYPES, EVAL_CHUNK, check_against_data, check_data_size, validate
from layerscope.writer import RunWriter

log = logging.getLogger("layerscope")


@dataclass
class Setup:
    """Everything one run needs, validated and built from its config, on its device."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    data: Data
    model: MLP
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    probe: Probe
    prediction: Prediction | None
    total: int  # optimizer steps to take (0: probe only)
    steps_per_epoch: int

    @property
    def epochs(self) -> int:
        """Epochs needed for ``total`` steps."""
        return epochs_for(self.total, self.steps_per_epoch)


def total_steps(cfg: DictConfig, data: Data) -> tuple[int, int]:
    """(optimizer steps to take, steps per epoch)."""
    steps_per_epoch = len(data.x_train) // cfg.trainer.batch_size
    max_steps = cfg.trainer.max_steps
    return (max_steps if max_steps is not None else cfg.trainer.epochs * steps_per_epoch), steps_per_epoch


def epochs_for(total: int, steps_per_epoch: int) -> int:
    """Epochs that ``total`` optimizer steps span; the last may be partial."""
    return math.ceil(total / steps_per_epoch)


def new_summary(num_classes: int, device: torch.device) -> dict[str, Any]:
    """summary.json of a run that has begun: running, no step taken, and what it runs on."""
    return {"status": "running", "steps": 0, "epochs": 0, "diverged_at_step": None, "final": {},
            "num_classes": num_classes, "device": str(device), "torch": str(torch.__version__),
            "python": platform.python_version(), "layerscope": __version__}


def prepare(cfg: DictConfig, run_dir: Path) -> Setup:
    """Check every key, then load the data and build the model, optimizer, schedule and probe."""
    trainer = cfg.trainer
    device = validate(cfg)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # streams and graphs (trainer.cuda_graph) belong to the current device
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    check_data_size(cfg)
    data = load_data(cfg.data, trainer.seed)
    check_against_data(cfg, data, device)
    model = initialized_model(cfg, data, device)
    data = data.to(device, DTYPES[trainer.dtype])
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, trainer.weight_decay)
    if trainer.cuda_graph and device.type != "cuda":
        raise ConfigError(f"trainer.cuda_graph=true needs a CUDA device, not {device}; use trainer.cuda_graph=false")
    set_capturable(optimizer, trainer.cuda_graph)
    probe = attach_probe(model, cfg)
    total, steps_per_epoch = total_steps(cfg, data)
    return Setup(cfg, run_dir, device, data, model, build_loss(cfg.loss), optimizer,
                 build_scheduler(optimizer, cfg.scheduler), probe,
                 predict_run(cfg, data.input_dim, float(data.x_train.square().mean())), total, steps_per_epoch)


@torch.no_grad()
def evaluate(model, loss_fn, x: torch.Tensor, y: torch.Tensor, chunk: int = EVAL_CHUNK) -> torch.Tensor:
    """[mean loss, accuracy] on (x, y) in eval mode, as a device tensor (no host sync).

    Shape (2,) for one model, (2, K) for K stacked members (``x`` shared or per member).
    """
    model.eval()
    loss_sum = correct = 0
    for start in range(0, y.shape[-1], chunk):
        logits = model(x[..., start:start + chunk, :])  # ([K,] n, classes)
        labels = y[..., start:start + chunk].expand(logits.shape[:-1])
        loss_sum = loss_sum + loss_fn(logits, labels) * labels.shape[-1]
        correct = correct + (logits.argmax(-1) == labels).sum(-1)
    model.train()
    return torch.stack([loss_sum, correct]) / y.shape[-1]


def test_metrics(values: list[float]) -> dict[str, float]:
    """``evaluate``'s [loss, accuracy] of one model as summary.json names them."""
    return dict(zip(("test_loss", "test_accuracy"), values))


def epoch_row(epoch: int, step: int, train: list[float], test: list[float], lr: float,
              step_losses: list[float]) -> dict[str, Any]:
    """One metrics.jsonl row: the epoch (from 1), its last step, train and test [loss, accuracy], lr, each step's loss."""
    return {"epoch": epoch + 1, "step": step, "train_loss": train[0], "train_accuracy": train[1],
            **test_metrics(test), "lr": lr, "step_losses": step_losses}


def describe(cfg: DictConfig) -> str:
    """A one-line description of the setting, for titles and logs."""
    init = cfg.init.name + (f"(std={cfg.init.std})" if cfg.init.name == "normal" else "")
    return (f"{cfg.model.depth}x{cfg.model.width} {cfg.activation.name}, init {init}, bn {cfg.bn.placement}, "
            f"{cfg.optimizer.name} lr={cfg.optimizer.lr}")


ESSENTIAL = ("activation", "init", "bn", "optimizer", "optimizer.lr", "model.depth")
"""The hyper-parameters TensorBoard's HPARAMS dashboard lists for every run, after a sweep's swept ones
(every setting is logged with the run; the dashboard shows the listed ones, the swept ones first)."""


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The settings a sweep varies, flattened (``activation``, ``init.std``, ``optimizer.lr``...)."""
    flat: dict[str, Any] = {}
    for group in ("activation", "init", "optimizer", "bn", "scheduler", "data", "loss", "model", "trainer"):
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if key in ("progress", "device", "threads", "root") or isinstance(value, (dict, list)):
                continue
            name = group if key in ("name", "placement") else f"{group}.{key}"
            flat[name] = "null" if value is None else value
    return flat


def dashboard_hparams(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], list[str], tuple[str, ...]]:
    """(every hyper-parameter, the ones the HPARAMS dashboard lists, the ones the sweep varied) of a run folder;
    a swept key that ``hyperparameters`` lacks (``experiment``, ``probe.every``) is added with its value."""
    params, varied = hyperparameters(cfg), []
    for key, value in swept_overrides(run_dir).items():
        name = key.rsplit(".", 1)[0] if key.endswith((".name", ".placement")) else key
        params.setdefault(name, value)
        varied.append(name)
    return params, list(dict.fromkeys([*varied, *ESSENTIAL])), tuple(varied)


class Trainer:
    """The training loop of one run: steps, probes, epoch ends, checkpoints, the summary."""

    def __init__(self, setup: Setup) -> None:
        self.s = setup
        self.cfg, self.trainer = setup.cfg, setup.cfg.trainer
        self.records: list[ProbeRecord] = []
        self.summary = new_summary(setup.data.num_classes, setup.device)
        self.generator = torch.Generator(device=setup.device).manual_seed(self.trainer.seed)
        self.weights = [m.weight for m in setup.model.modules() if isinstance(m, torch.nn.Linear)]
        # plain Python copies of the keys the hot loop reads (a DictConfig lookup costs microseconds)
        t = self.trainer
        self.batch, self.every, self.l1 = t.batch_size, self.cfg.probe.every, t.l1
        self.clip_norm, self.clip_value, self.checkpoint_every = t.clip_grad_norm, t.clip_grad_value, t.checkpoint_every
        self.step = 0
        self.bad_at: int | None = None  # a probe that saw NaN/inf with a finite loss
        self.index = torch.zeros(self.batch, dtype=torch.long, device=setup.device)  # the batch's rows
        self.epoch_log = EpochLog(setup.steps_per_epoch, self.batch, (), setup.device, setup.data.x_train.dtype)
        self.fast = CapturedStep(self._train_step, setup.optimizer) if t.cuda_graph else None
        self.interrupt = Interrupt()
        self.resumed = self._resume() if self.trainer.resume else None
        self.writer = RunWriter(setup.run_dir, purge_step=self.step if self.resumed else restart_logs(setup.run_dir),
                                activation_range=setup.probe.measurer.activation.bounds)

    def run(self) -> dict[str, Any]:
        """Train (or only probe), then write figures, hparams and summary.json; return the summary."""
        s = self.s
        write_config(s.run_dir, self.cfg)
        log.info("layerscope %s: %s on %s (%s, %d train / %d test), %d steps -> %s", __version__,
                 describe(self.cfg), s.device, s.data.name, len(s.data.x_train), len(s.data.x_test), s.total,
                 s.run_dir)
        if s.total and not self.resumed:  # the test curve's step 0: the initial weights
            self.summary["initial"] = test_metrics(evaluate(s.model, s.loss_fn, s.data.x_test, s.data.y_test).tolist())
        started = time.perf_counter()
        with self.interrupt, logging_redirect_tqdm(), tqdm(
                total=s.total, initial=self.step, unit="step", desc="train", leave=False,
                disable=None if self.trainer.progress else True) as self.bar:
            if s.total == 0:
                self._probe_only()
            for epoch in range(self.resumed["epoch"] if self.resumed else 0, s.epochs):
                if self._epoch(epoch):
                    break
        seconds = time.perf_counter() - started
        if self.summary["status"] == "running":
            self.summary["status"] = "completed"
            if s.total:  # the final state, for resuming a longer run or reading the weights
                self._checkpoint(s.epochs, 0, self.generator.get_state(), [])
        self.summary.update(train_seconds=seconds, probes=len(self.records),
                            samples_per_second=self.step * self.trainer.batch_size / seconds if self.step else None)
        return self._finish()

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.s.model(x)  # (B, classes)
        loss = self.s.loss_fn(logits, y)
        self.s.optimizer.zero_grad(set_to_none=True)
        if self.l1:
            (loss + self.l1 * sum(w.abs().sum() for w in self.weights)).backward()
        else:
            loss.backward()
        return loss.detach(), logits.detach()

    def _train_step(self, probe: bool = False) -> dict | None:
        """One step on the rows in ``self.index``: the plain loop's work and two slots of the epoch log.

        It reads fixed buffers only and never syncs, so ``trainer.cuda_graph`` can capture it; with
        ``probe`` the pass is measured (before the update) and the update's size after it.
        """
        s = self.s
        x, y = s.data.x_train[self.index], s.data.y_train[self.index]
        with s.probe.capture() if probe else nullcontext():
            loss, logits = self._forward_backward(x, y)
        measured = s.probe.measure() if probe else None
        if self.clip_norm:
            torch.nn.utils.clip_grad_norm_(s.model.parameters(), self.clip_norm)
        if self.clip_value:
            torch.nn.utils.clip_grad_value_(s.model.parameters(), self.clip_value)
        s.optimizer.step()
        self.epoch_log.add(loss, logits)
        if probe:
            s.probe.update_ratio(measured)
        return measured

    def _keep(self, record: ProbeRecord) -> bool:
        """Log a probe record (with the theory at step 0); False if it saw NaN/inf."""
        if record.step == 0 and self.s.prediction is not None:
            record.theory = compare(self.s.prediction, record.stats)
        self.writer.probe(record)
        self.records.append(record)
        return record.finite

    def _probe_only(self) -> None:
        """One forward/backward pass on a batch, measured, no update."""
        s, batch = self.s, self.trainer.batch_size
        order = torch.randperm(len(s.data.x_train), device=s.device, generator=self.generator)[:batch]
        with s.probe.capture():
            self._forward_backward(s.data.x_train[order], s.data.y_train[order])
        self._keep(s.probe.record(s.probe.measure(), step=0))

    def _epoch(self, epoch: int) -> bool:
        """Train one epoch (or its rest, after a resume); True when the run diverged."""
        s, batch, every = self.s, self.batch, self.every
        continuing = self.resumed is not None and epoch == self.resumed["epoch"]
        if continuing:
            self.generator.set_state(self.resumed["epoch_generator"])
        epoch_generator = self.generator.get_state()
        order = torch.randperm(len(s.data.x_train), device=s.device, generator=self.generator)
        begin = self.resumed["position"] if continuing else 0
        self.epoch_log.start(begin, [t.to(s.device) for t in self.resumed["sums"]] if continuing else None)
        if continuing:
            set_rng_state(self.resumed["rng"])
        epoch_steps = min(s.steps_per_epoch, s.total - (self.step - begin))
        self.epoch_start = self.step - begin  # the run's step at slot 0 of the epoch log
        i = begin - 1
        for i in range(begin, epoch_steps):
            self.index.copy_(order[i * batch:(i + 1) * batch])
            probing = self.step % every == 0 or self.step == s.total - 1
            if probing:  # measured, eagerly
                record = s.probe.record(self._train_step(probe=True), self.step)
                if not self._keep(record) and self.bad_at is None:
                    self.bad_at = self.step
            elif self.fast is not None:
                self.fast()
            else:
                self._train_step()
            self.step += 1
            self.bar.update()
            if self.interrupt.received:
                return self._interrupted(epoch, i + 1, epoch_generator)
            if probing and (self.bad_at is not None or int(self.epoch_log.first_bad(i + 1)) >= 0):
                break
            if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self._healthy(i + 1):
                self._checkpoint(epoch, i + 1, epoch_generator, self.epoch_log.saved(i + 1))
        labels = s.data.y_train[order[:(i + 1) * batch]].view(i + 1, batch)
        return self._end_epoch(epoch, self.epoch_log.totals(i + 1, labels), self.epoch_log.losses[:i + 1])

    def _end_epoch(self, epoch: int, totals: torch.Tensor, step_losses: torch.Tensor) -> bool:
        """Step the schedule, evaluate, log the epoch (one host sync); True when the run diverged."""
        s = self.s
        s.scheduler.step()
        test = evaluate(s.model, s.loss_fn, s.data.x_test, s.data.y_test)
        host = torch.cat([totals, test.to(totals.dtype), step_losses]).tolist()
        train_loss, train_accuracy, bad, test_loss, test_accuracy = host[:5]
        bad_steps = ([self.bad_at] if self.bad_at is not None else []) + ([self.epoch_start + int(bad)] if bad >= 0 else [])
        self.summary["steps"], self.summary["epochs"] = self.step, epoch + 1
        if bad_steps or not (math.isfinite(train_loss) and math.isfinite(train_accuracy)):
            self.summary["status"] = "diverged"
            self.summary["diverged_at_step"] = min(bad_steps) if bad_steps else self.step
            log.warning("diverged: the loss became NaN/inf at step %s; the run stops here",
                        self.summary["diverged_at_step"])
            return True
        row = epoch_row(epoch, self.step, [train_loss, train_accuracy], [test_loss, test_accuracy],
                        s.optimizer.param_groups[0]["lr"], host[5:])
        self.writer.epoch(row)
        self.summary["final"] = {k: row[k] for k in FINAL}
        self.bar.set_postfix(loss=f"{train_loss:.3f}", test_acc=f"{test_accuracy:.3f}")
        log_epoch(log, row, s.epochs)
        return False

    def _interrupted(self, epoch: int, position: int, epoch_generator: torch.Tensor) -> bool:
        """Stop after this step: checkpoint a healthy state, mark the run interrupted; True (the loop ends)."""
        if self._healthy(position):
            self._checkpoint(epoch, position, epoch_generator, self.epoch_log.saved(position))
        self.summary.update(status="interrupted", interrupted_at_step=self.step, signal=self.interrupt.name,
                            steps=self.step)
        log.warning("%s: stopped after step %d; continue with the same command and trainer.resume=true",
                    self.interrupt.name, self.step)
        return True

    def _healthy(self, steps: int) -> bool:
        """No NaN/inf loss so far and finite parameters: only such a state is worth a checkpoint."""
        params = torch.stack([p.detach().float().abs().sum() for p in self.s.model.parameters()])
        return self.bad_at is None and int(self.epoch_log.first_bad(steps)) < 0 and bool(torch.isfinite(params).all())

    def _checkpoint(self, epoch: int, position: int, epoch_generator: torch.Tensor, sums: list) -> None:
        s = self.s
        save_checkpoint(s.run_dir / CHECKPOINT, {
            "step": self.step, "epoch": epoch, "position": position, "epoch_generator": epoch_generator,
            "sums": sums, "model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(), "rng": rng_state(), "summary": self.summary})

    def _resume(self) -> dict[str, Any] | None:
        """Load the run folder's checkpoint and cut the logs back to it; None if there is none."""
        s = self.s
        path = s.run_dir / CHECKPOINT
        if not path.exists():
            log.info("no checkpoint in %s: starting at step 0", s.run_dir)
            return None
        state = load_checkpoint(path)
        if len(state.get("sums", [])) not in (0, 2):
            raise ConfigError(f"{path} was written by an older layerscope; delete it to start the run over")
        s.model.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
        set_capturable(s.optimizer, self.trainer.cuda_graph)
        s.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step, self.summary = state["step"], state["summary"]
        self.records = [ProbeRecord.from_json(r) for r in truncate_jsonl(s.run_dir / PROBES, self.step)]
        truncate_jsonl(s.run_dir / METRICS, self.step)
        ended = {"running": "was left incomplete (its process ended without a status)",
                 "interrupted": f"was interrupted by {self.summary.get('signal')}"}.get(self.summary.get("status"), "")
        log.info("resuming from the checkpoint at step %d%s", self.step, f" (the run {ended})" if ended else "")
        return state

    def _finish(self) -> dict[str, Any]:
        """Figures (not when interrupted: the resumed run draws them), hparams, summary.json."""
        finish_run(self.cfg, self.summary, self.records, self.writer, self.step,
                   figures=self.summary["status"] != "interrupted")
        return self.summary


def log_epoch(logger: logging.Logger, row: dict[str, Any], epochs: int) -> None:
    """The log line of one epoch's metrics."""
    logger.info("epoch %d/%d  step %d  train loss %.4f acc %.3f  test loss %.4f acc %.3f  lr %.3g", row["epoch"], epochs,
                row["step"], row["train_loss"], row["train_accuracy"], row["test_loss"], row["test_accuracy"], row["lr"])


def finish_run(cfg: DictConfig, summary: dict[str, Any], records: list[ProbeRecord], writer: RunWriter,
               steps: int, logger: logging.Logger = log, figures: bool = True) -> None:
    """The end of every run: its figures, hparams and summary.json, and a closing log line."""
    if cfg.probe.figures and figures:
        draw_figures(records, describe(cfg), writer.run_dir, writer)
    params, listed, varied = dashboard_hparams(cfg, writer.run_dir)
    writer.hparams(params, {**summary["final"], "steps": steps, "diverged": float(summary["status"] == "diverged")},
                   steps, listed, varied)
    writer.close()
    write_summary(writer.run_dir, summary)
    logger.info("%s after %d steps: %s", summary["status"], steps,
             ", ".join(f"{k} {v:.4f}" for k, v in summary["final"].items()) or "no epoch finished")


def draw_figures(records: list[ProbeRecord], title: str, run_dir: Path, writer: RunWriter) -> None:
    """The lecture figure for every probe, figures/probe_<step>.png, and its compact form as a TensorBoard image
    (legible at the size TensorBoard shows an image)."""
    for record in tqdm(records, desc="figures", unit="fig", disable=None, leave=False):
        render(lecture_figure(record, title), probe_figure(run_dir, record.step))
        writer.tb.add_image("lecture/probe", render(compact_figure(record, title)), record.step, dataformats="HWC")


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or, with ``trainer.max_steps=0``, only probe) one configuration into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(prepare(cfg, run_dir)).run()
