"""What a run costs beyond its arithmetic: the fixed costs of a process, a stacked member and a sweep job.

Every run here is a tiny 2x16 MLP trained 2 steps on digits with the default probe and figure settings, so its
arithmetic is ~0 and what is measured is bookkeeping: imports, composition, set-up, probes, figures, files and
the sweep report. Each row is a median of ``--repeats`` subprocesses, as a user starts them:

* **import torch**: ``python -c "import torch"``.
* **one tiny run**: ``layerscope <tiny>``, the whole process; its ratio to ``import torch``.
* **stacked sweep, per extra member**: ``layerscope -m <64 jobs> hydra/launcher=stacked`` less the same with 1
  job, over 63; with the default figures and with ``probe.figures=false``. The two run in pairs, one right after
  the other, and the median of the pairs' differences is reported.
* **basic launcher, per extra job**: ``layerscope -m <16 jobs>`` (Hydra's basic launcher) less 1 job, over 15,
  paired the same way.

Then the breakdown of each sweep's per-member (per-job) cost: the same 64-member (16-job) command once more
under cProfile, its time split by what layerscope and Hydra spend it on (compose, set-up, probes, figures,
files, report, the rest), over the members (jobs). cProfile slows Python code down about 1.5-2x: read the
breakdown as shares. The targets on the 2-core CPU are printed with the numbers, met or not.

Usage: ``.venv/bin/python benchmarks/overhead.py [--repeats 3] [--members 64] [--jobs 16] [--json PATH] [--keep]``.
The exit status is 0 whatever the numbers (2 on bad arguments): this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from output import publish  # benchmarks/output.py (this folder)

TINY = ["model.depth=2", "model.width=16", "trainer.max_steps=2", "trainer.progress=false"]
TARGETS = {"run_over_import": 2.5, "stacked_ms": 100.0, "stacked_nofig_ms": 30.0, "basic_ms": 250.0}
CATEGORIES = {  # what a profiled function's time (with its callees) is charged to: (file suffix, function name)
    "compose": [("config/hydra_hooks.py", "_load_sweep_config")],
    "set-up": [("config/hydra_hooks.py", "_save_config"), ("hydra/core/utils.py", "configure_log"),
               ("sweep/launcher.py", "_output_dir"), ("sweep/launcher.py", "_begin_job"), ("train/group.py", "_build")],
    "probes": [("train/loop.py", "_keep")],
    "figures": [("probe/figure_workers.py", "begin"), ("probe/figure_workers.py", "futures"),
                ("concurrent/futures/_base.py", "result")],
    "files": [("train/loop.py", "_begin"), ("train/loop.py", "_checkpoint"), ("runs/writer.py", "hparams"),
              ("runs/writer.py", "close"), ("runs/writer.py", "epoch"), ("runs/folder.py", "write_summary")],
    "report": [("sweep/report.py", "write_sweep_report")],
}
"""Functions charged with their callees, less the time of callees charged elsewhere (a probe begins its figure:
that is the figures'), so the categories do not overlap; "the rest" is everything else."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="subprocesses (or pairs of them) per row, the median is reported")
    parser.add_argument("--members", type=int, default=64, help="jobs of the stacked sweep (a multiple of 4)")
    parser.add_argument("--jobs", type=int, default=16, help="jobs of the basic-launcher sweep (a multiple of 4)")
    parser.add_argument("--no-profile", action="store_true", help="skip the breakdown (the profiled sweeps)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep every run's folder (the path is printed)")
    args = parser.parse_args(argv)
    for name in ("repeats", "members", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    for name in ("members", "jobs"):
        if getattr(args, name) % 4:
            parser.error(f"--{name} must be a multiple of 4 (2 optimizers x 2 initializers x seeds)")
    return args


def sweep(jobs: int) -> list[str]:
    """A sweep of ``jobs`` tiny runs: 2 optimizers x 2 initializers x jobs/4 seeds (one job: the first of them)."""
    if jobs == 1:
        return ["optimizer=sgd", "init=xavier_normal", "trainer.seed=0"]
    return ["optimizer=sgd,adam", "init=xavier_normal,he_normal", f"trainer.seed={','.join(map(str, range(jobs // 4)))}"]


def timed(command: list[str], root: Path, profile: Path | None = None) -> float:
    """Wall seconds of ``command`` (a layerscope command line) as a subprocess writing under ``root``."""
    python = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), "-m", "layerscope.cli"]
    root.mkdir(parents=True)
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(root)}
    with open(root / "stderr.log", "w") as err:
        started = time.perf_counter()
        code = subprocess.run(python + command, env=env, stdout=subprocess.DEVNULL, stderr=err).returncode
        wall = time.perf_counter() - started
    if code:
        lines = (root / "stderr.log").read_text().strip().splitlines()
        raise SystemExit(f"overhead.py: {' '.join(command)} exited {code}: {lines[-1] if lines else ''}")
    return wall


def median_of(repeats: int, command: list[str], root: Path) -> float:
    """The median wall seconds of ``repeats`` runs of ``command``."""
    return statistics.median(timed(command, root / str(i)) for i in range(repeats))


def paired(repeats: int, one: list[str], many: list[str], root: Path) -> tuple[list[float], list[float]]:
    """Wall seconds of ``repeats`` pairs of runs, ``one`` then ``many`` (a sweep of 1 job, then of many): each pair
    sees the machine in one state, so the median of the pairs' differences leaves out most of its drift."""
    walls = [(timed(one, root / f"one_{i}"), timed(many, root / f"many_{i}")) for i in range(repeats)]
    return [a for a, _ in walls], [b for _, b in walls]


