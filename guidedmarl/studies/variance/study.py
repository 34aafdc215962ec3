"""Running the variance study: for every N, build the fixed policy, measure, fit, write the outputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from guidedmarl.config import RunConfig, build_config, deep_merge, load_config_file
from guidedmarl.domain import Domain, get_domain
from guidedmarl.errors import ConfigError
from guidedmarl.guidance.estimator import GuidedEstimator
from guidedmarl.guidance.schedules import ConstantAlpha
from guidedmarl.studies import stats
from guidedmarl.studies.base import require_domain, with_estimator_setting
from guidedmarl.studies.variance import measure
from guidedmarl.studies.variance.report import write_outputs
from guidedmarl.studies.variance.results import ESTIMATORS, VarianceStudyResult
from guidedmarl.studies.variance.settings import VarianceSettings, surrogate_dict
from guidedmarl.training.trainer import Trainer


def checkpoint_state(path: Path) -> dict[str, Any]:
    """A trainer checkpoint's state (``Trainer.state_dict``); :class:`ConfigError` if it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file or not a torch checkpoint
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} is not a trainer checkpoint (Trainer.state_dict)")
    if "actor" not in state:
        raise ConfigError(f"{path} holds no 'actor' weights: expected a checkpoint written by `guidedmarl run`")
    return state


def base_config(settings: VarianceSettings) -> dict[str, Any]:
    """The run settings: a checkpoint's ``config.yaml`` (same folder) with ``run_config`` on top."""
    data: dict[str, Any] = {}
    if settings.checkpoint is not None:
        sibling = Path(settings.checkpoint).parent / "config.yaml"
        if sibling.is_file():
            data = load_config_file(sibling)
    return deep_merge(data, settings.run_config)


def config_for(settings: VarianceSettings, base: dict[str, Any], n: int, horizon: int) -> RunConfig:
    """The DG-PG run configuration at N whose fresh trainer (or checkpoint) is the fixed policy."""
    data = deep_merge(base, {})
    data["domain"] = require_domain(settings.domain or data.get("domain"))
    domain_cls = get_domain(data["domain"])
    if "horizon" in domain_cls.settings_model.model_fields:
        data["domain_config"] = deep_merge(data.get("domain_config", {}) or {}, {"horizon": horizon})
    data.update(agents=n, envs=settings.rollouts, seed=settings.seed, algo="dgpg")
    if settings.surrogate is not None:  # replaces (does not merge with) a configured surrogate; "exact" removes it
        data = with_estimator_setting(data, "surrogate", surrogate_dict(settings.surrogate))
    data["threads"] = settings.threads
    data["out"] = str(settings.out or "runs/variance")
    return build_config(data, "study settings")


def load_actor(trainer: Trainer, state: dict[str, Any], n: int, path: Path) -> None:
    """Put the checkpoint's actor into ``trainer``; a :class:`ConfigError` if it does not fit at N."""
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


def _alpha(settings: VarianceSettings, cfg: RunConfig, state: dict[str, Any] | None) -> tuple[float, float]:
    """(alpha, training progress it corresponds to)."""
    progress = 0.0
    if state is not None:
        progress = min(1.0, float(state.get("episode", 0)) / max(1, cfg.episodes - 1))
    if settings.alpha is not None:
        return settings.alpha, progress
    return float(cfg.learner.estimator.alpha(progress)), progress  # type: ignore[attr-defined]


def _build(cfg: RunConfig) -> tuple[Domain, Trainer]:
    from guidedmarl.experiment import build

    return build(cfg)


