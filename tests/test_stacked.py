"""Stacked groups: every member equals its single run, a member's failure or divergence stays its own,
and ``hydra/launcher=stacked`` writes ordinary run folders.

Equivalence is checked in float64 (``trainer.dtype=float64``), where the different reduction order
of a stacked matmul changes results by ~1e-15 relative: TOLERANCE leaves six orders of margin for
the growth of rounding differences over 100 steps, and is far below any effect a setting has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from layerscope.nets import stacked as stacked_model
from layerscope.nets.stacked import Captured, StackedMLP
from layerscope.paths import config_dir
from layerscope.runs.job_names import job_number
from layerscope.runs.results import RunResult
from layerscope.sweep.report import collect
from layerscope.train.group import group_key, run, train_group
from layerscope.train.probed_model import initialized_model

TOLERANCE = 1e-9
BASE = ["model.depth=3", "model.width=24", "trainer.max_steps=70", "trainer.batch_size=64", "probe.every=15",
        "probe.figures=false", "trainer.progress=false", "trainer.dtype=float64", "trainer.checkpoint_every=40"]
CLI = str(Path(sys.executable).with_name("layerscope"))


def configs(variants: list[list[str]], base: list[str] = BASE):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return [compose("train", overrides=base + v) for v in variants]


def singles_and_group(tmp_path: Path, variants: list[list[str]], base: list[str] = BASE):
    """Run each variant alone and all of them as one stacked group; both sets of results."""
    cfgs = configs(variants, base)
    assert len({group_key(c) for c in cfgs}) == 1, "the variants must share a shape"
    alone = []
    for i, cfg in enumerate(cfgs):
        (tmp_path / f"single_{i}").mkdir()
        run(cfg, tmp_path / f"single_{i}")
        alone.append(RunResult.load(tmp_path / f"single_{i}"))
    train_group(cfgs, [tmp_path / f"member_{i}" for i in range(len(cfgs))])
    return alone, [RunResult.load(tmp_path / f"member_{i}") for i in range(len(cfgs))]


def assert_same_run(single: RunResult, member: RunResult, probes_until: int | None = None) -> None:
    """Same status, steps, epoch metrics and per-layer probe statistics (within TOLERANCE)."""
    assert (member.status, member.summary["diverged_at_step"]) == (single.status, single.summary["diverged_at_step"])
    assert [r["step"] for r in member.metrics] == [r["step"] for r in single.metrics]
    for a, b in zip(single.metrics, member.metrics):
        scalars = [k for k in a if k != "step_losses"]
        np.testing.assert_allclose([b[k] for k in scalars], [a[k] for k in scalars], rtol=TOLERANCE, atol=1e-12)
        np.testing.assert_allclose(b["step_losses"], a["step_losses"], rtol=TOLERANCE, atol=1e-12)
    keep = [p for p in single.probes if probes_until is None or p.step < probes_until]
    assert [p.step for p in member.probes][:len(keep)] == [p.step for p in keep]
    for a, b in zip(keep, member.probes):
        for stat in a.stats:  # probe statistics are computed in float32 (histogram_summaries)
            np.testing.assert_allclose(b.stats[stat], a.stats[stat], rtol=1e-5, atol=1e-7, err_msg=f"{stat} @ {a.step}")


@pytest.mark.parametrize("bn", ["none", "before", "after"])
def test_every_optimizer_and_penalty_matches_its_single_run(tmp_path, bn):
    variants = [["optimizer=sgd", "trainer.weight_decay=0.01", "scheduler=exponential", "scheduler.gamma=0.7"],
                ["optimizer=momentum", "trainer.seed=1", "init=he_normal", "trainer.clip_grad_norm=0.5"],
                ["optimizer=nesterov", "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.5"],
                ["optimizer=adagrad", "optimizer.lr=0.01", "trainer.clip_grad_value=0.01", "trainer.seed=2"],
                ["optimizer=rmsprop", "optimizer.lr=0.001", "trainer.l1=0.001", "init=xavier_uniform"],
                ["optimizer=adam", "optimizer.lr=0.001", "scheduler=inverse_time", "init=normal", "init.std=0.1"]]
    alone, members = singles_and_group(tmp_path, variants, BASE + [f"bn={bn}", "activation=prelu"])
    for single, member in zip(alone, members):
        assert single.status == "completed" and len(single.metrics) == 4
        assert_same_run(single, member)
        assert member.summary["stacked"]["members"] == len(variants)


@pytest.mark.parametrize("bn", ["ln_before", "ln_after"])
def test_layer_norm_and_adam_without_bias_correction_match_their_single_runs(tmp_path, bn):
    variants = [["optimizer=momentum", "trainer.weight_decay=0.01"],
                ["optimizer=adam", "optimizer.lr=0.001", "optimizer.bias_correction=false", "trainer.seed=3"]]
    alone, members = singles_and_group(tmp_path, variants, BASE + [f"bn={bn}", "activation=prelu"])
    for single, member in zip(alone, members):
        assert single.status == "completed"
        assert_same_run(single, member)


def test_with_dropout_every_member_matches_its_single_run(tmp_path):
    """Each member draws its masks from its own generator, seeded as its single run's."""
    variants = [["optimizer=momentum", "trainer.seed=1"], ["optimizer=adam", "optimizer.lr=0.001"],
                ["optimizer=sgd", "init=he_normal", "trainer.seed=2"]]
    alone, members = singles_and_group(tmp_path, variants, BASE + ["model.dropout=0.2", "bn=before"])
    for single, member in zip(alone, members):
        assert single.status == "completed"
        assert_same_run(single, member)


