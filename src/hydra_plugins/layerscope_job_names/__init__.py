"""Registers ``${layerscope.job_name:}`` (``configs/train.yaml``'s ``hydra.sweep.subdir``): Hydra imports every
module under ``hydra_plugins`` when it starts, in every mode (``--cfg hydra --resolve`` included)."""

from layerscope.runs.job_names import register_resolver

register_resolver()
