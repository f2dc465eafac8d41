"""The checks that decide each lecture claim from the runs' own recorded statistics, one module per chapter.

Every check has the interface ``check(results, out) -> Verdict``: ``results`` maps a variant's
label to its ``RunResult`` and ``out`` is the experiment's folder for figures. Thresholds come
from the mean-field theory recorded with the run (``theory_*``) or from relations between runs;
the few fixed tolerances are named constants, beside the check that uses them (the shared ones in verdict.py).
"""

from layerscope.lecture.claims import (  # noqa: F401 - each registers its checks
    activations,
    gradients,
    initialization,
    losses,
    normalization,
    optimizers,
    papers,
    regularization,
    simulated,
)
from layerscope.lecture.claims.verdict import CHECKS, CONTRADICTS, FAIL, INCONCLUSIVE, OUTCOMES, PASS, Part, Verdict

__all__ = ["CHECKS", "CONTRADICTS", "FAIL", "INCONCLUSIVE", "OUTCOMES", "PASS", "Part", "Verdict"]
