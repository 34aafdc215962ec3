"""Export learning curves in the JSON layout read by marl-eval (InstaDeep's MARL evaluation tools).

marl-eval (PyPI package ``id-marl-eval``) aggregates runs with rliable (interquartile mean,
probability of improvement, sample-efficiency curves). It reads one nested dictionary::

    {env_name: {task_name: {algorithm_name: {run_name: {
        "step_0": {"step_count": <int>, "<metric>": [<float>, ...], ...},
        ...
        "step_k": {...},
        "absolute_metrics": {"<metric>": [<float>, ...], ...},
    }}}}}

* ``step_count``: environment steps taken in training when the evaluation was logged;
* each metric is a list: one value per evaluation episode, or one value when the metric is
  already an aggregate; all lists of one step have the same length here;
* ``absolute_metrics``: the best policy's score (marl-eval's "absolute metric");
* marl-eval lower-cases every key, treats any key of a run that contains ``"absolute"`` as
  the absolute metrics, any other key as a logging step, and any metric name containing
  ``"step_count"`` as the step counter; it adds ``mean_<metric>`` and ``norm_<metric>``
  entries itself.

Its statistics stack arrays across runs, tasks and steps, so (README, "Important note on
data structure") every task of an environment must have the same algorithms, every
algorithm the same number of runs, every run the same logging steps, and every step the
same metrics; algorithm names must not contain commas. :func:`validate_marl_eval` checks
the structure and, with ``strict=True`` (default), these uniformity rules.

What this project writes (:func:`build_marl_eval`): env = domain, task = ``N<agents>``,
algorithm = the study arm (``dgpg``, ``mappo``...), run = ``run_<seed>``, step k = the k-th
evaluation (step 0: the untrained policy), ``step_count`` = training environment steps
(episodes x parallel environments x horizon), metric ``return`` = the mean test reward over
the held-out scenarios (one value: runs keep only the mean of each evaluation), absolute
``return`` = the best-checkpoint test reward. Learners with different training budgets
(DG-PG 10 episodes, MAPPO 25) have different numbers of evaluations, which marl-eval cannot
stack: ``steps="common"`` (default) keeps the evaluations every run has (the first
min-budget episodes, at equal sample counts), ``steps="all"`` keeps everything (valid only
with ``strict=False``). The absolute metric covers each run's whole budget either way.
"""

from __future__ import annotations

from guidedmarl.errors import StudyError

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

STEP_KEY = re.compile(r"^step_(\d+)$")
ABSOLUTE_KEY = "absolute_metrics"


class MarlEvalFormatError(StudyError, ValueError):
    """Data that marl-eval cannot read; the message lists every problem with its key path."""


@dataclass
class RunCurve:
    """One run's learning curve, the input of :func:`build_marl_eval`.

    Attributes:
        task: task key (e.g. ``"N50"``).
        algorithm: algorithm key (no commas).
        run: run key (e.g. ``"run_0"``).
        step_counts: training environment steps at each evaluation (non-decreasing).
        values: the metric at each evaluation (same length as ``step_counts``).
        absolute: the best policy's score (the absolute metric).
    """

    task: str
    algorithm: str
    run: str
    step_counts: Sequence[int]
    values: Sequence[float]
    absolute: float


