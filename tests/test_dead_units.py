"""Dead units pass no gradient (φ'(h) = 0 for the whole probe batch), inactive ones only have input ≤ 0; and
weight_change, ‖W − W_0‖ / ‖W_0‖ from the run's step 0, across a resume from a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from layerscope.data.datasets import load_data
from layerscope.nets.activations import ACTIVATIONS
from layerscope.nets.mlp import build_model
from layerscope.nets.stacked import Captured, StackedMLP
from layerscope.paths import config_dir
from layerscope.probe.figures import LectureFigure
from layerscope.probe.measure import Measure, histogram_summary
from layerscope.probe.record import STATS, Histogram, ProbeRecord
from layerscope.runs.checkpoint import INITIAL, load_checkpoint, save_checkpoint
from layerscope.runs.results import RunResult
from layerscope.train.group import run
from layerscope.train.probed_model import initialized_model

WIDTH = 4
OFF = -20.0  # a bias no input of N(0, 1) features lifts above 0 (|w·x| ~ 0.6): the input is negative for every sample


def probed(activation: str, bias: list[float], slopes: list[float] | None = None) -> list[ProbeRecord]:
    """One probed pass of a one-layer net per member (a PReLU slope each, when given) whose layer has ``bias``."""
    torch.manual_seed(0)
    mlps = []
    for slope in slopes or [None]:
        mlp = build_model({"depth": 1, "width": WIDTH}, {"name": activation}, {"placement": "none"}, 8, 3)
        with torch.no_grad():
            mlp.blocks[0].linear.bias.copy_(torch.tensor(bias))
            if slope is not None:
                mlp.blocks[0].act.weight.fill_(slope)
        mlps.append(mlp)
    model = StackedMLP(mlps, {"name": activation}, torch.device("cpu"), torch.float32)
    measure = Measure(ACTIVATIONS.get(activation), bins=8, saturation_margin=0.01, sample=None)
    captured = Captured()
    logits = model(torch.randn(32, 8), captured)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.randint(0, 3, (len(mlps) * 32,))).backward()
    measured = measure(captured, model.weights(), model.weight_grads(), model.initial_weights())
    return measure.records(measured, step=0)[0]


@pytest.mark.parametrize("activation", ["leaky_relu", "elu"])
def test_a_leaky_unit_with_negative_input_is_inactive_but_not_dead(activation):
    [record] = probed(activation, [OFF, 0.0, 0.0, 0.0])
    assert record.stats["inactive_fraction"] == [1 / WIDTH]
    assert record.stats["dead_fraction"] == [0.0]  # its φ' (0.01, or e^h for ELU) still passes a gradient


def test_an_elu_unit_whose_derivative_underflows_is_dead():
    [record] = probed("elu", [-1000.0, OFF, 0.0, 0.0])  # e^-1000 is exactly 0 in float32, e^-20 is not
    assert record.stats["dead_fraction"] == [1 / WIDTH] and record.stats["inactive_fraction"] == [2 / WIDTH]


def test_a_relu_unit_with_negative_input_is_dead_and_dead_equals_inactive():
    [record] = probed("relu", [OFF, OFF, 0.0, 0.0])
    assert record.stats["dead_fraction"] == record.stats["inactive_fraction"] == [2 / WIDTH]
    torch.manual_seed(1)  # and on a random net, layer by layer
    mlp = build_model({"depth": 6, "width": 16}, {"name": "relu"}, {"placement": "none"}, 8, 3)
    model = StackedMLP([mlp], {"name": "relu"}, torch.device("cpu"), torch.float32)
    captured = Captured()
    model(torch.randn(4, 8) - 3, captured)  # a small shifted batch: some units off throughout
    stats = Measure(ACTIVATIONS.get("relu"), 8, 0.01, None)(captured, model.weights(), [None] * 6)["stats"]
    assert torch.equal(stats["dead_fraction"], stats["inactive_fraction"]) and stats["dead_fraction"].sum() > 0


def test_a_sigmoid_unit_driven_to_underflow_is_dead():
    [record] = probed("sigmoid", [100.0, -200.0, 0.0, 0.0])  # σ = 1 and σ = 0 exactly: σ(1 − σ) = 0
    assert record.stats["dead_fraction"] == [2 / WIDTH]
    assert np.isnan(record.stats["inactive_fraction"]).all()  # no rectifier


def test_prelu_members_with_their_own_slopes_in_one_stack():
    flat, leaky = probed("prelu", [OFF, 0.0, 0.0, 0.0], slopes=[0.0, 0.25])
    assert flat.stats["inactive_fraction"] == leaky.stats["inactive_fraction"] == [1 / WIDTH]
    assert flat.stats["dead_fraction"] == [1 / WIDTH]  # slope 0: no gradient below 0
    assert leaky.stats["dead_fraction"] == [0.0]


def test_weight_change_is_zero_at_initialization():
    [record] = probed("tanh", [0.0] * WIDTH)
    assert record.stats["weight_change"] == [0.0]


BASE = ["data=spirals", "model.depth=2", "model.width=8", "trainer.batch_size=72", "probe.every=5",  # 10 steps an epoch
        "probe.figures=false", "trainer.progress=false", "trainer.checkpoint_every=null", "activation=relu",
        "init=he_normal", "optimizer.lr=0.1"]


def config(*overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=[*BASE, *overrides])


def changes(folder) -> dict[int, list[float]]:
    """weight_change per layer at each probe step of the run in ``folder``."""
    return {p.step: RunResult.load(folder).stat("weight_change", i).tolist()
            for i, p in enumerate(RunResult.load(folder).probes)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 20-step run; a 10-step run (its checkpoint kept) resumed to 20; the same with W_0 cut from its checkpoint."""
    root = tmp_path_factory.mktemp("weight_change")
    run(config("trainer.max_steps=20"), root / "full")
    for name in ("resumed", "older"):
        run(config("trainer.max_steps=10"), root / name)
    at_10 = load_checkpoint(root / "resumed" / "checkpoint.pt")
    older = load_checkpoint(root / "older" / "checkpoint.pt")
    del older[INITIAL]  # a checkpoint written before W_0 was kept
    save_checkpoint(root / "older" / "checkpoint.pt", older)
    for name in ("resumed", "older"):
        run(config("trainer.max_steps=20", "trainer.resume=true"), root / name)
    return root, at_10


