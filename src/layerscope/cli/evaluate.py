"""The ``layerscope-eval`` console script: a run's trained model evaluated on a data set, in one line.

``layerscope-eval <run folder> [--data <choice>] [--split test|train] [--device cpu|cuda|auto]`` loads the model
(``layerscope.load_model``) and the run's own data set, or the ``data`` group's choice, and prints the run's loss
and the accuracy on the split. A mistake prints one line, ``layerscope-eval: error: ...``, and exits 2. Nothing is
written. torch loads only after the command line has been read, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from layerscope.paths import choices

if TYPE_CHECKING:
    import torch

PROG = "layerscope-eval"


class _Parser(argparse.ArgumentParser):
    """argparse, with its mistakes reported in one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as layerscope-eval's one-line error and exit 2."""
        _exit(message)


def _exit(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def data_config(run_cfg: dict, choice: str | None) -> dict:
    """The run's own ``data`` config, or that of the ``data`` group's ``choice`` (configs/data/<choice>.yaml)."""
    from omegaconf import OmegaConf

    from layerscope.paths import preset

    if choice is None:
        return run_cfg["data"]
    return OmegaConf.to_container(OmegaConf.create(preset("data", choice)), resolve=True)  # root reads $LAYERSCOPE_DATA


def device(name: str) -> torch.device:
    """The torch device ``--device`` names: ``auto`` is CUDA when torch sees a GPU, else the CPU."""
    import torch

    from layerscope.errors import ConfigError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda, but torch {torch.__version__} sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def evaluate_run(run_dir: Path, data: str | None = None, split: str = "test", device_name: str = "cpu") -> str:
    """The line ``layerscope-eval`` prints: the run's loss and the accuracy of its trained model on ``split``."""
    from layerscope.api import load_model
    from layerscope.data.datasets import load_data
    from layerscope.errors import ConfigError
    from layerscope.nets.losses import build_loss
    from layerscope.runs.folder import read_config
    from layerscope.train.loop import evaluate

    model = load_model(run_dir, device(device_name))
    cfg = read_config(run_dir)
    dataset = load_data(data_config(cfg, data), cfg["trainer"]["seed"])  # the run's seed: the run's own split
    features, classes = model.blocks[0].linear.in_features, model.head.out_features
    if (dataset.input_dim, dataset.num_classes) != (features, classes):
        raise ConfigError(f"data={dataset.name} has {dataset.input_dim} input features and {dataset.num_classes} "
                          f"classes, but the model of {run_dir} takes {features} features and {classes} classes; "
                          f"pass --data with a data set of that shape, or leave --data out for the run's own "
                          f"(data={cfg['data']['name']})")
    dataset = dataset.to(model.head.weight.device, model.head.weight.dtype)
    x, y = (dataset.x_test, dataset.y_test) if split == "test" else (dataset.x_train, dataset.y_train)
    loss, accuracy = evaluate(model, build_loss(cfg["loss"]), x, y).tolist()
    return (f"{run_dir}: {split} loss {loss:.4f}, accuracy {100 * accuracy:.1f}% on {dataset.name} "
            f"({len(y)} samples)")


def cli(argv: list[str] | None = None) -> None:
    """Console entry point ``layerscope-eval <run folder> [--data D] [--split S] [--device X]``."""
    parser = _Parser(prog=PROG, description="Evaluate a run's trained model: its loss and accuracy on a data set.")
    parser.add_argument("run_dir", type=Path, help="a run folder (outputs/runs/<date>/<time>, or a sweep's job folder)")
    parser.add_argument("--data", choices=choices("data"), metavar="CHOICE",
                        help=f"a data set of the data group ({', '.join(choices('data'))}); default: the run's own")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="default: test")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="default: cpu")
    args = parser.parse_args(argv)
    try:
        print(evaluate_run(args.run_dir, args.data, args.split, args.device))
    except (OSError, ValueError) as err:  # ValueError includes ConfigError: each a one-line message
        _exit(str(err))
