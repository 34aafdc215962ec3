"""`check_domain`: the self-test a domain author runs on their own domain (as gymnasium's ``check_env``).

Ten named checks, each passing or failing with one message that names the method and the shapes: four of
the environment, five of the analytical model (one, alignment, is a measured figure) and the guidance
weights. Model checks take random actions at the contexts of random-policy rollouts played by
:func:`guidedmarl.training.rollout.rollout`. docs/writing-a-domain.md describes each check.

This module holds the check names, :func:`check_domain` and the public names; :mod:`.report` the results
and message helpers, :mod:`.setup` the random policy and rollout helper, :mod:`.env_checks` and
:mod:`.model_checks` the checks themselves.
"""

from __future__ import annotations

# The check names and limits come before the submodule imports: env_checks and model_checks import them
# from this package.
ENV_CHECKS = ("env: step tensors", "env: bad actions refused", "env: horizon", "env: determinism")
STATE, INFLUENCE, EXOGENEITY, AFFINE, ALIGNMENT, GUIDANCE = MODEL_CHECKS = (
    "model: state and reference", "model: influence", "model: exogeneity", "model: affine in one-hot",
    "model: alignment", "guidance weights")
MAX_HORIZON_STEPS = 2000  # env: horizon plays at most this many steps
COPIES = 32  # single-agent changes per shared state in model: alignment (a batch of COPIES + 1)

from guidedmarl.checks.env_checks import _bad_actions, _determinism, _env_tensors, _horizon  # noqa: E402
from guidedmarl.checks.model_checks import _model_checks  # noqa: E402
from guidedmarl.checks.report import (  # noqa: E402
    CheckFailed, CheckReport, CheckResult, Status, _blame, _describe, _run)
from guidedmarl.checks.setup import ActionSampler, _Setup, random_actions  # noqa: E402
from guidedmarl.domain import Domain  # noqa: E402

__all__ = ["ActionSampler", "CheckReport", "CheckResult", "Status", "check_domain", "random_actions"]


def check_domain(
    domain: Domain,
    *,
    num_envs: int = 2,
    steps: int = 8,
    seed: int = 0,
    sample_actions: ActionSampler | None = None,
    alignment_samples: int = 256,
    alignment_threshold: float | None = None,
    rtol: float | None = None,
) -> CheckReport:
    """Check ``domain``'s environment, analytical model and guidance weights against the library's contract.

    Args:
        domain: the domain, built with small settings (e.g. ``MyDomain.from_config(6, {"horizon": 5})``).
        num_envs: E of the checked batch.
        steps: steps of each random-policy rollout that are checked (at most the horizon); ``env: horizon``
            plays one whole episode.
        seed: seeds the random actions; scenarios are ``domain.train_seeds(..., run_seed=seed)``.
        sample_actions: the random policy ``(env, generator) -> actions`` (default :func:`random_actions`);
            pass one if the environment accepts only some actions (e.g. bounded continuous ones).
        alignment_samples: n, the single-agent action changes measured by ``model: alignment``.
        alignment_threshold: fail ``model: alignment`` when its Spearman rho is below this (None: report only).
        rtol: tolerance of the numerical comparisons, relative to 1 + the largest magnitude compared
            (default 1000 machine epsilons of the model's dtype).

    The alignment figure. ``ceil(n / 32)`` shared states are made by 33 copies of one training scenario that
    take the same random actions up to a step t (spread over the first ``steps`` steps). At step t, 32 copies
    each change one random active agent's action (discrete: to another option, uniformly; continuous: to a
    fresh draw of the random policy) and one keeps the base action. For each change, dphi = phi(x', x_ref) -
    phi(x, x_ref) with phi = ``model.potential``, and dr = r' - r, the rewards of that step. Reported:
    Spearman's rank correlation rho of -dphi and dr over the n changes (ties get their mean rank; NaN when
    either never changes; +1: the more a change lowers phi, the more it raises the reward), the fraction
    ("agreement") of the changes that moved both by more than 1e-6 of their largest change in which the reward
    rose as phi fell or fell as it rose, n, and that count. Cost: ``n / 32`` resets and about ``n / 64 * steps``
    steps of a batch of 33 environments.
    """
    sample = sample_actions or random_actions
    report = CheckReport(domain.name or type(domain).__name__)

    def finish(reason: str) -> CheckReport:
        done = {r.name for r in report.results}
        report.results += [CheckResult(n, "skip", reason) for n in ENV_CHECKS + MODEL_CHECKS if n not in done]
        return report

    try:
        with _blame(f"{type(domain).__name__}.make_env"):
            env = domain.make_env(num_envs)
            pair = env if num_envs >= 2 else domain.make_env(2)
        if getattr(env, "num_envs", None) != num_envs:
            raise CheckFailed(f"{type(domain).__name__}.make_env({num_envs}) returned {type(env).__name__} with "
                              f"num_envs = {getattr(env, 'num_envs', None)}")
        s = _Setup(domain, env, pair, domain.train_seeds(0, num_envs, seed), min(steps, env.spec.horizon), sample,
                   seed, rtol)
    except Exception as exc:  # noqa: BLE001
        report.results.append(CheckResult(ENV_CHECKS[0], "fail", _describe(exc)))
        return finish(f"needs '{ENV_CHECKS[0]}'")
    report.results.append(_run(ENV_CHECKS[0], lambda: _env_tensors(s)))
    if not report.ok:
        return finish(f"needs '{ENV_CHECKS[0]}'")
    for name, check in zip(ENV_CHECKS[1:], (_bad_actions, _horizon, _determinism)):
        report.results.append(_run(name, lambda check=check: check(s)))
    try:
        with _blame(f"{type(domain).__name__}.make_model"):
            model = domain.make_model()
    except Exception as exc:  # noqa: BLE001
        report.results.append(CheckResult(STATE, "fail", _describe(exc)))
        return finish(f"needs '{STATE}'")
    if model is None:
        return finish(f"{type(domain).__name__}.make_model() returned None: the domain has no analytical model")
    report.results += _model_checks(model, s, report.results[-1].passed, alignment_samples, alignment_threshold)
    return finish(f"needs '{STATE}'")
