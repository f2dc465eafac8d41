"""What TensorBoard shows: the custom-scalars layout, shared histogram ranges, the HPARAMS columns, and sweep
job folders (= TensorBoard run names) named by their swept overrides."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

import layerscope
from layerscope.files import read_jsonl
from layerscope.paths import config_dir
from layerscope.runs.job_names import (
    BASIC_SWEEPER,
    MAX_NAME,
    SweptNames,
    job_name,
    job_number,
    safe_name,
    swept_overrides,
)
from layerscope.runs.writer import RunWriter
from layerscope.runs.hparams import dashboard_hparams

TINY = ["data=spirals", "model.depth=3", "model.width=8", "trainer.max_steps=4", "probe.every=2",
        "probe.figures=false", "trainer.progress=false"]
CLI = str(Path(sys.executable).with_name("layerscope"))


def events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"histograms": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def tanh_run(tmp_path_factory) -> Path:
    return layerscope.run([*TINY, "activation=tanh"], output_dir=tmp_path_factory.mktemp("tb") / "run").path


def test_every_run_writes_a_custom_scalars_layout_whose_charts_match_its_tags(tanh_run):
    acc = events(tanh_run)
    [config] = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    scalars = acc.Tags()["scalars"]
    matched = {title: sorted(t for t in scalars if any(re.search(r, t) for r in regexes))
               for title, regexes in charts.items()}
    assert matched["loss (train per step, train per epoch, test)"] == ["loss/test", "loss/train", "loss/train_step"]
    assert matched["accuracy (train, test)"] == ["accuracy/test", "accuracy/train"]
    assert matched["activation_std: all layers (hover a line for its layer)"] == [
        "activation_std/layer_01", "activation_std/layer_02", "activation_std/layer_03"]  # not theory_...
    assert matched["activation_std: layer 02"] == ["activation_std/layer_02"]  # a chart of its own per layer
    categories = {c.title: c for c in layout.category}
    per_stat = [c for title, c in categories.items() if title != "training"]
    assert len(per_stat) == 13 and all(len(c.chart) == 1 + 3 for c in per_stat)  # all layers, then each of 3
    assert all(len(matched[chart.title]) == (3 if "all layers" in chart.title else 1)
               for c in per_stat for chart in c.chart)  # every chart finds its tags, and no other
    assert "saturated_fraction, layer by layer (forward signal)" in categories
    assert not any(t.startswith("inactive_fraction") for t in categories)  # tanh: no rectifier, no chart
    assert "dead_fraction, layer by layer (forward signal)" in categories  # every activation has a derivative
    assert "weight_change, layer by layer (backward signal and weights)" in categories
    assert [c.closed for c in layout.category][:3] == [False, False, True]  # training and the first statistic open


def test_each_steps_training_loss_is_a_scalar_of_its_own(tanh_run):
    steps = events(tanh_run).Scalars("loss/train_step")
    rows = read_jsonl(tanh_run / "metrics.jsonl")
    assert [e.step for e in steps] == [1, 2, 3, 4]  # TINY: 4 steps
    assert [e.value for e in steps] == pytest.approx([loss for row in rows for loss in row["step_losses"]])
    [epoch] = events(tanh_run).Scalars("loss/train")
    assert epoch.value == pytest.approx(sum(e.value for e in steps) / 4, rel=1e-5)


def test_forward_histograms_share_one_range_per_probe_and_gradients_keep_their_own(tanh_run):
    acc = events(tanh_run)

    def at_step_0(quantity):
        return [acc.Histograms(f"{quantity}/layer_{layer:02d}")[0].histogram_value for layer in (1, 2, 3)]

    activations = at_step_0("activation")
    assert {(h.min, h.max) for h in activations} == {(-1.0, 1.0)}  # tanh's whole range, on every layer's card
    preactivations = at_step_0("preactivation")
    assert len({(h.min, h.max) for h in preactivations}) == 1
    assert len({(h.min, h.max) for h in at_step_0("backward")}) == 3
    magnitudes = at_step_0("backward_log10")  # log10 |dL/da|: the layers' orders of magnitude on one axis
    assert len({(h.min, h.max) for h in magnitudes}) == 1
    backward = at_step_0("backward")
    for log10, h in zip(magnitudes, backward):  # its mean lies within the decades its layer's values span
        largest = max(abs(h.min), abs(h.max))
        assert -30 <= log10.sum / log10.num <= math.log10(largest)
    for h in activations + preactivations:
        assert sum(h.bucket) == pytest.approx(h.num) and list(h.bucket_limit) == sorted(h.bucket_limit)
        assert h.bucket[0] == 0 or h.bucket_limit[0] > h.min  # widened by empty buckets, the data unmoved


def _sweep_job(folder: Path, task: list[str], exclude: list[str], number: int = 3) -> Path:
    """A folder as Hydra leaves a sweep job's: .hydra/hydra.yaml with its overrides and the excluded keys."""
    (folder / ".hydra").mkdir(parents=True)
    hydra = {"mode": "MULTIRUN", "overrides": {"task": task, "hydra": []},
             "job": {"num": number, "config": {"override_dirname": {"exclude_keys": exclude}}}}
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    return folder


