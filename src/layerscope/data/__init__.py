"""Data sets as device tensors: the embedded digits, seeded Gaussian data, and checked downloads."""