def test_a_member_is_the_same_bit_for_bit_whichever_members_share_its_stack(tmp_path):
    """Float32 with dropout: a 2-member subset of a 4-member group, and a member alone, reproduce those members'
    metrics, probes and weights exactly."""
    variants = [["optimizer=sgd", "init=he_normal"], ["optimizer=sgd", "init=xavier_normal", "trainer.seed=1"],
                ["optimizer=adam", "init=he_normal"], ["optimizer=adam", "init=xavier_normal", "trainer.seed=2"]]
    cfgs = configs(variants, [b for b in BASE if b != "trainer.dtype=float64"] + ["model.dropout=0.1"])
    train_group(cfgs, [tmp_path / f"all_{i}" for i in range(4)])
    train_group([cfgs[1], cfgs[3]], [tmp_path / f"pair_{i}" for i in (1, 3)])
    train_group([cfgs[3]], [tmp_path / "alone_3"])
    for folder, i in [("pair_1", 1), ("pair_3", 3), ("alone_3", 3)]:
        for name in ("metrics.jsonl", "probes.jsonl"):
            assert (tmp_path / folder / name).read_text() == (tmp_path / f"all_{i}" / name).read_text(), (folder, name)
        ours, theirs = (torch.load(tmp_path / f / "checkpoint.pt", weights_only=True) for f in (folder, f"all_{i}"))
        assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"]), folder
        assert torch.equal(ours["dropout"], theirs["dropout"])
    assert (tmp_path / "all_0" / "metrics.jsonl").read_text() != (tmp_path / "all_1" / "metrics.jsonl").read_text()


def test_one_block_update_as_on_a_gpu_matches_too(tmp_path, monkeypatch):
    monkeypatch.setattr(stacked_model, "PER_PARAMETER", set())  # the (K, P) block a GPU updates
    variants = [["optimizer=momentum", "trainer.clip_grad_norm=0.5", "trainer.weight_decay=0.01"],
                ["optimizer=adam", "optimizer.lr=0.001", "trainer.clip_grad_value=0.01", "trainer.seed=1"]]
    alone, members = singles_and_group(tmp_path, variants, BASE + ["bn=before"])
    for single, member in zip(alone, members):
        assert_same_run(single, member)


def test_seeded_data_and_mse_per_member(tmp_path):
    # gaussian data is drawn from the seed: members of different seeds train on different data
    variants = [["trainer.seed=0"], ["trainer.seed=1"], ["trainer.seed=1", "optimizer=adam", "optimizer.lr=0.001"]]
    alone, members = singles_and_group(tmp_path, variants, BASE + ["data=gaussian", "data.dim=20", "loss=mse"])
    for single, member in zip(alone, members):
        assert_same_run(single, member)


