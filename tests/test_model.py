"""The MLP: batch-norm placement in the forward pass, shapes, and bad settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerscope.config.validate import check_group
from layerscope.errors import ConfigError
from layerscope.nets.mlp import BN_PLACEMENTS, Block, build_model

EXPECTED_ORDER = {
    "none": ["Linear", "Tanh"],
    "before": ["Linear", "BatchNorm1d", "Tanh"],
    "after": ["Linear", "Tanh", "BatchNorm1d"],
    "ln_before": ["Linear", "LayerNorm", "Tanh"],
    "ln_after": ["Linear", "Tanh", "LayerNorm"],
}


def _call_order(block: nn.Module, x: torch.Tensor) -> list[str]:
    """The class names of the block's submodules in the order their forward ran."""
    order: list[str] = []
    handles = [
        child.register_forward_hook(lambda module, inputs, output: order.append(type(module).__name__))
        for child in block.children()
    ]
    try:
        block(x)
    finally:
        for handle in handles:
            handle.remove()
    return order


@pytest.mark.parametrize("placement", sorted(EXPECTED_ORDER))
def test_block_forward_runs_modules_in_placement_order(placement):
    block = Block(6, 8, nn.Tanh(), placement, dropout=0.0)
    assert _call_order(block, torch.randn(5, 6)) == EXPECTED_ORDER[placement]


@pytest.mark.parametrize("placement", sorted(EXPECTED_ORDER))
def test_dropout_runs_last(placement):
    block = Block(6, 8, nn.Tanh(), placement, dropout=0.5)
    assert _call_order(block, torch.randn(5, 6)) == EXPECTED_ORDER[placement] + ["Dropout"]


@pytest.mark.parametrize("placement", sorted(EXPECTED_ORDER))
def test_every_block_of_a_built_model_follows_the_placement(placement):
    mlp = build_model({"depth": 3, "width": 8}, {"name": "tanh"}, {"placement": placement}, 6, 4)
    for block in mlp.blocks:
        assert _call_order(block, torch.randn(5, 6 if block is mlp.blocks[0] else 8)) == EXPECTED_ORDER[placement]


def test_bn_before_normalizes_the_pre_activation_and_bn_after_the_activation():
    """What each BN layer sees: before -> the Linear's output, after -> the activation's output."""
    torch.manual_seed(0)
    for placement, source in (("before", "linear"), ("after", "act")):
        block = Block(6, 8, nn.Tanh(), placement, dropout=0.0)
        seen = {}
        block.get_submodule(source).register_forward_hook(lambda m, i, o: seen.__setitem__("source", o))
        bn = block.bn_before if placement == "before" else block.bn_after
        bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn_in", i[0]))
        block(torch.randn(16, 6))
        assert torch.equal(seen["bn_in"], seen["source"]), placement


def test_bn_placements_constant():
    assert set(BN_PLACEMENTS) == {"none", "before", "after", "ln_before", "ln_after"}


def test_layer_norm_normalizes_each_sample_over_its_units_and_works_at_batch_one():
    torch.manual_seed(0)
    block = Block(6, 8, nn.Identity(), "ln_before", dropout=0.0)
    for batch in (1, 5):
        out = block(torch.randn(batch, 6) * 3 + 1)
        torch.testing.assert_close(out.mean(1), torch.zeros(batch), atol=1e-6, rtol=0)
        torch.testing.assert_close(out.var(1, unbiased=False), torch.ones(batch), atol=1e-4, rtol=0)


@pytest.mark.parametrize("depth, width", [(1, 5), (3, 16), (7, 4)])
def test_depth_and_width_give_blocks_of_the_right_shapes(depth, width):
    input_dim, classes = 11, 3
    mlp = build_model({"depth": depth, "width": width}, {"name": "relu"}, {"placement": "none"}, input_dim, classes)
    assert len(mlp.blocks) == depth
    assert mlp.blocks[0].linear.weight.shape == (width, input_dim)
    for block in list(mlp.blocks)[1:]:
        assert block.linear.weight.shape == (width, width)
    assert mlp.head.weight.shape == (classes, width)
    assert sum(isinstance(m, nn.Linear) for m in mlp.modules()) == depth + 1
    out = mlp(torch.randn(9, input_dim))
    assert out.shape == (9, classes)


def test_each_block_gets_its_own_activation_module():
    mlp = build_model({"depth": 3, "width": 4}, {"name": "prelu", "init": 0.1}, {"placement": "none"}, 2, 2)
    acts = [block.act for block in mlp.blocks]
    assert all(isinstance(a, nn.PReLU) for a in acts)
    assert len({id(a) for a in acts}) == 3  # learnable slopes are not shared between layers
    assert all(a.weight.item() == pytest.approx(0.1) for a in acts)


def test_activation_params_from_the_config_reach_every_block():
    mlp = build_model({"depth": 2, "width": 4}, {"name": "leaky_relu", "negative_slope": 0.3},
                      {"placement": "none"}, 2, 2)
    assert [block.act.negative_slope for block in mlp.blocks] == [0.3, 0.3]


def test_dropout_setting_adds_dropout_layers():
    mlp = build_model({"depth": 2, "width": 4, "dropout": 0.25}, {"name": "relu"}, {"placement": "none"}, 2, 2)
    assert [block.dropout.p for block in mlp.blocks] == [0.25, 0.25]
    mlp0 = build_model({"depth": 2, "width": 4, "dropout": 0.0}, {"name": "relu"}, {"placement": "none"}, 2, 2)
    assert not any(isinstance(m, nn.Dropout) for m in mlp0.modules())


@pytest.mark.parametrize(
    "model_cfg, bn_cfg, key",
    [
        ({"depth": 0, "width": 8}, {"placement": "none"}, "model.depth"),
        ({"depth": -1, "width": 8}, {"placement": "none"}, "model.depth"),
        ({"depth": 2.0, "width": 8}, {"placement": "none"}, "model.depth"),
        ({"depth": True, "width": 8}, {"placement": "none"}, "model.depth"),
        ({"width": 8}, {"placement": "none"}, "model.depth"),
        ({"depth": 2, "width": 0}, {"placement": "none"}, "model.width"),
        ({"depth": 2, "width": "wide"}, {"placement": "none"}, "model.width"),
        ({"depth": 2, "width": 8, "dropout": 1.0}, {"placement": "none"}, "model.dropout"),
        ({"depth": 2, "width": 8, "dropout": -0.1}, {"placement": "none"}, "model.dropout"),
        ({"depth": 2, "width": 8}, {"placement": "middle"}, "bn.placement"),
        ({"depth": 2, "width": 8}, {}, "bn.placement"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_key(model_cfg, bn_cfg, key):
    with pytest.raises(ConfigError, match=key):
        check_group("model", model_cfg)
        check_group("bn", bn_cfg)


def test_unknown_placement_error_lists_the_placements():
    with pytest.raises(ConfigError) as info:
        check_group("bn", {"placement": "middle"})
    for placement in BN_PLACEMENTS:
        assert placement in str(info.value)


def test_each_hidden_layer_reads_the_one_before():
    from layerscope.nets.mlp import hidden_fans

    assert hidden_fans(784, 500, 3) == [784, 500, 500] and hidden_fans(784, 500, 1) == [784]
    assert hidden_fans(784, 500, 0) == []
