"""``make reproduce``: run the lecture experiments, check each claim, write the report.

Each experiment is a Hydra experiment file in ``experiments/`` whose ``reproduce`` section names
its claim, the check that decides it (``layerscope.lecture.claims``) and the variants to run. Each experiment's
verdict is saved in its folder, and REPORT.md is built from every saved verdict (``layerscope.lecture.report``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from layerscope.config.hydra_hooks import compose, parse_interpolations_once, read_config_files_once
from layerscope.errors import ConfigError
from layerscope.heap import keep_freed_pages, startup_left_out
from layerscope.lecture import report
from layerscope.lecture.claims import CHECKS, Part, Verdict
from layerscope.lecture.experiments import SIMULATIONS, Experiment, load_experiments
from layerscope.paths import configs_context, outputs
from layerscope.runs.folder import stopped_by
from layerscope.runs.results import RunResult
from layerscope.sweep.progress import TIMINGS, Estimate
from layerscope.theory.meanfield import chi_1, fixed_point_c, fixed_point_q, xi_c
from layerscope.theory.phase import phase_figure, phase_name
from layerscope.theory.prediction import init_variances
from layerscope.train.group import group_key, train_group
from layerscope.train.interrupt import Stopped, exit_status, stopping


def _fresh(run_dir: Path) -> Path:
    """The variant's folder, emptied of a previous run's files (nothing else is touched)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.iterdir():
        if stale.is_file():
            stale.unlink()
    return run_dir


def run_experiment(experiment: Experiment, out: Path, base_seed: int = 0) -> dict[str, RunResult]:
    """Run every variant into ``out/<name>/<label>``: variants that share a model shape as one stacked group.

    A variant that trains runs ``experiment.seeds`` seeds, its own ``trainer.seed`` plus ``base_seed`` and the next: the
    first into ``<label>``, the others into ``seeds/<label>-seed<N>`` (its ``RunResult.seeds``, the first one
    first); a probe-only variant runs the first seed alone. Trained variants draw no lecture figures, and of a
    probe-only experiment only the first variant draws one: the report shows it beside the check's comparison
    figures (``layerscope-report <run>`` draws any other). A variant's config is ``experiment=<name>`` plus its
    overrides. A run that fails is a result: its check sees the status (a stacked member with an invalid config
    is ``failed`` with its error).
    """
    cfgs, dirs, labels = [], [], []
    for index, (label, overrides) in enumerate(experiment.variants.items()):
        first = compose("train", overrides=[f"experiment={experiment.name}", "trainer.progress=false", *overrides])
        trains = first.trainer.max_steps != 0
        seed = first.trainer.seed + base_seed
        for i in range(experiment.seeds if trains else 1):
            cfg = first if i == 0 else compose("train", overrides=[f"experiment={experiment.name}",
                                                                   "trainer.progress=false", *overrides])
            cfg.trainer.seed = seed + i
            cfg.probe.figures = cfg.probe.figures and not trains and index == 0 and i == 0
            folder = out / experiment.name / (label if i == 0 else f"seeds/{label}-seed{seed + i}")
            cfgs.append(cfg), dirs.append(_fresh(folder)), labels.append(label)
    groups: dict[str, list[int]] = {}
    for index, cfg in enumerate(cfgs):
        groups.setdefault(group_key(cfg), []).append(index)
    for indices in groups.values():
        try:
            train_group([cfgs[i] for i in indices], [dirs[i] for i in indices])
        except Exception as err:  # a failing run is a result (its folder says failed); its check sees the status
            logging.getLogger("layerscope").error("%s failed: %s", experiment.name, err)
    results: dict[str, RunResult] = {}
    for label, run_dir in zip(labels, dirs):
        result = RunResult.load(run_dir, label)
        results.setdefault(label, result).seeds.append(result)
    return results


