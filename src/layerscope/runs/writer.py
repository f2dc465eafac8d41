"""Everything a run writes: TensorBoard events, metrics and probe files, figures, summary.json.

TensorBoard tags: histograms ``<quantity>/layer_NN`` (quantity: preactivation, activation,
backward, backward_log10, weight_grad, weight); per-layer scalars ``<stat>/layer_NN`` and, at step 0, the
mean-field prediction ``theory_<stat>/layer_NN`` with ``theory_rel_error_<stat>/layer_NN``; training curves
``loss/train``, ``loss/test``, ``accuracy/train``, ``accuracy/test``, ``lr``; figures
``lecture/probe``; each step's training loss ``loss/train_step``. Layers count from 01 at the input. Every run
also writes a custom-scalars layout (TensorBoard's CUSTOM SCALARS tab, ``scalars_layout``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams.api_pb2 import HParamInfo, MetricInfo, MetricName
from tensorboard.plugins.hparams.metadata import EXPERIMENT_TAG
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard.summary import histogram_raw, hparams

from layerscope.files import JsonLines
from layerscope.runs.events import EventFile
from layerscope.probe.record import LECTURE_HISTOGRAMS, Histogram, ProbeRecord
from layerscope.runs.folder import METRICS, PROBES

SHARED_RANGE = ("preactivation", "activation", "backward_log10")
"""Histograms whose TensorBoard cards share one x-range across the layers of a probe: the forward signal,
compared layer by layer as in the lecture (collapse toward 0, saturation at the bounds; a bounded
activation's cards span its whole range, tanh [-1, 1]). The backward signal and the weight gradients can
differ by orders of magnitude between layers (that is what vanishing and exploding mean), so a shared
linear axis would squash all but the largest layer into one bin: they keep each layer's own range, and
their sizes are compared in the custom-scalars charts; so do the weights, whose first layer has another fan-in.
``backward_log10`` (log10 |dL/da|) puts those orders of magnitude on one axis: its cards share one range, so a
backward signal that vanishes toward the input moves left layer by layer.
The shared range is written as empty end buckets, which TensorBoard's DISTRIBUTIONS tab draws as its
outermost (min-max) band: for these two quantities that band shows the shared range, the others the layer's."""

CHARTS = {"forward signal": ("activation_std", "activation_mean", "saturated_fraction", "dead_fraction",
                             "inactive_fraction", "preactivation_std", "preactivation_mean", "unit_spread"),
          "backward signal and weights": ("backward_std", "backward_norm", "weight_grad_norm", "update_ratio",
                                          "weight_change", "weight_norm")}
"""The per-layer statistics in the order of their custom-scalars categories (an unnamed one joins the forward
signal)."""


def layer_tag(quantity: str, layer: int) -> str:
    """``activation/layer_03``: grouped by quantity in TensorBoard, layers in order."""
    return f"{quantity}/layer_{layer:02d}"


def _chart(title: str, regex: str) -> layout_pb2.Chart:
    return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=[regex]))


def scalars_layout(stats: dict[str, int]) -> layout_pb2.Layout:
    """The custom-scalars layout: *training* (train loss per step and per epoch, test loss, accuracy, lr), then a
    category per per-layer statistic in ``stats`` ({name: layers}): its layers together (TensorBoard colours
    lines by run, so these share one colour), then one chart per layer; only *training* and the first statistic's
    category open."""
    named = [name for names in CHARTS.values() for name in names]
    order = [n for n in named if n in stats] + [n for n in stats if n not in named]
    part = {name: category for category, names in CHARTS.items() for name in names}
    training = [_chart("loss (train per step, train per epoch, test)", r"^loss/(train_step|train|test)$"),
                _chart("accuracy (train, test)", r"^accuracy/(train|test)$"), _chart("learning rate", r"^lr$")]
    categories = [layout_pb2.Category(title="training", chart=training)]
    for index, name in enumerate(order):
        charts = [_chart(f"{name}: all layers (hover a line for its layer)", rf"^{name}/layer_\d+$")]
        charts += [_chart(f"{name}: layer {layer:02d}", rf"^{name}/layer_{layer:02d}$")
                   for layer in range(1, stats[name] + 1)]
        categories.append(layout_pb2.Category(title=f"{name}, layer by layer ({part.get(name, 'forward signal')})",
                                              chart=charts, closed=index > 0))
    return layout_pb2.Layout(category=categories)


