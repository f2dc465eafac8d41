"""Fetch a dataset's files into a folder: each from its mirrors in order until one serves it with its
published MD5, written through a temporary file beside it; a tarball is then unpacked in that folder.

Every failure is a ``ConfigError`` of one line that names the file, the URLs tried and the folder where
the file can be put by hand; no partial file is left behind. Mirrors and MD5s are checked by
``layerscope.config.validate`` before any work.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

from tqdm import tqdm

from layerscope.errors import ConfigError
from layerscope.files import replacing

CHUNK = 1 << 20
TIMEOUT = 30  # seconds a mirror may stay silent before the next one is tried
ARCHIVES = (".tar.gz", ".tgz")
# Python before 3.10.12 / 3.11.4 has no extraction filters; _check_member is the guard there
SAFE = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class _Mismatch(ValueError):
    """A mirror served a file whose MD5 is not the published one."""


def fetch(mirrors: Sequence[str], files: Mapping[str, str], folder: Path) -> None:
    """Download each file (name -> MD5) into ``folder`` from the first mirror that serves it intact; unpack tarballs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {folder.resolve()} for the downloads ({err.strerror}); "
                          f"set data.root=<a folder you can write to>") from None
    for name, md5 in files.items():
        target = folder / name
        if not (target.is_file() and md5_of(target) == md5.lower()):  # a tarball put there by hand
            _from_mirrors([mirror.rstrip("/") + "/" + name for mirror in mirrors], target, md5.lower())
        if name.endswith(ARCHIVES):
            try:
                unpack(target, folder)
            finally:
                target.unlink(missing_ok=True)


def md5_of(path: Path) -> str:
    """The MD5 of a file, as 32 lowercase hex digits."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _from_mirrors(urls: list[str], target: Path, md5: str) -> None:
    tried = []
    for url in urls:
        try:
            _download(url, target, md5)
            return
        except (OSError, http.client.HTTPException, ValueError) as err:  # URLError and timeouts are OSErrors
            tried.append(f"{url} ({_reason(err)})")
    raise ConfigError(f"cannot download {target.name}: tried {', '.join(tried) or 'no mirror'}; "
                      f"put the file in {target.parent.resolve()} by hand")


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        text = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, urllib.error.URLError):
        text = str(err.reason)
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _download(url: str, target: Path, md5: str) -> None:
    """Stream ``url`` into a temporary file beside ``target`` with a progress bar; check its MD5, then rename it."""
    digest = hashlib.md5(usedforsecurity=False)
    with replacing(target) as part:  # a failure or an interrupt leaves no partial file behind
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response, open(part, "xb") as stream:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name, disable=None) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    stream.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise _Mismatch(f"MD5 {digest.hexdigest()}, published {md5}")


def unpack(archive: Path, folder: Path) -> None:
    """Extract a tarball into ``folder``; refuse all of it when one member would land outside the folder."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive, folder)
            with tempfile.TemporaryDirectory(dir=folder, prefix=".unpack-") as scratch:
                tar.extractall(scratch, members=members, **SAFE)
                _move_into(Path(scratch), folder)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ConfigError(f"{archive.name} cannot be unpacked into {folder.resolve()} "
                          f"({' '.join(str(err).split())}); put its files there by hand") from None


def _check_member(member: tarfile.TarInfo, archive: Path, folder: Path) -> None:
    """A member must be a file or folder at a relative path without '..' (a dataset needs no links)."""
    parts = PurePosixPath(member.name).parts
    inside = bool(parts) and not member.name.startswith(("/", "\\")) and ".." not in parts
    if not (inside and (member.isfile() or member.isdir())):
        kind = "file" if member.isfile() else "folder" if member.isdir() else "link or special file"
        raise ConfigError(f"refusing {archive.name}: its {kind} {repr(member.name)[:80]} could land outside "
                          f"{folder.resolve()} (only files and folders at relative paths without '..' are unpacked)")


def _move_into(source: Path, folder: Path) -> None:
    """Move every file under ``source`` to the same place under ``folder``, each with one atomic rename."""
    for here, _, names in os.walk(source):
        place = folder / Path(here).relative_to(source)
        place.mkdir(exist_ok=True)
        for name in names:
            os.replace(Path(here, name), place / name)
