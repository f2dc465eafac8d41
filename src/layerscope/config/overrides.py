"""Command-line overrides read by Hydra's own grammar, each distinct line once per process: its parser takes about a
millisecond a line, and a sweep's jobs, and the report that reads their folders, repeat the same few lines."""

from __future__ import annotations

import functools
import re
from typing import Iterable

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override


def parse(lines: Iterable[str]) -> list[Override]:
    """The overrides ``lines`` as Hydra parses them (``OverridesParser.parse_overrides``); shared, not to be changed."""
    return [_parse(str(line)) for line in lines]


@functools.lru_cache(maxsize=4096)
def _parse(line: str) -> Override:
    return OverridesParser.create().parse_overrides([line])[0]


def quoted(value: object) -> str:
    """``value`` as an override's value that Hydra reads back as it is: quoted when it holds anything Hydra would
    parse (a run's folder name holds ``,`` and ``=``)."""
    text = str(value)
    return text if re.fullmatch(r"[\w./~+-]*", text) else "'" + text.replace("'", "\\'") + "'"
