"""``trainer.cuda_graph=true``: the training step between probes captured once as a CUDA graph and replayed.

A small MLP on a big GPU is bound by kernel launches: the step's ~100 kernels cost more to launch
than to run. Replaying a captured graph launches them as one. The step reads only fixed buffers
(the batch's row index, the parameters, the optimizer state, the epoch log's slots), so the
graph replays it exactly; probe steps run eagerly and are measured as always.

Capture follows PyTorch's recipe for whole-network capture: a few eager steps on a side stream
first (they are real training steps: they create the optimizer state and cuBLAS workspaces), then
one capture. A float learning rate is baked into the captured update, so the step is captured
again whenever a schedule changed it (once per epoch at most).
"""

from __future__ import annotations

from typing import Callable

import torch

WARMUP = 3  # eager steps before the capture


class CapturedStep:
    """Calls ``step`` eagerly for WARMUP calls, then captures it and replays the graph."""

    def __init__(self, step: Callable[[], None], optimizer: torch.optim.Optimizer) -> None:
        self.step, self.optimizer = step, optimizer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.lr: list[float] = []
        self.calls = 0

    def __call__(self) -> None:
        """One training step: eager while warming up, else the graph (captured again after an lr change)."""
        self.calls += 1
        if self.calls <= WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step()
            torch.cuda.current_stream().wait_stream(side)
            return
        lr = [group["lr"] for group in self.optimizer.param_groups]
        if self.graph is None or lr != self.lr:
            self._capture(lr)
        self.graph.replay()

    def _capture(self, lr: list[float]) -> None:
        self.graph, self.lr = None, lr  # the old graph and its memory go first
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates the gradients it fills
        with torch.cuda.graph(graph):
            self.step()  # recorded, not run: the replay that follows runs it
        self.graph = graph


def set_capturable(optimizer: torch.optim.Optimizer, on: bool) -> None:
    """Keep the optimizer's step counters on the parameters' device (Adam, RMSprop) when ``on``, as a
    captured update needs, else on the CPU; call it again after ``load_state_dict``, which restores
    the flag the checkpoint was saved with."""
    for group in optimizer.param_groups:
        if "capturable" not in group:
            continue
        group["capturable"] = on
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "step" in state:
                state["step"] = state["step"].to(p.device if on else "cpu", torch.float32)