def _experiment(folder: Path):
    content = events(folder).PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData
    return (data.FromString(content["_hparams_/experiment"]).experiment,
            data.FromString(content["_hparams_/session_start_info"]).session_start_info)


def test_hparams_offer_every_setting_and_mark_the_swept_keys_as_differing(tmp_path):
    job = _sweep_job(tmp_path / "job", ["model.width=8", "init=he_normal", "experiment=he_relu"], ["model.width"])
    assert swept_overrides(job) == {"init": "he_normal", "experiment": "he_relu"} and job_number(job) == 3
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=TINY)
    params, varied = dashboard_hparams(cfg, job)
    assert varied == ("init", "experiment") and params["experiment"] == "he_relu"
    writer = RunWriter(job)
    writer.hparams(params, {"test_loss": 0.5, "train_loss": None}, 4, varied)  # no train loss: it diverged
    writer.close()
    experiment, start = _experiment(job)
    assert [m.name.tag for m in experiment.metric_infos] == ["hparam/test_loss", "hparam/train_loss"]
    assert [(h.name, h.differs) for h in experiment.hparam_infos][:3] == [
        ("init", True), ("experiment", True), ("activation", False)]
    assert {h.name for h in experiment.hparam_infos} == set(params)  # every setting is a column
    assert start.hparams["model.width"].number_value == 8
    assert swept_overrides(tmp_path) == {} and job_number(tmp_path) is None  # not a sweep job


