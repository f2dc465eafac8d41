"""Probe statistics and histograms against direct computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layerscope.nets.activations import ACTIVATIONS
from layerscope.nets.init import initialize
from layerscope.nets.mlp import build_model
from layerscope.nets.stacked import Captured, StackedMLP
from layerscope.optim.rules import Optimizer
from layerscope.probe import measure
from layerscope.probe.measure import Measure, histogram_summaries, histogram_summary
from layerscope.probe.record import HISTOGRAMS, STATS, Histogram, ProbeRecord


@pytest.mark.parametrize("sample", [None, 1000])
def test_histogram_summary_matches_torch(sample):
    torch.manual_seed(0)
    values = 3 + 0.5 * torch.randn(200, 50)
    row = histogram_summary(values, bins=20, sample=sample)
    low, high, num, mean, std = row[:5].tolist()
    counts = row[5:].numpy()
    assert (low, high, num) == (values.min().item(), values.max().item(), 10_000)
    assert mean == pytest.approx(values.mean().item(), rel=1e-5) and std == pytest.approx(values.std().item(), rel=1e-4)
    assert counts.sum() == pytest.approx(10_000, rel=1e-6)
    exact, _ = np.histogram(values.numpy(), bins=20, range=(low, high))
    tolerance = 0 if sample is None else 0.03 * 10_000  # a strided sample of 1000 of 10000 values
    assert np.abs(counts - exact).max() <= max(tolerance, 1e-6) + (1 if sample is None else 0)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(7, 300_000), (51, 30_000), (3, 1_000_000), (9, 40, 50)])
def test_a_cpu_bins_rows_block_by_block_to_the_bit_of_one_pass_over_all_rows(threads, shape):
    torch.manual_seed(0)
    values = 2 + torch.randn(*shape)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        whole = measure._summaries(values.reshape(len(values), -1), 30, 5000)
        rows = histogram_summaries(values, 30, 5000)
        assert torch.equal(rows, whole) and torch.equal(histogram_summaries(list(values), 30, 5000), rows)
        blocks = measure._blocks(len(values), values[0].numel(), values.device)
        assert len(blocks) > 1 if shape[0] >= 2 * threads and shape[-1] >= 30_000 else len(blocks) >= 1
        assert all(b - a >= threads for a, b in blocks) or blocks == [(0, len(values))]
    finally:
        torch.set_num_threads(before)


def test_histogram_of_a_constant_tensor_has_one_full_bin():
    row = histogram_summary(torch.zeros(30, 40), bins=10)
    assert row[5].item() == 1200 and row[6:].sum().item() == 0 and row[4].item() == 0


def test_histogram_tb_fields_from_moments():
    h = Histogram.from_moments(-1.0, 1.0, 4.0, 0.5, 1.0, [1, 1, 1, 1])
    assert h.sum == 2.0 and h.sum_squares == pytest.approx(3 * 1.0 + 4 * 0.25)
    assert len(h.edges) == 5 and h.finite


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True),
       st.integers(1, 80))
def test_histogram_edges_are_numpys_linspace_to_the_bit_and_finite_is_numpys_isfinite(low, high, bins):
    h = Histogram(low, high, 3.0, 0.0, 0.0, [0.0] * bins)
    with np.errstate(all="ignore"):
        assert np.array_equal(h.edges, np.linspace(low, high, bins + 1), equal_nan=True)
    assert h.finite == bool(np.isfinite([low, high, 0.0, 0.0]).all())


class Probed:
    """A single run's model as the loop holds it (a stack of one) with its probe measure."""

    def __init__(self, activation: str, init: dict, bn: str = "none", depth: int = 4, width: int = 32):
        torch.manual_seed(0)
        self.mlp = build_model({"depth": depth, "width": width}, {"name": activation}, {"placement": bn}, 8, 3)
        initialize(self.mlp, init, activation)
        self.model = StackedMLP([self.mlp], {"name": activation}, torch.device("cpu"), torch.float32)
        self.measure = Measure(ACTIVATIONS.get(activation), bins=16, saturation_margin=0.01, sample=None)
        self.optimizer = Optimizer(self.model.chunks, [{"name": "sgd", "lr": 0.1}], [0.0])

    def record(self, x, y, step=True) -> ProbeRecord:
        """One probed pass (and, with ``step``, the SGD update after it) recorded as step 7."""
        captured = Captured()
        loss = torch.nn.functional.cross_entropy(self.model(x, captured)[0], y)
        self.model.zero_grad()
        loss.backward()
        measured = self.measure(captured, self.model.weights(), self.model.weight_grads())
        if step:
            self.optimizer.step(self.model.grads())
            self.measure.update_ratio(measured, self.model.weights())
        return self.measure.records(measured, step=7)[0][0]


