"""Per-agent policy-gradient variance against N: shared return, guidance, and DG-PG.

The method's central claim (``docs/method.md``; method note): agent i's ordinary
policy-gradient estimate ``grad log pi_i * (shared return - baseline)`` has a variance
that grows like N, because the shared return carries the random actions of all N agents,
while the guidance estimate ``g_i * grad log pi_i`` touches only what agent i changes and
stays O(1). This module measures both, and the mixed DG-PG estimate, at a fixed policy
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
  (b) ``guidance``: ``g_i`` from ``guidance_weights(model, actions, env.model_context())`` minus
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
  see ``_bootstrap``); the CSV also gives the spread over agents
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
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

import yaml
from pydantic import TypeAdapter, ValidationError

from guidedmarl.analytical.surrogates import BiasedConfig, NoisyConfig, RoundedConfig, SurrogateConfig
from guidedmarl.config import (
    ConfigError,
    RunConfig,
    build_config,
    deep_merge,
    format_validation_error,
    load_config_file,
)
from guidedmarl.domain import Domain, get_domain
from guidedmarl.env import MultiAgentVecEnv
from guidedmarl.guidance.estimator import GuidedEstimator
from guidedmarl.guidance.schedules import ConstantAlpha
from guidedmarl.studies.common import command_block, finite_or_null, interval_text, machine_info, slope_label
from guidedmarl.studies.common import write_command_file
from guidedmarl.training.networks import Actor
from guidedmarl.training.trainer import Trainer
from guidedmarl.guidance.weights import guidance_weights

ESTIMATORS: tuple[str, ...] = ("shared", "guidance", "dgpg")
LABELS = {"shared": "(a) shared return", "guidance": "(b) guidance", "dgpg": "(c) DG-PG mixed"}
COLOURS = {"shared": "tab:red", "guidance": "tab:blue", "dgpg": "tab:purple"}
DEFAULT_AGENTS: tuple[int, ...] = (10, 30, 100, 300, 1000, 1500)
DEFAULT_HORIZON = 20
RewardUnits = Literal["sum", "mean"]
SURROGATE_EXAMPLES = 'biased:beta=0.3, noisy:sigma=0.3, rounded:step=0.1, exact, or JSON {"kind": "noisy", "sigma": 0.3}'
_SURROGATE_ADAPTER: TypeAdapter[Any] = TypeAdapter(SurrogateConfig)


# ------------------------------------------------------------------ surrogate models
def parse_surrogate(spec: Any) -> BiasedConfig | NoisyConfig | RoundedConfig | None:
    """A surrogate model's settings from text, a dict or a config object (None: exact model).

    Text: ``KIND`` or ``KIND:key=value,key=value`` (values parsed as YAML), ``exact`` /
    ``none`` for the exact model, or a JSON object. Validated by the pydantic
    ``SurrogateConfig``; any problem raises :class:`ConfigError` naming the field.
    """
    if spec is None or isinstance(spec, BiasedConfig | NoisyConfig | RoundedConfig):
        return spec
    data: Any = spec
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() in ("", "exact", "none"):
            return None
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"surrogate {text!r}: invalid JSON ({exc}); expected e.g. {SURROGATE_EXAMPLES}") from None
        else:
            kind, _, rest = text.partition(":")
            data = {"kind": kind.strip()}
            for part in rest.split(","):
                if not part.strip():
                    continue
                if "=" not in part:
                    raise ConfigError(
                        f"surrogate {text!r}: expected key=value after '{kind}:', got {part.strip()!r}; "
                        f"e.g. {SURROGATE_EXAMPLES}"
                    )
                key, raw = part.split("=", 1)
                try:
                    data[key.strip()] = yaml.safe_load(raw)
                except yaml.YAMLError:
                    data[key.strip()] = raw.strip()
    if not isinstance(data, dict):
        raise ConfigError(f"surrogate {spec!r}: expected a mapping or text such as {SURROGATE_EXAMPLES}")
    if data.get("kind") in ("exact", "none", None) and set(data) <= {"kind"}:
        return None
    try:
        return _SURROGATE_ADAPTER.validate_python(data)
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(err, f"surrogate {spec!r}") + f"\n  (expected e.g. {SURROGATE_EXAMPLES})"
        ) from None


def surrogate_dict(spec: Any) -> dict[str, Any] | None:
    """The validated surrogate as a plain dict (None: exact model)."""
    cfg = parse_surrogate(spec)
    return None if cfg is None else cfg.model_dump(mode="json")


def surrogate_label(spec: Any) -> str:
    """Short readable name: ``exact``, ``biased beta=0.3``, ``noisy sigma=1``, ``rounded step=0.1``."""
    cfg = parse_surrogate(spec)
    if cfg is None:
        return "exact"
    if isinstance(cfg, BiasedConfig):
        return f"biased beta={cfg.beta:g}" + ("" if cfg.direction == "random" else f" ({cfg.direction})")
    if isinstance(cfg, NoisyConfig):
        return f"noisy sigma={cfg.sigma:g}"
    return f"rounded step={cfg.step:g}"


# ------------------------------------------------------------------ settings and results
@dataclass
class VarianceStudySettings:
    """What ``guidedmarl study variance`` runs (see the module docstring for every choice).

    Attributes:
        domain: registered domain (None: ``run_config["domain"]``, else ``cloud``).
        agents: the N grid.
        rollouts: R, parallel rollouts per N (a multiple of ``scenarios``, >= 2 per group).
        scenarios: S, scenario groups; the replicas of a group share the scenario seed.
        horizon: T (None: an explicit ``domain_config.horizon`` of ``run_config``, else 20).
        seed: run seed: policy initialisation, scenarios, action sampling, bootstrap.
        alpha: mixing weight of (c) (None: the configured schedule at the policy's progress).
        reward_units: ``"sum"`` (team reward times N) or ``"mean"`` (as returned).
        checkpoint: a trainer checkpoint whose actor is the fixed policy (None: fresh).
        bootstrap: bootstrap resamples for standard errors and slope intervals.
        threads: torch intra-op threads (None: torch's default).
        out: output directory (None: ``runs/variance-DOMAIN``).
        run_config: ``RunConfig``-shaped settings (``domain_config``, ``ppo``, ``guidance``...),
            e.g. from ``--config`` and ``--set``; a checkpoint's ``config.yaml`` (same
            folder) is read first and these win over it.
        command: the command line, written to ``command.txt``.
        surrogate: an imperfect model used by (b) and (c) instead of the exact one (text,
            dict or config, see :func:`parse_surrogate`); it replaces any
            ``guidance.surrogate`` of ``run_config`` (``"exact"`` removes it). None:
            ``run_config`` decides (exact by default).
    """

    domain: str | None = None
    agents: list[int] = field(default_factory=lambda: list(DEFAULT_AGENTS))
    rollouts: int = 64
    scenarios: int = 4
    horizon: int | None = None
    seed: int = 0
    alpha: float | None = None
    reward_units: RewardUnits = "sum"
    checkpoint: Path | None = None
    bootstrap: int = 200
    threads: int | None = None
    out: Path | None = None
    run_config: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    surrogate: Any = None

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first unusable value."""
        if not self.agents:
            raise ConfigError("agents: give at least one N")
        if any(int(n) < 1 for n in self.agents):
            raise ConfigError(f"agents: every N must be >= 1, got {self.agents}")
        if self.scenarios < 1:
            raise ConfigError(f"scenarios: must be >= 1, got {self.scenarios}")
        if not 2 <= self.rollouts <= 4096:
            raise ConfigError(f"rollouts: must lie in [2, 4096] (parallel environments), got {self.rollouts}")
        if self.rollouts % self.scenarios or self.rollouts // self.scenarios < 2:
            raise ConfigError(
                f"rollouts ({self.rollouts}) must be a multiple of scenarios ({self.scenarios}) with at least "
                "2 replicas per scenario (variances are computed within scenarios)"
            )
        if self.horizon is not None and self.horizon < 1:
            raise ConfigError(f"horizon: must be >= 1, got {self.horizon}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha: must lie in [0, 1], got {self.alpha}")
        if self.reward_units not in ("sum", "mean"):
            raise ConfigError(f"reward_units: must be 'sum' or 'mean', got {self.reward_units!r}")
        if self.bootstrap < 0:
            raise ConfigError(f"bootstrap: must be >= 0, got {self.bootstrap}")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise ConfigError(f"checkpoint not found: {self.checkpoint}")
        parse_surrogate(self.surrogate)


@dataclass
class PowerLawFit:
    """``log y = intercept + slope log N`` by least squares."""

    slope: float
    intercept: float
    se: float  # regression standard error of the slope (nan with fewer than 3 points)
    ci_low: float  # slope - t_{n-2, 0.975} se
    ci_high: float
    points: int
    boot_low: float = float("nan")  # bootstrap percentile interval (2.5 %, 97.5 %)
    boot_high: float = float("nan")
    boot_used: int = 0  # bootstrap resamples in which every point was usable


@dataclass
class VarianceStudyResult:
    out: Path
    rows: list[dict[str, Any]]
    fits: dict[str, dict[str, PowerLawFit]]  # quantity -> estimator -> fit
    seconds: float
    per_n_seconds: dict[int, float]


# ------------------------------------------------------------------ statistics
def fit_power_law(ns: Any, values: Any) -> PowerLawFit:
    """Least-squares slope of log(values) against log(ns) (all values must be > 0)."""
    from scipy import stats

    x = np.log(np.asarray(ns, dtype=np.float64))
    y = np.log(np.asarray(values, dtype=np.float64))
    n = x.size
    if n < 2 or np.ptp(x) == 0:
        nan = float("nan")
        return PowerLawFit(nan, nan, nan, nan, nan, int(n))
    xm = x - x.mean()
    slope = float((xm * (y - y.mean())).sum() / (xm * xm).sum())
    intercept = float(y.mean() - slope * x.mean())
    if n > 2:
        resid = y - intercept - slope * x
        se = float(math.sqrt((resid * resid).sum() / (n - 2) / (xm * xm).sum()))
        half = float(stats.t.ppf(0.975, n - 2)) * se
    else:
        se = half = float("nan")
    return PowerLawFit(slope, intercept, se, slope - half, slope + half, int(n))


def _bootstrap_slopes(ns: list[int], samples: np.ndarray) -> np.ndarray:
    """Slopes of log(samples[b]) vs log(ns) for every resample b whose values are all > 0."""
    if samples.size == 0:
        return np.zeros(0)
    ok = np.all(np.isfinite(samples) & (samples > 0), axis=1)
    if not ok.any():
        return np.zeros(0)
    x = np.log(np.asarray(ns, dtype=np.float64))
    xm = x - x.mean()
    y = np.log(samples[ok])
    return ((y - y.mean(axis=1, keepdims=True)) * xm).sum(axis=1) / (xm * xm).sum()


@dataclass
class _Stats:
    variance: float
    se_agents: float
    signal: float
    relative: float


def _agent_moments(grads: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Per-agent trace of the within-group covariance and debiased squared mean norm.

    ``grads``: ``[R, N, K]`` float64, rollouts ordered group-major.
    """
    r = grads.shape[0]
    g = grads.reshape(groups, r // groups, *grads.shape[1:])
    var = g.var(dim=1, unbiased=True).sum(-1).mean(0)  # [N]
    signal = grads.mean(0).square().sum(-1) - var / r  # [N]
    return var, signal


def _summary(var: Tensor, signal: Tensor) -> _Stats:
    n = var.numel()
    v, s = float(var.mean()), float(signal.mean())
    se_agents = float(var.std()) / math.sqrt(n) if n > 1 else float("nan")
    return _Stats(v, se_agents, s, v / s if s > 0 else float("nan"))


def _bootstrap(
    grads: Tensor, groups: int, resamples: int, gen: torch.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean variance, relative variance and signal on ``resamples`` rollout resamples (within groups)."""
    r = grads.shape[0]
    reps = r // groups
    offsets = (torch.arange(groups) * reps).unsqueeze(1)
    variances, relatives, signals = np.empty(resamples), np.empty(resamples), np.empty(resamples)
    for b in range(resamples):
        idx = (torch.randint(reps, (groups, reps), generator=gen) + offsets).reshape(-1)
        var, signal = _agent_moments(grads[idx], groups)
        # a resample's mean scatters around the sample mean by Var / R, so its debiased
        # signal is centred on ||mean||^2, i.e. Var / R above the estimate: subtract it once
        # more (bootstrap bias correction), so that the replicates centre on the estimate
        st = _summary(var, signal - var / r)
        variances[b], relatives[b], signals[b] = st.variance, st.relative, st.signal
    return variances, relatives, signals


# ------------------------------------------------------------------ rollouts
@dataclass
class _Batch:
    """One batch of R rollouts of T steps at one N."""

    scores: list[Tensor]  # T x [R, N, K]: score of the own action in output space
    active: Tensor  # [T, R, N] bool
    guidance: Tensor  # [T, R, N] raw g (0 where inactive)
    rewards: Tensor  # [T, R] float64, as the environment returns them


def _score(actor: Actor, dist: torch.distributions.Distribution, actions: Tensor) -> Tensor:
    """d log pi(a) / d(network output): onehot - probs (logits) or (a - mu) / sigma^2 (mean)."""
    if actor.discrete:
        probs = dist.probs  # type: ignore[attr-defined]
        return torch.nn.functional.one_hot(actions.long(), probs.shape[-1]).to(probs.dtype) - probs
    return (actions - dist.mean) / dist.variance


@torch.no_grad()
def _collect(trainer: Trainer, env: MultiAgentVecEnv, seeds: list[int], steps: int) -> _Batch:
    actor, model = trainer.actor, trainer.estimator.model
    assert model is not None
    exact = trainer.estimator.exact_difference  # type: ignore[attr-defined]
    step = env.reset(seeds)
    scores: list[Tensor] = []
    active, guidance, rewards = [], [], []
    for _ in range(steps):
        dist = actor.distribution(step.obs)
        actions = dist.sample()
        scores.append(_score(actor, dist, actions))
        g = guidance_weights(model, actions, env.model_context(), exact_difference=exact)
        if g.shape != step.active.shape:
            raise ConfigError(
                f"guidance weights of shape {tuple(g.shape)} (one per action dimension) are not supported: "
                "the study, like the trainer, needs one scalar g per agent"
            )
        active.append(step.active.clone())
        guidance.append(g * step.active)
        step = env.step(actions)
        if not torch.isfinite(step.reward).all():
            raise ValueError("the environment returned a NaN or infinite reward")
        rewards.append(step.reward.to(torch.float64))
    return _Batch(scores, torch.stack(active), torch.stack(guidance), torch.stack(rewards))


def _weights(
    batch: _Batch, groups: int, gamma: float, reward_scale: float, estimator: GuidedEstimator
) -> dict[str, Tensor]:
    """Per-sample weights ``[T, R, N]`` of the three estimators (float64)."""
    rewards = batch.rewards * reward_scale
    steps, r = rewards.shape
    rtg = torch.zeros_like(rewards)
    running = torch.zeros(r, dtype=torch.float64)
    for t in reversed(range(steps)):
        running = rewards[t] + gamma * running
        rtg[t] = running
    reps = r // groups
    grouped = rtg.reshape(steps, groups, reps)
    loo = (grouped.sum(-1, keepdim=True) - grouped) / (reps - 1)  # mean of the other replicas
    shared = (grouped - loo).reshape(steps, r)  # [T, R]

    mask = batch.active
    n = mask.shape[-1]
    maskf = mask.to(torch.float64)
    g = batch.guidance.to(torch.float64)
    g_mean = (g * maskf).sum() / maskf.sum().clamp_min(1.0)
    shared_agents = shared.unsqueeze(-1).expand(steps, r, n)
    mixed = estimator.advantage(shared_agents, {"guidance": g}, mask, progress=0.0)
    return {
        "shared": shared_agents * maskf,
        "guidance": (g - g_mean) * maskf,
        "dgpg": mixed * maskf,
    }


def _gradients(batch: _Batch, weights: Tensor) -> Tensor:
    """``grad_i = sum_t s_{i,t} w_{i,t}`` per rollout: ``[R, N, K]`` float64."""
    grads = torch.zeros(*batch.scores[0].shape, dtype=torch.float64)
    for t, s in enumerate(batch.scores):
        w = weights[t]
        grads += s.to(torch.float64) * w.unsqueeze(-1)
    return grads


# ------------------------------------------------------------------ configuration
def _checkpoint_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file or not a torch checkpoint
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} is not a trainer checkpoint (Trainer.state_dict)")
    if "actor" not in state:
        raise ConfigError(f"{path} holds no 'actor' weights: expected a checkpoint written by `guidedmarl run`")
    return state


def _base_config(settings: VarianceStudySettings) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if settings.checkpoint is not None:
        sibling = Path(settings.checkpoint).parent / "config.yaml"
        if sibling.is_file():
            data = load_config_file(sibling)
    return deep_merge(data, settings.run_config)


def _horizon(settings: VarianceStudySettings) -> int:
    if settings.horizon is not None:
        return settings.horizon
    explicit = settings.run_config.get("domain_config", {})
    if isinstance(explicit, dict) and "horizon" in explicit:
        return int(explicit["horizon"])
    return DEFAULT_HORIZON


def _config_for(settings: VarianceStudySettings, base: dict[str, Any], n: int, horizon: int) -> RunConfig:
    data = deep_merge(base, {})
    data["domain"] = settings.domain or data.get("domain", "cloud")
    domain_cls = get_domain(data["domain"])
    if "horizon" in domain_cls.settings_model.model_fields:
        data["domain_config"] = deep_merge(data.get("domain_config", {}) or {}, {"horizon": horizon})
    data.update(agents=n, envs=settings.rollouts, seed=settings.seed, algo="dgpg")
    if settings.surrogate is not None:  # replaces (does not merge with) a configured surrogate; "exact" removes it
        data["guidance"] = {**(data.get("guidance") or {}), "surrogate": surrogate_dict(settings.surrogate)}
    data["threads"] = settings.threads
    data["out"] = str(settings.out or "runs/variance")
    return build_config(data, "study settings")


def _load_actor(trainer: Trainer, state: dict[str, Any], n: int, path: Path) -> None:
    actor_state = state["actor"]
    own = trainer.actor.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in actor_state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    missing = sorted(set(own) ^ set(actor_state))
    if bad or missing:
        why = "; ".join(bad[:3] + [f"unmatched keys {missing}"] * bool(missing))
        raise ConfigError(
            f"checkpoint {path} does not fit the policy at N = {n} ({why}). A checkpoint can be used at "
            "another N only with shared parameters and the same observation size; per-agent weights only at "
            "their own N (choose --agents accordingly)"
        )
    trainer.actor.load_state_dict(actor_state)


def _alpha(settings: VarianceStudySettings, cfg: RunConfig, state: dict[str, Any] | None) -> tuple[float, float]:
    """(alpha, training progress it corresponds to)."""
    progress = 0.0
    if state is not None:
        progress = min(1.0, float(state.get("episode", 0)) / max(1, cfg.episodes - 1))
    if settings.alpha is not None:
        return settings.alpha, progress
    return float(cfg.learner.estimator.alpha(progress)), progress


# ------------------------------------------------------------------ the study
def run_variance_study(
    settings: VarianceStudySettings, on_progress: Callable[[str], None] | None = None
) -> VarianceStudyResult:
    """Measure the per-agent gradient variance of the three estimators at every N; write ``out``.

    Seeds the global random generators (like ``guidedmarl run``) and, if ``threads`` is
    given, sets torch's thread count.
    """
    settings.check()
    say = on_progress or (lambda msg: None)
    start = time.perf_counter()
    agents = sorted({int(n) for n in settings.agents})
    horizon = _horizon(settings)
    base = _base_config(settings)
    domain_name = settings.domain or base.get("domain", "cloud")
    out = Path(settings.out) if settings.out is not None else Path(f"runs/variance-{domain_name}")
    surrogate = None if settings.surrogate is None else (surrogate_dict(settings.surrogate) or "exact")
    settings = replace(settings, out=out, agents=agents, surrogate=surrogate)
    state = _checkpoint_state(Path(settings.checkpoint)) if settings.checkpoint is not None else None

    configs = {n: _config_for(settings, base, n, horizon) for n in agents}
    if state is not None:  # check every N before spending time on any
        for n in agents:
            _, trainer = _build(configs[n])
            _load_actor(trainer, state, n, Path(settings.checkpoint))  # type: ignore[arg-type]

    gen = torch.Generator().manual_seed(settings.seed + 7919)
    rows: list[dict[str, Any]] = []
    boot: dict[str, dict[str, list[np.ndarray]]] = {q: {e: [] for e in ESTIMATORS} for q in ("variance", "relative")}
    per_n_seconds: dict[int, float] = {}
    meta: dict[str, Any] = {}
    for n in agents:
        t0 = time.perf_counter()
        cfg = configs[n]
        domain, trainer = _build(cfg)
        if state is not None:
            _load_actor(trainer, state, n, Path(settings.checkpoint))  # type: ignore[arg-type]
        alpha, progress = _alpha(settings, cfg, state)
        env = trainer.env
        steps = min(horizon, env.spec.horizon)
        replicas = settings.rollouts // settings.scenarios
        seeds = [s for s in domain.train_seeds(0, settings.scenarios, cfg.seed) for _ in range(replicas)]
        batch = _collect(trainer, env, seeds, steps)
        est_config = cfg.learner.estimator.model_copy(update={"alpha": ConstantAlpha(value=alpha)})
        estimator = GuidedEstimator(est_config, trainer.model, cfg.seed)
        scale = float(n) if settings.reward_units == "sum" else 1.0
        weights = _weights(batch, settings.scenarios, cfg.ppo.gamma, scale, estimator)
        active_fraction = float(batch.active.float().mean())
        episodic_return = float(batch.rewards.sum(0).mean())
        for est in ESTIMATORS:
            grads = _gradients(batch, weights[est])
            st = _summary(*_agent_moments(grads, settings.scenarios))
            bv, br, bs = _bootstrap(grads, settings.scenarios, settings.bootstrap, gen)
            signal_high = float(np.percentile(bs, 97.5)) if bs.size else float("nan")
            boot["variance"][est].append(bv)
            boot["relative"][est].append(br)
            finite_r = br[np.isfinite(br)]
            rows.append(
                {
                    "domain": domain_name,
                    "N": n,
                    "estimator": est,
                    "variance": st.variance,
                    "std_error": float(bv.std(ddof=1)) if bv.size > 1 else float("nan"),
                    "se_agents": st.se_agents,
                    "relative_variance": st.relative,
                    "relative_variance_se": float(finite_r.std(ddof=1)) if finite_r.size > 1 else float("nan"),
                    "relative_variance_lower95": st.variance / signal_high if signal_high > 0 else float("nan"),
                    "relative_resolved_fraction": float(finite_r.size / br.size) if br.size else float("nan"),
                    "signal": st.signal,
                    "signal_se": float(bs.std(ddof=1)) if bs.size > 1 else float("nan"),
                    "alpha": alpha if est == "dgpg" else float("nan"),
                    "units": {"shared": settings.reward_units, "guidance": "g", "dgpg": "standardised"}[est],
                    "rollouts": settings.rollouts,
                    "scenarios": settings.scenarios,
                    "steps": steps,
                    "num_actions": int(grads.shape[-1]),
                    "active_fraction": active_fraction,
                    "episodic_return": episodic_return,
                }
            )
        per_n_seconds[n] = time.perf_counter() - t0
        meta = {"alpha": alpha, "progress": progress, "gamma": cfg.ppo.gamma, "steps": steps}
        meta["domain_config"] = domain.settings.model_dump(mode="json")
        model_surrogate = cfg.learner.estimator.surrogate
        meta["surrogate"] = None if model_surrogate is None else model_surrogate.model_dump(mode="json")
        shown = {e: next(r for r in rows if r["N"] == n and r["estimator"] == e) for e in ESTIMATORS}
        say(
            f"N = {n}: "
            + ", ".join(f"{e} {shown[e]['variance']:.4g}" for e in ESTIMATORS)
            + f" ({per_n_seconds[n]:.1f} s)"
        )

    fits: dict[str, dict[str, PowerLawFit]] = {"variance": {}, "relative_variance": {}}
    for est in ESTIMATORS:
        own = [r for r in rows if r["estimator"] == est]
        for quantity, key in (("variance", "variance"), ("relative_variance", "relative")):
            keep = [i for i, r in enumerate(own) if np.isfinite(r[quantity]) and r[quantity] > 0]
            fit = fit_power_law([own[i]["N"] for i in keep], [own[i][quantity] for i in keep])
            if len(keep) >= 2 and settings.bootstrap > 0:
                samples = np.stack([boot[key][est][i] for i in keep], axis=1)  # [B, points]
                slopes = _bootstrap_slopes([own[i]["N"] for i in keep], samples)
                fit.boot_used = int(slopes.size)
                # resamples in which a point is unresolved are dropped: with many dropped the
                # rest is a biased selection, so no bootstrap interval is given then
                if slopes.size >= max(20, 0.8 * settings.bootstrap):
                    fit.boot_low, fit.boot_high = (float(q) for q in np.percentile(slopes, [2.5, 97.5]))
            fits[quantity][est] = fit

    seconds = time.perf_counter() - start
    result = VarianceStudyResult(out, rows, fits, seconds, per_n_seconds)
    _write_outputs(result, settings, meta, agents)
    return result


def _build(cfg: RunConfig) -> tuple[Domain, Trainer]:
    from guidedmarl.experiment import build

    return build(cfg)


# ------------------------------------------------------------------ outputs
def _fmt(x: float, digits: int = 4) -> str:
    if x is None or not np.isfinite(x):
        return "nan"
    return f"{x:.{digits}g}"


def _fit_text(fit: PowerLawFit) -> str:
    boot, reg = interval_text(fit.boot_low, fit.boot_high), interval_text(fit.ci_low, fit.ci_high)
    return f"{fit.slope:.3f} | {boot} | {reg} | {fit.points} | {fit.boot_used}"


def _write_outputs(
    result: VarianceStudyResult, settings: VarianceStudySettings, meta: dict[str, Any], agents: list[int]
) -> None:
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    rows = result.rows
    with (out / "variance.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    study = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    study["agents"] = agents
    doc = {
        "study": "per-agent policy-gradient variance vs N",
        "settings": study,
        "resolved": meta,
        "estimators": LABELS,
        "rows": rows,
        "fits": {q: {e: asdict(f) for e, f in per.items()} for q, per in result.fits.items()},
        "seconds": result.seconds,
        "per_n_seconds": {str(k): v for k, v in result.per_n_seconds.items()},
        "machine": machine_info(),
    }
    text = json.dumps(finite_or_null(doc), indent=1, default=_json_default, allow_nan=False)
    (out / "variance.json").write_text(text)

    command = settings.command or "(Python API: guidedmarl.studies.run_variance_study)"
    write_command_file(out, command, result.seconds)

    _write_markdown(result, settings, meta, command)
    plot_variance(result, out / "variance.png", settings)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _write_markdown(
    result: VarianceStudyResult, settings: VarianceStudySettings, meta: dict[str, Any], command: str
) -> None:
    domain = result.rows[0]["domain"]
    units = "team reward x N (sum over agents)" if settings.reward_units == "sum" else "team reward as returned"
    policy = f"checkpoint {settings.checkpoint}" if settings.checkpoint else "fresh initialisation"
    policy += f", seed {settings.seed}"
    r, s = settings.rollouts, settings.scenarios
    md = [
        f"# Per-agent policy-gradient variance vs N: `{domain}`",
        "",
        *command_block(command),
        f"* policy: {policy}; alpha of (c) = {meta.get('alpha', float('nan')):.3f}",
        *(
            [f"* analytical model of (b) and (c): surrogate {surrogate_label(meta['surrogate'])} ({meta['surrogate']})"]
            if meta.get("surrogate")
            else []
        ),
        f"* {r} rollouts = {s} scenarios x {r // s} replicas, {meta.get('steps')} steps each, "
        f"gamma = {meta.get('gamma')}",
        f"* variance: trace of the within-scenario covariance of agent i's logit-space gradient "
        f"sum_t s_it w_it, mean over agents; std error: bootstrap over rollouts ({settings.bootstrap} resamples)",
        f"* units of (a): {units}; (b): squared guidance units (g); (c): standardised weights (unit-free)",
        "* relative variance: mean_i Var_i / mean_i ||mu_i||^2 with the debiased signal ||mean_i||^2 - Var_i / R "
        "(nan: signal not resolved at this R); rel. lower 95 %: Var / (97.5 % bootstrap percentile of the signal)",
        f"* wall-clock: {result.seconds:.1f} s",
        "",
        "| N | estimator | variance | std error | relative variance | rel. std error | rel. lower 95 % |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result.rows:
        md.append(
            f"| {row['N']} | {LABELS[row['estimator']]} | {_fmt(row['variance'])} | {_fmt(row['std_error'], 2)} | "
            f"{_fmt(row['relative_variance'])} | {_fmt(row['relative_variance_se'], 2)} | "
            f"{_fmt(row['relative_variance_lower95'], 3)} |"
        )
    md += [
        "",
        "Fitted slopes of log(quantity) vs log(N) (least squares), with 95 % intervals: bootstrap "
        "percentile over rollouts (only resamples in which every point is resolved), and regression "
        "(t x standard error).",
        "",
        "| quantity | estimator | slope | bootstrap 95 % | regression 95 % | points | resamples used |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for quantity, per in result.fits.items():
        for est, fit in per.items():
            md.append(f"| {quantity.replace('_', ' ')} | {LABELS[est]} | {_fit_text(fit)} |")
    md.append("")
    (result.out / "variance.md").write_text("\n".join(md))


def plot_variance(result: VarianceStudyResult, path: Path, settings: VarianceStudySettings) -> Path:
    """Log-log plot: variance (left) and relative variance (right) vs N, fitted lines with slopes.

    Points carry bootstrap standard errors; relative variances whose signal is not resolved
    are drawn as their 95 % lower bound (open triangles).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from guidedmarl.plotting import loglog_against_n, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8))
    units = "team reward x N" if settings.reward_units == "sum" else "reward as returned"
    panels = (
        ("variance", "std_error", f"per-agent gradient variance ((a): {units})"),
        ("relative_variance", "relative_variance_se", "relative variance Var / ||E grad||^2 (scale-free)"),
    )
    for ax, (quantity, err, title) in zip(axes, panels):
        for est in ESTIMATORS:
            mine = [r for r in result.rows if r["estimator"] == est]
            own = [r for r in mine if np.isfinite(r[quantity]) and r[quantity] > 0]
            fit = result.fits[quantity][est]
            if own:
                ns = np.array([r["N"] for r in own], dtype=float)
                ys = np.array([r[quantity] for r in own])
                es = np.array([r[err] if np.isfinite(r[err]) else 0.0 for r in own])
                lower = np.minimum(es, ys * 0.999)  # keep error bars above zero on a log axis
                label = slope_label(LABELS[est], fit.slope, fit.boot_low, fit.boot_high)
                ax.errorbar(ns, ys, yerr=[lower, es], fmt="o", color=COLOURS[est], capsize=3, label=label)
                if np.isfinite(fit.slope):
                    grid = np.geomspace(ns.min(), ns.max(), 50)
                    ax.plot(grid, np.exp(fit.intercept) * grid**fit.slope, color=COLOURS[est], lw=1.2)
            if quantity == "relative_variance":
                bounds = [
                    r for r in mine if not np.isfinite(r[quantity]) and np.isfinite(r["relative_variance_lower95"])
                ]
                if bounds:
                    ax.plot(
                        [r["N"] for r in bounds],
                        [r["relative_variance_lower95"] for r in bounds],
                        "^",
                        mfc="none",
                        ms=8,
                        color=COLOURS[est],
                        label=f"{LABELS[est]}: signal unresolved, 95 % lower bound",
                    )
        loglog_against_n(ax, title)
        ax.legend(fontsize=7.5)
    first = result.rows[0] if result.rows else {}
    model = f", surrogate {surrogate_label(settings.surrogate)}" if parse_surrogate(settings.surrogate) else ""
    fig.suptitle(
        f"{first.get('domain', '?')}{model}: per-agent policy-gradient variance at a fixed policy; "
        f"{settings.rollouts} rollouts ({settings.scenarios} scenarios), {first.get('steps', '?')} steps",
        fontsize=11,
    )
    return save_figure(fig, path)
