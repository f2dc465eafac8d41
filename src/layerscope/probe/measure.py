"""Per-layer probes: capture pre-activations, activations, their gradients and weight gradients.

A probed pass hands the stacked model a ``Captured`` (steps without a probe pass none and keep nothing).
Every statistic and histogram is computed on the device, for all K members at once; one transfer per
probe brings them all to the host as one ``ProbeRecord`` per member.
"""

from __future__ import annotations

import torch

from layerscope.nets.activations import Activation
from layerscope.nets.stacked import Captured
from layerscope.probe.record import Histogram, ProbeRecord

TINY = 1e-30
"""``backward_log10`` bins log10 |dL/da| of each unit; an exact 0 (no gradient at all) lands at log10(TINY) = -30."""
UNIT_SPREAD_ROWS = 64  # unit_spread averages the across-unit std over the batch's first 64 samples
CPU_BLOCK_BYTES = 2 << 20
"""On a CPU, ``histogram_summaries`` takes its rows in blocks of about this size, which stay in the cache through its
passes (1.3-2.4x faster than passes over all rows at once, which stream them from memory each time)."""


def histogram_summaries(values: torch.Tensor | list[torch.Tensor], bins: int, sample: int | None = None) -> torch.Tensor:
    """One row [min, max, num, mean, std, count_1..count_bins] per leading index of ``values`` (or per tensor of a list
    of tensors of one size, which a CPU takes without copying them all into one first), on its device.

    min, max, mean and std use every value of a row (std without the cancellation of sum-of-squares
    formulas). The counts bin a strided sample of at most ``sample`` values of the row (all when
    None or fewer) and are rescaled to sum to num.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().reshape(len(values), -1)
        take = lambda a, b: values[a:b]  # noqa: E731
    else:
        take = lambda a, b: torch.stack([v.detach() for v in values[a:b]]).reshape(b - a, -1)  # noqa: E731
    blocks = _blocks(len(values), values[0].numel(), values[0].device)
    summaries = [_summaries(take(a, b).float(), bins, sample) for a, b in blocks]
    return summaries[0] if len(summaries) == 1 else torch.cat(summaries)


def _blocks(rows: int, num: int, device: torch.device) -> list[tuple[int, int]]:
    """Rows [a, b) in blocks of about ``CPU_BLOCK_BYTES`` of float32 on a CPU (one block elsewhere). A block has at least
    as many rows as torch has threads: a reduction over fewer rows splits each row between threads, and sums it in
    another order (a different last bit) than over all of them, where each thread takes whole rows."""
    threads = torch.get_num_threads()
    size = max(CPU_BLOCK_BYTES // (4 * max(1, num)), threads)
    if device.type != "cpu" or size >= rows:
        return [(0, rows)]
    starts = list(range(0, rows, size))
    if rows - starts[-1] < threads:  # a short last block joins the one before
        starts.pop()
    return list(zip(starts, [*starts[1:], rows]))


def _summaries(flat: torch.Tensor, bins: int, sample: int | None) -> torch.Tensor:
    """``histogram_summaries`` of the rows of ``flat`` (rows, num)."""
    low, high = flat.amin(1), flat.amax(1)  # on a CPU, 20x faster than aminmax over a few long rows
    rows, num = flat.shape
    mean = flat.mean(1)
    var = (flat - mean[:, None]).square_().sum(1) / (num - 1)  # two passes; torch.var is 25x slower here
    picked = flat[:, :: max(1, num // sample)] if sample else flat
    span = (high - low).clamp_min(1e-30)  # all values equal (zero init): everything in bin 0
    # int32: a CPU converts floats to it ~6x faster than to int64, and bincount reads either
    index = ((picked - low[:, None]) * (bins / span)[:, None]).nan_to_num_(0.0).int().clamp_(0, bins - 1)
    index += torch.arange(0, rows * bins, bins, device=flat.device, dtype=torch.int32)[:, None]  # row r: r*bins...
    counts = torch.bincount(index.reshape(-1), minlength=rows * bins).float().view(rows, bins)
    head = torch.stack([low, high, torch.full_like(low, float(num)), mean, var.nan_to_num(0.0).sqrt()], dim=1)
    return torch.cat([head, counts * (num / picked.shape[1])], dim=1)


def histogram_summary(values: torch.Tensor, bins: int, sample: int | None = None) -> torch.Tensor:
    """``histogram_summaries`` of all of ``values`` as one row."""
    return histogram_summaries(values.reshape(1, -1), bins, sample)[0]


def _norm(summary: torch.Tensor) -> torch.Tensor:
    """L2 norms from histogram summaries (last dim): √(num·mean² + (num-1)·std²)."""
    num, mean, std = summary[..., 2], summary[..., 3], summary[..., 4]
    return (num * mean.square() + (num - 1) * std.square()).sqrt()


def _moved(weights: list[torch.Tensor], initial: list[torch.Tensor]) -> list[torch.Tensor]:
    """‖W − W_0‖ / ‖W_0‖ per member (K,) of each layer; NaN where W_0 is 0 (zero init) or unknown (NaN)."""
    out = []
    for w, w0 in zip(weights, initial):
        base = w0.flatten(1).norm(dim=1)
        moved = (w.detach() - w0).flatten(1).norm(dim=1)
        out.append(torch.where(base > 0, moved / base, torch.full_like(base, float("nan"))))
    return out


class Measure:
    """Per-layer statistics and histograms of K stacked members, all on the device."""

    def __init__(self, activation: Activation, bins: int, saturation_margin: float, sample: int | None) -> None:
        self.activation, self.bins, self.sample, self.saturation_margin = activation, bins, sample, saturation_margin

    def __call__(self, captured: Captured, weights: list[torch.Tensor], grads: list[torch.Tensor | None],
                 initial: list[torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Statistics (K, depth) and histogram summaries (K, depth, 5 + bins) of a captured pass.

        ``initial``: each layer's weights at the run's step 0 (``weight_change``; NaN without them). Call after the
        backward pass and before the update; ``update_ratio`` after the update.
        """
        grads = [g if g is not None else torch.zeros_like(w) for g, w in zip(grads, weights)]
        # the weights before the update, copied once in a single run's (width, fan_in) order (a stacked model holds them
        # transposed): the histograms and norms read them without a copy of their own
        before = [w.detach().clone(memory_format=torch.contiguous_format) for w in weights]
        backward = [g if g is not None else torch.zeros_like(a) for g, a in zip(captured.grad, captured.act)]
        sources = {"preactivation": captured.pre, "activation": captured.act, "backward": backward,
                   "backward_log10": [g.abs().clamp_min(TINY).log10() for g in backward],
                   "weight_grad": grads, "weight": before}
        hist = {q: self._summaries(ts) for q, ts in sources.items()}
        members, depth = len(weights[0]), len(weights)
        nan = torch.full((members, depth), float("nan"), device=weights[0].device)
        by_layer = lambda values: torch.stack(values, dim=1)  # noqa: E731 - [(K,)] * depth -> (K, depth)
        stats = {
            "preactivation_mean": hist["preactivation"][..., 3], "preactivation_std": hist["preactivation"][..., 4],
            "activation_mean": hist["activation"][..., 3], "activation_std": hist["activation"][..., 4],
            "unit_spread": by_layer([a[:, :UNIT_SPREAD_ROWS].std(dim=2).mean(1) for a in captured.act]),
            "saturated_fraction": by_layer(self._saturated(captured.act)) if self.activation.bounds else nan,
            "dead_fraction": by_layer([d.float().mean(1) for d in captured.dead]),
            "inactive_fraction": by_layer([(p <= 0).all(dim=1).float().mean(1) for p in captured.pre])
            if self.activation.rectifier else nan,
            "backward_norm": _norm(hist["backward"]),
            "backward_std": hist["backward"][..., 4],
            "weight_grad_norm": _norm(hist["weight_grad"]),
            "weight_norm": _norm(hist["weight"]),
            "update_ratio": nan,
            "weight_change": by_layer(_moved(before, initial)) if initial is not None else nan,
        }
        return {"stats": stats, "hist": hist, "before": before}

    def _summaries(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """``histogram_summaries`` of each layer's (K, ...) tensor: (K, layers, 5 + bins).

        Layers of one shape are binned in one call (a few kernels for all of them, not per layer); on a CPU, rows of more
        than one block are not copied into one tensor first.
        """
        members, out = len(tensors[0]), [None] * len(tensors)
        by_shape: dict[torch.Size, list[int]] = {}
        for layer, t in enumerate(tensors):
            by_shape.setdefault(t.shape, []).append(layer)
        for layers in by_shape.values():
            group, count = [tensors[i] for i in layers], members * len(layers)  # rows by member, then layer
            if len(_blocks(count, group[0][0].numel(), group[0].device)) > 1:  # stacked block by block, in the cache
                values = [t[k] for k in range(members) for t in group]
            else:
                values = torch.stack(group, dim=1).reshape(count, -1)
            rows = histogram_summaries(values, self.bins, self.sample).view(members, len(layers), -1)
            for j, layer in enumerate(layers):
                out[layer] = rows[:, j]
        return torch.stack(out, dim=1)

    @staticmethod
    def update_ratio(measured: dict, weights: list[torch.Tensor]) -> None:
        """Fill in ||ΔW|| / ||W|| per member and layer; call right after the update."""
        measured["stats"]["update_ratio"] = torch.stack(
            [(b - w.detach()).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-30)  # laid out as b
             for w, b in zip(weights, measured.pop("before"))], dim=1)

    @staticmethod
    def records(measured: dict, step: int,
                extra: torch.Tensor | None = None) -> tuple[list[ProbeRecord], list[float]]:
        """Bring the measurement of every member (and ``extra`` (K,)) to the host in one transfer.

        One record per member, and ``extra``'s values.
        """
        names = list(measured["stats"])
        stats = torch.stack([measured["stats"][n] for n in names], dim=1).float()  # (K, stats, depth)
        members, _, depth = stats.shape
        parts = [stats.reshape(members, -1)] + [h.reshape(members, -1) for h in measured["hist"].values()]
        if extra is not None:
            parts.append(extra.reshape(members, 1).float())
        host = torch.cat(parts, dim=1).cpu().numpy().astype(float)
        out = []
        for row in host:
            out_stats = {n: row[i * depth:(i + 1) * depth].tolist() for i, n in enumerate(names)}
            offset, histograms = len(names) * depth, {}
            for quantity, h in measured["hist"].items():
                layers = row[offset: offset + h[0].numel()].reshape(h.shape[1:])
                offset += h[0].numel()
                histograms[quantity] = [Histogram.from_moments(*r[:5].tolist(), counts=r[5:].tolist()) for r in layers]
            out.append(ProbeRecord(step, out_stats, histograms))
        return out, (host[:, -1].tolist() if extra is not None else [])

    def _saturated(self, acts: list[torch.Tensor]) -> list[torch.Tensor]:
        low, high = self.activation.bounds
        margin = self.saturation_margin * (high - low)
        center, half = (low + high) / 2, (high - low) / 2 - margin
        return [((a - center).abs() >= half).float().mean((1, 2)) for a in acts]