def layout_summary(layout: layout_pb2.Layout) -> Summary:
    """The summary TensorBoard's CUSTOM SCALARS tab reads ``layout`` from (as ``add_custom_scalars`` writes it)."""
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="custom_scalars"))
    tensor = TensorProto(dtype="DT_STRING", string_val=[layout.SerializeToString()], tensor_shape=TensorShapeProto())
    return Summary(value=[Summary.Value(tag="custom_scalars__config__", tensor=tensor, metadata=metadata)])


def _padded(tag: str, h: Histogram, span: tuple[float, float] | None) -> Summary:
    """``histogram_raw`` of ``h``; with ``span``, empty buckets widen it to that range (a TensorBoard card
    spans its buckets), so the cards of several layers share one x-range."""
    edges, counts = h.edges, list(h.counts)
    if span is not None and span[0] < edges[0]:
        edges, counts = [span[0], *edges], [0.0, *counts]
    if span is not None and span[1] > edges[-1]:
        edges, counts = [*edges, span[1]], [*counts, 0.0]
    return histogram_raw(tag, min=edges[0], max=edges[-1], num=h.num, sum=h.sum, sum_squares=h.sum_squares,
                         bucket_limits=edges[1:], bucket_counts=counts)


class RunWriter:
    """Writes one run's TensorBoard events and its metrics.jsonl / probes.jsonl files.

    ``activation_range``: a bounded activation's (low, high), which its histogram cards always span.
    """

    def __init__(self, run_dir: Path, purge_step: int | None = None,
                 activation_range: tuple[float, float] | None = None) -> None:
        self.run_dir = run_dir
        # purge_step: after a resume, TensorBoard drops earlier events at steps >= the checkpoint's
        self.events = EventFile(run_dir, purge_step)
        self._metrics, self._probes = JsonLines(run_dir / METRICS), JsonLines(run_dir / PROBES)
        self.activation_range = activation_range
        self._layout_written = False

    def epoch(self, row: dict[str, Any]) -> None:
        """Log one epoch's metrics (loss/accuracy on train and test, lr) at its last step, and each of its steps'
        training loss (``loss/train_step``, brought to the host with the epoch's metrics)."""
        step, losses = row["step"], row.get("step_losses") or []
        for at, loss in enumerate(losses, start=step - len(losses) + 1):
            if math.isfinite(loss):
                self.events.add(Summary(value=[Summary.Value(tag="loss/train_step", simple_value=loss)]), at)
        values = [Summary.Value(tag=f"{name}/{split}", simple_value=row[f"{split}_{name}"])
                  for split in ("train", "test") for name in ("loss", "accuracy")]
        self.events.add(Summary(value=[*values, Summary.Value(tag="lr", simple_value=row["lr"])]), step)
        self._metrics.append(row)

    def probe(self, record: ProbeRecord) -> None:
        """Log a probe's histograms (``histogram_raw``, as ``add_histogram_raw``) and per-layer scalars as one event;
        the first probe also writes the custom-scalars layout (with the statistics it measured)."""
        if not self._layout_written:
            measured = {name: len(values) for name, values in record.stats.items()
                        if any(math.isfinite(v) for v in values)}
            self.events.add(layout_summary(scalars_layout(measured)))
            self._layout_written = True
        values = []  # what add_histogram_raw and add_scalar write, gathered into one event per probe
        for quantity, hists in record.histograms.items():
            finite = [(layer, h) for layer, h in enumerate(hists, start=1) if h.finite]
            span = self._shared_span(quantity, [h for _, h in finite])
            for layer, h in finite:
                values += _padded(layer_tag(quantity, layer), h, span).value
        scalars = dict(record.stats)
        scalars.update({f"theory_{k}": v for k, v in (record.theory or {}).items()})
        for name, per_layer in scalars.items():
            for layer, value in enumerate(per_layer, start=1):
                if math.isfinite(value):
                    values.append(Summary.Value(tag=layer_tag(name, layer), simple_value=value))
        self.events.add(Summary(value=values), record.step)
        self._probes.append(record.to_json(LECTURE_HISTOGRAMS))  # TensorBoard gets them all

    def _shared_span(self, quantity: str, finite: list[Histogram]) -> tuple[float, float] | None:
        """The x-range the cards of ``quantity`` share in this probe (``SHARED_RANGE``; of its ``finite`` histograms),
        or None."""
        drawn = [h for h in finite if h.num > 0]
        if quantity not in SHARED_RANGE or not drawn:
            return None
        low, high = min(h.min for h in drawn), max(h.max for h in drawn)
        if quantity == "activation" and self.activation_range is not None:
            low, high = min(low, self.activation_range[0]), max(high, self.activation_range[1])
        return low, high

    def hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int, varied: tuple[str, ...] = ()) -> None:
        """Log the run's hyper-parameters and final metrics to the HPARAMS dashboard, in this folder.

        Every one of ``params`` is a column; those in ``varied`` (what differs between the runs compared) are marked
        as differing, which TensorBoard sorts first and shows. Every metric of ``metrics`` is a column, also where
        this run has no value (NaN, or a run that diverged before its first epoch). ``SummaryWriter.add_hparams``
        would write them into a new sub-folder (a second "run"); writing the three hparams summaries directly keeps
        one run per folder.
        """
        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
        columns = [f"hparam/{k}" for k in metrics]
        metrics = {f"hparam/{k}": v for k, v in metrics.items() if v is not None and math.isfinite(v)}
        for summary in hparams(clean, metrics):
            if summary.value[0].tag == EXPERIMENT_TAG:
                _columns(summary, varied, columns)
            self.events.add(summary)
        for tag, value in metrics.items():
            self.events.scalar(tag, value, step)

    def image(self, tag: str, data: bytes, shape: tuple[int, int, int], step: int) -> None:
        """Log a PNG image of ``shape`` (height, width, channels), as ``add_image`` would after encoding it."""
        height, width, channels = shape
        image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=data)
        self.events.add(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def close(self) -> None:
        """Flush and close every file."""
        self.events.close()
        self._metrics.close()
        self._probes.close()


def _columns(experiment: Summary, varied: tuple[str, ...], metrics: list[str]) -> None:
    """Complete an hparams experiment summary: the hyper-parameters in ``varied`` marked as differing and listed
    first (TensorBoard reads ``differs`` from the experiment as written, and shows those first), and every one of
    ``varied`` and ``metrics`` listed, also where this run lacks it (``init.std`` of an ``init=xavier_normal`` job
    beside ``init=normal``; the losses of a run that diverged at once): TensorBoard takes one run's experiment for
    the columns of all."""
    metadata = experiment.value[0].metadata.plugin_data
    data = HParamsPluginData.FromString(metadata.content)
    infos = list(data.experiment.hparam_infos)
    infos += [HParamInfo(name=name) for name in varied if name not in {info.name for info in infos}]
    infos.sort(key=lambda info: info.name not in varied)
    for info in infos:
        info.differs = info.name in varied
    data.experiment.ClearField("hparam_infos")
    data.experiment.hparam_infos.extend(infos)
    listed = {info.name.tag for info in data.experiment.metric_infos}
    data.experiment.metric_infos.extend(MetricInfo(name=MetricName(tag=tag)) for tag in metrics if tag not in listed)
    metadata.content = data.SerializeToString()
