"""Per-agent policy-gradient variance against N: shared return, guidance, and DG-PG.

The method's central claim (``docs/method.md``; method note): agent i's ordinary
policy-gradient estimate ``grad log pi_i * (shared return - baseline)`` has a variance
that grows like N, because the shared return carries the random actions of all N agents,
while the guidance estimate ``g_i * grad log pi_i`` touches only what agent i changes and
stays O(1). This package measures both, and the mixed DG-PG estimate, at a fixed policy
on any registered domain (only the :class:`~guidedmarl.domain.Domain`, environment and
:class:`~guidedmarl.analytical.AnalyticalModel` interfaces are used; no domain is
imported here).

What is measured, for each N of a list
---------------------------------------

* **Policy**: fixed. By default the freshly initialised policy of ``guidedmarl run`` with
  the same seed (the trainer is built by :func:`guidedmarl.experiment.build`, so the weights are
  bit for bit those a run starts from); or the actor of a checkpoint (``best.pt`` /
  ``final.pt`` of a run, see ``Trainer.state_dict``), loadable at a given N only if its
  weights fit: shared parameters (one network for every N whose observation size
  matches) or per-agent parameters saved at that very N.
* **Data**: R rollouts of T steps, played as R parallel environments of one batch. They
  are split into S scenario groups (``scenarios``, default 4) of R / S replicas: all
  replicas of a group replay the *same* scenario seed (the domain's first training
  scenarios of the run seed, ``Domain.train_seeds(0, S, seed)``), so within a group the
  exogenous inputs are identical and the only randomness is the agents' sampled actions.
  That is the noise the claim is about ("cross-agent noise"). Scenario-to-scenario
  differences of the return (e.g. a busier day) are a different source: a state-
  conditioned critic removes them in training, a per-step baseline cannot, and they are
  kept out of the measurement by computing every variance *within* groups (pooled over
  the S groups).
* **Horizon**: T = ``horizon`` (default 20, short: the claim is about the per-step
  structure, and the study must reach N = 1500 quickly). If the domain's settings have a
  field ``horizon`` it is set to T (unless ``--set domain_config.horizon=...`` gives a
  value and ``horizon`` is not set); otherwise the rollout stops after
  min(T, the environment's horizon) steps.
* **Score, in logit space**: for a discrete policy, the exact score of agent i's own
  action with respect to agent i's logits, ``s = onehot(a_i) - pi_i`` (a K-vector); for a
  Gaussian policy, the score with respect to the mean output, ``(a_i - mu_i) / sigma^2``.
  Why logit space: it is exact and costs nothing (no backward pass, no per-sample
  parameter gradients), and it is the same object for shared and per-agent parameters.
  The parameter-space gradient of agent i is this vector times the Jacobian of the
  network output with respect to the parameters, a factor that is identical for the three
  estimators (it multiplies the same score), so comparing estimators, and their scaling
  with N, in logit space compares exactly the part that differs. (With shared parameters
  the network sums all agents' terms; the per-agent quantity here is each agent's own
  contribution, the object of the claim.)
* **Per-agent gradient** of one rollout: ``grad_i = sum_t active_{i,t} s_{i,t} w_{i,t}``
  over the T steps (inactive agents' actions are ignored by the environment and by the
  trainer, so they contribute nothing), with the weight w of the estimator:

  (a) ``shared``: the discounted reward-to-go of the shared team reward (gamma =
      ``ppo.gamma``) minus a baseline: the mean of the reward-to-go at that step over the
      *other* replicas of the same scenario (leave-one-out; it equals the plain mean over
      replicas times R_g / (R_g - 1) and keeps the estimate unbiased, R_g = R / S);
  (b) ``guidance``: ``g_i`` from :func:`~guidedmarl.guidance.weights.guidance_weights` (the trainer's
      weight: its model, weight kind and, for continuous actions, the policy mean) minus
      its mean over all active samples of the batch (the centring of ``docs/method.md``:
      a constant, so E[s (g - c)] = E[s g]);
  (c) ``dgpg``: ``(1 - alpha) A_hat - alpha g_hat`` from
      :meth:`~guidedmarl.guidance.GuidedEstimator.advantage` (the library's own
      standardisation over the active samples of the batch, ``guidance.scaling`` and
      ``learner.estimator.weight`` of the configuration) with A the weight of (a)
      broadcast to every agent and g the raw guidance weight. alpha defaults to the
      configuration's schedule at the policy's training progress: 0.9 for the fresh
      policy with the default schedule (linear 0.9 -> 0.2), schedule(episode /
      (episodes - 1)) for a checkpoint.

* **Variance** of agent i: the trace of the covariance of ``grad_i`` over rollouts,
  estimated within each scenario group (unbiased, R_g - 1 denominator) and averaged over
  groups; reported as the mean over agents. Its standard error is a bootstrap over
  rollouts (replicas resampled within groups, ``bootstrap`` resamples; the weights are
  kept at their full-sample values; the debiased signal of a resample is bias-corrected,
  see :func:`.measure.bootstrap`); the CSV also gives the spread over agents
  (``se_agents`` = sd over agents / sqrt(N)), which measures heterogeneity, not precision.
* **Relative variance** (scale-free): ``mean_i Var_i / mean_i ||mu_i||^2`` with mu_i agent
  i's expected gradient. ``||mean||^2`` of R samples overestimates ``||mu||^2`` by
  ``Var / R``, which dominates exactly when the signal is weak (the shared return at large
  N), so the signal is debiased: ``||mean_i||^2 - Var_i / R``. It is aggregated as a ratio
  of averages over agents because a per-agent ratio explodes for agents whose signal is
  near zero. When the debiased signal is not positive the signal is not resolved at this
  R and the relative variance is reported as NaN (and left out of the fit); a one-sided
  95 % lower bound is always given (``relative_variance_lower95`` = Var / the 97.5 %
  bootstrap percentile of the signal), which stays informative when the signal is not
  resolved.

First-order bias (``first_order_bias``, on by default)
------------------------------------------------------

On the same samples the study also computes the guidance weight of the other kind, so
that it has both the paper's first-order g_i and the exact difference D_i (the drop of
the potential without agent i's option). D_i is unbiased for the gradient of E[phi]; g_i
is biased by E[s (g_i - D_i)], which for the quadratic potential is grad E[1/2 ||z_i||^2]
(docs/theory_tests.md). Reported per N (``variance.json`` ``first_order_bias``, the last
table of ``variance.md``): ||E b|| / ||E d|| with per-rollout logit-space gradients
b = sum_t s (g - D) and d = sum_t s D over every agent (weights centred; squared norms
with the noise term removed as for the signal above, 0 when the bias is below the noise),
its bootstrap 95 % interval, and cos(E f, E d) for f = sum_t s g. Measured at a
checkpoint it says how much of what the first-order weight descends is the preference
for small-effect options rather than the potential. Not measured with a noisy surrogate
(it draws a new reference at every call, so the two weights would see different noise).

Units (``reward_units``)
------------------------

The variance of (a) carries the square of the reward's units. ``"sum"`` (default)
multiplies the team reward by N: for a domain whose reward is a per-agent mean (the cloud
domain divides waiting jobs by the arrival rate, which grows with N) this undoes the
normalisation and gives the total over agents, the scale in which the claim "variance
O(N)" is stated; the raw per-agent-normalised reward has a variance that does not grow
with N because the normalisation divides it away (together with each agent's signal).
``"mean"`` uses the reward as the environment returns it. A domain whose reward is
already a sum over the system (the ``bins`` example: a sum over M ~ N bins) is in sum
units with ``"mean"``. (b) does not involve the reward; (c) is standardised, so it does
not depend on the reward units either. The relative variance is scale-free: identical in
both units.

Fits
----

``log(value) = intercept + slope * log(N)`` by least squares, per estimator and quantity,
with two 95 % intervals: the bootstrap percentile interval (the fit repeated on every
bootstrap resample; sampling noise of the rollouts) and the regression interval
(slope +- t_{n-2} * standard error; misfit of a pure power law over the N grid).

Imperfect models (``surrogate``)
--------------------------------

``surrogate`` (``--surrogate``) replaces the domain's analytical model by a deliberately
imperfect one, :func:`guidedmarl.analytical.surrogates.wrap_surrogate` with the run seed
(``guidance.surrogate`` of the run configuration; the trainer is built by
:func:`guidedmarl.experiment.build`, which applies it): a biased or noisy reference, or a rounded
state map. It changes (b) and (c) only; (a) does not involve the model, and the sampled
actions are the same as with the exact model (the surrogates draw from their own
generators). Given as text (:func:`parse_surrogate`): ``biased:beta=0.3``,
``biased:beta=1,direction=uniform``, ``noisy:sigma=0.3``, ``rounded:step=0.1``,
``exact``, or JSON such as ``{"kind": "noisy", "sigma": 0.3}``.

Modules: :mod:`.settings` (the settings model; surrogates given as text), :mod:`.measure`
(rollouts through :func:`guidedmarl.training.rollout.rollout`, weights, gradients, moments,
bootstrap), :mod:`.study` (the run), :mod:`.report` and :mod:`.plots` (outputs), :mod:`.cli`.
Statistics shared with the other studies (power-law fits, spreads) are in
:mod:`guidedmarl.studies.stats`.
"""

from guidedmarl.studies.stats import PowerLawFit, fit_power_law
from guidedmarl.studies.variance.results import ESTIMATORS, LABELS, VarianceStudyResult
from guidedmarl.studies.variance.settings import VarianceSettings, parse_surrogate, surrogate_dict, surrogate_label
from guidedmarl.studies.variance.study import run_variance_study

__all__ = [
    "ESTIMATORS",
    "LABELS",
    "PowerLawFit",
    "VarianceSettings",
    "VarianceStudyResult",
    "fit_power_law",
    "parse_surrogate",
    "run_variance_study",
    "surrogate_dict",
    "surrogate_label",
]