def build_marl_eval(
    env_name: str,
    runs: Iterable[RunCurve],
    metric: str = "return",
    steps: Literal["common", "all"] = "common",
) -> dict[str, Any]:
    """The marl-eval dictionary of ``runs`` (see the module docstring); validated before returning.

    Raises:
        MarlEvalFormatError: with ``steps="common"`` if the result breaks marl-eval's rules
            (e.g. a run missing for one algorithm), with ``steps="all"`` if its structure is broken.
    """
    runs = list(runs)
    if steps not in ("common", "all"):
        raise ValueError(f"steps must be 'common' or 'all', got {steps!r}")
    for r in runs:
        if len(r.step_counts) != len(r.values):
            raise ValueError(
                f"{r.task}/{r.algorithm}/{r.run}: {len(r.step_counts)} step counts for {len(r.values)} values"
            )
    keep = min((len(r.values) for r in runs), default=0) if steps == "common" else None
    data: dict[str, Any] = {env_name: {}}
    for r in runs:
        node = data[env_name].setdefault(r.task, {}).setdefault(r.algorithm, {})
        if r.run in node:
            raise ValueError(f"run {r.task}/{r.algorithm}/{r.run} given twice")
        count = len(r.values) if keep is None else keep
        entry: dict[str, Any] = {}
        for k in range(count):
            entry[f"step_{k}"] = {"step_count": int(r.step_counts[k]), metric: [float(r.values[k])]}
        entry[ABSOLUTE_KEY] = {metric: [float(r.absolute)]}
        node[r.run] = entry
    validate_marl_eval(data, strict=steps == "common")
    return data


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check_metrics(path: str, metrics: Any, problems: list[str], *, step: bool) -> list[str]:
    """Check one step (or the absolute metrics); return its metric names."""
    if not isinstance(metrics, dict):
        problems.append(f"{path}: expected a dict of metrics, got {type(metrics).__name__}")
        return []
    names: list[str] = []
    lengths: dict[str, int] = {}
    if step:
        if "step_count" not in metrics:
            problems.append(f"{path}: missing 'step_count'")
        else:
            sc = metrics["step_count"]
            if not isinstance(sc, int) or isinstance(sc, bool):
                problems.append(f"{path}/step_count: must be an int, got {type(sc).__name__}")
            elif sc < 0:
                problems.append(f"{path}/step_count: must be >= 0, got {sc}")
    for name, values in metrics.items():
        if name == "step_count":
            if not step:
                problems.append(f"{path}: 'step_count' belongs in logging steps, not in {ABSOLUTE_KEY}")
            continue
        if not isinstance(name, str) or not name:
            problems.append(f"{path}: metric names must be non-empty strings, got {name!r}")
            continue
        if "step_count" in name.lower():
            problems.append(f"{path}/{name}: marl-eval reads any key containing 'step_count' as the step counter")
            continue
        if name.lower().startswith(("mean_", "norm_")):
            problems.append(f"{path}/{name}: the prefixes 'mean_' and 'norm_' are reserved (marl-eval adds them)")
            continue
        if not isinstance(values, list):
            problems.append(f"{path}/{name}: metric values must be a list, got {type(values).__name__}")
            continue
        if not values:
            problems.append(f"{path}/{name}: metric list is empty")
            continue
        bad = [v for v in values if not _is_number(v) or not math.isfinite(v)]
        if bad:
            problems.append(f"{path}/{name}: metric values must be finite numbers, got {bad[0]!r}")
            continue
        names.append(name)
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(lengths.items()))
        problems.append(f"{path}: metric lists differ in length ({shown})")
    if not names and not any(p.startswith(path) for p in problems):
        problems.append(f"{path}: no metrics")
    return names


def _check_keys(path: str, node: Any, what: str, problems: list[str]) -> bool:
    """``node`` must be a non-empty dict with string keys unique after lower-casing."""
    if not isinstance(node, dict):
        problems.append(f"{path}: expected a dict of {what}, got {type(node).__name__}")
        return False
    if not node:
        problems.append(f"{path}: no {what}")
        return False
    seen: dict[str, str] = {}
    for key in node:
        if not isinstance(key, str) or not key:
            problems.append(f"{path}: {what} names must be non-empty strings, got {key!r}")
            return False
        low = key.lower()
        if low in seen:
            problems.append(f"{path}: keys '{seen[low]}' and '{key}' collide (marl-eval lower-cases keys)")
        seen[low] = key
    return True


