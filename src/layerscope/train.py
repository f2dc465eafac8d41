"""The runner and the ``layerscope`` console script: set up, train with probes, log, save."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from layerscope import __version__
from layerscope.activations import ACTIVATIONS, build_activation
from layerscope.checks import check_probe, check_trainer, resolve_device
from layerscope.checkpoint import (CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, set_rng_state,
                                   truncate_jsonl)
from layerscope.cli_errors import install as install_error_lines
from layerscope.data import load_data
from layerscope.errors import ConfigError
from layerscope.grid import run_grid
from layerscope.init import initialize
from layerscope.losses import LOSSES
from layerscope.model import MLP, build_model, check_model
from layerscope.optim import build_optimizer, build_scheduler
from layerscope.paths import config_dir
from layerscope.plots import lecture_figure, render
from layerscope.probes import Probe, ProbeRecord
from layerscope.theory import compare, predict_run
from layerscope.writer import RunWriter, write_json_atomic

log = logging.getLogger("layerscope")
install_error_lines()


@torch.no_grad()
def evaluate(model: MLP, loss_fn, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """[mean loss, accuracy] on (x, y) in eval mode, as a device tensor (no host sync)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), chunk):
        logits = model(x[start:start + chunk])
        loss_sum += loss_fn(logits, y[start:start + chunk]) * len(logits)
        correct += (logits.argmax(1) == y[start:start + chunk]).sum()
    model.train()
    return torch.stack([loss_sum, correct]) / len(x)