def mean_field_picture(results: dict[str, RunResult], folder: Path) -> tuple[list[Path], str]:
    """A probe-only experiment's order-to-chaos diagram (its activation, its init's (σ_w², σ_b²) marked) and
    the numbers of that point: q*, χ₁, c* and the depth scale ξ_c."""
    cfg = next(iter(results.values())).config if results else {}
    if not cfg or cfg["trainer"]["max_steps"] != 0 or cfg["bn"]["placement"] != "none":
        return [], ""
    width, activation = cfg["model"]["width"], cfg["activation"]
    variances = init_variances(cfg["init"], activation["name"], activation, [width], [width])
    if variances is None:
        return [], ""
    point = (variances[0][0], variances[1][0])  # a hidden layer's: fan_in = width
    name, args = activation["name"], (activation["name"], activation, *point)
    chi = chi_1(*args)
    where = f"**Mean-field picture** at (σ_w², σ_b²) = ({point[0]:.3g}, {point[1]:.3g}) for {name}: "
    if phase_name(chi) == "critical":
        text = (where + f"χ₁ = {chi:.3g}, on the critical line: the variance and the correlation of two inputs "
                        f"change only polynomially with depth (ξ_c = ∞), which is why this init keeps the signal.")
    else:
        text = (where + f"q* = {fixed_point_q(*args):.3g}, χ₁ = {chi:.3g} ({phase_name(chi)}); "
                        f"the correlation of two inputs tends to c* = {fixed_point_c(*args):.3g} over a depth scale "
                        f"ξ_c = {xi_c(*args):.3g} layers.")
    return [phase_figure(name, activation, point, folder / "phase.png")], text


def _verdict(v: Verdict) -> str:
    return report.verdict_word(v.passed)


def statements(experiment: Experiment, verdict: Verdict) -> list[Part]:
    """The claim's statements and their outcomes (a claim not split is one statement)."""
    return verdict.parts or [Part(experiment.claim, _verdict(verdict), verdict.measured)]


def _error(v: Verdict) -> str:
    return f"{v.theory_error:.1%}" if v.theory_error is not None else "–"


def print_table(rows: list) -> None:
    """One block per experiment run this time: number, title, verdict, theory error, claim and measurement."""
    print(f"\n{'#':>2}  {'experiment':34s} {'verdict':7s} {'theory err':10s} measured")
    for experiment, verdict, _ in rows:
        print(f"{experiment.number:>2}  {experiment.title:34s} {_verdict(verdict):7s} {_error(verdict):10s} "
              f"{verdict.measured}")
        for line in textwrap.wrap(f"claim: {experiment.claim}", 100):
            print(f"    {line}")
        for p in verdict.parts:
            print(f"      {report.outcome_word(experiment, p.outcome):23s} {p.statement}: {p.numbers}" + (f" [{p.spread.text()}]" if p.spread else ""))
    passed = sum(v.passed for _, v, _ in rows)
    outcomes = [(experiment, p.outcome) for experiment, verdict, _ in rows for p in statements(experiment, verdict)]
    print(f"\n{passed} of {len(rows)} claims pass; their {len(outcomes)} statements: "
          f"{report.outcome_counts(outcomes)}")


def default_out(base_seed: int, size: str = "cpu") -> Path:
    """Where ``make reproduce [SEED=N]`` writes: $LAYERSCOPE_OUTPUTS/reproduce (else outputs/), -seedN for N != 0,
    -paper at the papers' size."""
    name = "reproduce" if base_seed == 0 else f"reproduce-seed{base_seed}"
    return outputs() / (name + ("-paper" if size == "paper" else ""))


def rerun_command(out: Path, base_seed: int) -> str:
    """The command that runs experiment ``{name}`` into ``out`` with ``base_seed``."""
    if out.resolve() == default_out(base_seed).resolve():
        return "make reproduce ONLY={name}" + (f" SEED={base_seed}" if base_seed else "")
    return f"python -m layerscope.lecture.reproduce --only {{name}} --seed {base_seed} --out {out}"


def write_full_report(everything: list[Experiment], out: Path, base_seed: int, ran: list[str]) -> Path:
    """Write REPORT.md from the saved verdicts of ``everything``; name on stderr the FAILs it shows that did not run
    now."""
    shown = report.sections(everything, out)
    stale = [f"{saved['name']} ({saved['finished']})" for _, saved in shown
             if saved and not saved["passed"] and saved["name"] not in ran]
    if stale:
        print(f"layerscope-reproduce: REPORT.md also shows a FAIL from an earlier run of: {', '.join(stale)}",
              file=sys.stderr)
    return report.write_report(shown, out, rerun_command(out, base_seed))