def test_a_diverging_member_is_masked_and_an_invalid_one_fails_alone(tmp_path):
    variants = [["optimizer.lr=0.01"], ["optimizer.lr=1000", "init=normal_1"], ["optimizer.lr=-1"],
                ["optimizer.lr=0.05", "trainer.seed=4"]]
    cfgs = configs(variants, [b for b in BASE if "checkpoint" not in b] + ["activation=relu", "trainer.checkpoint_every=5"])
    alone = []
    for i, cfg in enumerate(cfgs):
        (tmp_path / f"single_{i}").mkdir()
        try:
            run(cfg, tmp_path / f"single_{i}")
        except Exception as err:  # noqa: BLE001 - the invalid variant
            (tmp_path / f"single_{i}" / "summary.json").write_text(json.dumps({"status": "failed", "error": str(err)}))
        alone.append(RunResult.load(tmp_path / f"single_{i}"))
    summaries = train_group(cfgs, [tmp_path / f"member_{i}" for i in range(len(cfgs))])
    members = [RunResult.load(tmp_path / f"member_{i}") for i in range(len(cfgs))]
    assert [s["status"] for s in summaries] == ["completed", "diverged", "failed", "completed"]
    assert members[2].summary == {"status": "failed", "error": "optimizer.lr=-1 must be a finite number > 0"}
    diverged_at = alone[1].summary["diverged_at_step"]
    assert alone[1].status == "diverged" and members[1].summary["diverged_at_step"] == diverged_at
    assert_same_run(alone[1], members[1], probes_until=diverged_at)
    for i in (0, 3):
        assert_same_run(alone[i], members[i])
    saved = torch.load(tmp_path / "member_1" / "checkpoint.pt", weights_only=True)  # the last good one
    assert saved["step"] <= diverged_at and all(torch.isfinite(t).all() for t in saved["model"].values())
    single = torch.load(tmp_path / "single_1" / "checkpoint.pt", weights_only=True)
    assert saved["position"] == single["position"] > 0 and _stored_bytes(saved) == _stored_bytes(single)  # mid-epoch


def test_a_member_checkpoint_is_its_single_runs(tmp_path):
    alone, members = singles_and_group(tmp_path, [["optimizer=adam", "optimizer.lr=0.001"], ["trainer.seed=3"]],
                                       BASE + ["bn=before"])
    for i in range(2):
        single = torch.load(tmp_path / f"single_{i}" / "checkpoint.pt", weights_only=True)
        member = torch.load(tmp_path / f"member_{i}" / "checkpoint.pt", weights_only=True)
        assert single["model"].keys() == member["model"].keys() and single["step"] == member["step"] == 70
        for key in single["model"]:
            torch.testing.assert_close(member["model"][key], single["model"][key], rtol=TOLERANCE, atol=1e-12)
        assert single["optimizer"]["param_groups"][0]["lr"] == member["optimizer"]["param_groups"][0]["lr"]
        for index, state in single["optimizer"]["state"].items():
            for key, value in state.items():
                torch.testing.assert_close(member["optimizer"]["state"][index][key], value, rtol=TOLERANCE, atol=1e-12)
        assert torch.equal(single["epoch_generator"], member["epoch_generator"])
        assert _stored_bytes(member) == _stored_bytes(single)  # none of the other members' weights


