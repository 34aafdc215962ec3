"""The four environment checks: step tensors, bad actions refused, horizon and determinism."""

from __future__ import annotations

import torch

from guidedmarl.checks import MAX_HORIZON_STEPS
from guidedmarl.checks.report import CheckFailed, _blame, _max_diff, _shape
from guidedmarl.checks.setup import _Setup
from guidedmarl.env import EnvSpec


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
    if s.env.spec.auto_reset:
        return _episode_ends(s, horizon, limit)
    for t, step in enumerate(s.play(s.env, s.seeds, limit)):
        if not bool((step.done == (t >= horizon)).all()):
            where = "reset" if t == 0 else f"step (after step {t} of horizon {horizon})"
            raise CheckFailed(f"{type(s.env).__name__}.{where}: done must be {t >= horizon} in every environment, "
                              f"got {step.done.tolist()}")
    if limit < horizon:
        return f"done stayed False for {limit} steps (horizon {horizon} > {MAX_HORIZON_STEPS}: end not reached)"
    return f"done False for steps 1..{horizon - 1} and True in every environment after step T = {horizon}"


def _episode_ends(s: _Setup, horizon: int, limit: int) -> str:
    """Auto-reset: done False at reset, every environment's first episode ends within the horizon,
    and every time-limit end carries the ended episode's last step."""
    name = type(s.env).__name__
    ended = None
    for t, step in enumerate(s.play(s.env, s.seeds, limit)):
        if t == 0:
            if bool(step.done.any()):
                raise CheckFailed(f"{name}.reset: done must be False in every environment, got {step.done.tolist()}")
            ended = torch.zeros_like(step.done)
            continue
        terminal = step.done if step.terminated is None else step.terminated
        if bool((step.done & ~terminal).any()) and step.final is None:
            raise CheckFailed(f"{name}.step (after step {t}): an episode was truncated but Step.final is None")
        ended = ended | step.done
    assert ended is not None
    if limit < horizon:
        return f"auto-reset; {int(ended.sum())} of {ended.numel()} environments ended an episode within {limit} steps"
    if not bool(ended.all()):
        raise CheckFailed(f"{name}: with auto_reset every episode must end within the horizon ({horizon} steps); "
                          f"environments {torch.nonzero(~ended).flatten().tolist()[:8]} did not")  # fmt: skip
    return f"auto-reset; every environment's first episode ended within the horizon T = {horizon}"


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
