"""`check_domain`: the self-test a domain author runs on their own domain (as gymnasium's ``check_env``).

Ten named checks, each passing or failing with one message that names the method and the shapes: four of
the environment, five of the analytical model (one, alignment, is a measured figure) and the guidance
weights. Model checks take random actions at the contexts of random-policy rollouts played by
:func:`guidedmarl.training.rollout.rollout`. docs/writing-a-domain.md describes each check.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from guidedmarl.analytical.model import AnalyticalModel
from guidedmarl.domain import Domain
from guidedmarl.env import EnvSpec, MultiAgentVecEnv, Step
from guidedmarl.errors import DomainError, GuidedMarlError
from guidedmarl.guidance.weights import guidance_weights
from guidedmarl.training.rollout import StepView, rollout

Status = Literal["pass", "fail", "skip", "info"]
ActionSampler = Callable[[MultiAgentVecEnv, torch.Generator], Tensor]
ENV_CHECKS = ("env: step tensors", "env: bad actions refused", "env: horizon", "env: determinism")
STATE, INFLUENCE, EXOGENEITY, AFFINE, ALIGNMENT, GUIDANCE = MODEL_CHECKS = (
    "model: state and reference", "model: influence", "model: exogeneity", "model: affine in one-hot",
    "model: alignment", "guidance weights")
MAX_HORIZON_STEPS = 2000  # env: horizon plays at most this many steps
COPIES = 32  # single-agent changes per shared state in model: alignment (a batch of COPIES + 1)


@dataclass
class CheckResult:
    """One check: ``status`` pass, fail, skip (not applicable, or blocked by a failure) or info (a figure)."""

    name: str
    status: Status
    message: str
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status != "fail"


@dataclass
class CheckReport:
    """What :func:`check_domain` returns: ``results`` in order, ``ok``, ``raise_if_failed()``, ``table()``."""

    domain: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no check named {name!r}; checks: {', '.join(r.name for r in self.results)}")

    def raise_if_failed(self) -> None:
        """Raise a :class:`~guidedmarl.errors.DomainError` listing every failed check with its message."""
        failed = [f"- {r.name}: {r.message}" for r in self.results if not r.passed]
        if failed:
            raise DomainError(f"domain '{self.domain}' failed {len(failed)} of {len(self.results)} checks:\n"
                              + "\n".join(failed))

    def table(self, width: int = 110) -> str:
        """The results as a plain-text table, messages wrapped to ``width`` columns."""
        w = max(len("check"), *(len(r.name) for r in self.results))
        lines = [f"{'check':<{w}}  result  message", f"{'-' * w}  ------  -------"]
        for r in self.results:
            text = textwrap.wrap(r.message, max(30, width - w - 10)) or [""]
            lines.append(f"{r.name:<{w}}  {'FAIL' if r.status == 'fail' else r.status:<6}  {text[0]}")
            lines += [" " * (w + 10) + more for more in text[1:]]
        n = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip", "info")}
        return "\n".join([*lines, f"{len(self.results)} checks: {n['pass']} passed, {n['fail']} failed, "
                                  f"{n['skip']} skipped, {n['info']} measured"])

    __str__ = table


class CheckFailed(Exception):
    """A check's failure; the message is the check's message."""


@contextmanager
def _blame(what: str) -> Iterator[None]:
    """A raw exception inside a user's method becomes a failure that names the method."""
    try:
        yield
    except (CheckFailed, GuidedMarlError):
        raise
    except Exception as exc:  # noqa: BLE001 - an error in the user's code is reported, not raised
        raise CheckFailed(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (CheckFailed, GuidedMarlError)) else f"{type(exc).__name__}: {exc}"


def _shape(t: Any) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}" if isinstance(t, Tensor) else type(t).__name__


def _max_diff(a: Tensor, b: Tensor) -> float:
    """max |a - b| (NaN equals NaN; inf for different shapes)."""
    if a.shape != b.shape:
        return math.inf
    a, b = a.double(), b.double()
    return float(torch.where((a == b) | (a.isnan() & b.isnan()), 0.0, (a - b).abs()).max()) if a.numel() else 0.0


def _tolerance(rtol: float | None, *ts: Tensor) -> float:
    """``rtol`` (default 1000 epsilons of the dtype) times 1 + the largest magnitude in ``ts``."""
    eps = max(torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0 for t in ts)
    scale = max((float(t.double().abs().max()) for t in ts if t.numel()), default=0.0)
    return (rtol if rtol is not None else 1e3 * eps) * (1.0 + scale)


def _peak(figures: dict[str, float], key: str, value: float) -> None:
    figures[key] = max(figures.get(key, 0.0), value)