def validate_marl_eval(data: Any, *, strict: bool = True, max_problems: int = 20) -> None:
    """Check that ``data`` has the layout marl-eval reads (module docstring).

    Always checked: the nesting env -> task -> algorithm -> run -> steps; string keys that
    stay distinct when lower-cased; step keys ``step_<k>`` plus exactly one
    ``absolute_metrics`` per run; an int ``step_count`` >= 0 in every step, non-decreasing
    in k; every metric a non-empty list of finite numbers, all lists of a step of equal
    length; the absolute metrics a subset of the run's step metrics (marl-eval looks them up
    in every step). With ``strict``, also marl-eval's uniformity rules: per environment the
    same algorithms in every task, the same number of runs for every algorithm, the same
    step keys in every run, the same metrics in every step; no comma in algorithm names.

    Raises:
        MarlEvalFormatError: listing up to ``max_problems`` problems, each with its key path.
    """
    problems: list[str] = []
    if not _check_keys("(top level)", data, "environments", problems):
        _raise(problems, max_problems)
    for env, tasks in data.items():
        if not _check_keys(env, tasks, "tasks", problems):
            continue
        algo_sets: dict[str, list[str]] = {}
        run_counts: dict[str, int] = {}
        step_sets: dict[str, tuple[str, ...]] = {}
        metric_sets: dict[str, tuple[str, ...]] = {}
        for task, algos in tasks.items():
            tpath = f"{env}/{task}"
            if not _check_keys(tpath, algos, "algorithms", problems):
                continue
            algo_sets[tpath] = sorted(algos)
            for algo, runs in algos.items():
                apath = f"{tpath}/{algo}"
                if strict and "," in algo:
                    problems.append(f"{apath}: algorithm names must not contain commas")
                if not _check_keys(apath, runs, "runs", problems):
                    continue
                run_counts[apath] = len(runs)
                for run, steps in runs.items():
                    rpath = f"{apath}/{run}"
                    if not _check_keys(rpath, steps, "steps", problems):
                        continue
                    absolute = [k for k in steps if "absolute" in k.lower()]
                    if absolute != [ABSOLUTE_KEY]:
                        if not absolute:
                            problems.append(f"{rpath}: missing '{ABSOLUTE_KEY}'")
                        else:
                            problems.append(
                                f"{rpath}: expected exactly one key '{ABSOLUTE_KEY}' holding the absolute metrics, "
                                f"got {absolute}"
                            )
                    step_keys = [k for k in steps if "absolute" not in k.lower()]
                    bad = [k for k in step_keys if not STEP_KEY.match(k)]
                    if bad:
                        problems.append(f"{rpath}: step keys must look like 'step_<k>', got {bad[:3]}")
                    if not step_keys:
                        problems.append(f"{rpath}: no logging steps")
                    ordered = sorted(
                        (int(m.group(1)), k) for k in step_keys if (m := STEP_KEY.match(k)) is not None
                    )
                    step_metrics: set[str] = set()
                    last_count, last_key = -1, ""
                    for _, key in ordered:
                        names = _check_metrics(f"{rpath}/{key}", steps[key], problems, step=True)
                        step_metrics.update(names)
                        metric_sets[f"{rpath}/{key}"] = tuple(sorted(names))
                        sc = steps[key].get("step_count") if isinstance(steps[key], dict) else None
                        if isinstance(sc, int) and not isinstance(sc, bool):
                            if sc < last_count:
                                problems.append(
                                    f"{rpath}/{key}: step_count {sc} is smaller than {last_count} at {last_key}"
                                )
                            last_count, last_key = sc, key
                    step_sets[rpath] = tuple(k for _, k in ordered)
                    if ABSOLUTE_KEY in steps:
                        names = _check_metrics(f"{rpath}/{ABSOLUTE_KEY}", steps[ABSOLUTE_KEY], problems, step=False)
                        missing = sorted(set(names) - step_metrics)
                        if missing and step_metrics:
                            problems.append(
                                f"{rpath}/{ABSOLUTE_KEY}: metrics {missing} are not logged in the steps "
                                "(marl-eval looks every absolute metric up in every step)"
                            )
        if strict:
            _uniform(env, "algorithms", algo_sets, problems)
            _uniform(env, "number of runs", run_counts, problems)
            _uniform(env, "logging steps", step_sets, problems)
            _uniform(env, "metrics", metric_sets, problems)
    _raise(problems, max_problems)


def _uniform(env: str, what: str, values: dict[str, Any], problems: list[str]) -> None:
    """marl-eval stacks arrays: ``values`` (path -> value) must be equal throughout ``env``."""
    distinct: dict[Any, str] = {}
    for path, value in values.items():
        key = tuple(value) if isinstance(value, list) else value
        distinct.setdefault(key, path)
    if len(distinct) > 1:
        shown = "; ".join(f"{_short(v)} at {p}" for v, p in list(distinct.items())[:3])
        problems.append(f"{env}: marl-eval needs the same {what} throughout an environment, got {shown}")


def _short(value: Any) -> str:
    if isinstance(value, tuple) and len(value) > 4:
        return f"({len(value)} entries: {value[0]} ... {value[-1]})"
    return str(value)


def _raise(problems: list[str], max_problems: int) -> None:
    if not problems:
        return
    shown = problems[:max_problems]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    raise MarlEvalFormatError("invalid marl-eval data:\n  " + "\n  ".join(shown) + more)