def main(argv: list[str] | None = None) -> int:
    """Run the experiments, print their claim table, write REPORT.md (every experiment's last verdict); 1 if a claim
    run now fails."""
    parser = argparse.ArgumentParser(prog="layerscope-reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None,
                        help="experiment names, or a set: lecture, papers (default: all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="base seed added to every experiment's seeds (default 0; make reproduce SEED=N)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: $LAYERSCOPE_OUTPUTS/reproduce, else outputs/reproduce; "
                             "with --seed N: reproduce-seedN)")
    parser.add_argument("--size", choices=("cpu", "paper"), default="cpu",
                        help="paper: the papers' experiments at their papers' size, for a GPU (into reproduce-paper)")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="experiments run at once, each process on its share of the CPUs (default: one per "
                             "CPU, 1 where a GPU trains)")
    args = parser.parse_args(argv)
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be >= 1")
    args.out = args.out or default_out(args.seed, args.size)
    _quiet_logging()
    try:
        everything = load_experiments(size=args.size)
        experiments = load_experiments(args.only or None, args.size)
        args.out.mkdir(parents=True, exist_ok=True)
    except (ConfigError, OSError) as err:
        print(f"layerscope-reproduce: error: {err}", file=sys.stderr)
        return 2
    read_config_files_once()
    parse_interpolations_once()
    keep_freed_pages()  # where this process trains (one at a time) and in the workers it forks
    processes = max(1, min(args.processes or default_processes(), len(experiments)))
    clock = Estimate(args.out / TIMINGS, [e.name for e in experiments], at_once=processes)
    try:
        with configs_context(), stopping():
            rows = (_run_in_turn(experiments, args.out, args.seed, clock) if processes == 1
                    else _run_at_once(experiments, args.out, args.seed, clock, processes))
    except Stopped as stop:  # a run records the signal and returns; the rest must not start
        during = f" during {', '.join(stop.during)}" if stop.during else ""
        print(f"\nlayerscope-reproduce: {stop.name}: stopped{during}; REPORT.md is not rewritten (run make reproduce "
              f"again)", file=sys.stderr)
        return exit_status(stop.signum)
    print_table(rows)
    path = write_full_report(everything, args.out, args.seed, [e.name for e, _, _ in rows])
    print(f"\nreport: {path}")
    return 0 if all(v.passed for _, v, _ in rows) else 1


def default_processes() -> int:
    """Experiments at once by default: one per CPU, each training on one; one where a GPU trains (it runs the
    arithmetic, and one process keeps it busy)."""
    import torch

    return 1 if torch.cuda.is_available() else os.cpu_count() or 1


def _quiet_logging() -> None:
    console = logging.StreamHandler()
    console.setLevel(logging.ERROR)  # a run's own lines (a run alone logs to the console) stay in its train.log
    logging.basicConfig(level=logging.ERROR, format="%(message)s", handlers=[console])


def _announce(experiment: Experiment) -> None:
    print(f"[{experiment.number:2d}] {experiment.title} ...", end=" ", flush=True)


def _run_in_turn(experiments: list[Experiment], out: Path, base_seed: int,
                 clock: Estimate) -> list[tuple[Experiment, Verdict, dict[str, RunResult]]]:
    """Run the experiments one after another in this process, a line each as it ends."""
    rows = []
    for experiment in experiments:
        _announce(experiment)
        started = time.perf_counter()
        try:
            rows.append(_reproduce(experiment, out, base_seed))
        except Stopped as stop:
            stop.during = [experiment.name]
            raise
        print(f"{_verdict(rows[-1][1])} ({clock.done(experiment.name, time.perf_counter() - started)})", flush=True)
    return rows