def describe(cfg: DictConfig) -> str:
    """A one-line description of the setting, for titles and logs."""
    init = cfg.init.name + (f"(std={cfg.init.std})" if cfg.init.name == "normal" else "")
    return (f"{cfg.model.depth}x{cfg.model.width} {cfg.activation.name}, init {init}, bn {cfg.bn.placement}, "
            f"{cfg.optimizer.name} lr={cfg.optimizer.lr}")


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or, with ``trainer.max_steps=0``, only probe) one configuration into ``run_dir``."""
    trainer = cfg.trainer
    check_trainer(trainer)
    check_probe(cfg.probe)
    check_model(cfg.model, cfg.bn)
    build_activation(cfg.activation.name, cfg.activation)
    device = resolve_device(trainer.device)
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    torch.manual_seed(trainer.seed)
    data = load_data(cfg.data, trainer.seed)
    batch = trainer.batch_size
    n_train = len(data.x_train)
    if batch > n_train:
        raise ConfigError(f"trainer.batch_size={batch} is larger than the {n_train} training examples of "
                          f"data={data.name}; use trainer.batch_size<={n_train}")
    if cfg.bn.placement != "none" and batch < 2:
        raise ConfigError(f"bn={cfg.bn.placement} needs batches of 2 or more; use trainer.batch_size>=2 or bn=none")
    model = build_model(cfg.model, cfg.activation, cfg.bn, data.input_dim, data.num_classes)
    initialize(model, cfg.init, cfg.activation.name, cfg.activation)
    model.to(device)
    data = data.to(device)
    loss_fn = LOSSES.get(cfg.loss.name)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, trainer.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.scheduler)
    probe = Probe(model, ACTIVATIONS.get(cfg.activation.name), cfg.probe.bins, cfg.probe.saturation_margin,
                  cfg.probe.histogram_sample)
    prediction = predict_run(cfg, data.input_dim, float(data.x_train.square().mean()))

    steps_per_epoch = n_train // batch
    total = trainer.max_steps if trainer.max_steps is not None else trainer.epochs * steps_per_epoch
    epochs = math.ceil(total / steps_per_epoch)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    log.info("layerscope %s: %s on %s (%s, %d train / %d test), %d steps -> %s", __version__, describe(cfg),
             device, data.name, n_train, len(data.x_test), total, run_dir)

    records: list[ProbeRecord] = []
    summary: dict[str, Any] = {"status": "running", "steps": 0, "epochs": 0, "diverged_at_step": None,
                               "final": {}, "num_classes": data.num_classes, "device": str(device), "torch": str(torch.__version__),
                               "python": platform.python_version(), "layerscope": __version__}
    generator = torch.Generator(device=device).manual_seed(trainer.seed)
    resumed = resume(run_dir, device, model, optimizer, scheduler) if trainer.resume else None
    step = resumed["step"] if resumed else 0
    if resumed:
        summary = resumed["summary"]
        records = [ProbeRecord.from_json(r) for r in truncate_jsonl(run_dir / "probes.jsonl", step)]
        truncate_jsonl(run_dir / "metrics.jsonl", step)
        log.info("resuming from the checkpoint at step %d", step)
    writer = RunWriter(run_dir, purge_step=step if resumed else None)
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    checkpoint_every = trainer.checkpoint_every
    started = time.perf_counter()

    def checkpoint(epoch: int, position: int, epoch_generator: torch.Tensor, sums: list[torch.Tensor]) -> None:
        save_checkpoint(run_dir / CHECKPOINT, {
            "step": step, "epoch": epoch, "position": position, "epoch_generator": epoch_generator,
            "sums": sums, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": rng_state(), "summary": summary})

    def forward_backward(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)  # (B, classes)
        loss = loss_fn(logits, y)
        penalty = trainer.l1 * sum(w.abs().sum() for w in weights) if trainer.l1 else 0.0
        optimizer.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        return loss.detach(), logits.detach()

    def keep(record: ProbeRecord) -> bool:
        if record.step == 0 and prediction is not None:
            record.theory = compare(prediction, record.stats)
        writer.probe(record)
        records.append(record)
        return record.finite

    with logging_redirect_tqdm(), tqdm(total=total, unit="step", disable=None if trainer.progress else True,
                                       desc="train", leave=False) as bar:
        if total == 0:  # probe only: one forward/backward pass on a batch, no update
            order = torch.randperm(n_train, device=device, generator=generator)[:batch]
            with probe.capture():
                forward_backward(data.x_train[order], data.y_train[order])
            keep(probe.record(probe.measure(), step=0))
        first_epoch = resumed["epoch"] if resumed else 0
        for epoch in range(first_epoch, epochs):
            continuing = resumed is not None and epoch == first_epoch
            if continuing:
                generator.set_state(resumed["epoch_generator"])
            epoch_generator = generator.get_state()
            order = torch.randperm(n_train, device=device, generator=generator)
            if continuing:
                loss_sum, correct, first_bad = resumed["sums"]
                set_rng_state(resumed["rng"])
            else:
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device)
                first_bad = torch.full((), -1, dtype=torch.long, device=device)
            begin = resumed["position"] if continuing else 0
            epoch_steps = min(steps_per_epoch, total - (step - begin))
            i = begin - 1
            for i in range(begin, epoch_steps):
                index = order[i * batch:(i + 1) * batch]
                x, y = data.x_train[index], data.y_train[index]
                probing = step % cfg.probe.every == 0 or step == total - 1
                if probing:
                    with probe.capture():
                        loss, logits = forward_backward(x, y)
                    measured = probe.measure()
                else:
                    loss, logits = forward_backward(x, y)
                if trainer.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.clip_grad_norm)
                if trainer.clip_grad_value:
                    torch.nn.utils.clip_grad_value_(model.parameters(), trainer.clip_grad_value)
                optimizer.step()
                loss_sum += loss
                correct += (logits.argmax(1) == y).sum()
                first_bad.masked_fill_((first_bad < 0) & ~torch.isfinite(loss), step)
                if probing:
                    probe.update_ratio(measured)
                    if not keep(probe.record(measured, step)) and first_bad.item() < 0:
                        first_bad.fill_(step)
                step += 1
                bar.update()
                if probing and first_bad.item() >= 0:
                    break
                if checkpoint_every and step % checkpoint_every == 0:
                    checkpoint(epoch, i + 1, epoch_generator, [loss_sum, correct, first_bad])
            scheduler.step()
            test = evaluate(model, loss_fn, data.x_test, data.y_test)
            host = torch.cat([torch.stack([loss_sum, correct]) / max(i + 1, 1), test,
                              first_bad.reshape(1).float()]).tolist()
            summary["steps"], summary["epochs"] = step, epoch + 1
            if host[4] >= 0 or not all(math.isfinite(v) for v in host[:2]):
                summary["status"], summary["diverged_at_step"] = "diverged", int(host[4]) if host[4] >= 0 else step
                log.warning("diverged: the loss became NaN/inf at step %s; the run stops here", summary["diverged_at_step"])
                break
            row = {"epoch": epoch + 1, "step": step, "train_loss": host[0], "train_accuracy": host[1] / batch,
                   "test_loss": host[2], "test_accuracy": host[3], "lr": optimizer.param_groups[0]["lr"]}
            writer.epoch(row)
            summary["final"] = {k: row[k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
            bar.set_postfix(loss=f"{host[0]:.3f}", test_acc=f"{host[3]:.3f}")
            log.info("epoch %d/%d  step %d  train loss %.4f acc %.3f  test loss %.4f acc %.3f  lr %.3g",
                     epoch + 1, epochs, step, host[0], host[1] / batch, host[2], host[3], row["lr"])
    seconds = time.perf_counter() - started
    if summary["status"] == "running":
        summary["status"] = "completed"
        if total:  # the final state, for resuming a longer run or reading the weights
            checkpoint(epochs, 0, generator.get_state(), [])
    summary.update(train_seconds=seconds, samples_per_second=step * batch / seconds if step else None,
                   probes=len(records))
    if cfg.probe.figures:
        draw_figures(records, describe(cfg), run_dir, writer)
    writer.hparams(hyperparameters(cfg), {**summary["final"], "steps": step,
                                          "diverged": float(summary["status"] == "diverged")}, step)
    writer.close()
    write_json_atomic(run_dir / "summary.json", summary)
    log.info("%s after %d steps: %s", summary["status"], step,
             ", ".join(f"{k} {v:.4f}" for k, v in summary["final"].items()) or "no epoch finished")
    return summary


def resume(run_dir: Path, device: torch.device, model: MLP, optimizer, scheduler) -> dict[str, Any] | None:
    """Load ``run_dir``'s checkpoint into the model, optimizer and scheduler; None if there is none."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        log.info("no checkpoint in %s: starting at step 0", run_dir)
        return None
    state = load_checkpoint(path, device)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


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