def _stored_bytes(saved) -> int:
    """The bytes a checkpoint's tensors hold, a storage shared by views counted once."""
    storages = {}
    todo = [saved]
    while todo:
        x = todo.pop()
        if isinstance(x, torch.Tensor):
            storages[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        elif isinstance(x, (dict, list, tuple)):
            todo.extend(x.values() if isinstance(x, dict) else x)
    return sum(storages.values())


def _dropped(seeds: list[int], p: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """The activations of a one-layer stack, one member per dropout seed, before and after its dropout."""
    cfg = configs([[f"model.dropout={p}", "model.depth=1", "model.width=2000", "data=gaussian", "data.dim=8"]])[0]
    data = type("D", (), {"input_dim": 8, "num_classes": 10})()
    torch.manual_seed(0)
    model = initialized_model(cfg, data)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    stacked = StackedMLP([model] * len(seeds), cfg.activation, torch.device("cpu"), torch.float64, dropout=generators)
    captured, heads = Captured(), []
    linear = stacked._linear
    stacked._linear = lambda x, name: (heads.append(x) if name == "head" else None) or linear(x, name)
    stacked(torch.ones(len(seeds), 64, 8, dtype=torch.float64), captured)
    return captured.act[0], heads[0]


def test_dropout_draws_one_mask_per_member_from_its_own_generator():
    p = 0.3
    before, after = _dropped([11, 12, 13, 14], p)
    kept = after != 0
    n = kept[0].numel()
    for k in range(4):  # kept fraction within 5 binomial standard deviations of 1 - p
        assert abs(kept[k].double().mean().item() - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5
        torch.testing.assert_close(after[k][kept[k]], before[k][kept[k]] / (1 - p))
    assert not any(torch.equal(kept[0], kept[k]) for k in range(1, 4))  # each member its own mask
    _, pair = _dropped([12, 14], p)  # the same generators in another stack: the same masks, bit for bit
    assert torch.equal(pair[0], after[1]) and torch.equal(pair[1], after[3])


def test_group_key_separates_shapes_and_keeps_member_settings_together():
    a, b, c, d = configs([["optimizer=adam", "trainer.seed=3", "init=he_normal", "trainer.l1=0.1"],
                          ["scheduler=step", "trainer.clip_grad_norm=1"], ["model.width=25"], ["bn=before"]])
    assert group_key(a) == group_key(b)
    assert len({group_key(a), group_key(c), group_key(d)}) == 3


def sweep(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path | None]:
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run([CLI, "-m", "hydra/launcher=stacked", *overrides], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    folders = sorted((tmp_path / "outputs" / "sweeps").glob("*/*"))
    return proc, (folders[-1] if folders else None)


SMALL = ["model.depth=2", "model.width=16", "trainer.max_steps=12", "probe.every=4", "trainer.progress=false",
         "trainer.batch_size=64"]


def test_stacked_launcher_writes_ordinary_run_folders(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "hydra.launcher.max_members=3", "optimizer=sgd,adam",
                            "trainer.seed=0,1", "model.width=16,8", "probe.figures=false")
    assert proc.returncode == 0, proc.stderr
    assert "8 jobs, 0 skipped as finished, stacked as 2 x 3, 2 x 1" in proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("8 jobs: 8 completed; see ")
    jobs = {job_number(d): d for d in sweep_dir.iterdir() if d.is_dir()}
    assert sorted(jobs) == list(range(8))
    assert jobs[5].name == "model.width=8,optimizer=sgd,trainer.seed=1"  # named by the swept overrides
    for job in jobs.values():
        files = {p.name for p in job.iterdir()}
        assert {"config.yaml", ".hydra", "metrics.jsonl", "probes.jsonl", "summary.json", "checkpoint.pt",
                "train.log"} <= files and any(f.startswith("events.out.tfevents") for f in files)
        assert "epoch 1/" in (job / "train.log").read_text()
    assert (sweep_dir / "SWEEP.md").exists() and len(RunResult.load(jobs[5]).probes) == 4


def test_stacked_launcher_skips_finished_jobs_and_figures_are_drawn(tmp_path):
    figures = ["probe.figures=true", "probe.every=11"]  # two probes, two lecture figures per job
    small = [a for a in SMALL if not a.startswith("probe.every")]
    proc, sweep_dir = sweep(tmp_path, *small, "trainer.seed=0,1", *figures)
    assert proc.returncode == 0, proc.stderr
    first, second = sweep_dir / "trainer.seed=0", sweep_dir / "trainer.seed=1"
    assert (first / "figures" / "probe_000011.png").exists()
    (second / "summary.json").unlink()  # as if killed
    finished = (first / "metrics.jsonl").stat().st_mtime_ns
    proc, again = sweep(tmp_path, *small, "trainer.seed=0,1", *figures, f"hydra.sweep.dir={sweep_dir}",
                        "skip_completed=true")
    assert proc.returncode == 0 and again == sweep_dir, proc.stderr
    assert (first / "metrics.jsonl").stat().st_mtime_ns == finished
    assert len(RunResult.load(second).metrics) == len(RunResult.load(first).metrics)


def test_submitit_local_dispatch_trains_each_group_as_a_job(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "probe.figures=false", "hydra.launcher.dispatch=submitit_local",
                            "optimizer=sgd,adam", "model.width=16,8")
    assert proc.returncode == 0, proc.stderr
    assert "stacked as 2 x 2" in proc.stdout + proc.stderr
    assert [job.result.status for job in collect(sweep_dir)] == ["completed"] * 4
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 2


@pytest.mark.parametrize("overrides, expected", [
    (["hydra.launcher.max_members=0"], "hydra.launcher.max_members=0 must be a whole number >= 1"),
    (["hydra.launcher.dispatch=cloud"], "hydra.launcher.dispatch='cloud' is unknown"),
    (["hydra.launcher.members=3"], "hydra.launcher.members is not a config key"),
    (["model.width=2000000"], "needs"),
])
def test_bad_launcher_input_is_one_line_and_writes_nothing(tmp_path, overrides, expected):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "trainer.seed=0,1", *overrides)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("layerscope: error: ") and expected in lines[0]
    assert sweep_dir is None  # nothing written


def test_a_sweep_of_invalid_jobs_records_each_failure_and_exits_non_zero(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "probe.figures=false", "optimizer.lr=-1,0")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("2 jobs: 2 failed; see ")
    assert [RunResult.load(sweep_dir / f"optimizer.lr={lr}").summary["error"] for lr in (-1, 0)] == [
        "optimizer.lr=-1 must be a finite number > 0", "optimizer.lr=0 must be a finite number > 0"]



def test_a_stacked_sweep_logs_what_differs_and_one_line_per_group_and_epoch(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "probe.figures=false", "optimizer=sgd,adam", "init=he_normal,xavier_normal")
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    header = [line for line in log.splitlines() if "stacked group of 4" in line]
    assert len(header) == 1 and header[0].endswith("the members differ in init, optimizer"), log
    epochs = [line for line in log.splitlines() if " epoch " in line and "train loss, test acc" in line]
    assert [line.split(" epoch ")[1].split()[0] for line in epochs] == ["1/1"], log  # 12 steps: one epoch
    assert all(f"[{label}]" in epochs[0] for label in ("optimizer=sgd,init=he_normal", "optimizer=adam,init=xavier_normal"))


def test_fail_on_divergence_makes_a_stacked_sweep_exit_3(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "probe.figures=false", "activation=relu", "init=normal_1",
                            "optimizer.lr=0.01,1000", "trainer.fail_on_divergence=true")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("diverged (trainer.fail_on_divergence=true): optimizer.lr=1000")
    assert [RunResult.load(sweep_dir / f"optimizer.lr={lr}").status for lr in ("0.01", "1000")] == ["completed", "diverged"]


def test_a_crashing_group_fails_its_members_and_the_next_group_trains(tmp_path, monkeypatch):
    from layerscope.sweep import launcher
    from layerscope.train import loop as trainer

    cfgs = configs([["optimizer=sgd"], ["optimizer=adam"], ["optimizer=sgd", "model.width=8"]],
                   [b for b in BASE if b != "trainer.dtype=float64"])
    run_one = trainer.Trainer.run
    calls = []

    def crash_first(self):
        calls.append(len(self.s.members))
        if len(calls) == 1:
            raise RuntimeError("boom\nsecond line")
        return run_one(self)

    monkeypatch.setattr(trainer.Trainer, "run", crash_first)
    folders = [tmp_path / name for name in ("sgd", "adam", "narrow")]
    for folder in folders:
        folder.mkdir()
    results = launcher._local([(cfgs[:2], [str(f) for f in folders[:2]]), (cfgs[2:], [str(folders[2])])])
    assert calls == [2, 1]
    assert [r["status"] for r in results[0]] == ["failed", "failed"]
    assert all(RunResult.load(f).summary["error"] == "RuntimeError: boom" for f in folders[:2])
    assert results[1][0]["status"] == "completed" and RunResult.load(folders[2]).status == "completed"


@pytest.mark.parametrize("figures, threads, begun", [("true", 1, [0]), ("every", 1, [0, 5, 10, 15, 20]),
                                                     ("true", 4, []), ("every", 4, [])])
def test_a_members_figures_are_begun_on_low_priority_workers_while_it_trains_on_fewer_cores_than_there_are(
        tmp_path, monkeypatch, figures, threads, begun):
    """A stack's members hand their first probe's figure (with probe.figures=every, each probe's) to the figure
    workers as it is recorded where the training leaves a CPU idle (here on 1 thread of 4 CPUs), else (on 4 threads)
    as the loop ends: a figure drawn beside a loop on every core would stall its threads. The workers draw at the
    lowest priority (niceness 19). Every figure asked for is there at the end."""
    from layerscope.probe import figure_workers
    from layerscope.train import loop

    seen = []
    end_epoch = loop.Trainer._end_epoch

    def at_epoch_end(self, *args):
        seen.append([sorted(m.figures.begun) for m in self.s.members])
        return end_epoch(self, *args)

    monkeypatch.setattr(loop.Trainer, "_end_epoch", at_epoch_end)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    base = [b for b in BASE if not b.startswith(("probe.", "trainer.max_steps"))]
    cfgs = configs([["trainer.seed=0"], ["trainer.seed=1"]],
                   base + ["trainer.max_steps=30", "probe.every=5", f"probe.figures={figures}"])  # 22 steps an epoch
    train_group(cfgs, [tmp_path / f"member_{i}" for i in range(2)])
    assert seen[0] == [begun, begun]  # at the first epoch's end (step 22), before the run ends at step 30
    expected = [0, 29] if figures == "true" else [0, 5, 10, 15, 20, 25, 29]
    for i in range(2):
        assert sorted(p.name for p in (tmp_path / f"member_{i}" / "figures").iterdir()) == [
            f"probe_{step:06d}.png" for step in expected]
    assert figure_workers._workers().submit(os.nice, 0).result(timeout=60) == 19
