"""trainer.cuda_graph: what can be checked without a GPU (the capture itself runs only on one)."""

from __future__ import annotations

import torch

from layerscope.cuda_graph import set_capturable


def test_set_capturable_survives_a_checkpoint_load():
    """load_state_dict restores the flag a checkpoint was saved with; set_capturable sets it again."""
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    optimizer.step()
    saved = optimizer.state_dict()  # capturable=False, as every non-graph run saves it
    set_capturable(optimizer, True)
    assert optimizer.param_groups[0]["capturable"] is True
    optimizer.load_state_dict(saved)
    assert optimizer.param_groups[0]["capturable"] is False
    set_capturable(optimizer, True)
    assert optimizer.param_groups[0]["capturable"] is True
    assert optimizer.state[p]["step"].device == p.device and optimizer.state[p]["step"].dtype == torch.float32
    set_capturable(optimizer, False)
    optimizer.step()  # a CPU step with the flag off works again
    assert float(optimizer.state[p]["step"]) == 2.0


def test_optimizers_without_the_flag_are_left_alone():
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    set_capturable(optimizer, True)
    assert "capturable" not in optimizer.param_groups[0]
