"""A run folder belongs to one process, and every way a run ends leaves its status there."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerscope.errors import ConfigError
from layerscope.runs.ownership import LOCK, FolderInUse, check_target, holder, owned
from layerscope.runs.results import run_status

CLI = str(Path(sys.executable).with_name("layerscope"))
LONG = ["model.depth=3", "model.width=128", "trainer.max_steps=100000", "trainer.checkpoint_every=20",
        "probe.figures=false", "trainer.progress=false"]
HOLD = "import sys, time; from pathlib import Path; from layerscope.runs.ownership import owned\n" \
       "with owned(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def wait_for(condition, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended (or hung) before the check"
        time.sleep(0.01)


def test_a_live_holder_refuses_others_and_its_end_frees_the_folder(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        who = holder(tmp_path)
        assert who is not None and who["pid"] == other.pid
        with pytest.raises(FolderInUse, match=f"in use by process {other.pid}"):
            with owned(tmp_path):
                pass
    finally:
        other.kill()
        other.wait()
    assert holder(tmp_path) is None  # the kernel dropped the dead process's lock
    with owned(tmp_path):
        assert holder(tmp_path)["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()


def test_a_stale_lock_is_taken_over_and_logged(tmp_path, caplog):
    (tmp_path / LOCK).write_text(json.dumps({"pid": 999999, "host": "here", "started": "yesterday"}))
    with caplog.at_level(logging.WARNING, logger="layerscope"), owned(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert "took over the stale lock of process 999999" in caplog.text


def test_a_folder_holding_a_run_is_reused_only_to_resume_the_same_command(tmp_path):
    (tmp_path / "summary.json").write_text('{"status": "completed"}')
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="already holds a run"):
        check_target(tmp_path, ["model.width=8"], ["model.width=8"], resume=False)
    with pytest.raises(ConfigError, match=r"holds a run of other overrides \(model.width=8\)"):
        check_target(tmp_path, ["model.width=9"], ["model.width=8"], resume=True)
    check_target(tmp_path, ["model.width=8"], ["model.width=8"], resume=True)
    check_target(tmp_path / "new", ["model.width=9"], None, resume=False)
    assert snapshot(tmp_path) == before


def test_two_processes_cannot_own_one_run_folder(tmp_path):
    """A resume (or hydra.run.dir) aimed at a live run refuses and changes nothing; after SIGKILL it continues."""
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path)}
    live = subprocess.Popen([CLI, *LONG], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: list(tmp_path.glob("runs/*/*/checkpoint.pt")), live)
        run = next(tmp_path.glob("runs/*/*"))
        assert run_status(run) == "running"
        hydra_files = snapshot(run / ".hydra")
        for extra in (["trainer.resume=true"], [f"hydra.run.dir={run}", "trainer.resume=true"]):
            proc = subprocess.run([CLI, *LONG, *extra], env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.strip() == (f"layerscope: error: {run} is in use by process {live.pid} on "
                                           f"{holder(run)['host']} since {holder(run)['started']}; wait for it "
                                           f"to end, or stop it (kill -INT {live.pid}) and run this again"), proc.stderr
        assert snapshot(run / ".hydra") == hydra_files and len(list(tmp_path.glob("runs/*/*"))) == 1
    finally:
        live.kill()
        live.wait()
    assert run_status(run) == "incomplete"


def test_a_signal_before_training_still_leaves_a_status(tmp_path):
    """SIGTERM while the run loads its data: the folder says interrupted and the process exits 143."""
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path)}
    args = ["data=gaussian", "data.n_train=200000", "data.dim=200", "model.depth=2", "model.width=8",
            "trainer.max_steps=5", "probe.figures=false", "trainer.progress=false"]
    proc = subprocess.Popen([CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(s.read_text() for s in tmp_path.glob("runs/*/*/summary.json")), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    run = next(tmp_path.glob("runs/*/*"))
    summary = json.loads((run / "summary.json").read_text())
    assert proc.returncode == 143, stderr
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM", summary
    assert stderr.strip().splitlines()[-1].startswith("layerscope: SIGTERM: the run stopped")
    assert not (run / LOCK).exists()


def _mount_tmpfs(folder: Path, size: str) -> str | None:
    """Mount a small tmpfs at ``folder``; the reason when this machine does not allow it."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        return "mounting a tmpfs needs root and mount(8)"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    return None if proc.returncode == 0 else f"cannot mount a tmpfs here: {proc.stderr.strip()}"


def test_a_full_disk_ends_with_one_line_and_no_temporary_files(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    reason = _mount_tmpfs(disk, "400k")
    if reason:
        pytest.skip(reason)
    try:
        env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(disk)}
        args = ["model.depth=3", "model.width=32", "trainer.max_steps=400", "probe.every=1", "probe.figures=false",
                "trainer.progress=false"]
        proc = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[-1].startswith("layerscope: error: cannot write ") and "No space left on device" in lines[-1]
        run = next(disk.glob("runs/*/*"))
        assert not list(disk.rglob("*.tmp")) and not (run / LOCK).exists()
        assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_signal_stops_a_stacked_sweep_and_every_member_says_interrupted(tmp_path):
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path)}
    args = ["-m", "hydra/launcher=stacked", "optimizer=sgd,momentum", *LONG]
    proc = subprocess.Popen([CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(list(tmp_path.glob("sweeps/*/*/*/checkpoint.pt"))) == 2, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "skip_completed=true hydra.sweep.dir=" in stderr.strip().splitlines()[-1]
    members = sorted(p.parent for p in tmp_path.glob("sweeps/*/*/*/.hydra"))  # job folders, named by overrides
    summaries = [json.loads((m / "summary.json").read_text()) for m in members]
    assert [s["status"] for s in summaries] == ["interrupted", "interrupted"]
    assert len({s["interrupted_at_step"] for s in summaries}) == 1 and not any((m / LOCK).exists() for m in members)
