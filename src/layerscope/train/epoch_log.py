"""Each step's loss and predicted classes of one epoch, written on the device and summed at its end.

A step writes two slots (its loss, the argmax of its logits) chosen by a device counter: no host
sync and no per-step reduction, and a CUDA graph can replay the step. The epoch's end turns the
slots into the train loss, the accuracy and the first step whose loss was NaN/inf, in one sync.
Shapes carry optional member dims: () for one run, (K,) for K stacked members.
"""

from __future__ import annotations

import torch


class EpochLog:
    """Per-step losses (steps, *members) and predictions (steps, *members, batch) of the current epoch."""

    def __init__(self, steps: int, batch: int, members: tuple[int, ...], device: torch.device,
                 dtype: torch.dtype) -> None:
        self.losses = torch.zeros(steps, *members, device=device, dtype=dtype)
        self.predicted = torch.zeros(steps, *members, batch, device=device, dtype=torch.long)
        self.slot = torch.zeros(1, device=device, dtype=torch.long)  # where the next step writes

    def start(self, position: int = 0, saved: list[torch.Tensor] | None = None) -> None:
        """Begin an epoch at step ``position`` of it (after a resume: with the ``saved`` slots before it)."""
        self.slot.fill_(position)
        if saved:
            self.losses[:position].copy_(saved[0])
            self.predicted[:position].copy_(saved[1])

    def add(self, loss: torch.Tensor, logits: torch.Tensor) -> None:
        """Record one step's loss (*members) and logits (*members, batch, classes)."""
        self.losses.index_copy_(0, self.slot, loss.detach().unsqueeze(0))
        self.predicted.index_copy_(0, self.slot, logits.detach().argmax(-1).unsqueeze(0))
        self.slot += 1

    def saved(self, steps: int, member: int) -> list[torch.Tensor]:
        """The first ``steps`` slots of ``member``, for its checkpoint: a copy on the CPU (of its column alone, so
        that the checkpoint holds none of the other members' slots)."""
        return [t[:steps, member].to("cpu", copy=True) for t in (self.losses, self.predicted)]

    def first_bad(self, steps: int) -> torch.Tensor:
        """Per member: the first of the first ``steps`` slots whose loss is NaN/inf, or -1."""
        bad = ~torch.isfinite(self.losses[:steps])
        first = bad.long().argmax(0)  # the first True (0 when none)
        return torch.where(bad.any(0), first, -1)

    def totals(self, steps: int, labels: torch.Tensor) -> torch.Tensor:
        """[mean loss, accuracy, first bad slot] per member over the first ``steps`` slots (a device tensor).

        ``labels`` (steps, *members, batch) are the labels of those steps' batches.
        """
        steps_done = max(steps, 1)
        # each member's losses summed as one contiguous row: the same sum whatever K (a column sum's order is not)
        loss = self.losses[:steps].movedim(0, -1).contiguous().sum(-1) / steps_done
        accuracy = (self.predicted[:steps] == labels).sum((0, -1)) / (steps_done * labels.shape[-1])
        return torch.stack([loss, accuracy.to(loss.dtype), self.first_bad(steps).to(loss.dtype)])
