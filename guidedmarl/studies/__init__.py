"""Measurement studies run from the command line as ``guidedmarl study ...``.

* :mod:`guidedmarl.studies.variance`: per-agent policy-gradient variance against N for the
  shared-return, guidance and DG-PG estimators (``guidedmarl study variance``).
* :mod:`guidedmarl.studies.stress`: the referee's stress test: biased, noisy and rounded
  surrogate models against the exact one (``guidedmarl study stress``).
* :mod:`guidedmarl.studies.grid`: learner presets over N with the convergence
  definition, tables, curves and a marl-eval export (``guidedmarl study scale``), and the
  alpha study (``guidedmarl study alpha``).

Studies use only the domain, environment and analytical-model interfaces, so they work
for every registered domain.
"""

from guidedmarl.studies.variance import (
    ESTIMATORS,
    PowerLawFit,
    VarianceStudyResult,
    VarianceStudySettings,
    fit_power_law,
    run_variance_study,
)

__all__ = [
    "ESTIMATORS",
    "PowerLawFit",
    "VarianceStudyResult",
    "VarianceStudySettings",
    "fit_power_law",
    "run_variance_study",
]
