"""One line, not a traceback, for the mistakes Hydra itself catches (unknown key or choice, bad syntax).

Hydra reports these through ``hydra._internal.utils.run_and_report``, several lines long; layerscope
wraps that function so the console script prints ``layerscope: error: <what> ...`` and exits 2.
``HYDRA_FULL_ERROR=1`` still shows Hydra's full report.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any, Callable

import hydra._internal.utils as hydra_utils
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from layerscope.errors import ConfigError

_original = hydra_utils.run_and_report


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _unknown_key(err: ConfigKeyError | ConfigAttributeError) -> str:
    key = err.full_key or str(err.key)
    parent = err.parent_node
    known = [str(k) for k in parent.keys()] if parent is not None and hasattr(parent, "keys") else []
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    close = difflib.get_close_matches(str(err.key), known, n=1)
    hint = f"did you mean {prefix}{close[0]}? " if close else ""
    keys = f"keys here: {', '.join(prefix + k for k in known)}" if known else "see layerscope --help"
    return f"{key} is not a config key; {hint}{keys} (+{key}=... adds a new key)"


def one_line(err: BaseException) -> str | None:
    """The user's mistake in one line, or None when ``err`` is not a configuration mistake."""
    if isinstance(err, ConfigError):  # raised by layerscope's own code inside Hydra (the stacked launcher)
        return str(err)
    if isinstance(err, MissingConfigException) and err.options is not None:
        group, _, choice = str(err.missing_cfg_file).rpartition("/")
        return f"{group}={choice} is not a choice; choose one of: {', '.join(err.options)}"
    if isinstance(err, OverrideParseException):
        return f"cannot read the override: {_first_line(err)}"
    cause = err.__cause__ if err.__cause__ is not None else err
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and "not in struct" in str(cause):
        return _unknown_key(cause)
    if isinstance(err, (ConfigCompositionException, MissingConfigException)):
        detail = _first_line(cause) if cause is not err else ""
        return _first_line(err) + (f": {detail}" if detail and detail not in _first_line(err) else "")
    if isinstance(err, OmegaConfBaseException):
        return f"{_first_line(err)}" + (f" ({err.full_key})" if getattr(err, "full_key", None) else "")
    if isinstance(err, OSError) and err.filename:
        return (f"cannot write {err.filename}: {err.strerror}; set LAYERSCOPE_OUTPUTS (or hydra.run.dir) "
                f"to a folder you can write to")
    return None


def run_and_report(func: Callable[[], Any]) -> Any:
    """Hydra's ``run_and_report``, but a configuration mistake ends with one line and exit status 2."""
    try:
        return func()
    except Exception as err:  # noqa: BLE001 - classified below, anything else goes to Hydra's report
        line = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else one_line(err)
        if line is None:
            original_error = err

            def reraise() -> None:
                raise original_error
            return _original(reraise)
        print(f"layerscope: error: {line}", file=sys.stderr)
        sys.exit(2)


def install() -> None:
    """Route Hydra's error reporting through ``run_and_report`` above."""
    hydra_utils.run_and_report = run_and_report
