"""A run's model as the trainer, the stacked group, the grid, the claims and the benchmark build it:
from its config, initialized from its seed, in its dtype on its device; and the probe that measures it."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from layerscope.activations import ACTIVATIONS
from layerscope.data import Data
from layerscope.init import initialize
from layerscope.model import MLP, build_model
from layerscope.probes import Measure, Probe
from layerscope.validate import DTYPES


def initialized_model(cfg: DictConfig, data: Data, device: torch.device | str = "cpu") -> MLP:
    """The run's MLP initialized from ``trainer.seed`` exactly as every run of that seed is, on ``device``."""
    torch.manual_seed(cfg.trainer.seed)
    model = build_model(cfg.model, cfg.activation, cfg.bn, data.input_dim, data.num_classes)
    initialize(model, cfg.init, cfg.activation.name, cfg.activation)
    return model.to(device=device, dtype=DTYPES[cfg.trainer.dtype])


def probe_measure(cfg: DictConfig) -> Measure:
    """The per-layer statistics and histograms ``cfg.probe`` asks for, of ``cfg.activation``."""
    return Measure(ACTIVATIONS.get(cfg.activation.name), cfg.probe.bins, cfg.probe.saturation_margin,
                   cfg.probe.histogram_sample)


def attach_probe(model: MLP, cfg: DictConfig) -> Probe:
    """The probe that measures ``model``'s layers as ``cfg.probe`` asks."""
    return Probe(model, probe_measure(cfg))
