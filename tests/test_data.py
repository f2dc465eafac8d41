"""Datasets: the synthetic and bundled ones, the IDX readers (MNIST, Fashion-MNIST) and CIFAR-10's
pickled batches on tiny files written here, standardization, max_train and bad settings."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from layerscope.config.validate import check_group
from layerscope.data.datasets import load_data, read_idx
from layerscope.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _yaml(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIGS / "data" / f"{name}.yaml"), resolve=False)


# --- gaussian, digits, spirals ------------------------------------------------------------------

# name -> (train rows, test rows, features, classes)
SYNTHETIC_SHAPES = {
    "gaussian": (1000, 200, 500, 10),
    "digits": (1438, 359, 64, 10),  # 1797 images, round(0.2 * 1797) = 359 held out
    "spirals": (720, 180, 2, 3),  # 3 x 300 points, 180 held out
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC_SHAPES))
def test_shapes_dtypes_and_classes(name):
    n_train, n_test, features, classes = SYNTHETIC_SHAPES[name]
    d = load_data(_yaml(name), seed=0)
    assert d.name == name
    assert d.x_train.shape == (n_train, features) and d.x_test.shape == (n_test, features)
    assert d.y_train.shape == (n_train,) and d.y_test.shape == (n_test,)
    assert d.x_train.dtype == d.x_test.dtype == torch.float32
    assert d.y_train.dtype == d.y_test.dtype == torch.int64
    assert d.num_classes == classes and d.input_dim == features
    labels = torch.cat([d.y_train, d.y_test])
    assert set(labels.tolist()) == set(range(classes))
    assert torch.isfinite(d.x_train).all() and torch.isfinite(d.x_test).all()


@pytest.mark.parametrize("name", ["digits", "spirals", "gaussian"])
def test_standardization_uses_train_statistics(name):
    cfg = _yaml(name)
    raw = load_data({**cfg, "standardize": False}, seed=0)
    std = load_data({**cfg, "standardize": True}, seed=0)
    raw_sd = raw.x_train.std(0)
    varying = raw_sd > 1e-5
    assert varying.any()
    assert std.x_train[:, varying].mean(0).abs().max().item() < 1e-4
    assert torch.allclose(std.x_train[:, varying].std(0), torch.ones(int(varying.sum())), atol=1e-4)
    assert torch.count_nonzero(std.x_train[:, ~varying]) == 0  # constant features become 0, not NaN
    # the test set is shifted and scaled with the train set's statistics, not its own
    mean = raw.x_train.mean(0)
    scale = torch.where(varying, raw_sd, torch.ones_like(raw_sd))
    assert torch.allclose(std.x_test, (raw.x_test - mean) / scale, atol=1e-5)
    assert torch.equal(std.y_train, raw.y_train)


def test_digits_has_constant_features_that_stay_finite():
    d = load_data(_yaml("digits"), seed=0)
    assert torch.isfinite(d.x_train).all() and torch.isfinite(d.x_test).all()


def test_gaussian_yaml_is_not_standardized_and_is_standard_normal():
    cfg = _yaml("gaussian")
    assert cfg["standardize"] is False
    d = load_data(cfg, seed=0)
    assert abs(d.x_train.mean().item()) < 0.01
    assert d.x_train.std().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name", sorted(SYNTHETIC_SHAPES))
def test_same_seed_same_data_other_seed_other_data(name):
    cfg = _yaml(name)
    a, b, c = load_data(cfg, seed=7), load_data(cfg, seed=7), load_data(cfg, seed=8)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.x_train, c.x_train)
    assert not torch.equal(a.x_test, c.x_test)


def test_digits_split_keeps_every_sample_once():
    cfg = {**_yaml("digits"), "standardize": False}
    a, b = load_data(cfg, seed=0), load_data(cfg, seed=1)

    def rows(d):
        x = torch.cat([d.x_train, d.x_test])
        y = torch.cat([d.y_train, d.y_test]).unsqueeze(1).float()
        return sorted(map(tuple, torch.cat([x, y], 1).tolist()))

    assert rows(a) == rows(b)  # another seed reshuffles the same samples


# --- max_train ----------------------------------------------------------------------------------

SMALL_GAUSSIAN = {"name": "gaussian", "n_train": 50, "n_test": 10, "dim": 4, "classes": 3, "standardize": False}


def test_max_train_limits_the_train_set_only():
    full = load_data(SMALL_GAUSSIAN, seed=0)
    limited = load_data({**SMALL_GAUSSIAN, "max_train": 20}, seed=0)
    assert limited.x_train.shape == (20, 4) and limited.y_train.shape == (20,)
    assert torch.equal(limited.x_train, full.x_train[:20])
    assert torch.equal(limited.x_test, full.x_test)


def test_max_train_above_the_size_keeps_everything_and_null_means_no_limit():
    assert load_data({**SMALL_GAUSSIAN, "max_train": 10_000}, seed=0).x_train.shape == (50, 4)
    assert load_data({**SMALL_GAUSSIAN, "max_train": None}, seed=0).x_train.shape == (50, 4)


def test_max_train_applies_before_standardization():
    d = load_data({**_yaml("digits"), "max_train": 100}, seed=0)
    assert d.x_train.shape == (100, 64)
    assert d.x_train.mean(0).abs().max().item() < 1e-4  # standardized with the 100 kept rows


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_bad_max_train_raises_config_error(bad):
    with pytest.raises(ConfigError, match="data.max_train"):
        check_group("data", {**SMALL_GAUSSIAN, "max_train": bad})


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({**SMALL_GAUSSIAN, "n_train": 0}, "data.n_train"),
        ({**SMALL_GAUSSIAN, "dim": 1.5}, "data.dim"),
        ({"name": "spirals", "classes": 0}, "data.classes"),
        ({"name": "spirals", "test_fraction": 1.0}, "data.test_fraction"),
        ({"name": "digits", "test_fraction": 0.0}, "data.test_fraction"),
    ],
)
def test_bad_synthetic_settings_raise_config_error(cfg, key):
    with pytest.raises(ConfigError, match=key):
        check_group("data", cfg)


# --- MNIST / Fashion-MNIST: tiny IDX files -------------------------------------------------------

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """The standard IDX encoding of a uint8 array: 0, 0, 0x08, ndim, big-endian uint32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    raw = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def write_mnist(root: Path, n_train: int = 20, n_test: int = 10, gz: bool = False, seed: int = 0) -> dict:
    """The four IDX files of a tiny MNIST-like set; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(root / name, array, gz=gz)
    return arrays


def test_idx_helper_writes_the_standard_header():
    raw = idx_bytes(np.zeros((2, 3, 4), np.uint8))
    assert raw[:4] == b"\x00\x00\x08\x03"
    assert raw[4:16] == b"\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04"
    assert len(raw) == 16 + 24


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_like_loads_idx_files(tmp_path, name, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    cfg = {**_yaml(name), "root": str(tmp_path), "standardize": False}
    d = load_data(cfg, seed=0)
    assert d.name == name and d.num_classes == 10
    assert d.x_train.shape == (20, 784) and d.x_test.shape == (10, 784)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    expected = torch.from_numpy(arrays[IDX_NAMES[0]].reshape(20, 784).astype(np.float32) / 255.0)
    assert torch.equal(d.x_train, expected)
    assert d.y_train.tolist() == arrays[IDX_NAMES[1]].tolist()
    assert d.y_test.tolist() == arrays[IDX_NAMES[3]].tolist()


def test_mnist_minimal_config_loads_and_standardizes(tmp_path):
    write_mnist(tmp_path)
    d = load_data({"name": "mnist", "root": tmp_path}, seed=0)
    assert d.x_train.shape == (20, 784) and d.x_test.shape == (10, 784)
    assert d.x_train.mean(0).abs().max().item() < 1e-4


def test_read_idx_reads_plain_and_gz(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", array)), array)
    assert np.array_equal(read_idx(write_idx(tmp_path / "b", array, gz=True)), array)


@pytest.mark.parametrize("missing", IDX_NAMES)
def test_missing_idx_file_names_the_file_and_the_absolute_folder(tmp_path, monkeypatch, missing):
    write_mnist(tmp_path / "sets" / "mnist")
    (tmp_path / "sets" / "mnist" / missing).unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_data({"name": "mnist", "root": "sets/mnist"}, seed=0)  # a relative root
    message = str(info.value)
    assert missing in message
    assert str((tmp_path / "sets" / "mnist").resolve()) in message


def test_missing_folder_names_the_absolute_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_data({"name": "fashion_mnist", "root": "nowhere"}, seed=0)
    assert "train-images-idx3-ubyte" in str(info.value)
    assert str(tmp_path.resolve() / "nowhere") in str(info.value)


def _assert_one_line_config_error(call, *fragments):
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_truncated_idx_data_raises_one_line_config_error(tmp_path, gz):
    write_mnist(tmp_path)
    raw = idx_bytes(np.zeros((20, 28, 28), np.uint8))[:-100]  # header intact, data short
    target = tmp_path / (IDX_NAMES[0] + (".gz" if gz else ""))
    (tmp_path / IDX_NAMES[0]).unlink(missing_ok=True)
    target.write_bytes(gzip.compress(raw) if gz else raw)
    _assert_one_line_config_error(lambda: load_data({"name": "mnist", "root": tmp_path}, seed=0),
                                  IDX_NAMES[0], "truncated")


def test_idx_cut_inside_the_header_raises_config_error(tmp_path):
    path = tmp_path / "cut"
    path.write_bytes(idx_bytes(np.zeros((20, 28, 28), np.uint8))[:8])  # magic + first dim only
    with pytest.raises(ConfigError):
        read_idx(path)


@pytest.mark.parametrize("content", ["cut_stream", "not_gzip", "corrupt_body"])
def test_broken_gz_raises_config_error(tmp_path, content):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    full = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    broken = {"cut_stream": full[: len(full) // 2], "not_gzip": b"this is not gzip data",
              "corrupt_body": full[:10] + bytes(b ^ 0xFF for b in full[10:-8]) + full[-8:]}  # zlib.error
    path.write_bytes(broken[content])
    _assert_one_line_config_error(lambda: read_idx(path), path.name)


@pytest.mark.parametrize(
    "head",
    [bytes([0, 0, 0x0D, 3]), bytes([0, 1, 0x08, 3]), b"GIF8"],  # float IDX, bad zero bytes, not IDX at all
    ids=["float_idx", "bad_zero_bytes", "not_idx"],
)
def test_wrong_magic_raises_one_line_config_error(tmp_path, head):
    write_mnist(tmp_path)
    path = tmp_path / IDX_NAMES[2]
    path.write_bytes(head + path.read_bytes()[4:])
    _assert_one_line_config_error(lambda: load_data({"name": "mnist", "root": tmp_path}, seed=0), IDX_NAMES[2])


def test_empty_idx_file_raises_config_error(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    _assert_one_line_config_error(lambda: read_idx(path), str(path))


def test_images_and_labels_of_different_length_raise_config_error(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / IDX_NAMES[1], np.zeros(19, np.uint8))
    _assert_one_line_config_error(lambda: load_data({"name": "mnist", "root": tmp_path}, seed=0), "train")


# --- CIFAR-10: tiny pickled batches --------------------------------------------------------------

CIFAR_N = 4  # images per batch


class _Py2StylePickler(pickle._Pickler):
    """Writes bytes as protocol-2 BINSTRING, as the original (Python 2 cPickle) CIFAR-10 files do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_bytes_as_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_bytes_as_str


