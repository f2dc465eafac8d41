"""layerscope: see why a deep fully-connected network trains or fails.

``load_run``, ``load_sweep``, ``load_model`` and ``run`` (see ``layerscope.api``) load on first use, so that
importing the package (as the console scripts do) stays free of torch and matplotlib.
"""

from importlib.metadata import version

__version__ = version("layerscope")  # pyproject.toml's
__all__ = ["load_run", "load_sweep", "load_model", "run", "__version__"]

_API = ("load_run", "load_sweep", "load_model", "run")


def __getattr__(name: str):
    """``layerscope.load_run`` etc., imported from ``layerscope.api`` when first asked for."""
    if name in _API:
        from layerscope import api

        return getattr(api, name)
    raise AttributeError(f"module 'layerscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The package's names, the lazily loaded API's included."""
    return sorted([*globals(), *_API])
