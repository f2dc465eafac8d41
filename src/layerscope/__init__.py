"""layerscope: see why a deep fully-connected network trains or fails."""

__version__ = "0.1.0"