def test_every_key_that_differs_between_jobs_is_a_column_named_by_choice(tmp_path):
    """init=normal,normal_1 differ in init.std too, and xavier_normal sets gain and mode instead: columns marked as
    differing in every job's HPARAMS (TensorBoard takes one job's for all), also where the job lacks the key, and in
    load_sweep; a group is named by its choice (normal_1), not by its name key (normal for both)."""
    sweep = tmp_path / "sweep"
    done = subprocess.run([CLI, "-m", *TINY, "init=normal,normal_1,xavier_normal", "activation=relu,tanh",
                           "trainer.seed=3", f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    choice = {"normal": ("normal", 0.01), "normal_1": ("normal_1", 1.0), "xavier_normal": ("xavier_normal", None)}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        experiment, start = _experiment(job)
        differing = [h.name for h in experiment.hparam_infos if h.differs]
        assert sorted(differing) == ["activation", "init", "init.gain", "init.mode", "init.std"], job.name
        name, std = choice[job.name.split("init=")[1]]
        assert start.hparams["init"].string_value == name
        assert ("init.std" in start.hparams) is (std is not None)  # the column is there; this job has no value
        assert std is None or start.hparams["init.std"].number_value == std
    jobs = layerscope.load_sweep(sweep).jobs
    rows = jobs.to_dict("records") if hasattr(jobs, "to_dict") else jobs
    assert [(r["init"], r["init.std"]) for r in rows][:4] == [("normal", 0.01), ("normal", 0.01),
                                                              ("normal_1", 1.0), ("normal_1", 1.0)]
    assert rows[4]["init.mode"] == "fan_in" and rows[0]["init.mode"] != rows[0]["init.mode"]  # NaN where unset
    assert "trainer.seed" not in rows[0]  # the same in every job


def test_a_single_runs_overrides_are_its_differing_columns(tanh_run):
    experiment, start = _experiment(tanh_run)
    assert {h.name for h in experiment.hparam_infos if h.differs} == {
        "data", "model.depth", "model.width", "trainer.max_steps", "probe.every", "probe.figures", "activation"}
    assert start.hparams["probe.every"].string_value == "2"  # a key outside the config sections, as written


def test_job_names_are_safe_file_names_bounded_and_distinct():
    assert safe_name("activation=relu,init=he_normal") == "activation=relu,init=he_normal"
    slashes = safe_name("data.root=/tmp/a b")
    assert re.fullmatch(r"data\.root=_tmp_a_b~[0-9a-f]{8}", slashes)
    assert safe_name("data.root=_tmp_a_b") != slashes  # what was made safe keeps its own name
    long = "optimizer.lr=" + "1" * 300
    assert len(safe_name(long)) == MAX_NAME and safe_name(long) != safe_name(long + "2")


def test_a_sweeper_that_picks_values_while_it_runs_numbers_its_job_folders():
    job = {"num": 7, "override_dirname": "optimizer.lr=0.1"}
    planned = OmegaConf.create({"hydra": {"job": job, "sweeper": {"_target_": BASIC_SWEEPER}}})
    optuna = OmegaConf.create({"hydra": {"job": job, "sweeper": {"_target_": "OptunaSweeper"}}})
    assert (job_name(_root_=planned), job_name(_root_=optuna)) == ("optimizer.lr=0.1", "7-optimizer.lr=0.1")


def _master(task: list[str], params: dict | None = None):
    """The parts of a multirun's master config that SweptNames reads and writes."""
    return OmegaConf.create({"hydra": {"overrides": {"task": task, "hydra": ["hydra.mode=MULTIRUN"]},
                                       "sweeper": {"params": params},
                                       "job": {"config": {"override_dirname": {"exclude_keys": []}}}}})


def test_a_job_folder_is_named_by_the_swept_overrides_only():
    master = _master(["model.depth=2", "activation=tanh,relu", "skip_completed=true"],
                     {"init": "xavier_normal,he_normal"})
    SweptNames().on_multirun_start(master)
    added = master.hydra.overrides.hydra[-1]
    assert added == "hydra.job.config.override_dirname.exclude_keys=['model.depth','skip_completed']"
    job = ["model.depth=2", "activation=relu", "skip_completed=true", "init=he_normal"]  # one job of the sweep
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[added, *job], return_hydra_config=True)
    assert OmegaConf.select(cfg, "hydra.sweep.subdir") == "activation=relu,init=he_normal"


def test_a_value_listed_twice_is_refused_before_anything_runs(capsys):
    master = _master(["activation=tanh,relu,tanh"])
    with pytest.raises(SystemExit) as stop:
        SweptNames().on_multirun_start(master)
    assert stop.value.code == 2 and list(master.hydra.overrides.hydra) == ["hydra.mode=MULTIRUN"]
    error = capsys.readouterr().err
    assert error.startswith("layerscope: error: activation=tanh,relu,tanh lists activation=tanh twice")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=stacked"]])
def test_every_launcher_names_job_folders_alike(tmp_path, launcher):
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path)}
    proc = subprocess.run([CLI, "-m", *launcher, *TINY, "trainer.max_steps=0", "activation=tanh,relu",
                           "init=xavier_normal,he_normal"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    [sweep_dir] = (tmp_path / "sweeps").glob("*/*")
    jobs = {job_number(d): d.name for d in sweep_dir.iterdir() if d.is_dir()}
    assert jobs == {0: "activation=tanh,init=xavier_normal", 1: "activation=tanh,init=he_normal",
                    2: "activation=relu,init=xavier_normal", 3: "activation=relu,init=he_normal"}
    assert events(sweep_dir / jobs[3]).Tensors("custom_scalars__config__")


def test_recorded_overrides_read_back_as_typed(tmp_path):
    from layerscope.runs.job_names import record_overrides, recorded_overrides

    assert recorded_overrides(tmp_path) is None  # no record: not a run of the command line
    typed = ["activation=relu", "+x='a b'", "model.width=${model.depth}", "optimizer.lr=1e-3"]
    record_overrides(tmp_path, typed)
    assert recorded_overrides(tmp_path) == typed
    (tmp_path / ".hydra" / "overrides.yaml").write_text("")
    assert recorded_overrides(tmp_path) == []  # a record of no overrides


def test_records_are_framed_byte_for_byte_as_tensorboards_writer_frames_them():
    """runs/events.record (google-crc32c's C CRC) equals TensorBoard's RecordWriter (its Python CRC-32C)."""
    import io

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as python_crc32c
    from tensorboard.summary.writer.record_writer import RecordWriter

    from layerscope.runs import events as run_events

    for data in (b"", b"x", bytes(range(256)) * 300):
        stream = io.BytesIO()
        RecordWriter(stream).write(data)
        assert run_events.record(data) == stream.getvalue()
        assert run_events.crc32c(data) == python_crc32c(data)
