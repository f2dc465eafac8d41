"""``python -m layerscope.cli``: the ``layerscope`` command."""

from layerscope.cli.main import cli

if __name__ == "__main__":  # a worker process (figures) imports this module again: it must not run the command
    cli()