def test_record_matches_direct_computation():
    probed = Probed("tanh", {"name": "xavier_normal", "gain": 1.0})
    model = probed.mlp
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    acts, pres = [], []
    def remember(module, inputs, output):
        pres.append(inputs[0])
        acts.append(output)

    hooks = [b.act.register_forward_hook(remember) for b in model.blocks]
    model(x)
    for h in hooks:
        h.remove()
    before = [b.linear.weight.detach().clone() for b in model.blocks]
    record = probed.record(x, y)
    assert record.step == 7 and set(record.stats) == set(STATS) and set(record.histograms) == set(HISTOGRAMS)
    np.testing.assert_allclose(record.stats["activation_std"], [a.std().item() for a in acts], rtol=1e-5)
    np.testing.assert_allclose(record.stats["preactivation_mean"], [p.mean().item() for p in pres], atol=1e-6)
    np.testing.assert_allclose(record.stats["saturated_fraction"],
                               [(a.abs() >= 0.98).float().mean().item() for a in acts], atol=1e-7)
    np.testing.assert_allclose(record.stats["weight_norm"], [w.norm().item() for w in before], rtol=1e-5)
    after = probed.model.weights()
    ratios = [(a[0] - w).norm().item() / w.norm().item() for a, w in zip(after, before)]
    np.testing.assert_allclose(record.stats["update_ratio"], ratios, rtol=1e-4)
    assert np.isnan(record.stats["inactive_fraction"]).all()  # tanh is no rectifier
    assert record.stats["dead_fraction"] == [0.0] * 4  # but it has a derivative: 0 where no tanh unit is flat
    assert all(g > 0 for g in record.stats["backward_norm"]) and record.finite


def test_dead_and_inactive_fractions_count_relu_units_off_for_the_whole_batch():
    probed = Probed("relu", {"name": "he_normal", "gain": "auto"}, depth=2, width=4)
    with torch.no_grad():
        probed.model.params["blocks.0.linear.bias"][0, 0, :2] = -100.0  # two of four units never fire
    record = probed.record(torch.randn(32, 8), torch.randint(0, 3, (32,)), step=False)
    assert record.stats["dead_fraction"][0] == record.stats["inactive_fraction"][0] == 0.5
    assert np.isnan(record.stats["update_ratio"]).all()  # no optimizer step followed


def test_zero_init_units_are_identical_and_gradients_zero():
    record = Probed("tanh", {"name": "zeros"}).record(torch.randn(16, 8), torch.randint(0, 3, (16,)))
    assert record.stats["unit_spread"] == [0.0] * 4
    assert record.stats["weight_grad_norm"] == [0.0] * 4


def test_nonfinite_values_mark_the_record():
    x = torch.randn(16, 8)
    x[0, 0] = float("nan")
    assert not Probed("tanh", {"name": "xavier_normal", "gain": 1.0}).record(x, torch.randint(0, 3, (16,)), step=False).finite


def test_record_json_round_trip():
    record = Probed("sigmoid", {"name": "normal", "std": 0.5}).record(torch.randn(16, 8), torch.randint(0, 3, (16,)))
    again = ProbeRecord.from_json(json.loads(json.dumps(record.to_json())))
    np.testing.assert_equal(again.stats, record.stats)  # NaN (no inactive fraction for sigmoid) survives as NaN
    assert again.histograms["backward"][2].counts == [round(c, 2) for c in record.histograms["backward"][2].counts]
    assert set(ProbeRecord.from_json(record.to_json(("activation",))).histograms) == {"activation"}
