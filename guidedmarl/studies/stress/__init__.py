"""The referee's stress test: does DG-PG survive a deliberately imperfect analytical model?

The method's guarantees assume the analytical model is right. This study replaces it by
the surrogates of :mod:`guidedmarl.analytical.surrogates` (a biased reference, a noisy
reference, a rounded, non-differentiable state map) and measures, for each *variant*,
the two claims that matter:

* **Variance** (estimator structure): the variance study
  (:mod:`guidedmarl.studies.variance`) on a reduced N grid (default 10, 100, 1000; R and T
  as that study's defaults), with the surrogate in the guidance estimator (b) and the mix
  (c). Recorded: the fitted slope of log(variance) and log(relative variance) against
  log(N) for (b) and (c), with bootstrap 95 % intervals (regression intervals in the JSON).
  (a) does not involve the model and is identical in every variant.
* **Learning** (alignment): DG-PG trained with :func:`guidedmarl.experiment.run_experiment`
  at one N (default 50, 10 episodes, seeds 0 1 2), every setting identical except the model.
  Recorded: best-checkpoint and final test reward, and the episodes to converge of
  :class:`~guidedmarl.convergence.ConvergenceCriterion` (band ``--tolerance``) on the
  test-reward curve of episodes 1..K (episode 0, the untrained policy, excluded), with the
  ``floor`` and ``target`` heuristics (default: the domain's own) of the same seed as floor
  and target. The same for a no-guidance reference learner (``--reference``, default
  MAPPO, which is DG-PG with alpha = 0).
* **Guidance agreement** (a cheap diagnostic): on the same sampled actions and states
  (8 training scenarios, T steps, at the learning N), the Pearson correlation of the
  surrogate's guidance weights with the exact ones over the agents that acted, and the
  fraction of exactly zero surrogate weights (the rounded map gives zero guidance wherever
  one job does not move a reading across a rounding step). Measured twice: with the fresh
  policy of the first seed, whose random dispatch puts the state far from the reference
  (large x - x_ref, so a shifted reference changes g little), and with the final policy of
  the exact model's run of that seed (``final.pt``), near the guidance target, where a
  surrogate's error weighs most. The weights are the trainer's
  (:func:`~guidedmarl.guidance.weights.guidance_weights` with the policy mean for
  continuous actions).

Heuristics are evaluated once per seed on the learners' test scenarios and cached as cells
under ``heuristics/`` (:class:`~guidedmarl.studies.cells.HeuristicCache`); their scores do
not depend on the learner, and the training runs do not evaluate them again.

Resuming (:mod:`guidedmarl.studies.cells`): every finished cell (a variant's variance
study; a (learner, variant, seed) run) stores its spec and result next to its outputs
(``cell.json``); a later call with the same settings reuses the cell, and runs again a cell
whose settings changed (torch threads excepted).

Outputs in ``out`` (default ``runs/stress-DOMAIN``): ``stress.md``, ``stress.csv``,
``stress.json``, ``stress_curves.png``, ``stress_variance.png``, ``command.txt``; per-cell
folders ``variance/VARIANT/`` and ``runs/LEARNER-VARIANT-sSEED/``.
"""

from guidedmarl.studies.stress.results import Learner, StressResult
from guidedmarl.studies.stress.settings import DEFAULT_SEEDS, DEFAULT_VARIANCE_AGENTS, DEFAULT_VARIANTS, StressSettings
from guidedmarl.studies.stress.study import guidance_agreement, run_stress_study

__all__ = [
    "DEFAULT_SEEDS",
    "DEFAULT_VARIANCE_AGENTS",
    "DEFAULT_VARIANTS",
    "Learner",
    "StressResult",
    "StressSettings",
    "guidance_agreement",
    "run_stress_study",
]
