"""Downloads of MNIST, Fashion-MNIST and CIFAR-10 (layerscope.data.download), against a loopback HTTP server
started here that serves tiny files of the real formats; the config's ``files`` table holds their MD5s.
Nothing leaves 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_data import CIFAR_N, IDX_NAMES, _yaml, idx_bytes, write_cifar

import layerscope.data.download
from layerscope.config.validate import check_group
from layerscope.data.datasets import load_data
from layerscope.errors import ConfigError

TARBALL = "cifar-10-python.tar.gz"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")  # a proxy in the environment must not see the loopback requests


@pytest.fixture
def server():
    """A loopback HTTP server: ``files`` maps a path to the bytes served there (404 elsewhere);
    ``requests`` lists the paths asked for, in order."""
    files: dict[str, bytes] = {}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_port}", files=files, requests=requests)
    httpd.shutdown()
    httpd.server_close()


def refused_url() -> str:
    """A loopback URL where nothing listens: the connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def serve_mnist(server, folder: str = "/good/", seed: int = 0) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The four gzipped IDX files of a tiny MNIST (20 train, 10 test) under ``folder``: (files table, arrays)."""
    rng = np.random.default_rng(seed)
    arrays = {IDX_NAMES[0]: rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              IDX_NAMES[1]: rng.integers(0, 10, 20, dtype=np.uint8),
              IDX_NAMES[2]: rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
              IDX_NAMES[3]: rng.integers(0, 10, 10, dtype=np.uint8)}
    table = {}
    for name, array in arrays.items():
        raw = gzip.compress(idx_bytes(array))
        server.files[folder + name + ".gz"] = raw
        table[name + ".gz"] = md5(raw)
    return table, arrays


def tarball(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, body in members:
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return buffer.getvalue()


def cifar_members(tmp_path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """cifar-10-batches-py/{data_batch_1..5,test_batch} as the real tarball holds them (CIFAR_N images each)."""
    write_cifar(tmp_path / "source", style="py2")
    members = []
    for path in sorted((tmp_path / "source").iterdir()):
        body = path.read_bytes()
        info = tarfile.TarInfo(f"cifar-10-batches-py/{path.name}")
        info.size = len(body)
        members.append((info, body))
    return members


def config(name: str, root: Path, mirrors: list[str], files: dict[str, str], **more) -> dict:
    cfg = {**_yaml(name), "root": str(root), "mirrors": mirrors, "files": files, "standardize": False, **more}
    check_group("data", cfg)  # what a run checks before any work
    return cfg


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".part"))


def one_line_error(cfg: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_data(cfg, seed=0)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- success ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_missing_idx_files_are_downloaded_then_loaded(server, tmp_path, name):
    table, arrays = serve_mnist(server)
    root = tmp_path / "data" / name  # created by the download
    d = load_data(config(name, root, [server.url + "/good/"], table), seed=0)
    assert d.x_train.shape == (20, 784) and d.x_test.shape == (10, 784) and d.num_classes == 10
    assert np.array_equal(d.x_train.numpy(), arrays[IDX_NAMES[0]].reshape(20, 784).astype(np.float32) / 255.0)
    assert d.y_test.tolist() == arrays[IDX_NAMES[3]].tolist()
    assert sorted(p.name for p in root.iterdir()) == sorted(table)
    assert all(md5((root / n).read_bytes()) == table[n] for n in table)
    assert sorted(server.requests) == sorted(f"/good/{n}" for n in table)


def test_cifar10_tarball_is_downloaded_unpacked_where_the_loader_reads_and_deleted(server, tmp_path):
    raw = tarball(cifar_members(tmp_path))
    server.files["/kriz/" + TARBALL] = raw
    root = tmp_path / "data"
    d = load_data(config("cifar10", root, [server.url + "/kriz/"], {TARBALL: md5(raw)}), seed=0)
    assert d.x_train.shape == (5 * CIFAR_N, 3072) and d.x_test.shape == (CIFAR_N, 3072)
    assert [p.name for p in root.iterdir()] == ["cifar-10-batches-py"]  # no tarball, no scratch folder
    assert len(list((root / "cifar-10-batches-py").iterdir())) == 6
    load_data(config("cifar10", root, [server.url + "/kriz/"], {TARBALL: md5(raw)}), seed=0)
    assert server.requests == ["/kriz/" + TARBALL]  # the unpacked batches count as present


def test_a_tarball_put_there_by_hand_is_unpacked_without_a_request(server, tmp_path):
    raw = tarball(cifar_members(tmp_path))
    root = tmp_path / "data"
    root.mkdir()
    (root / TARBALL).write_bytes(raw)
    d = load_data(config("cifar10", root, [server.url + "/kriz/"], {TARBALL: md5(raw)}), seed=0)
    assert d.x_train.shape == (5 * CIFAR_N, 3072)
    assert server.requests == []


def test_a_file_already_present_is_not_downloaded_again(server, tmp_path):
    table, _ = serve_mnist(server)
    root = tmp_path / "data"
    cfg = config("mnist", root, [server.url + "/good/"], table)
    load_data(cfg, seed=0)
    assert len(server.requests) == 4
    load_data(cfg, seed=0)
    assert len(server.requests) == 4
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    (root / "train-images-idx3-ubyte").write_bytes(gzip.decompress((root / "train-images-idx3-ubyte.gz").read_bytes()))
    (root / "train-images-idx3-ubyte.gz").unlink()  # the uncompressed file counts as present
    load_data(cfg, seed=0)
    assert server.requests[4:] == ["/good/t10k-labels-idx1-ubyte.gz"]


# --- mirrors in order ----------------------------------------------------------------------------

@pytest.mark.parametrize("first", ["404", "refused"])
def test_the_next_mirror_serves_when_the_first_fails(server, tmp_path, first):
    table, _ = serve_mnist(server)
    bad = server.url + "/missing/" if first == "404" else refused_url()
    d = load_data(config("mnist", tmp_path / "data", [bad, server.url + "/good/"], table), seed=0)
    assert d.x_train.shape == (20, 784)
    expected = [f"/good/{n}" for n in table] if first == "refused" else \
        [p for n in table for p in (f"/missing/{n}", f"/good/{n}")]
    assert server.requests == expected  # each file from the first mirror, then the second, in that order


def test_every_mirror_failing_names_the_file_each_url_and_the_folder(server, tmp_path):
    table, _ = serve_mnist(server)
    root = tmp_path / "data"
    refused = refused_url()
    message = one_line_error(config("mnist", root, [server.url + "/missing/", refused], table))
    first = "train-images-idx3-ubyte.gz"
    assert message.startswith(f"data=mnist: cannot download {first}: tried ")
    assert f"{server.url}/missing/{first} (HTTP 404 " in message and f"{refused}{first} (" in message
    assert f"put the file in {root.resolve()} by hand" in message
    assert list(root.iterdir()) == []


# --- nothing partial -----------------------------------------------------------------------------

def test_a_checksum_mismatch_is_refused_and_leaves_no_file(server, tmp_path):
    table, _ = serve_mnist(server)
    server.files["/other/train-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(np.zeros(20, np.uint8)))
    bad = {**table, "train-labels-idx1-ubyte.gz": md5(b"the published file")}
    root = tmp_path / "data"
    message = one_line_error(config("mnist", root, [server.url + "/good/", server.url + "/other/"], bad))
    name = "train-labels-idx1-ubyte.gz"
    assert f"cannot download {name}: tried {server.url}/good/{name} (MD5 " in message
    assert f"{server.url}/other/{name} (MD5 " in message and f"published {bad[name]}" in message
    assert str(root.resolve()) in message
    assert not (root / name).exists() and leftovers(root) == []


def test_an_interrupted_download_leaves_no_partial_file(server, tmp_path, monkeypatch):
    table, _ = serve_mnist(server)

    class Interrupted:
        def __init__(self, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(layerscope.data.download, "tqdm", Interrupted)
    root = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        load_data(config("mnist", root, [server.url + "/good/"], table), seed=0)
    assert list(root.iterdir()) == []


def test_download_false_makes_no_request_and_says_so(server, tmp_path):
    table, _ = serve_mnist(server)
    root = tmp_path / "data"
    message = one_line_error(config("mnist", root, [server.url + "/good/"], table, download=False))
    assert message.startswith(f"data=mnist: train-images-idx3-ubyte[.gz] not found in {root.resolve()}; ")
    assert "data.download=true" in message
    assert server.requests == [] and not root.exists()


# --- tarballs that would write outside the folder -------------------------------------------------

def _escaping(kind: str, outside: Path) -> tarfile.TarInfo:
    if kind in ("absolute", "dotdot", "nested_dotdot"):
        name = {"absolute": str(outside), "dotdot": "../outside",
                "nested_dotdot": "cifar-10-batches-py/../../outside"}[kind]
        info = tarfile.TarInfo(name)
        info.size = 5
        return info
    info = tarfile.TarInfo("cifar-10-batches-py/link")
    info.type = tarfile.SYMTYPE if kind.startswith("symlink") else tarfile.LNKTYPE
    info.linkname = {"symlink_absolute": str(outside), "symlink_dotdot": "../../outside",
                     "hardlink_dotdot": "../outside"}[kind]
    return info


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "nested_dotdot", "symlink_absolute", "symlink_dotdot",
                                  "hardlink_dotdot"])
def test_a_tarball_with_a_member_escaping_the_folder_is_refused(server, tmp_path, kind):
    outside = tmp_path / "outside"
    evil = _escaping(kind, outside)
    raw = tarball([*cifar_members(tmp_path), (evil, b"owned" if evil.isfile() else None)])
    server.files["/kriz/" + TARBALL] = raw
    root = tmp_path / "data"
    message = one_line_error(config("cifar10", root, [server.url + "/kriz/"], {TARBALL: md5(raw)}))
    assert message.startswith(f"data=cifar10: refusing {TARBALL}: its ") and repr(evil.name)[:80] in message
    assert not outside.exists() and not (tmp_path / "outside").exists()
    assert list(root.iterdir()) == []  # nothing unpacked, the tarball removed


def test_a_tarball_that_is_not_one_is_one_line(server, tmp_path):
    raw = b"not a tarball at all"
    server.files["/kriz/" + TARBALL] = raw
    root = tmp_path / "data"
    message = one_line_error(config("cifar10", root, [server.url + "/kriz/"], {TARBALL: md5(raw)}))
    assert f"{TARBALL} cannot be unpacked into {root.resolve()}" in message
    assert list(root.iterdir()) == []


# --- validation -----------------------------------------------------------------------------------

GOOD_MD5 = "f68b3c2dcbeaaa9fbdd348bbdeb94873"


@pytest.mark.parametrize("key, value, expected", [
    ("mirrors", ["ftp://example.org/mnist/"],
     "data.mirrors[0]='ftp://example.org/mnist/' must be an http:// or https:// URL"),
    ("mirrors", ["https://example.org/", "file:///tmp/mnist/"], "data.mirrors[1]='file:///tmp/mnist/' must be"),
    ("mirrors", ["example.org/mnist/"], "must be an http:// or https:// URL with a host"),
    ("mirrors", ["http:///mnist/"], "must be an http:// or https:// URL with a host"),
    ("mirrors", ["https://exa mple.org/"], "must be an http:// or https:// URL with a host"),
    ("mirrors", "https://example.org/mnist/", "must be a list of http(s) URLs"),
    ("mirrors", [], "data.mirrors=[] must be a list of http(s) URLs"),
    ("files", {"train-images-idx3-ubyte.gz": "f68b3c2d"},
     "data.files.train-images-idx3-ubyte.gz='f68b3c2d' must be an MD5"),
    ("files", {"a.gz": "g" * 32}, "must be an MD5: 32 hex digits"),
    ("files", {"a.gz": 12345}, "data.files.a.gz=12345 must be an MD5"),
    ("files", {"../a.gz": GOOD_MD5}, "data.files names '../a.gz'; a file name there holds no folder"),
    ("files", ["a.gz"], "must map file names to their MD5s"),
    ("download", "yes", "data.download='yes' must be true or false"),
])
def test_a_bad_mirror_md5_or_switch_is_refused_by_validation(key, value, expected):
    with pytest.raises(ConfigError) as info:
        check_group("data", {**_yaml("mnist"), key: value})
    assert expected in str(info.value) and "\n" not in str(info.value)


PUBLISHED = {
    "mnist": (["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
              ["f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
               "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"]),
    "fashion_mnist": (["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
                      ["8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                       "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"]),
}


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_the_shipped_configs_hold_the_standard_mirrors_and_published_md5s(name):
    cfg = _yaml(name)
    check_group("data", cfg)
    assert cfg["download"] is True
    if name == "cifar10":
        assert cfg["mirrors"] == ["https://www.cs.toronto.edu/~kriz/"]
        assert cfg["files"] == {TARBALL: "c58f30108f718f92721af3b95e74349a"}
    else:
        mirrors, md5s = PUBLISHED[name]
        assert cfg["mirrors"] == mirrors
        assert cfg["files"] == dict(zip((n + ".gz" for n in IDX_NAMES), md5s))
