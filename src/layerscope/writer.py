"""Everything a run writes: TensorBoard events, metrics and probe files, figures, summary.json.

TensorBoard tags: histograms ``<quantity>/layer_NN`` (quantity: preactivation, activation,
backward, weight_grad, weight); per-layer scalars ``<stat>/layer_NN`` and, at step 0, the
mean-field prediction ``theory_<stat>/layer_NN`` with ``theory_rel_error_<stat>/layer_NN``; training curves
``loss/train``, ``loss/test``, ``accuracy/train``, ``accuracy/test``, ``lr``; figures
``lecture/probe``. Layers count from 01 at the input.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import histogram_raw, hparams

from layerscope.probes import ProbeRecord


FILE_HISTOGRAMS = ("activation", "backward")
"""The histograms probes.jsonl keeps (those the lecture figure draws); TensorBoard gets all five."""


def layer_tag(quantity: str, layer: int) -> str:
    """``activation/layer_03``: grouped by quantity in TensorBoard, layers in order."""
    return f"{quantity}/layer_{layer:02d}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and a rename, so readers never see half a file."""
    text = json.dumps(_clean(data), indent=2, default=_jsonable, allow_nan=False) + "\n"
    with replacing(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path to write; it replaces ``path`` when the block ends, and is removed if the block fails."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return _clean(value.item())
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _clean(value: Any) -> Any:
    """NaN/inf become null so every file is strict JSON (readers take null back as NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class RunWriter:
    """Writes one run's TensorBoard events and its metrics.jsonl / probes.jsonl files."""

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        self.run_dir = run_dir
        # purge_step: after a resume, TensorBoard drops earlier events at steps >= the checkpoint's
        self.tb = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self._metrics = open(run_dir / "metrics.jsonl", "a")
        self._probes = open(run_dir / "probes.jsonl", "a")

    def epoch(self, row: dict[str, Any]) -> None:
        """Log one epoch's metrics (loss/accuracy on train and test, lr) at its last step."""
        step = row["step"]
        for split in ("train", "test"):
            self.tb.add_scalar(f"loss/{split}", row[f"{split}_loss"], step)
            self.tb.add_scalar(f"accuracy/{split}", row[f"{split}_accuracy"], step)
        self.tb.add_scalar("lr", row["lr"], step)
        self._metrics.write(json.dumps(_clean(row), allow_nan=False) + "\n")
        self._metrics.flush()

    def probe(self, record: ProbeRecord) -> None:
        """Log a probe's histograms (``histogram_raw``, as ``add_histogram_raw``) and per-layer scalars as one event."""
        values = []  # what add_histogram_raw and add_scalar write, gathered into one event per probe
        for quantity, hists in record.histograms.items():
            for layer, h in enumerate(hists, start=1):
                if h.finite:
                    values += histogram_raw(
                        layer_tag(quantity, layer), min=h.min, max=h.max, num=h.num, sum=h.sum,
                        sum_squares=h.sum_squares, bucket_limits=h.edges[1:].tolist(), bucket_counts=h.counts).value
        scalars = dict(record.stats)
        scalars.update({f"theory_{k}": v for k, v in (record.theory or {}).items()})
        for name, per_layer in scalars.items():
            for layer, value in enumerate(per_layer, start=1):
                if math.isfinite(value):
                    values.append(Summary.Value(tag=layer_tag(name, layer), simple_value=value))
        self.tb._get_file_writer().add_summary(Summary(value=values), record.step)
        self._probes.write(json.dumps(record.to_json(FILE_HISTOGRAMS), allow_nan=False) + "\n")
        self._probes.flush()

    def hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """Log the run's hyper-parameters and final metrics to the HPARAMS dashboard, in this folder.

        ``SummaryWriter.add_hparams`` would write them into a new sub-folder (a second "run");
        writing the three hparams summaries directly keeps one run per folder.
        """
        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
        metrics = {f"hparam/{k}": v for k, v in metrics.items() if v is not None and math.isfinite(v)}
        writer = self.tb._get_file_writer()
        for summary in hparams(clean, metrics):
            writer.add_summary(summary)
        for tag, value in metrics.items():
            self.tb.add_scalar(tag, value, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        """Log a matplotlib figure as a TensorBoard image (closes it)."""
        self.tb.add_figure(tag, figure, step, close=True)

    def close(self) -> None:
        """Flush and close every file."""
        self.tb.close()
        self._metrics.close()
        self._probes.close()


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file (metrics.jsonl, probes.jsonl); a torn last line is skipped."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
