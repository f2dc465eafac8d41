"""Throughput of one K-job sweep run three ways: one after another, the basic launcher, the stacked launcher.

The K configurations are one Hydra sweep of the 10x500 tanh MLP at batch 128 on in-memory Gaussian
data (784 inputs, 10 classes): a mix of optimizers (sgd, adam), initializers (xavier_normal,
he_normal), learning rates (0.01, 0.003) and seeds, the number of seeds growing with K (K = 8, 16,
32, 64: 1, 2, 4, 8 seeds). Every job trains ``--steps`` optimizer steps, figures off. Measured per K:

* **sequential**: in this process, each configuration composed with Hydra's compose API and trained
  by ``layerscope.train.group.run(cfg, run_dir)``, one after another. The process is warmed up first
  (one untimed 1-step run), so this is the steady state of K runs in a warm process.
* **basic**: ``layerscope -m <sweep>``, Hydra's basic launcher, as one subprocess. Its wall time
  includes what a user waits for: interpreter start and imports, per-job composition and set-up,
  and the sweep report written when the sweep ends. (The basic launcher runs its jobs one after
  another inside that one process; it does not start a process per job.)
* **stacked**: the same command with ``hydra/launcher=stacked hydra.launcher.max_members=K``, the
  launcher that trains the K members together as one stacked model. Where it is missing (or fails)
  its row says so with the subprocess's last stderr line.

After each way every job's summary.json must say ``completed`` after ``--steps`` steps; the table
counts the jobs that do not. For each way: wall seconds, samples/s (K * steps * 128 / wall), samples/s
per member (that / K) and the median of the jobs' own loop samples/s (summary.json, training loop
only); then the ratios stacked/sequential and stacked/basic, and the targets that apply on this
device: on a GPU, stacked >= 20x sequential at K=32; on the CPU, stacked >= 1.0x sequential and >= 2x
basic at K=16.

Why this shape: a sweep of small MLPs leaves a GPU mostly idle, one tiny kernel at a time, and on any
device each job pays its own set-up; stacking K members into one model is meant to fix both. The
fixed costs of a subprocess (about 2-3 s of imports and start-up, and the sweep report, on a 2-core
CPU) are charged to both launcher ways and not to the sequential one, so the ratios against
sequential are conservative and grow with ``--steps``. The 2-core CPU is noisy: compare rows of one
run only, and look at the load average printed before and after.

Usage: ``.venv/bin/python benchmarks/sweep.py [--ks 8,16] [--steps N] [--device auto|cpu|cuda]
[--ways sequential,basic,stacked] [--width W] [--depth D] [--json PATH] [--keep]``.
The exit status is 0 whatever the ratios (2 on bad arguments): this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from output import publish  # benchmarks/output.py (this folder)

from layerscope.paths import OUTPUTS_VARIABLE, configs_context
from layerscope.runs.folder import read_summary
from layerscope.train.group import run

BATCH = 128
N_TRAIN, DIM, N_TEST = 1024, 784, 256  # 8 steps per epoch at batch 128
WAYS = ("sequential", "basic", "stacked")
DEFAULTS = {"cpu": ("8,16", 40), "cuda": ("8,16,32,64", 1000)}  # --ks, --steps
Outcome = tuple[float, list[Path], "str | None"]  # wall seconds, job folders, the error that ended the way
TARGETS = {"cuda": [(32, "sequential", 20.0)], "cpu": [(16, "sequential", 1.0), (16, "basic", 2.0)]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; device-dependent defaults filled in, ``--device auto`` resolved."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default=None,
                        help="sweep sizes, multiples of 8 (default 8,16 on cpu, 8,16,32,64 on cuda)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per job (default 40 cpu, 1000 cuda)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device for every job")
    parser.add_argument("--ways", default=",".join(WAYS), help="subset of sequential,basic,stacked (default all)")
    parser.add_argument("--width", type=int, default=500, help="hidden units (default 500; smaller for a smoke test)")
    parser.add_argument("--depth", type=int, default=10, help="hidden layers (default 10)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep every job's folder (the path is printed)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda but torch {torch.__version__} sees no GPU")
    ks, steps = DEFAULTS[args.device]
    args.steps = steps if args.steps is None else args.steps
    try:
        args.ks = [int(k) for k in (args.ks or ks).split(",")]
    except ValueError:
        parser.error(f"--ks {args.ks!r}: give comma-separated integers, e.g. 8,16")
    if any(k < 8 or k % 8 for k in args.ks):
        parser.error(f"--ks {args.ks}: every K must be a multiple of 8")
    ways = args.ways.split(",")
    if not ways or not set(ways) <= set(WAYS):
        parser.error(f"--ways {args.ways!r}: choose from {','.join(WAYS)}")
    args.ways = [w for w in WAYS if w in ways]
    for name in ("steps", "width", "depth"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def sweep_overrides(k: int) -> list[str]:
    """The K-job sweep as Hydra overrides: 2 optimizers x 2 initializers x 2 lrs x K/8 seeds."""
    seeds = ",".join(str(s) for s in range(k // 8))
    return ["optimizer=sgd,adam", "init=xavier_normal,he_normal", "optimizer.lr=0.01,0.003", f"trainer.seed={seeds}"]


def fixed_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides every job shares: model, batch, steps, data, device, no progress bar or figures."""
    return [f"model.depth={args.depth}", f"model.width={args.width}", f"trainer.batch_size={BATCH}",
            f"trainer.max_steps={args.steps}", "trainer.progress=false", "probe.figures=false", "data=gaussian",
            f"data.n_train={N_TRAIN}", f"data.dim={DIM}", f"data.n_test={N_TEST}", f"trainer.device={args.device}"]