def random_actions(env: MultiAgentVecEnv, gen: torch.Generator) -> Tensor:
    """The default random policy: uniform options (discrete) or 0.5 N(0, 1) per action entry (continuous)."""
    spec, e = env.spec, env.num_envs
    if spec.action_kind == "discrete":
        return torch.randint(0, spec.num_actions, (e, spec.num_agents), generator=gen)
    return 0.5 * torch.randn(e, spec.num_agents, spec.action_dim, generator=gen)


@dataclass
class _Setup:
    domain: Domain
    env: MultiAgentVecEnv
    pair: MultiAgentVecEnv  # E >= 2: copies of one scenario
    seeds: list[int]
    steps: int
    sample: ActionSampler
    seed: int
    rtol: float | None

    def __post_init__(self) -> None:
        self.rng = self.gen(3)  # draws of the per-step model checks

    def gen(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def play(self, env: MultiAgentVecEnv, seeds: list[int], steps: int, tie: bool = False) -> list[Step]:
        """reset + ``steps`` checked steps of random actions (``tie``: the same actions in every environment)."""
        name, gen = type(env).__name__, self.gen()
        with _blame(f"{name}.reset"):
            out = [env.reset(seeds)]
        _check_step(env, out[0], "reset")
        for t in range(steps):
            actions = self.sample(env, gen)
            with _blame(f"{name}.step (step {t})"):
                out.append(env.step(actions[:1].expand_as(actions).clone() if tie else actions))
            _check_step(env, out[-1], f"step (step {t})")
        return out


# ===================================================================== environment
def _expect(t: Any, shape: tuple[int, ...], kind: str, what: str, symbol: str) -> None:
    want = f"{symbol} = {list(shape)}"
    if not isinstance(t, Tensor) or tuple(t.shape) != shape:
        raise CheckFailed(f"{what} must have shape {want}, got {_shape(t)}")
    if (kind == "bool" and t.dtype != torch.bool) or (kind == "float" and not t.is_floating_point()):
        raise CheckFailed(f"{what} must be a {kind} tensor of shape {want}, got {_shape(t)}")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise CheckFailed(f"{what} ({_shape(t)}) has {int((~torch.isfinite(t)).sum())} NaN or infinite value(s)")


def _check_step(env: MultiAgentVecEnv, step: Any, where: str) -> None:
    name, e, spec = f"{type(env).__name__}.{where}", env.num_envs, env.spec
    if not isinstance(step, Step):
        raise CheckFailed(f"{name} must return a guidedmarl.Step, got {type(step).__name__}")
    n = spec.num_agents
    for key, shape, kind, symbol in (("obs", (e, n, spec.obs_dim), "float", "[E, N, obs_dim]"),
                                     ("state", (e, spec.state_dim), "float", "[E, state_dim]"),
                                     ("active", (e, n), "bool", "[E, N]"), ("reward", (e,), "float", "[E]"),
                                     ("done", (e,), "bool", "[E]")):
        _expect(getattr(step, key), shape, kind, f"{name}: {key}", symbol)
    if not isinstance(step.info, dict):
        raise CheckFailed(f"{name}: info must be a dict of [E] tensors, got {type(step.info).__name__}")
    for key, value in step.info.items():
        _expect(value, (e,), "any", f"{name}: info[{key!r}]", "[E]")


def _env_tensors(s: _Setup) -> str:
    if not isinstance(s.env.spec, EnvSpec):
        raise CheckFailed(f"{type(s.env).__name__}.spec must be a guidedmarl.EnvSpec, got {type(s.env.spec).__name__}")
    last = s.play(s.env, s.seeds, s.steps)[-1]
    return (f"reset and {s.steps} steps: obs {_shape(last.obs)}, state {_shape(last.state)}, active "
            f"{_shape(last.active)}, reward {_shape(last.reward)}, done {_shape(last.done)}, info {sorted(last.info)}")


def _bad_actions(s: _Setup) -> str:
    env, name, spec = s.env, type(s.env).__name__, s.env.spec
    with _blame(f"{name}.reset"):
        env.reset(s.seeds)
    good = s.sample(env, s.gen())
    wrong, extra = good.clone(), torch.cat([good, good[:, :1]], 1)
    if spec.action_kind == "discrete":
        wrong[0, 0] = spec.num_actions
        bad = {f"option {spec.num_actions} (num_actions = {spec.num_actions})": wrong, "float actions": good.float()}
    else:
        wrong[0, 0] = float("nan")
        bad = {"a NaN action": wrong, f"shape {list(good.shape[:2])} (no action_dim axis)": good[..., 0]}
    bad[f"shape {list(extra.shape)} (one agent too many)"] = extra
    for what, actions in bad.items():
        try:
            env.check_actions(actions)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(f"{name}.check_actions raised {type(exc).__name__} instead of ValueError on {what}: {exc}")
        raise CheckFailed(f"{name}.check_actions accepted {what}; it must raise a ValueError naming the problem")
    what = next(iter(bad))
    try:
        env.step(bad[what])
    except Exception:  # noqa: BLE001 - any refusal will do
        return f"check_actions raised ValueError on {len(bad)} malformed actions ({'; '.join(bad)}); step refused {what}"
    raise CheckFailed(f"{name}.step accepted {what} without an error: call self.check_actions(actions) at its top")


def _horizon(s: _Setup) -> str:
    horizon = s.env.spec.horizon
    limit = min(horizon, MAX_HORIZON_STEPS)
    for t, step in enumerate(s.play(s.env, s.seeds, limit)):
        if not bool((step.done == (t >= horizon)).all()):
            where = "reset" if t == 0 else f"step (after step {t} of horizon {horizon})"
            raise CheckFailed(f"{type(s.env).__name__}.{where}: done must be {t >= horizon} in every environment, "
                              f"got {step.done.tolist()}")
    if limit < horizon:
        return f"done stayed False for {limit} steps (horizon {horizon} > {MAX_HORIZON_STEPS}: end not reached)"
    return f"done False for steps 1..{horizon - 1} and True in every environment after step T = {horizon}"


def _determinism(s: _Setup) -> str:
    first, second = s.play(s.env, s.seeds, s.steps), s.play(s.env, s.seeds, s.steps)
    copies = s.play(s.pair, [s.seeds[0]] * s.pair.num_envs, s.steps, tie=True)
    for t, (a, b, c) in enumerate(zip(first, second, copies)):
        for f in ("obs", "state", "active", "reward", "done"):
            x, y, z = getattr(a, f), getattr(b, f), getattr(c, f)
            tol = 1e-6 * (1.0 + float(x.double().abs().max()))
            if (d := _max_diff(x, y)) > tol:
                raise CheckFailed(f"{type(s.env).__name__}: reset({s.seeds}) twice with the same actions gave different "
                                  f"{f} at step {t} (max difference {d:.3g}); draw randomness from generators seeded "
                                  "in reset")
            if (d := _max_diff(z, z[:1].expand_as(z))) > tol:
                raise CheckFailed(f"{type(s.pair).__name__}: {s.pair.num_envs} copies of seed {s.seeds[0]} in one "
                                  f"batch, with the same actions, differ in {f} at step {t} (max difference {d:.3g}); "
                                  "each environment's scenario must depend on its own seed only")
    return (f"reset({s.seeds}) twice gave the same {s.steps}-step trajectory; {s.pair.num_envs} copies of seed "
            f"{s.seeds[0]} in one batch stayed identical")


# ===================================================================== model, at every step of a rollout
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


def _exogeneity_copies(model: AnalyticalModel, s: _Setup) -> str:
    """x_ref of copies of one scenario whose agents act independently must stay identical."""
    m, gen, pair, moved = type(model).__name__, s.gen(7), s.pair, {"x": 0.0, "x_ref": 0.0}
    scenario = s.domain.train_seeds(0, 1, s.seed)[0]

    def hook(view: StepView) -> None:
        x, x_ref = model.state(view.actions, view.context()), model.reference(view.context())
        _peak(moved, "x", _max_diff(x, x[:1].expand_as(x)))
        d, tol = _max_diff(x_ref, x_ref[:1].expand_as(x_ref)), _tolerance(s.rtol, x_ref)
        _peak(moved, "x_ref", d)
        if d > tol:
            raise CheckFailed(f"{m}.reference_state moves with the actions: {pair.num_envs} copies of scenario "
                              f"{scenario} whose agents acted differently have x_ref {_shape(x_ref)} differing by up "
                              f"to {d:.3g} (> {tol:.2g}) at step {view.t}; compute x_ref from exogenous quantities "
                              "(capacities, demand, network data), not from the state the agents produced")

    rollout(pair, lambda step: s.sample(pair, gen), [scenario] * pair.num_envs, {"exogeneity": hook}, steps=s.steps)
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


def _run(name: str, fn: Callable[[], str | CheckResult]) -> CheckResult:
    try:
        out = fn()
        return out if isinstance(out, CheckResult) else CheckResult(name, "pass", out)
    except Exception as exc:  # noqa: BLE001
        return CheckResult(name, "fail", _describe(exc))


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
               + ("" if discrete else " (mean_action = 0)")),
    ]


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
