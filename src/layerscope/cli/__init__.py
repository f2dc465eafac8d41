"""The command line: `layerscope` (main), its one-line errors, and Hydra group options from every config repository."""