def expand(sweep: list[str]) -> list[list[str]]:
    """The sweep's cartesian product, one override list per job, in Hydra's basic sweeper's order."""
    keys, values = zip(*(item.split("=", 1) for item in sweep))
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*(v.split(",") for v in values))]


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so the clock measures it (a no-op on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def run_sequential(jobs: list[list[str]], fixed: list[str], root: Path, device: str) -> Outcome:
    """Compose and run every job in this process, one after another; wall seconds, job folders, first error."""
    folders, error = [root / str(i) for i in range(len(jobs))], None
    with configs_context():
        synchronize(device)
        started = time.perf_counter()
        for folder, overrides in zip(folders, jobs):
            try:
                run(hydra.compose("train", overrides=overrides + fixed), folder)
            except Exception as err:  # recorded as that job's failure; the others still run
                error = error or f"job {folder.name}: {type(err).__name__}: {err}"
        synchronize(device)
    return time.perf_counter() - started, folders, error


def run_launcher(sweep: list[str], fixed: list[str], root: Path, extra: list[str]) -> Outcome:
    """``layerscope -m`` as one subprocess into ``root``; wall seconds, job folders, its error line if it failed."""
    command = [str(Path(sys.executable).with_name("layerscope")), "-m", *sweep, *fixed, *extra]
    env = {**os.environ, OUTPUTS_VARIABLE: str(root)}
    root.mkdir(parents=True)
    with open(root / "stdout.log", "w") as out, open(root / "stderr.log", "w") as err:
        started = time.perf_counter()
        code = subprocess.run(command, env=env, stdout=out, stderr=err).returncode
        wall = time.perf_counter() - started
    folders = sorted(p.parent for p in root.glob("sweeps/*/*/*/.hydra"))  # each job's folder, whatever its name
    lines = [line.strip() for line in (root / "stderr.log").read_text().splitlines() if line.strip()]
    return wall, folders, None if code == 0 else (lines[-1] if lines else f"exit status {code}")


def check(folders: list[Path], k: int, steps: int) -> tuple[int, str | None, list[float]]:
    """Jobs not ``completed`` after ``steps`` steps (missing folders count), the first problem, the loop samples/s."""
    failed, rates = max(0, k - len(folders)), []
    problems = [f"{failed} of {k} job folders missing"] if failed else []
    for folder in folders:
        summary = read_summary(folder) or {"status": "no summary.json"}
        if summary.get("status") == "completed" and summary.get("steps") == steps:
            rates.append(summary["samples_per_second"])
        else:
            failed += 1
            problems.append(f"job {folder.name}: {summary.get('status')} after {summary.get('steps')} steps "
                            f"{summary.get('error', '')}".strip())
    return failed, (problems[0] if problems else None), rates


def measure_way(way: str, k: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """One way at one K: run it, check every job, and the row of the table."""
    sweep, fixed, folder = sweep_overrides(k), fixed_overrides(args), root / f"k{k}_{way}"
    if way == "sequential":
        wall, folders, error = run_sequential(expand(sweep), fixed, folder, args.device)
    else:
        extra = ["hydra/launcher=stacked", f"hydra.launcher.max_members={k}"] if way == "stacked" else []
        wall, folders, error = run_launcher(sweep, fixed, folder, extra)
    failed, problem, rates = check(folders, k, args.steps)
    total = None if error else k * args.steps * BATCH / wall
    return {"way": way, "k": k, "wall_seconds": wall, "samples_per_second": total,
            "per_member": None if total is None else total / k,
            "loop_per_member": statistics.median(rates) if rates else None,
            "failed": failed, "error": error or problem, "ok": error is None and failed == 0}


def ratios(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """stacked/sequential and stacked/basic per K, where both rows finished with every job completed."""
    ok = {(r["k"], r["way"]): r["samples_per_second"] for r in rows if r["ok"]}
    return {k: {base: ok[(k, "stacked")] / ok[(k, base)] for base in ("sequential", "basic") if (k, base) in ok}
            for k in sorted({r["k"] for r in rows}) if (k, "stacked") in ok}


def warm_up(args: argparse.Namespace, root: Path) -> None:
    """One untimed 1-step run, so lazy imports and device start-up are not charged to the first way."""
    fixed = [o for o in fixed_overrides(args) if not o.startswith("trainer.max_steps=")] + ["trainer.max_steps=1"]
    run_sequential([expand(sweep_overrides(8))[0]], fixed, root / "warmup", args.device)


def report(result: dict[str, Any]) -> str:
    """The human-readable table, ratios and targets."""
    r, fmt = result, lambda v, spec: "-" if v is None else format(v, spec)
    lines = [f"device {r['device_name']} | torch {r['torch']} | {r['cpus']} CPUs | load average "
             f"{r['load_average'][0]:.1f} -> {r['load_average'][1]:.1f} (other work on the machine skews the numbers)",
             f"{r['model']} | batch {BATCH} | {r['steps']} steps per job | data {r['data']} | figures off", "",
             f"{'K':>3}  {'way':<11}{'wall s':>9}{'samples/s':>11}{'per member':>12}{'loop/member':>13}{'failed':>8}"]
    for row in r["rows"]:
        lines.append(f"{row['k']:>3}  {row['way']:<11}{row['wall_seconds']:>9.1f}"
                     f"{fmt(row['samples_per_second'], '.0f'):>11}{fmt(row['per_member'], '.0f'):>12}"
                     f"{fmt(row['loop_per_member'], '.0f'):>13}{row['failed']:>8}"
                     + (f"   {row['error']}" if row["error"] else ""))
    lines.append("")
    for k, pair in r["ratios"].items():
        lines.append(f"K={k}: " + ", ".join(f"stacked/{base} {value:.2f}x" for base, value in pair.items()))
    for k, base, target in TARGETS[r["device"]]:
        value = r["ratios"].get(k, {}).get(base)
        verdict = "not measured" if value is None else f"{value:.2f}x, {'met' if value >= target else 'NOT met'}"
        lines.append(f"target ({r['device']}): stacked/{base} >= {target:g}x at K={k}: {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every K and way, print the table, optionally write JSON; exit 0 whatever the ratios."""
    args = parse_args(argv)
    logging.getLogger("layerscope").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="layerscope-sweep-"))
    load_before = os.getloadavg()[0]
    try:
        warm_up(args, root)
        rows = []
        for k in args.ks:
            for way in args.ways:
                rows.append(measure_way(way, k, args, root))
                print(f"K={k} {way}: {rows[-1]['wall_seconds']:.1f} s", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    result = {"device": args.device, "torch": torch.__version__, "cpus": os.cpu_count(),
              "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "load_average": [load_before, os.getloadavg()[0]], "steps": args.steps, "batch_size": BATCH,
              "model": f"{args.depth}x{args.width} tanh MLP", "data": f"gaussian {N_TRAIN}x{DIM}, {N_TEST} test",
              "sweeps": {k: sweep_overrides(k) for k in args.ks}, "fixed": fixed_overrides(args),
              "rows": rows, "ratios": ratios(rows)}
    return publish(report(result), result, args.json, root if args.keep else None)


if __name__ == "__main__":
    sys.exit(main())
