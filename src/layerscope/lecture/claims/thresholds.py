"""The thresholds several chapters share: what the lecture's words mean in numbers, and the confidence of a
per-layer comparison. A threshold one chapter alone uses stands beside its check."""

CONFIDENCE_Z = 4.0
"""A per-layer ratio passes within 4 finite-width standard deviations of the theory's: a true claim fails
with probability about 6e-5 (normal tails)."""
STALLED = 0.95  # a loss still above 95% of ln(classes) has not learned
LEARNED = 0.5  # a loss below half of ln(classes) has
# What the lecture's words mean in numbers. These define the statements; they are not tolerances.
MOST = 0.5  # "most units": more than half
COLLAPSED = 0.01  # "collapses": layer 10 keeps under 1% of layer 1's std, two orders of magnitude lost
KEPT = 0.1  # "keeps the signal (or gradient)": layer 10 keeps over a tenth of layer 1's, under one order lost
