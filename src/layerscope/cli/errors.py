"""One line, not a traceback, for the mistakes on the command line (unknown key or choice, bad syntax).

Hydra reports these through its ``run_and_report``, several lines long; layerscope
replaces that function (``config.hydra_hooks``) so the console script prints ``layerscope: error: <what> ...`` and exits 2.
``HYDRA_FULL_ERROR=1`` still shows Hydra's full report. ``check_command_line`` catches, before Hydra
starts, what Hydra misses or reports with a traceback: an unknown experiment, a sweep of no values,
-m with --cfg.
The console script imports this module before Hydra reads the command line: it stays free of torch.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any, Callable, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from layerscope.config.experiments import check_experiment
from layerscope.config.hydra_hooks import config_loader, parse_command_line, report_errors_with
from layerscope.errors import ConfigError
from layerscope.paths import choices

_hydras_report: Callable[[Callable[[], Any]], Any] = lambda func: func()  # Hydra's own, once installed

SYNTAX = ("quote it for the shell and write key=value, or with -m key=a,b,c or key=range(start,stop,step) "
          "(see https://hydra.cc/docs/advanced/override_grammar/extended/)")


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _unknown_key(err: ConfigKeyError | ConfigAttributeError) -> str:
    from layerscope.config.validate import key_hint  # torch: only once a key is refused

    key = err.full_key or str(err.key)
    parent = err.parent_node
    known = [str(k) for k in parent.keys()] if parent is not None and hasattr(parent, "keys") else []
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    close = difflib.get_close_matches(str(err.key), known, n=1)
    hint = f"did you mean {prefix}{close[0]}? " if close else ""
    keys = f"keys here: {', '.join(prefix + k for k in known)}" if known else "see layerscope --help"
    where = key_hint(key, parent.get("name") if "name" in known else None)
    return f"{key} is not a config key; {hint}{keys}" + (f"; {where}" if where else "")


def check_command_line(argv: Sequence[str]) -> None:
    """Refuse, before Hydra makes a folder, what it would report with a traceback or miss: two modes at
    once, an unknown experiment, a sweep with no value to run (an empty range or glob) or a step of 0."""
    args = parse_command_line(argv)
    given = {"--run": args.run, "-m": args.multirun, "--cfg": args.cfg is not None, "--info": args.info is not None,
             "--shell-completion": args.shell_completion}
    modes = [flag for flag, on in given.items() if on]
    if len(modes) > 1:
        raise ConfigError(f"{' and '.join(modes)} cannot be given together; give one (--cfg job without -m "
                          f"shows the config of one job: give one value per key)")
    _check_overrides(args.overrides)


def _check_overrides(overrides: Sequence[str]) -> None:
    parser = OverridesParser.create(config_loader=config_loader())
    for text in overrides:
        try:
            override = parser.parse_overrides([text])[0]
            values = list(override.sweep_string_iterator()) if override.is_discrete_sweep() else None
        except OverrideParseException:
            continue  # Hydra reports it in one line (``one_line``)
        except ValueError as err:
            raise ConfigError(f"{text}: {_first_line(err)}; {SYNTAX}") from err
        key = override.get_key_element().lstrip("+~")
        if override.is_interval_sweep() and choices(key):
            raise ConfigError(f"{text}: {key} is a choice of config files, not a number; list the choices to sweep, "
                              f"e.g. {key}={','.join(choices(key)[:2])} (layerscope --help lists them)")
        if values == []:
            raise ConfigError(f"{text} gives no value to sweep over; write range(start,stop) with start < stop "
                              f"(stop is left out), or a glob that matches a choice (layerscope --help lists them)")
        if key == "experiment" and not override.is_delete():
            for name in values or [override.get_value_element_as_str()]:
                check_experiment(name)


def _interval(argv: Sequence[str]) -> str:
    """``key=interval(a,b)`` given to the basic sweeper, which runs listed values only."""
    given = next((a for a in argv if "interval(" in a), "interval(...)")
    return (f"{given}: the basic sweeper runs listed values, not an interval; list values (key=a,b,c) or use "
            f"range(start,stop,step), or let Optuna search it: hydra/sweeper=optuna (pip install 'layerscope[optuna]')")


def one_line(err: BaseException) -> str | None:
    """The user's mistake in one line, or None when ``err`` is not a configuration mistake."""
    if isinstance(err, ConfigError):  # raised by layerscope's own code inside Hydra (the stacked launcher)
        return str(err)
    if isinstance(err, MissingConfigException) and err.options is not None:
        group, _, choice = str(err.missing_cfg_file).rpartition("/")
        plugin = " (or pip install 'layerscope[optuna]' to add optuna)" if group == "hydra/sweeper" else ""
        return f"{group}={choice} is not a choice; choose one of: {', '.join(err.options)}{plugin}"
    if isinstance(err, OverrideParseException):
        reason = _first_line(err.__cause__ if err.__cause__ is not None else err)
        return f"cannot read the override {err.override!r}: {reason}; {SYNTAX}"
    if isinstance(err, HydraException) and str(err).startswith("BasicSweeper does not support sweep type"):
        return _interval(sys.argv[1:])
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
            return _hydras_report(reraise)
        print(f"layerscope: error: {line}", file=sys.stderr)
        sys.exit(2)


def install() -> None:
    """Route Hydra's error reporting through ``run_and_report`` above."""
    global _hydras_report
    _hydras_report = report_errors_with(run_and_report)
