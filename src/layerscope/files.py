"""Files written whole or not at all, JSON lines, and YAML as OmegaConf writes it.

Every JSON file is strict JSON: NaN and inf are written as null (readers take null back as NaN). A file is
replaced whole, through a temporary file and a rename, so a reader never sees half of one; a JSON-lines file
is appended a whole line at a time, and a line torn by a kill is skipped when read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import yaml
from omegaconf._utils import get_omega_conf_dumper  # the dumper OmegaConf.to_yaml uses
from omegaconf._utils import get_yaml_loader  # the loader OmegaConf.load uses


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; it replaces ``path`` when the block ends, and is removed if the
    block fails (an interrupt too). Its name is hidden and unique, so two writers never share one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, replacing it whole."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON to ``path``, replacing it whole."""
    write_text(path, json.dumps(_clean(data), indent=2, default=_jsonable, allow_nan=False) + "\n")


def json_line(row: dict) -> str:
    """One row of a JSON-lines file: strict JSON on one line, with its newline."""
    try:  # most rows hold no NaN or inf: written as they are, without walking them first
        return json.dumps(row, default=_jsonable, allow_nan=False) + "\n"
    except ValueError:
        return json.dumps(_clean(row), default=_jsonable, allow_nan=False) + "\n"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # a numpy or torch scalar
        return _clean(value.item())
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class JsonLines:
    """A JSON-lines file open for appending; each row is written whole and flushed."""

    def __init__(self, path: Path) -> None:
        self._stream = open(path, "a")

    def append(self, row: dict) -> None:
        """Write ``row`` as one line."""
        self._stream.write(json_line(row))
        self._stream.flush()

    def close(self) -> None:
        """Close the file."""
        self._stream.close()


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file ([] when there is none); a torn line is skipped."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def truncate_jsonl(path: Path, keep_below: int) -> list[dict]:
    """Drop the rows of a JSON-lines file whose ``step`` is >= ``keep_below``; return the rest."""
    if not path.exists():
        return []
    rows = [row for row in read_jsonl(path) if row.get("step", 0) < keep_below]
    write_text(path, "".join(json_line(row) for row in rows))
    return rows



class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """OmegaConf.load's reading of YAML (its float and no-timestamp rules) through libyaml where PyYAML has it: ~0.4 ms
    for a run's config.yaml against ~11 ms."""

    yaml_implicit_resolvers = get_yaml_loader().yaml_implicit_resolvers


def load_yaml(path: Path) -> Any:
    """A YAML file as plain data, the values OmegaConf.load would give (``OmegaConf.to_container`` of it: {} when
    empty)."""
    with open(path, encoding="utf-8") as stream:
        data = yaml.load(stream, Loader=_Loader)
    return {} if data is None else data


def read_yaml(path: Path) -> Any:
    """A YAML file Hydra wrote (``.hydra/*.yaml``, multirun.yaml) as plain data (``load_yaml``), None when it is
    missing; read once while it is unchanged (a sweep reads each job's several times). Shared: not to be modified."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read_yaml(str(path), stat.st_mtime_ns, stat.st_size)


_READ: dict[tuple[str, int, int], Any] = {}  # read_yaml's files, by path and version
_READ_KEPT = 1024


def _read_yaml(path: str, mtime_ns: int, size: int) -> Any:
    key = (path, mtime_ns, size)
    if key not in _READ:
        _keep(key, load_yaml(Path(path)))
    return _READ[key]


def _keep(key: tuple[str, int, int], data: Any) -> None:
    if len(_READ) >= _READ_KEPT:
        del _READ[next(iter(_READ))]
    _READ[key] = data


def write_yaml(path: Path, data: Any) -> None:
    """Write plain ``data`` as ``yaml_text``; ``read_yaml`` of the unchanged file then returns ``data`` itself, unparsed
    (a sweep writes each job's Hydra records, then reads them back). Shared from then on: not to be modified."""
    path.write_text(yaml_text(data), encoding="utf-8")
    stat = path.stat()
    _keep((str(path), stat.st_mtime_ns, stat.st_size), data)


class _CDumper(getattr(yaml, "CDumper", yaml.Dumper)):
    """OmegaConf's dumper on libyaml's emitter: the same text where every string is printable ASCII, ~3x faster."""


_CDumper.add_representer(str, get_omega_conf_dumper().str_representer)


def _dumper(data: Any) -> type:
    """libyaml's emitter where it writes what PyYAML's does (every string printable ASCII: it folds a string holding a
    newline elsewhere and escapes what lies beyond the BMP), else PyYAML's."""
    return _CDumper if _plain(data) else get_omega_conf_dumper()


def _plain(data: Any) -> bool:
    if isinstance(data, str):
        return data.isascii() and data.isprintable()
    if isinstance(data, dict):
        return all(k != "" and _plain(k) and _plain(v) for k, v in data.items())  # PyYAML writes "? ''" for ''
    if isinstance(data, (list, tuple)):
        return all(_plain(v) for v in data)
    return True


_YAML_ENTRIES: dict[tuple[str | None, str, str], str] = {}
_YAML_CACHE = 4096  # entries kept (a sweep's jobs share most of theirs)


def yaml_text(data: Any, within: str | None = None) -> str:
    """Plain ``data`` as ``OmegaConf.to_yaml`` writes a config holding it (nested under the key ``within``, when
    given). A mapping is emitted an entry at a time (the entries of its one entry, for hydra.yaml), and an entry seen
    before is not emitted again: PyYAML's emitter takes ~4 ms for a sweep job's hydra.yaml, whose entries but a few
    are every job's."""
    if within is None and isinstance(data, dict) and len(data) == 1:
        (key, value), = data.items()
        if isinstance(value, dict) and value:
            return yaml_text(value, within=key)
    if not isinstance(data, dict) or not data:
        return yaml.dump({within: data} if within else data, default_flow_style=False, allow_unicode=True,
                         sort_keys=False, Dumper=_dumper(data))
    parts = [f"{within}:\n"] if within else []
    for key, value in data.items():
        entry = (within, key, repr(value))
        if entry not in _YAML_ENTRIES:
            if len(_YAML_ENTRIES) >= _YAML_CACHE:
                _YAML_ENTRIES.clear()
            text = yaml.dump({within: {key: value}} if within else {key: value}, default_flow_style=False,
                             allow_unicode=True, sort_keys=False, Dumper=_dumper({key: value}))
            _YAML_ENTRIES[entry] = text.split("\n", 1)[1] if within else text
        parts.append(_YAML_ENTRIES[entry])
    return "".join(parts)
