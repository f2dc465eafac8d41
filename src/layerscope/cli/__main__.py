"""``python -m layerscope.cli``: the ``layerscope`` command."""

from layerscope.cli.main import cli

cli()