def test_weight_change_grows_from_zero_and_equals_a_direct_computation(runs):
    root, at_10 = runs
    full = changes(root / "full")
    assert sorted(full) == [0, 5, 10, 15, 19]
    assert full[0] == [0.0, 0.0] and all(v > 0 for step in (5, 10, 15, 19) for v in full[step])
    cfg = config("trainer.max_steps=10")
    initial = initialized_model(cfg, load_data(cfg.data, cfg.trainer.seed))
    direct = []
    for i in range(2):
        w0, w10 = initial.blocks[i].linear.weight.detach(), at_10["model"][f"blocks.{i}.linear.weight"]
        assert torch.equal(at_10[INITIAL][i], w0)  # the checkpoint keeps W_0 as the run began
        direct.append(((w10 - w0).norm() / w0.norm()).item())
    np.testing.assert_allclose(full[10], direct, rtol=1e-5)  # the probe at step 10 sees the weights after 10 updates


def test_weight_change_survives_a_resume(runs):
    root, _ = runs
    full, resumed = changes(root / "full"), changes(root / "resumed")
    assert set(resumed) == set(full) | {9}  # the 10-step run's last probe stays
    for step in full:
        np.testing.assert_allclose(resumed[step], full[step], rtol=1e-6)


def test_an_older_checkpoint_without_w0_resumes_with_weight_change_unknown(runs):
    root, _ = runs
    older = changes(root / "older")
    assert RunResult.load(root / "older").status == "completed"
    assert older[0] == [0.0, 0.0] and older[5][0] > 0  # recorded before the resume
    assert all(np.isnan(older[step]).all() for step in (10, 15, 19))


def test_the_lecture_figure_shows_the_inactive_fraction_where_it_differs_from_the_dead_one():
    def hist(values: torch.Tensor) -> Histogram:
        row = histogram_summary(values, 20).tolist()
        return Histogram.from_moments(*row[:5], counts=row[5:])

    def legend(dead: list[float], inactive: list[float]) -> list[str]:
        stats = {name: [0.5, 0.5] for name in STATS}
        stats.update(saturated_fraction=[float("nan")] * 2, dead_fraction=dead, inactive_fraction=inactive)
        histograms = {"activation": [hist(torch.randn(500).relu()) for _ in range(2)],
                      "backward": [hist(torch.randn(500)) for _ in range(2)]}
        figure = LectureFigure(2).update(ProbeRecord(0, stats, histograms), "test")
        return [t.get_text() for t in figure.curves.left.get_legend().get_texts()]

    leaky = legend([0.0, 0.0], [0.2, 0.3])
    assert "dead fraction (no gradient)" in leaky and "inactive fraction (input ≤ 0)" in leaky
    relu = legend([0.2, 0.3], [0.2, 0.3])  # the same units: one line
    assert "dead fraction (no gradient)" in relu and "inactive fraction (input ≤ 0)" not in relu