def import_torch(repeats: int) -> float:
    """The median wall seconds of ``python -c "import torch"``."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def breakdown(profile: Path, count: int) -> dict[str, float]:
    """Milliseconds per member (job) of each category in a profiled sweep of ``count`` of them."""
    stats = pstats.Stats(str(profile)).stats  # {(file, line, function): (calls, ncalls, tottime, cumtime, callers)}
    total = max(value[3] for value in stats.values())
    charged = {key: category for key in stats for category, functions in CATEGORIES.items()
               if any(key[0].endswith(suffix) and key[2] == fn for suffix, fn in functions)}
    out, spent = {category: 0.0 for category in CATEGORIES}, 0.0
    for key, category in charged.items():
        out[category] += stats[key][3]
        spent += stats[key][3]
        for caller, (*_, cumtime) in stats[key][4].items():  # this function's time inside another category's
            if charged.get(caller, category) != category:
                out[charged[caller]] -= cumtime
                spent -= cumtime
    out = {category: 1000 * seconds / count for category, seconds in out.items()}
    out["the rest"] = 1000 * (total - spent) / count
    out["profiled total"] = 1000 * total / count
    return out


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Every row, and the breakdowns."""
    stacked = ["hydra/launcher=stacked", f"hydra.launcher.max_members={args.members}"]
    result: dict[str, Any] = {"import_torch_s": import_torch(args.repeats)}
    result["run_s"] = median_of(args.repeats, TINY, root / "run")
    for name, extra in (("stacked", []), ("stacked_nofig", ["probe.figures=false"])):
        one, many = paired(args.repeats, ["-m", *sweep(1), *TINY, *stacked, *extra],
                           ["-m", *sweep(args.members), *TINY, *stacked, *extra], root / name)
        result[f"{name}_ms"] = 1000 * statistics.median(b - a for a, b in zip(one, many)) / (args.members - 1)
        result[f"{name}_walls_s"] = [statistics.median(one), statistics.median(many)]
    one, many = paired(args.repeats, ["-m", *sweep(1), *TINY], ["-m", *sweep(args.jobs), *TINY], root / "basic")
    result["basic_ms"] = 1000 * statistics.median(b - a for a, b in zip(one, many)) / (args.jobs - 1)
    result["basic_walls_s"] = [statistics.median(one), statistics.median(many)]
    if not args.no_profile:
        timed(["-m", *sweep(args.members), *TINY, *stacked], root / "profile_stacked", root / "stacked.prof")
        result["stacked_breakdown_ms"] = breakdown(root / "stacked.prof", args.members)
        timed(["-m", *sweep(args.jobs), *TINY], root / "profile_basic", root / "basic.prof")
        result["basic_breakdown_ms"] = breakdown(root / "basic.prof", args.jobs)
    return result


def table(r: dict[str, Any], args: argparse.Namespace, load: tuple[float, float]) -> str:
    """The printed report: the rows, the targets met or not, the breakdowns."""
    import torch

    ratio = r["run_s"] / r["import_torch_s"]
    met = {"run_over_import": ratio <= TARGETS["run_over_import"],
           **{k: r[k] <= TARGETS[k] for k in ("stacked_ms", "stacked_nofig_ms", "basic_ms")}}
    mark = {True: "met", False: "NOT met"}
    lines = [f"torch {torch.__version__} | python {sys.version.split()[0]} | {os.cpu_count()} CPUs | "
             f"load average {load[0]:.1f} -> {load[1]:.1f} | medians of {args.repeats}",
             f"tiny run: {' '.join(TINY)} (default probe and figure settings, data digits)", "",
             f"{'what':44} {'measured':>12}   target",
             f"{'import torch':44} {r['import_torch_s']:>10.2f} s",
             f"{'one tiny run, whole process':44} {r['run_s']:>10.2f} s   {ratio:.2f}x import torch, "
             f"<= {TARGETS['run_over_import']}x: {mark[met['run_over_import']]}",
             f"{f'stacked sweep, per extra member (of {args.members})':44} {r['stacked_ms']:>9.0f} ms   "
             f"<= {TARGETS['stacked_ms']:.0f} ms: {mark[met['stacked_ms']]}",
             f"{'  the same, probe.figures=false':44} {r['stacked_nofig_ms']:>9.0f} ms   "
             f"<= {TARGETS['stacked_nofig_ms']:.0f} ms: {mark[met['stacked_nofig_ms']]}",
             f"{f'basic launcher, per extra job (of {args.jobs})':44} {r['basic_ms']:>9.0f} ms   "
             f"<= {TARGETS['basic_ms']:.0f} ms: {mark[met['basic_ms']]}"]
    for name, count in (("stacked", args.members), ("basic", args.jobs)):
        parts = r.get(f"{name}_breakdown_ms")
        if parts:
            lines += ["", f"{name} sweep, per {'member' if name == 'stacked' else 'job'} under cProfile "
                          f"({count} of them; read as shares):"]
            lines += [f"  {key:20} {value:8.1f} ms" for key, value in parts.items()]
    r["targets_met"] = met
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print, and write the JSON."""
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="layerscope-overhead-"))
    before = os.getloadavg()[0]
    try:
        result = measure(args, root)
        text = table(result, args, (before, os.getloadavg()[0]))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return publish(text, result, args.json, root if args.keep else None)


if __name__ == "__main__":
    sys.exit(main())
