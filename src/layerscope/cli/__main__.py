"""``python -m layerscope.cli``: the ``layerscope`` command."""

from layerscope.cli.main import cli

if __name__ == "__main__":  # a process that imports this module (a spawned one may) must not run the command
    cli()
