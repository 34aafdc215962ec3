"""Measurement studies, run from the command line as ``guidedmarl study ...``.

* :mod:`guidedmarl.studies.variance`: per-agent policy-gradient variance against N for the
  shared-return, guidance and DG-PG estimators (``guidedmarl study variance``).
* :mod:`guidedmarl.studies.stress`: the referee's stress test: biased, noisy and rounded
  surrogate models against the exact one (``guidedmarl study stress``).
* :mod:`guidedmarl.studies.grid`: learner presets over N with the convergence definition,
  tables, curves and a marl-eval export (``guidedmarl study scale``), and the alpha study
  (``guidedmarl study alpha``).

What they share: :mod:`.cells` (a study is a list of cells, pure functions of a spec,
stored so that a study resumes; the heuristic cache), :mod:`.stats` (mean and spread over
seeds, power-law fits, bootstrap of slopes), :mod:`.base` (settings every study has, the
convergence floor and target), :mod:`.options` (command-line options generated from the
settings models), :mod:`.reporting` (output helpers) and :mod:`.marl_eval` (export).

Studies use only the domain, environment and analytical-model interfaces, so they work
for every registered domain.
"""
