"""A run's model as the trainer, the grid, the claims and the benchmark build it: from its config, initialized
from its own generator (seeded with ``trainer.seed``), in its dtype on its device; and what its probes measure."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from layerscope.config.validate import DTYPES
from layerscope.data.datasets import Data
from layerscope.nets.activations import ACTIVATIONS
from layerscope.nets.init import initialize, torch_default_
from layerscope.nets.mlp import MLP, build_model
from layerscope.probe.measure import Measure


def initialized_model(cfg: DictConfig, data: Data, device: torch.device | str = "cpu") -> MLP:
    """The run's MLP initialized from ``trainer.seed`` exactly as every run of that seed is, on ``device``.

    The draws come from a generator of the run's own (torch's global one is not touched) and follow the
    sequence ``torch.manual_seed(seed)`` and then building and initializing the MLP would take: each Linear's
    own init first (as its constructor draws it), then the ``init`` group's.
    """
    generator = torch.Generator().manual_seed(cfg.trainer.seed)
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.activation, cfg.bn, data.input_dim, data.num_classes)
    _materialize(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                torch_default_(module, generator)
            elif module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()  # norms and PReLU: constants, no draws
    initialize(model, cfg.init, cfg.activation.name, cfg.activation, generator)
    return model.to(device=device, dtype=DTYPES[cfg.trainer.dtype])


def _materialize(model: nn.Module) -> None:
    """Give a model built on the meta device uninitialized CPU tensors, as ``Module.to_empty`` would (which takes torch's
    meta-tensor path and imports sympy, ~0.5 s of a process's start)."""
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            setattr(module, name, nn.Parameter(torch.empty(param.shape, dtype=param.dtype), param.requires_grad))
        for name, buffer in module.named_buffers(recurse=False):
            setattr(module, name, torch.empty(buffer.shape, dtype=buffer.dtype))


def probe_measure(cfg: DictConfig) -> Measure:
    """The per-layer statistics and histograms ``cfg.probe`` asks for, of ``cfg.activation``."""
    return Measure(ACTIVATIONS.get(cfg.activation.name), cfg.probe.bins, cfg.probe.saturation_margin,
                   cfg.probe.histogram_sample)
