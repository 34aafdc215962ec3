"""Learner-against-N studies: presets against each other over N (``scale``), and DG-PG's alpha (``alpha``).

The headline claim of the method (``docs/method.md``): DG-PG converges in a few episodes at
every N, MAPPO and IPPO do not, even with 2.5 times the budget. The scale study runs that
comparison on a grid; the alpha study varies DG-PG's mixing weight at one N.

A study is a grid of **cells** (arm, N, seed). An *arm* is one learner setting
(:class:`~guidedmarl.studies.grid.settings.Arm`): a learner preset, a number of training
episodes and (alpha study) an alpha schedule. Every cell is one ordinary run of
:func:`guidedmarl.experiment.run_experiment` with its own run directory
``OUT/runs/<arm>/N<n>-s<seed>/``, which can be inspected or re-run alone with
``guidedmarl run --config OUT/runs/.../config.yaml``.

* **Scale** (``guidedmarl study scale``): arms are learner presets (``--algos``, default
  ``dgpg,mappo,ippo``; any of ``guidedmarl learners``, e.g. ``mfac``, ``dgpg_exact``). The
  guided presets (whose estimator uses the analytical model) train ``episodes`` episodes,
  the others ``round(episodes * baseline_budget)``. Fairness: the arms differ only in the
  learner and the number of episodes; networks, PPO settings, training and test scenarios
  and seeds are the same (one run configuration, ``--config`` / ``--set`` applied alike).
* **Alpha** (``guidedmarl study alpha``): DG-PG only, the configured schedule and constant
  alpha in ``alphas``; alpha = 0 is the ablation "descent term removed" (its advantage
  equals MAPPO's bit for bit).
* **Heuristics** are evaluated once per N on the learners' test scenarios (randomised rules
  seeded with the first study seed), cached as cells under ``OUT/heuristics/``.
* **Convergence**: :class:`~guidedmarl.convergence.ConvergenceCriterion` on each run's
  test-reward curve (episodes 1, 2, ...), floor and target the domain's
  ``floor_heuristic`` / ``target_heuristic`` unless ``--floor`` / ``--target`` say
  otherwise; a domain without them gets no convergence column (``n/a``).
* **Resuming** (:mod:`guidedmarl.studies.cells`): a finished cell (``cell.json`` in its run
  directory) is reused; one whose resolved configuration (without ``out`` and ``threads``)
  differs is an error naming the differing settings; an interrupted one runs again.

Outputs: ``<study>.md``, ``<study>.csv``, ``runs.csv``, ``<study>.json``, ``curves_N<n>.png``,
``episodes_to_converge.png``, ``marl_eval.json`` and ``command.txt`` (``docs/scale_study.md``).
"""

from guidedmarl.studies.grid.results import ArmSummary, CellResult, GridStudyResult
from guidedmarl.studies.grid.settings import AlphaSettings, Arm, GridSettings, ScaleSettings
from guidedmarl.studies.grid.study import run_alpha_study, run_grid_study, run_scale_study

__all__ = [
    "AlphaSettings",
    "Arm",
    "ArmSummary",
    "CellResult",
    "GridSettings",
    "GridStudyResult",
    "ScaleSettings",
    "run_alpha_study",
    "run_grid_study",
    "run_scale_study",
]
