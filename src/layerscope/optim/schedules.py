"""Learning-rate schedules in closed form: the rate during epoch e (from 0) is α₀ times the schedule's factor.

  constant      1
  step          γ^⌊e / step_size⌋
  exponential   γ^e
  inverse_time  1 / (1 + d · e)
Each member of a stacked group reads its own schedule; the rates reach the update as a device tensor.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from layerscope.registry import Registry

Factor = Callable[[Mapping[str, Any], int], float]
SCHEDULERS: Registry[Factor] = Registry("scheduler")
SCHEDULERS.register("constant", lambda c, epoch: 1.0)
SCHEDULERS.register("step", lambda c, epoch: float(c["gamma"]) ** (epoch // int(c["step_size"])))
SCHEDULERS.register("exponential", lambda c, epoch: float(c["gamma"]) ** epoch)
SCHEDULERS.register("inverse_time", lambda c, epoch: 1.0 / (1.0 + float(c["decay"]) * epoch))


def learning_rate(optimizer: Mapping[str, Any], scheduler: Mapping[str, Any], epoch: int) -> float:
    """α during ``epoch`` (from 0): ``optimizer.lr`` times the factor of schedule ``scheduler``."""
    return float(optimizer["lr"]) * SCHEDULERS.get(scheduler.get("name"))(scheduler, epoch)
