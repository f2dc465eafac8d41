"""A run folder: its files and status, ownership, checkpoints, job names, results, the TensorBoard writer."""