def _row(
    n: int, est: str, settings: VarianceSettings, st: measure.Moments, boot: tuple[Any, Any, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    bv, br, bs = boot
    signal_high = stats.percentile_interval(bs)[1]
    finite_r = br[np.isfinite(br)]
    return {
        "domain": extra["domain"],
        "N": n,
        "estimator": est,
        "variance": st.variance,
        "std_error": stats.spread(bv),
        "se_agents": st.se_agents,
        "relative_variance": st.relative,
        "relative_variance_se": stats.spread(br),
        "relative_variance_lower95": st.variance / signal_high if signal_high > 0 else float("nan"),
        "relative_resolved_fraction": float(finite_r.size / br.size) if br.size else float("nan"),
        "signal": st.signal,
        "signal_se": stats.spread(bs),
        "alpha": extra["alpha"] if est == "dgpg" else float("nan"),
        "units": {"shared": settings.reward_units, "guidance": "g", "dgpg": "standardised"}[est],
        "rollouts": settings.rollouts,
        "scenarios": settings.scenarios,
        "steps": extra["steps"],
        "num_actions": extra["num_actions"],
        "active_fraction": extra["active_fraction"],
        "episodic_return": extra["episodic_return"],
    }


def run_variance_study(
    settings: VarianceSettings, on_progress: Callable[[str], None] | None = None
) -> VarianceStudyResult:
    """Measure the per-agent gradient variance of the three estimators at every N; write ``out``.

    Seeds the global random generators (like ``guidedmarl run``) and, if ``threads`` is
    given, sets torch's thread count.
    """
    say = on_progress or (lambda msg: None)
    start = time.perf_counter()
    agents, horizon, base = settings.grid(), settings.resolved_horizon(), base_config(settings)
    domain_name = require_domain(settings.domain or base.get("domain"))
    settings = settings.model_copy(update={"domain": domain_name, "agents": agents})
    settings = settings.model_copy(update={"out": settings.resolved_out()})
    state = checkpoint_state(Path(settings.checkpoint)) if settings.checkpoint is not None else None
    configs = {n: config_for(settings, base, n, horizon) for n in agents}
    for cfg in configs.values():  # the domain accepts every N (e.g. a power case fixes N) before any time is spent
        get_domain(cfg.domain).from_config(cfg.agents, cfg.domain_config)
    if state is not None:  # check every N before spending time on any
        for n in agents:
            load_actor(_build(configs[n])[1], state, n, Path(settings.checkpoint))  # type: ignore[arg-type]

    gen = torch.Generator().manual_seed(settings.seed + 7919)
    bias_gen = torch.Generator().manual_seed(settings.seed + 104_729)  # apart: the variance rows stay as without it
    rows: list[dict[str, Any]] = []
    bias_rows: list[dict[str, Any]] = []
    boot: dict[str, dict[str, list[Any]]] = {q: {e: [] for e in ESTIMATORS} for q in ("variance", "relative")}
    per_n_seconds: dict[int, float] = {}
    meta: dict[str, Any] = {}
    for n in agents:
        t0 = time.perf_counter()
        cfg = configs[n]
        domain, trainer = _build(cfg)
        if state is not None:
            load_actor(trainer, state, n, Path(settings.checkpoint))  # type: ignore[arg-type]
        alpha, progress = _alpha(settings, cfg, state)
        env = trainer.env
        steps = min(horizon, env.spec.horizon)
        replicas = settings.rollouts // settings.scenarios
        seeds = [s for s in domain.train_seeds(0, settings.scenarios, cfg.seed) for _ in range(replicas)]
        model_surrogate = cfg.learner.estimator.surrogate  # type: ignore[attr-defined]
        # a noisy surrogate draws a new reference at every call: a second weight would see other noise
        both = settings.first_order_bias and getattr(model_surrogate, "kind", None) != "noisy"
        batch = measure.collect(trainer, env, seeds, steps, both_kinds=both)
        est_config = cfg.learner.estimator.model_copy(update={"alpha": ConstantAlpha(value=alpha)})
        estimator = GuidedEstimator(est_config, trainer.model, cfg.seed)
        scale = float(n) if settings.reward_units == "sum" else 1.0
        weights = measure.weights(batch, settings.scenarios, cfg.ppo.gamma, scale, estimator)
        extra = {
            "domain": domain_name, "alpha": alpha, "steps": steps, "active_fraction": float(batch.active.float().mean()),
            "episodic_return": float(batch.rewards.sum(0).mean()),
        }  # fmt: skip
        for est in ESTIMATORS:
            grads = measure.gradients(batch, weights[est])
            st = measure.summary(*measure.agent_moments(grads, settings.scenarios))
            got = measure.bootstrap(grads, settings.scenarios, settings.bootstrap, gen)
            boot["variance"][est].append(got[0])
            boot["relative"][est].append(got[1])
            rows.append(_row(n, est, settings, st, got, extra | {"num_actions": int(grads.shape[-1])}))
        bias = ""
        if both:
            got_bias = measure.first_order_bias(batch, settings.scenarios, settings.bootstrap, bias_gen)
            bias_rows.append({"domain": domain_name, "N": n, "weight_of_b": cfg.learner.estimator.weight}  # type: ignore[attr-defined]
                             | {f"first_order_bias_{k}": v for k, v in got_bias.items()})  # fmt: skip
            bias = f"; first-order bias {got_bias['relative']:.3g} of the gradient, cosine {got_bias['cosine']:.3f}"
        per_n_seconds[n] = time.perf_counter() - t0
        meta = {"alpha": alpha, "progress": progress, "gamma": cfg.ppo.gamma, "steps": steps}
        meta["domain_config"] = domain.settings.model_dump(mode="json")
        meta["surrogate"] = None if model_surrogate is None else model_surrogate.model_dump(mode="json")
        shown = {e: next(r for r in rows if r["N"] == n and r["estimator"] == e) for e in ESTIMATORS}
        say(f"N = {n}: " + ", ".join(f"{e} {shown[e]['variance']:.4g}" for e in ESTIMATORS)
            + f"{bias} ({per_n_seconds[n]:.1f} s)")  # fmt: skip

    fits = _fits(rows, boot, settings.bootstrap)
    result = VarianceStudyResult(
        settings.resolved_out(), rows, fits, time.perf_counter() - start, per_n_seconds, meta, bias_rows
    )
    write_outputs(result, settings)
    return result


def _fits(
    rows: list[dict[str, Any]], boot: dict[str, dict[str, list[Any]]], resamples: int
) -> dict[str, dict[str, stats.PowerLawFit]]:
    """Power-law fit of each quantity and estimator, with its bootstrap interval when enough resamples resolve."""
    fits: dict[str, dict[str, stats.PowerLawFit]] = {"variance": {}, "relative_variance": {}}
    for est in ESTIMATORS:
        own = [r for r in rows if r["estimator"] == est]
        for quantity, key in (("variance", "variance"), ("relative_variance", "relative")):
            keep = [i for i, r in enumerate(own) if np.isfinite(r[quantity]) and r[quantity] > 0]
            fit = stats.fit_power_law([own[i]["N"] for i in keep], [own[i][quantity] for i in keep])
            if len(keep) >= 2 and resamples > 0:
                samples = np.stack([boot[key][est][i] for i in keep], axis=1)  # [B, points]
                slopes = stats.bootstrap_slopes([own[i]["N"] for i in keep], samples)
                fit.boot_used = int(slopes.size)
                # resamples in which a point is unresolved are dropped: with many dropped the
                # rest is a biased selection, so no bootstrap interval is given then
                if slopes.size >= max(20, 0.8 * resamples):
                    fit.boot_low, fit.boot_high = stats.percentile_interval(slopes)
            fits[quantity][est] = fit
    return fits
