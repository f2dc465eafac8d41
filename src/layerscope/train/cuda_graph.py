"""``trainer.cuda_graph=true``: the training step between probes captured once as a CUDA graph and replayed.

A small MLP on a big GPU is bound by kernel launches: the step's ~100 kernels cost more to launch
than to run. Replaying a captured graph launches them as one. The step reads only fixed buffers
(the batch's row index, the parameters, the optimizer state, its step count and learning rates, the
epoch log's slots and the step clock), so the graph replays it exactly, also after a schedule changed
the rates; probe steps run eagerly and are measured as always. The members' dropout generators are
registered with the graph, which advances them at every replay.

Capture follows PyTorch's recipe for whole-network capture: a few eager steps on a side stream
first (they are real training steps: they create the cuBLAS workspaces), then one capture.
"""

from __future__ import annotations

from typing import Callable

import torch

WARMUP = 3  # eager steps before the capture


class CapturedStep:
    """Calls ``step`` eagerly for WARMUP calls, then captures it once and replays the graph."""

    def __init__(self, step: Callable[[], None], zero_grad: Callable[[], None],
                 generators: list[torch.Generator]) -> None:
        self.step, self.zero_grad, self.generators = step, zero_grad, generators
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0

    def __call__(self) -> None:
        """One training step: eager while warming up, else the graph."""
        self.calls += 1
        if self.calls <= WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step()
            torch.cuda.current_stream().wait_stream(side)
            return
        if self.graph is None:
            self._capture()
        self.graph.replay()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        self.zero_grad()  # the captured backward allocates the gradients it fills
        with torch.cuda.graph(graph):
            self.step()  # recorded, not run: the replay that follows runs it
        self.graph = graph
