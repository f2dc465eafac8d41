"""A run folder's files: whole-file replacement, strict JSON lines, truncation on resume, the summary."""

import json
import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra.core.utils import setup_globals
from hydra.types import RunMode
from omegaconf import OmegaConf

from layerscope.config.hydra_hooks import config_loader
import layerscope.runs.job_names  # noqa: F401 - registers ${layerscope.run_name:}
from layerscope.files import JsonLines, read_jsonl, replacing, truncate_jsonl, yaml_text
from layerscope.runs.folder import METRICS, finished, holds_run, read_summary, restart_logs, write_summary


def test_a_failed_replacement_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed while writing")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_two_writers_of_one_file_get_their_own_temporaries(tmp_path):
    path = tmp_path / "x.json"
    with replacing(path) as first, replacing(path) as second:
        assert first != second and first.parent == second.parent == tmp_path and first.name.startswith(".")
        first.write_text("1")
        second.write_text("2")
    assert path.read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_json_lines_are_strict_json_with_null_for_non_finite_numbers(tmp_path):
    lines = JsonLines(tmp_path / METRICS)
    lines.append({"step": 1, "train_loss": float("nan"), "lr": np.float32(0.5), "losses": (1.0, math.inf)})
    lines.close()
    text = (tmp_path / METRICS).read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"step": 1, "train_loss": None, "lr": 0.5, "losses": [1.0, None]}


def test_truncation_keeps_the_rows_before_the_step_and_drops_a_torn_line(tmp_path):
    path = tmp_path / METRICS
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (10, 20, 30)) + '{"step": 4')
    assert read_jsonl(path) == [{"step": 10}, {"step": 20}, {"step": 30}]
    assert truncate_jsonl(path, 30) == [{"step": 10}, {"step": 20}]
    assert read_jsonl(path) == [{"step": 10}, {"step": 20}] and path.read_text().endswith("}\n")
    assert truncate_jsonl(tmp_path / "absent.jsonl", 5) == [] and not (tmp_path / "absent.jsonl").exists()


def test_a_run_started_over_drops_its_logs_and_tensorboard_purges_from_step_0(tmp_path):
    assert restart_logs(tmp_path) is None and not holds_run(tmp_path)
    (tmp_path / METRICS).write_text('{"step": 5}\n')
    assert holds_run(tmp_path) and restart_logs(tmp_path) == 0
    assert (tmp_path / METRICS).read_text() == "" and not (tmp_path / "probes.jsonl").exists()


@pytest.mark.parametrize("status, done", [("completed", True), ("diverged", True), ("failed", False),
                                          ("interrupted", False), ("running", False)])
def test_the_summary_says_whether_a_run_finished(tmp_path, status, done):
    assert read_summary(tmp_path) == {} and not finished(tmp_path)
    write_summary(tmp_path, {"status": status, "final": {"test_loss": float("inf")}})
    assert read_summary(tmp_path) == {"status": status, "final": {"test_loss": None}}
    assert finished(tmp_path) is done


def test_a_damaged_summary_reads_as_none(tmp_path):
    (tmp_path / "summary.json").write_text('["not", "an", "object"]')
    assert read_summary(tmp_path) == {}
    (tmp_path / "summary.json").write_text('{"status": "compl')
    assert read_summary(tmp_path) == {}


@pytest.mark.parametrize("overrides", [["optimizer=adam", "trainer.seed=3"],
                                       ["experiment=he_relu", "+trainer.note='1.0'", "data=gaussian"]])
def test_yaml_text_is_what_omegaconf_writes_also_when_it_reuses_entries(overrides):
    """A job's .hydra/ records are written by yaml_text: the text of OmegaConf.to_yaml (and so of Hydra), whether
    its entries are emitted afresh or reused from an earlier job's."""
    loader = config_loader()
    for _ in range(2):  # the second time every entry is reused
        cfg = loader.load_configuration(config_name="train", overrides=overrides, run_mode=RunMode.MULTIRUN)
        for node in (OmegaConf.masked_copy(cfg, "hydra"), OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                     cfg.hydra.overrides.task, cfg.model, cfg):
            assert yaml_text(OmegaConf.to_container(node, enum_to_str=True)) == OmegaConf.to_yaml(node)
    assert yaml_text({}) == OmegaConf.to_yaml(OmegaConf.create({}))
    assert yaml_text({"hydra": {}}) == OmegaConf.to_yaml(OmegaConf.create({"hydra": {}}))


@pytest.mark.parametrize("overrides, name", [
    (["activation=relu", "init=he_normal"], "_activation=relu,init=he_normal"),
    (["trainer.progress=false", "trainer.resume=true"], ""),  # how a run runs, not what it is
    ([], ""),
])
def test_a_single_run_is_named_by_its_time_and_overrides(overrides, name):
    """``hydra.run.dir``: runs/<date>/<time><name>, the overrides as Hydra orders them (TensorBoard's run name)."""
    setup_globals()  # ${now:}, as Hydra's main registers it
    cfg = config_loader().load_configuration(config_name="train", overrides=overrides, run_mode=RunMode.RUN)
    folder = OmegaConf.select(cfg, "hydra.run.dir").rsplit("/", 1)[-1]
    time, _, rest = folder.partition("_")
    assert len(time) == len("07-21-26-467555") and (f"_{rest}" if rest else "") == name


def test_a_long_run_name_is_cut_readably_with_a_hash():
    setup_globals()
    long = ["model.width=16"] + [f"+tag{i}=some_long_value_{i}" for i in range(12)]
    cfg = config_loader().load_configuration(config_name="train", overrides=long, run_mode=RunMode.RUN)
    folder = OmegaConf.select(cfg, "hydra.run.dir").rsplit("/", 1)[-1]
    assert folder.split("_", 1)[1].startswith("+tag0=some_long_value_0,+tag10=")  # as Hydra sorts them
    assert len(folder) <= len("07-21-26-467555_") + 120 and "~" in folder


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
                    | st.text(st.characters(max_codepoint=127), max_size=120),  # mostly libyaml's: ASCII
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=20), inner, max_size=4),
                    max_leaves=12))
def test_yaml_text_writes_omegaconfs_text_with_either_emitter(data):
    """``yaml_text`` uses libyaml's emitter where every string is printable, PyYAML's otherwise: the text is
    OmegaConf's dumper's either way (any strings, numbers, nesting)."""
    from omegaconf._utils import get_omega_conf_dumper

    expected = yaml.dump({"top": data}, default_flow_style=False, allow_unicode=True, sort_keys=False,
                         Dumper=get_omega_conf_dumper())
    assert yaml_text({"top": data}) == expected
