"""A one-second CLI: ``--help``, ``--cfg``, ``--info`` and TAB completion load neither torch nor matplotlib.

Asserted on the modules a fresh process has loaded, not on time: a heavy import that slips back in
(at the top of cli.py, in a module it imports, in a Hydra plugin or resolver) fails here on any machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "matplotlib", "tensorboard", "numpy", "pandas", "sklearn", "scipy")

REPORT = f"import atexit, json, sys; atexit.register(lambda: print(json.dumps([m for m in {HEAVY!r} if m in sys.modules])))"


def loaded_heavy(code: str, tmp_path, **env: str) -> list[str]:
    """The heavy modules a fresh Python has loaded when ``code`` ends (its last stdout line)."""
    proc = subprocess.run([sys.executable, "-c", f"{REPORT}\n{code}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_console_script_loads_no_heavy_module(tmp_path):
    assert loaded_heavy("import layerscope.cli.main", tmp_path) == []
    assert loaded_heavy("import numpy", tmp_path) == ["numpy"]  # the check sees a heavy import


@pytest.mark.parametrize("argv", [
    ["experiment=he_relu", "--cfg", "job"],  # checks the experiment before Hydra starts, composes the config
    ["-sc", "query=bash"],                    # what the shell runs on TAB, the line so far in COMP_LINE
])
def test_showing_the_config_or_completing_loads_no_heavy_module(tmp_path, argv):
    code = f"import sys; sys.argv = ['layerscope', *{argv!r}]\nfrom layerscope.cli.main import cli\ncli()"
    line = "layerscope activation="
    assert loaded_heavy(code, tmp_path, COMP_LINE=line, COMP_POINT=str(len(line))) == []