def _run_at_once(experiments: list[Experiment], out: Path, base_seed: int, clock: Estimate,
                 processes: int) -> list[tuple[Experiment, Verdict, dict[str, RunResult]]]:
    """Run the experiments ``processes`` at a time, each in a worker process training on its share of the CPUs
    (two small nets at once keep two cores busier than one net on both), the longest (last time) first so that
    none is left alone at the end; a line each as it ends; the rows in the experiments' order."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    order = sorted(experiments, key=lambda e: -clock.last.get(e.name, 0.0))
    verdicts: dict[str, Verdict] = {}
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(_start_method(threads)),
                               initializer=_start_worker, initargs=(threads,))
    futures = {pool.submit(_reproduce_in_worker, e, out, base_seed): e for e in order}
    try:
        for future in as_completed(futures):
            experiment = futures[future]
            outcome = future.result()
            if isinstance(outcome, int):  # its run was stopped by a signal: the others are told and end too
                raise Stopped(outcome)
            verdicts[experiment.name], seconds = outcome
            _announce(experiment)
            print(f"{_verdict(verdicts[experiment.name])} ({clock.done(experiment.name, seconds)})", flush=True)
    except Stopped as stop:
        for worker in multiprocessing.active_children():  # each records it, checkpoints and marks its runs
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, stop.signum)
        _close(pool)
        stop.during = [futures[f].name for f in futures if f.done() and not f.cancelled() and f.exception() is None
                       and isinstance(f.result(), int)]
        raise
    finally:
        _close(pool)  # after an error: the running experiments end, the others do not start
    return [(e, verdicts[e.name], {}) for e in experiments]


def _close(pool: ProcessPoolExecutor) -> None:
    with _ignoring_signals():
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _ignoring_signals():
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _start_method(threads: int) -> str:
    """How a worker training on ``threads`` starts: forked on Linux where no GPU is and each worker trains on one
    thread, with the modules this process has imported (torch, Hydra, the claims: 2.4 s a worker); spawned anew
    otherwise. A forked process cannot use CUDA, hangs in its first OpenMP region of two threads or more if this
    process ran one before, and macOS's system libraries are not safe to fork."""
    import torch

    return "fork" if sys.platform == "linux" and threads == 1 and not torch.cuda.is_available() else "spawn"


_WORKER_CONTEXT = []  # a spawned worker's Hydra context, held for its life (a forked one has this process's)


def _start_worker(threads: int) -> None:
    import torch
    from hydra.core.global_hydra import GlobalHydra

    torch.set_num_threads(threads)
    keep_freed_pages()  # a spawned worker's own malloc
    _quiet_logging()
    read_config_files_once()
    parse_interpolations_once()
    if not GlobalHydra.instance().is_initialized():
        _WORKER_CONTEXT.append(configs_context())


def _reproduce_in_worker(experiment: Experiment, out: Path, base_seed: int) -> tuple[Verdict, float] | int:
    """``_reproduce`` in a worker: its verdict and seconds, or the number of the signal that stopped its run."""
    started = time.perf_counter()
    try:
        with stopping():
            return _reproduce(experiment, out, base_seed)[1], time.perf_counter() - started
    except Stopped as stop:
        return stop.signum


def _reproduce(experiment: Experiment, out: Path, base_seed: int) -> tuple[Experiment, Verdict, dict[str, RunResult]]:
    """Run one experiment, check its claim and save its verdict for the report; ``Stopped`` if a run was interrupted."""
    with startup_left_out():
        return _reproduce_now(experiment, out, base_seed)


def _reproduce_now(experiment: Experiment, out: Path,
                   base_seed: int) -> tuple[Experiment, Verdict, dict[str, RunResult]]:
    report.forget(experiment.name, out)
    results = run_experiment(experiment, out, base_seed)
    if experiment.simulate:
        SIMULATIONS[experiment.simulate](out / experiment.name)
    stopped = stopped_by(run.summary for r in results.values() for run in r.seeds or [r])
    if stopped:
        raise Stopped(getattr(signal, str(stopped), signal.SIGINT))
    runs = [run for r in results.values() for run in r.seeds or [r]]
    if runs and all(run.status == "failed" for run in runs):  # nothing to check: say why, as the runs do
        error = runs[0].summary.get("error", "see its train.log")
        verdict = Verdict(False, f"every run failed: {error}", f"All {len(runs)} runs failed before training; "
                          f"the first one's error: {error}")
    else:
        verdict = CHECKS.get(experiment.check)(results, out / experiment.name)
    figures, picture = mean_field_picture(results, out / experiment.name)
    verdict.figures += figures
    verdict.explanation += f"\n\n{picture}" if picture else ""
    report.save(report.record(experiment, verdict, results, out, base_seed, report.utc_now()), out)
    return experiment, verdict, results


def cli() -> None:
    """Console entry point ``layerscope-reproduce``."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