def _dump(obj, style) -> bytes:
    if style == "py2":
        buffer = io.BytesIO()
        _Py2StylePickler(buffer, protocol=2).dump(obj)
        return buffer.getvalue()
    return pickle.dumps(obj, protocol=style)


def write_cifar(folder: Path, style=4, seed: int = 0) -> dict:
    """data_batch_1..5 and test_batch with CIFAR_N images each; returns the dicts written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (CIFAR_N, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, CIFAR_N)]}
        (folder / name).write_bytes(_dump(batch, style))
        batches[name] = batch
    return batches


@pytest.mark.parametrize("style", ["py2", 4], ids=["python2_cpickle_style", "protocol4"])
def test_cifar10_loads_pickled_batches(tmp_path, style):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", style=style)
    d = load_data({**_yaml("cifar10"), "root": str(tmp_path), "standardize": False}, seed=0)
    assert d.name == "cifar10" and d.num_classes == 10
    assert d.x_train.shape == (5 * CIFAR_N, 3072) and d.x_test.shape == (CIFAR_N, 3072)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    train = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert torch.equal(d.x_train, torch.from_numpy(train.astype(np.float32) / 255.0))
    assert d.y_train.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert d.y_test.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_loads_protocol_5_batches(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", style=5)
    d = load_data({"name": "cifar10", "root": str(tmp_path)}, seed=0)
    assert d.x_train.shape == (5 * CIFAR_N, 3072)


def test_cifar10_batches_directly_under_root(tmp_path):
    write_cifar(tmp_path)
    d = load_data({"name": "cifar10", "root": str(tmp_path)}, seed=0)
    assert d.x_train.shape == (5 * CIFAR_N, 3072)
    assert d.x_train.mean(0).abs().max().item() < 1e-4  # standardized by default


def test_cifar10_missing_batch_names_it(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(ConfigError) as info:
        load_data({"name": "cifar10", "root": str(tmp_path)}, seed=0)
    assert "data_batch_4" in str(info.value)
    assert str((tmp_path / "cifar-10-batches-py").resolve()) in str(info.value)


def test_cifar10_batch_of_wrong_shape_raises_config_error(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    bad = {b"data": np.zeros((CIFAR_N, 100), np.uint8), b"labels": [0] * CIFAR_N}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(bad, protocol=4))
    _assert_one_line_config_error(lambda: load_data({"name": "cifar10", "root": str(tmp_path)}, seed=0),
                                  "test_batch", "3072")


def _canary(marker: str) -> dict:  # what a malicious pickle would run
    Path(marker).write_text("executed")
    return {b"data": np.zeros((CIFAR_N, 3072), np.uint8), b"labels": [0] * CIFAR_N}


class _CallsCanary:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_canary, (self.marker,))


class _CallsOsSystem:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("payload", ["os_system", "test_function", "foreign_class"])
def test_cifar10_pickle_with_forbidden_global_is_refused_without_running_it(tmp_path, payload):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    evil, global_name = {
        "os_system": lambda: ({b"data": _CallsOsSystem(marker), b"labels": [0] * CIFAR_N}, "system"),
        "test_function": lambda: (_CallsCanary(marker), "_canary"),
        "foreign_class": lambda: (OrderedDict(
            [(b"data", np.zeros((CIFAR_N, 3072), np.uint8)), (b"labels", [0] * CIFAR_N)]), "OrderedDict"),
    }[payload]()
    # protocol 4 writes bytes keys natively, so the first global the loader meets is the forbidden one
    (folder / "data_batch_2").write_bytes(pickle.dumps(evil, protocol=4))
    message = _assert_one_line_config_error(
        lambda: load_data({"name": "cifar10", "root": str(tmp_path)}, seed=0), "data_batch_2")
    assert "refusing" in message and global_name in message
    assert not marker.exists()


def test_a_label_outside_the_classes_names_the_file(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / IDX_NAMES[3], np.array([1, 2, 200, 3, 4, 5, 6, 7, 8, 9], np.uint8))
    _assert_one_line_config_error(lambda: load_data({"name": "mnist", "root": tmp_path}, seed=0),
                                  "t10k-labels-idx1-ubyte", "label 200 at index 2", "outside the 10 classes 0..9")


def test_a_cifar_label_outside_the_classes_names_the_batch(tmp_path):
    batches = write_cifar(tmp_path)
    batch = {**batches["data_batch_3"], b"labels": [99] + batches["data_batch_3"][b"labels"][1:]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch))
    _assert_one_line_config_error(lambda: load_data({"name": "cifar10", "root": tmp_path}, seed=0),
                                  "data_batch_3", "label 99 at index 0")


def test_train_and_test_images_of_different_shapes_are_refused(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / IDX_NAMES[2], np.zeros((10, 32, 32), np.uint8))
    _assert_one_line_config_error(lambda: load_data({"name": "mnist", "root": tmp_path}, seed=0),
                                  "train inputs have (784,) features but test inputs (1024,)")