def draw_figures(records: list[ProbeRecord], title: str, run_dir: Path, writer: RunWriter) -> None:
    """The lecture figure for every probe: figures/probe_<step>.png and a TensorBoard image."""
    for record in tqdm(records, desc="figures", unit="fig", disable=None, leave=False):
        pixels = render(lecture_figure(record, title), run_dir / "figures" / f"probe_{record.step:06d}.png")
        writer.tb.add_image("lecture/probe", pixels, record.step, dataformats="HWC")


def _fail(run_dir: Path, err: BaseException) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, OmegaConfBaseException) and err.full_key:
        message = f"{err.full_key}: {message}"
    error = message if isinstance(err, (ConfigError, OmegaConfBaseException)) else f"{type(err).__name__}: {message}"
    write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": error})
    return error


def _completed(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status") in ("completed", "diverged")
    except (OSError, ValueError):
        return False


def _job_threads(cfg: DictConfig) -> None:
    """Parallel jobs on one machine share its cores: unless set, give each job cores / n_jobs threads."""
    launcher = HydraConfig.get().launcher
    if cfg.trainer.threads is None and "Joblib" in str(launcher.get("_target_", "")):
        jobs = launcher.get("n_jobs") or 1
        jobs = os.cpu_count() if jobs < 0 else jobs
        with open_dict(cfg):
            cfg.trainer.threads = max(1, (os.cpu_count() or 1) // max(1, jobs))


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Console entry point ``layerscope``: one run, or one job of a sweep (``-m``).

    In a sweep a job's failure is recorded in its summary.json and the sweep goes on.
    """
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.get("skip_completed") and _completed(run_dir):
        log.info("skipped: %s already holds a finished run (skip_completed=true)", run_dir)
        return
    if sweep:
        _job_threads(cfg)
    try:
        summary = (run_grid if cfg.get("grid") else run)(cfg, run_dir)
    except (ConfigError, OmegaConfBaseException) as err:
        print(f"layerscope: error: {_fail(run_dir, err)}", file=sys.stderr)
        if not sweep:
            sys.exit(2)
    except Exception as err:
        error = _fail(run_dir, err)
        if not sweep:
            raise
        log.error("job %s failed: %s", HydraConfig.get().job.num, error)
    else:
        if summary["status"] == "diverged" and cfg.trainer.get("fail_on_divergence"):
            print(f"layerscope: error: the run diverged at step {summary['diverged_at_step']} "
                  f"(trainer.fail_on_divergence=true)", file=sys.stderr)
            sys.exit(3)


def _resume_target(argv: list[str]) -> Path | None:
    """The newest unfinished run folder whose command equals ``argv`` (less ``trainer.resume``)."""
    if "-m" in argv or "--multirun" in argv or any(a.startswith("hydra.run.dir=") for a in argv):
        return None
    same = sorted(a for a in argv if not a.startswith("trainer.resume="))
    root = Path(os.environ.get("LAYERSCOPE_OUTPUTS", "outputs")) / "runs"
    for folder in sorted(root.glob("*/*"), reverse=True):
        overrides = folder / ".hydra" / "overrides.yaml"
        if not (folder / CHECKPOINT).exists() or not overrides.exists() or _completed(folder):
            continue
        earlier = sorted(str(o) for o in OmegaConf.load(overrides) if not str(o).startswith("trainer.resume="))
        if earlier == same:
            return folder
    return None


def cli() -> None:
    """Console entry point ``layerscope``; with ``trainer.resume=true`` it reopens the run it continues."""
    argv = sys.argv[1:]
    if any(a.lower() == "trainer.resume=true" for a in argv):
        target = _resume_target(argv)
        if target is not None:
            sys.argv.append(f"hydra.run.dir={target}")
    main()


if __name__ == "__main__":
    cli()
