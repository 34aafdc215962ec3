"""The model checks: state and reference, influence, affine in one-hot and guidance weights at every step of
a random-policy rollout, exogeneity across copies of one scenario, and the measured alignment figure."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from guidedmarl.analytical.linear_outputs import LinearOutputModel
from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.checks import (AFFINE, ALIGNMENT, COPIES, EXOGENEITY, GUIDANCE, INFLUENCE, MODEL_CHECKS,
                               STATE)
from guidedmarl.checks.report import (CheckFailed, CheckResult, _blame, _describe, _max_diff, _peak, _run,
                                      _shape, _tolerance)
from guidedmarl.checks.setup import _Setup
from guidedmarl.env import Step
from guidedmarl.guidance.weights import guidance_weights
from guidedmarl.training.rollout import StepView, rollout

GRAM_TOLERANCE = 1e-3
"""Largest difference of a LinearOutputModel's Gram-matrix weights from the generic path, over max |weight|
(float32 rounding of the two orders of summation stays below 1e-5 on the power cases)."""


def _state(model: AnalyticalModel, a: Tensor, ctx: Any, figs: dict[str, Any]) -> Tensor:
    m = type(model).__name__
    with _blame(f"{m}.system_state"):
        x = model.state(a, ctx)
    with _blame(f"{m}.reference_state"):
        x_ref = model.reference(ctx)
    if x_ref.shape[1] != x.shape[1] or x_ref.shape[0] not in (1, x.shape[0]):
        raise CheckFailed(f"{m}: reference_state returned x_ref {_shape(x_ref)} but system_state returned x "
                          f"{_shape(x)}; x_ref must be [E, D] = [{x.shape[0]}, {x.shape[1]}] (or [1, D]), the D of x")
    if figs.setdefault("D", x.shape[1]) != x.shape[1]:
        raise CheckFailed(f"{m}.system_state: x has D = {x.shape[1]} components at this step but {figs['D']} before")
    figs["shapes"] = f"x = system_state {list(x.shape)}, x_ref = reference_state {list(x_ref.shape)}"
    return x


def _influence(model: AnalyticalModel, a: Tensor, ctx: Any, x: Tensor, s: _Setup, figs: dict) -> None:
    name, d = f"{type(model).__name__}.influence", x.shape[1]
    with _blame(name):
        z = model.checked_influence(model.influence(a, ctx), a, d)
    size = z.value.abs() if z.value.dim() == 3 else z.value.abs().sum(-1)
    listed = torch.where(size > 0, z.index.long(), -1 - torch.arange(z.index.shape[2]))  # zero entries never clash
    ordered = listed.sort(dim=2).values
    if (dup := (ordered[..., 1:] == ordered[..., :-1]) & (ordered[..., 1:] >= 0)).any():
        e, i, j = (int(v) for v in torch.nonzero(dup)[0])
        raise CheckFailed(f"{name}: agent {i} (environment {e}) lists component {int(ordered[e, i, j])} twice with "
                          "non-zero values; each agent's components must be distinct")
    with _blame(f"AnalyticalModel.influence (autograd through {type(model).__name__}.system_state)"):
        generic = AnalyticalModel.influence(model, a, ctx).dense(d).to(z.value.dtype)
    mine = z.dense(d)
    err, tol = _max_diff(mine, generic), _tolerance(s.rtol, mine, generic)
    _peak(figs, "max_abs_error", err)
    if err > tol:
        at = tuple(int(v) for v in torch.nonzero((mine - generic).abs() == err)[0])
        raise CheckFailed(f"{name} disagrees with the autograd Jacobian of system_state (AnalyticalModel.influence): "
                          f"max |difference| {err:.3g} > tolerance {tol:.2g} at [environment, agent, component] = "
                          f"{list(at[:3])} of z {list(mine.shape)} (closed form {float(mine[at]):.6g}, autograd "
                          f"{float(generic[at]):.6g})")


def _affine(model: AnalyticalModel, a: Tensor, ctx: Any, x: Tensor, s: _Setup, figs: dict) -> None:
    """Two random agents per environment: change to another option, and remove the agent (row of zeros)."""
    m, relaxed, gen = f"{type(model).__name__}.system_state", model.relax(a), s.rng
    (e, n, options), rows = relaxed.shape, torch.arange(relaxed.shape[0])
    for _ in range(2):
        agent = torch.randint(0, n, (e,), generator=gen)
        cur = a.long()[rows, agent]
        other = (cur + torch.randint(1, max(options, 2), (e,), generator=gen)) % options
        for swap in (True, False) if options > 1 else (False,):
            tangent = torch.zeros_like(relaxed)
            tangent[rows, agent, cur] = -1.0
            tangent[rows, agent, other] += float(swap)
            with _blame(m):
                actual = model.system_state(relaxed + tangent, ctx) - x
            with _blame(f"torch.autograd.functional.jvp of {m}"):
                _, predicted = torch.autograd.functional.jvp(lambda r: model.system_state(r, ctx), relaxed, tangent)
            err, tol = _max_diff(actual, predicted), _tolerance(s.rtol, x, actual, predicted)
            _peak(figs, "max_abs_error", err)
            if err > tol:
                k = int((actual - predicted).abs().amax(1).argmax())
                raise CheckFailed(
                    f"{m} is not affine in agent {int(agent[k])}'s one-hot row (environment {k}): option {int(cur[k])} "
                    f"-> {int(other[k]) if swap else 'none (row of zeros)'} moves x {list(x.shape)} by "
                    f"{float(actual[k].norm()):.4g} (norm) but the derivative predicts {float(predicted[k].norm()):.4g}"
                    f" (max component difference {err:.3g} > {tol:.2g}); the exact difference and the discrete "
                    "influence need each agent's option to add a fixed change to x")


def _exogenous_graph(model: AnalyticalModel, a: Tensor, ctx: Any, x: Tensor, s: _Setup, figs: dict) -> None:
    m, grad = type(model).__name__, None
    with torch.enable_grad(), _blame(f"{m}.system_state / reference_state"):
        relaxed = model.relax(a).detach().requires_grad_(True)
        model.system_state(relaxed, ctx)
        x_ref = model.reference_state(ctx)
        if isinstance(x_ref, Tensor) and x_ref.requires_grad:
            (grad,) = torch.autograd.grad(x_ref.sum(), relaxed, allow_unused=True)
    if grad is not None:
        raise CheckFailed(f"{m}.reference_state is computed from the actions: its output {_shape(x_ref)} is connected "
                          "in the autograd graph to the relaxed actions of the preceding system_state call (max "
                          f"|d sum(x_ref) / d a| = {float(grad.abs().max()):.3g}); x_ref must be exogenous")


def _guidance(model: AnalyticalModel, a: Tensor, ctx: Any, x: Tensor, s: _Setup, figs: dict) -> None:
    mean = torch.zeros_like(a, dtype=torch.get_default_dtype()) if model.action_kind == "continuous" else None
    for exact in (False, True):
        g = guidance_weights(model, a, ctx, exact_difference=exact, mean_action=mean)
        if not isinstance(g, Tensor) or tuple(g.shape) != tuple(a.shape[:2]):
            raise CheckFailed(f"guidance_weights (exact_difference={exact}) on {type(model).__name__} must return "
                              f"[E, N] = {list(a.shape[:2])}, got {_shape(g)}")
        _peak(figs, f"max_abs_g_{'exact' if exact else 'first_order'}", float(g.abs().max()))
        if isinstance(model, LinearOutputModel) and model.gram_path(exact):
            generic = guidance_weights(model, a, ctx, exact_difference=exact, mean_action=mean, structured=False)
            scale = max(float(generic.abs().max()), 1e-12)
            error = float((g - generic).abs().max()) / scale
            _peak(figs, "max_rel_gram_vs_backward", error)
            if error > GRAM_TOLERANCE:
                raise CheckFailed(f"{type(model).__name__}: the Gram-matrix weights (exact_difference={exact}) differ "
                                  f"from the backward pass through system_state by {error:.3g} of max |weight| "
                                  f"(tolerance {GRAM_TOLERANCE:g}); check gram(), outputs() and output_slopes()")


def _exogeneity_copies(model: AnalyticalModel, s: _Setup) -> str | CheckResult:
    """x_ref of copies of one scenario whose agents act independently must stay identical."""
    m, gen, pair, moved = type(model).__name__, s.gen(7), s.pair, {"x": 0.0, "x_ref": 0.0}
    scenario = s.domain.train_seeds(0, 1, s.seed)[0]

    def hook(view: StepView) -> None:
        x, x_ref = model.state(view.actions, view.context()), model.reference(view.context())
        _peak(moved, "x", _max_diff(x, x[:1].expand_as(x)))
        d, tol = _max_diff(x_ref, x_ref[:1].expand_as(x_ref)), _tolerance(s.rtol, x_ref)
        _peak(moved, "x_ref", d)
        if d > tol and model.reference_follows_state:
            moved["first_step"] = moved.get("first_step", float(view.t))
        elif d > tol:
            raise CheckFailed(f"{m}.reference_state moves with the actions: {pair.num_envs} copies of scenario "
                              f"{scenario} whose agents acted differently have x_ref {_shape(x_ref)} differing by up "
                              f"to {d:.3g} (> {tol:.2g}) at step {view.t}; compute x_ref from exogenous quantities "
                              "(capacities, demand, network data), not from the state the agents produced")

    rollout(pair, lambda step: s.sample(pair, gen), [scenario] * pair.num_envs, {"exogeneity": hook}, steps=s.steps)
    if "first_step" in moved:
        return CheckResult(EXOGENEITY, "info", f"{m} declares reference_follows_state: x_ref of {pair.num_envs} copies of "
                           f"scenario {scenario} whose agents acted differently moved apart from step "
                           f"{int(moved['first_step'])} (by up to {moved['x_ref']:.3g}; x by {moved['x']:.3g}); fixed "
                           "within each step, not across steps (docs/theory.md)", {"x_ref_moved": moved["x_ref"]})  # fmt: skip
    return (f"x_ref identical across {pair.num_envs} copies of scenario {scenario} whose agents acted differently "
            f"for {s.steps} steps (x differed by up to {moved['x']:.3g}, x_ref by {moved['x_ref']:.2g}); "
            "reference_state not connected to the actions in the autograd graph")


def _alignment(model: AnalyticalModel, s: _Setup, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """dphi and dr of ``samples`` single-agent action changes from shared states (see :func:`check_domain`)."""
    env, gen, rows = s.domain.make_env(COPIES + 1), s.gen(11), torch.arange(1, COPIES + 1)
    d_phi, d_r, rounds = [], [], math.ceil(samples / COPIES)
    for r in range(rounds):
        probe_t = (r * s.steps) // rounds

        def policy(step: Step) -> Tensor:
            actions = s.sample(env, gen)
            base = actions[:1].expand_as(actions).clone()
            calls.append(step)
            if len(calls) == probe_t + 1:
                pool = torch.nonzero(step.active[0]).flatten()
                pool = pool if pool.numel() else torch.arange(env.spec.num_agents)
                agents = pool[torch.randint(0, pool.numel(), (COPIES,), generator=gen)]
                if env.spec.action_kind == "discrete":
                    shift = torch.randint(1, max(env.spec.num_actions, 2), (COPIES,), generator=gen)
                    base[rows, agents] = (base[0, agents] + shift) % env.spec.num_actions
                else:
                    base[rows, agents] = actions[rows, agents]
            return base

        def hook(view: StepView) -> None:
            if view.t == probe_t:
                phi.append(model.potential(model.state(view.actions, view.context()), model.reference(view.context())))

        phi: list[Tensor] = []
        calls: list[Step] = []
        scenario = s.domain.train_seeds(r + 1, 1, s.seed)[0]
        traj = rollout(env, policy, [scenario] * env.num_envs, {"phi": hook}, steps=probe_t + 1)
        d_phi.append(phi[-1].double()[1:] - phi[-1].double()[0])
        d_r.append(traj.rewards[probe_t].double()[1:] - traj.rewards[probe_t].double()[0])
    return torch.cat(d_phi)[:samples].numpy(), torch.cat(d_r)[:samples].numpy()


def _alignment_result(d_phi: np.ndarray, d_r: np.ndarray, threshold: float | None) -> CheckResult:
    from scipy.stats import rankdata

    ra, rb = rankdata(-d_phi), rankdata(d_r)
    rho = math.nan if ra.std() == 0 or rb.std() == 0 else float(np.corrcoef(ra, rb)[0, 1])
    moved = (np.abs(d_phi) > 1e-6 * (1 + np.abs(d_phi).max())) & (np.abs(d_r) > 1e-6 * (1 + np.abs(d_r).max()))
    agree = float(np.mean(np.sign(d_r[moved]) == -np.sign(d_phi[moved]))) if moved.any() else math.nan
    figures = {"spearman": rho, "agreement": agree, "samples": float(len(d_phi)), "decisive": float(moved.sum())}
    message = (("undefined (phi or the reward never changed): " if math.isnan(rho) else "")
               + f"Spearman rho = {rho:+.3f} between the potential drop -dphi and the reward change dr over n = "
               f"{len(d_phi)} single-agent action changes (random policy, one-step lookahead from a shared state); "
               f"the reward moved against phi in {agree:.1%} of the {int(moved.sum())} changes that moved both "
               "(+1: lowering phi always raises the reward; 0: unrelated)")
    if threshold is None:
        return CheckResult(ALIGNMENT, "info", message, figures)
    passed = not math.isnan(rho) and rho >= threshold
    return CheckResult(ALIGNMENT, "pass" if passed else "fail", f"{message}; threshold {threshold:+.3f}", figures)


def _model_checks(model: AnalyticalModel, s: _Setup, deterministic: bool, samples: int,
                  threshold: float | None) -> list[CheckResult]:
    m, spec, discrete = type(model).__name__, s.env.spec, s.env.spec.action_kind == "discrete"
    if model.action_kind != spec.action_kind or (discrete and model.num_actions != spec.num_actions):
        return [CheckResult(STATE, "fail", f"{m}: action_kind {model.action_kind!r}, num_actions {model.num_actions} "
                            f"do not match {type(s.env).__name__}.spec: action_kind {spec.action_kind!r}, "
                            f"num_actions {spec.num_actions}")]
    overridden = type(model).influence is not AnalyticalModel.influence
    per_step = {INFLUENCE: _influence, EXOGENEITY: _exogenous_graph, AFFINE: _affine, GUIDANCE: _guidance}
    per_step = {k: f for k, f in per_step.items() if (k != INFLUENCE or overridden) and (k != AFFINE or discrete)}
    errors: dict[str, str] = {}
    figures: dict[str, dict[str, Any]] = {name: {} for name in MODEL_CHECKS}

    def run(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        if name not in errors:
            try:
                return fn(*args, figures[name])
            except Exception as exc:  # noqa: BLE001
                errors[name] = _describe(exc)
        return None

    def hook(view: StepView) -> None:
        if (x := run(STATE, _state, model, view.actions, view.context())) is not None:
            for name, fn in per_step.items():
                run(name, fn, model, view.actions, view.context(), x, s)

    gen = s.gen(5)
    try:
        rollout(s.env, lambda step: s.sample(s.env, gen), s.seeds, {"checks": hook}, steps=s.steps)
    except Exception as exc:  # noqa: BLE001
        errors = {name: errors.get(name, f"rollout stopped: {_describe(exc)}") for name in MODEL_CHECKS}
    if STATE in errors:
        return [CheckResult(STATE, "fail", errors[STATE])]

    def result(name: str, message: str) -> CheckResult:
        figs = {k: v for k, v in figures[name].items() if isinstance(v, float)}
        return CheckResult(name, "fail", errors[name], figs) if name in errors else CheckResult(name, "pass", message, figs)

    at, blocked = f"at {s.steps} steps", "needs 'env: determinism' (copies of one scenario)"
    return [
        result(STATE, f"{figures[STATE]['shapes']}, finite, {at}; action_kind {model.action_kind!r}"
               + (f", num_actions {model.num_actions}" if discrete else "") + " as in the spec"),
        result(INFLUENCE, f"valid SparseInfluence equal to the autograd Jacobian {at} (max |difference| "
               f"{figures[INFLUENCE].get('max_abs_error', 0.0):.2g})") if overridden
        else CheckResult(INFLUENCE, "skip", f"{m} does not override influence: guidance uses the autograd Jacobian"),
        result(EXOGENEITY, "") if EXOGENEITY in errors else _run(EXOGENEITY, lambda: _exogeneity_copies(model, s))
        if deterministic else CheckResult(EXOGENEITY, "skip", blocked),
        result(AFFINE, f"x(a with a_i := b) - x(a) and x(a without i) - x(a) equal the directional derivatives for 2 "
               f"random agents per environment {at} (max |difference| {figures[AFFINE].get('max_abs_error', 0.0):.2g})")
        if discrete else CheckResult(AFFINE, "skip", "continuous actions: the exact difference needs no affine map"),
        _run(ALIGNMENT, lambda: _alignment_result(*_alignment(model, s, samples), threshold)) if deterministic
        else CheckResult(ALIGNMENT, "skip", blocked),
        result(GUIDANCE, f"first-order and exact-difference weights [{len(s.seeds)}, {spec.num_agents}], finite, {at}"
               + ("" if discrete else " (mean_action = 0)")
               + (f"; Gram-matrix weights equal the backward pass (max relative difference "
                  f"{figures[GUIDANCE].get('max_rel_gram_vs_backward', 0.0):.2g})"
                  if isinstance(model, LinearOutputModel) and model.gram_guidance else "")),
    ]
