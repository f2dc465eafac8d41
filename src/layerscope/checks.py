"""Checks of the trainer and probe keys, so a bad value fails before any work starts."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from layerscope.errors import ConfigError


def whole(key: str, value: Any, minimum: int = 1, optional: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (or None when ``optional``), else a ConfigError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        accepted = f"a whole number >= {minimum}" + (" or null" if optional else "")
        raise ConfigError(f"{key}={value!r} must be {accepted}")
    return value


def positive(key: str, value: Any, optional: bool = False, allow_zero: bool = False) -> float | None:
    """``value`` as a float > 0 (>= 0 with ``allow_zero``), or None when ``optional``."""
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        accepted = "a number " + (">= 0" if allow_zero else "> 0") + (" or null" if optional else "")
        raise ConfigError(f"{key}={value!r} must be {accepted}")
    return float(value)


def resolve_device(name: Any) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise ConfigError(f"trainer.device={name!r} is unknown; choose auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device={name!r} is not supported; choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name!r} but this machine has no CUDA GPU "
                          f"(torch {torch.__version__}); use trainer.device=cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={name!r} but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""``trainer.dtype`` choices: float64 makes reduction order negligible (the stacked-equivalence tests)."""


def check_trainer(cfg: Mapping[str, Any]) -> None:
    """Validate ``trainer`` keys (types and ranges)."""
    if cfg.get("dtype") not in DTYPES:
        raise ConfigError(f"trainer.dtype={cfg.get('dtype')!r} is unknown; choose one of: {', '.join(DTYPES)}")
    whole("trainer.epochs", cfg.get("epochs"), minimum=0)
    whole("trainer.max_steps", cfg.get("max_steps"), minimum=0, optional=True)
    whole("trainer.batch_size", cfg.get("batch_size"))
    whole("trainer.seed", cfg.get("seed"), minimum=0)
    whole("trainer.threads", cfg.get("threads"), optional=True)
    positive("trainer.weight_decay", cfg.get("weight_decay", 0.0), allow_zero=True)
    positive("trainer.l1", cfg.get("l1", 0.0), allow_zero=True)
    positive("trainer.clip_grad_norm", cfg.get("clip_grad_norm"), optional=True)
    positive("trainer.clip_grad_value", cfg.get("clip_grad_value"), optional=True)
    whole("trainer.checkpoint_every", cfg.get("checkpoint_every"), optional=True)
    for key in ("resume", "fail_on_divergence", "progress", "cuda_graph"):
        if not isinstance(cfg.get(key, False), bool):
            raise ConfigError(f"trainer.{key}={cfg.get(key)!r} must be true or false")


def check_probe(cfg: Mapping[str, Any]) -> None:
    """Validate ``probe`` keys (types and ranges)."""
    whole("probe.every", cfg.get("every"))
    whole("probe.bins", cfg.get("bins"), minimum=2)
    whole("probe.histogram_sample", cfg.get("histogram_sample"), minimum=2, optional=True)
    margin = positive("probe.saturation_margin", cfg.get("saturation_margin", 0.01))
    if margin >= 0.5:
        raise ConfigError(f"probe.saturation_margin={margin} must be in (0, 0.5)")
