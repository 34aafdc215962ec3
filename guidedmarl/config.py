"""Typed, validated run configuration (pydantic).

Every field carries its allowed range, so a bad value fails at load time with a message
naming the field, e.g. ``ppo.learning_rate: Input should be greater than 0``. Domain
settings live in ``domain_config`` and are validated by the domain's own model when the
domain is built (see :mod:`guidedmarl.domain`).
"""

from __future__ import annotations

import json
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from guidedmarl.errors import ConfigError, GuidedMarlError
from guidedmarl.learners import PRESETS, LearnerConfig, check_preset_kinds, resolve_learner
from guidedmarl.registry import did_you_mean, load_module


DEFAULT_ALGO = "dgpg"
"""The learner preset of a run that names none, where its domain does not name one either."""


def default_algo(domain: Any) -> str:
    """The learner preset a run of ``domain`` trains when it names none: the domain's
    ``default_algo`` if the domain can be found, else :data:`DEFAULT_ALGO` (an unknown domain is
    reported where the domain is built, with the list of the known ones)."""
    if not isinstance(domain, str) or not domain:
        return DEFAULT_ALGO
    from guidedmarl.domain import get_domain  # the domain module imports this one

    try:
        return get_domain(domain).default_algo
    except (GuidedMarlError, ImportError, AttributeError):
        return DEFAULT_ALGO


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class PPOConfig(_Strict):
    """PPO settings shared by every learner (identical for DG-PG, MAPPO, IPPO, ...)."""

    learning_rate: float = Field(2e-3, gt=0, le=1, description="Adam step size for actor and critic")
    anneal_lr: bool = Field(
        False, description="decay the step size linearly from learning_rate at the first update towards 0 at the last"
    )
    gamma: float = Field(0.99, ge=0, le=1, description="discount factor")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    clip_coef: float = Field(0.2, gt=0, le=1, description="PPO ratio clip")
    update_epochs: int = Field(8, ge=1, le=100, description="passes over each episode's batch")
    num_minibatches: int = Field(4, ge=1, le=1024, description="minibatches per pass (split over time x env rows)")
    entropy_coef: float = Field(0.01, ge=0, le=1, description="weight of the policy-entropy bonus")
    value_coef: float = Field(0.5, ge=0, le=100, description="weight of the value loss")
    max_grad_norm: float = Field(0.5, gt=0, le=1e6, description="clip of the global gradient norm")
    hidden: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [64, 64], min_length=1, max_length=16, description="hidden layer widths (each >= 1)"
    )
    shared_parameters: bool = Field(True, description="one network for all agents (False: per-agent weights)")
    actor: Literal["auto", "mlp", "option_scorer"] = Field(
        "auto",
        description="policy network: 'mlp' (one output per option), 'option_scorer' (one network scores "
        "every option from its feature block; needs an environment that declares option_features), "
        "'auto' (option_scorer where the environment declares option features, else mlp)",
    )
    value_normalization: bool = Field(True, description="critic learns standardised returns (running statistics)")
    chunk_samples: int = Field(
        4_096, ge=1, le=1 << 30,
        description="most agent-samples one forward/backward pass holds; a larger minibatch is split into chunks "
        "whose gradients add up to the minibatch's (memory and time per sample stay flat at large N: with the "
        "option scorer a pass holds samples x options x hidden floats per layer). The policy is chunked over "
        "its active samples, the critic over rows (a centralised critic takes chunk_samples rows a pass). "
        "4,096 was the fastest of 2,048 to 16,384 at N = 1500 and 15,000 after the critic was chunked apart "
        "(2026-12-04, docs/performance.md)",
    )  # fmt: skip


LEGACY_GUIDANCE_KEYS = {"alpha": "alpha", "scaling": "scaling", "surrogate": "surrogate"}
"""``guidance.*`` settings of configs written before learners were plug-ins -> ``learner.estimator.*``."""


class EvalConfig(_Strict):
    """Evaluation on held-out scenarios: validation (checkpoint selection) and test (reported)."""

    test_scenarios: int = Field(40, ge=1, le=10_000, description="held-out scenarios, run as parallel environments")
    validation_scenarios: int = Field(
        20,
        ge=0,
        le=10_000,
        description="scenarios, seeded apart from training and test, on which the best checkpoint is chosen "
        "(0: choose on the test scenarios, as the paper's 'best checkpoint reward' does)",
    )
    every: int = Field(1, ge=1, description="evaluate the policy every this many training episodes")
    test: Literal["every", "chosen"] = Field(
        "every",
        description="when the test scenarios are played: at every evaluation ('every': the learning curve "
        "holds the test reward), or only for the untrained policy, the checkpoint chosen on validation and "
        "the final policy ('chosen': same summary figures, an evaluation plays the validation scenarios "
        "only; needs validation_scenarios >= 1)",
    )
    deterministic: bool | None = Field(
        None,
        description="greedy actions at evaluation (True), sampled ones (False), or the domain's choice "
        "(None: Domain.greedy_evaluation)",
    )
    heuristics: bool = Field(True, description="evaluate the domain's heuristics on the test set")
    heuristics_cache: bool = Field(
        True,
        description="read the heuristics' test results from the disk cache when an earlier run computed them "
        "for the same domain settings, N, seeds and code (guidedmarl.heuristic_cache; GUIDEDMARL_CACHE_DIR)",
    )

    @model_validator(mode="after")
    def _chosen_needs_validation(self) -> EvalConfig:
        if self.test == "chosen" and self.validation_scenarios == 0:
            raise ValueError(
                "eval.test = 'chosen' plays the test scenarios only for the checkpoint chosen on validation, "
                "so it needs eval.validation_scenarios >= 1 (got 0); use eval.test = 'every' to choose on test"
            )
        return self


class RunConfig(_Strict):
    """One training run: ``guidedmarl run`` builds exactly this."""

    plugins: list[str] = Field(
        default_factory=list,
        description="modules or .py files imported before anything else (they may register estimators, "
        "critics, presets, domains); recorded so that the saved config runs again",
    )
    domain: str = Field(
        min_length=1,
        description="registered domain name (see `guidedmarl domains`), or module:Class / path/to/file.py:Class",
    )
    algo: str = Field(
        DEFAULT_ALGO,
        min_length=1,
        description="learner preset (see `guidedmarl learners`); when not given, the domain's "
        "Domain.default_algo (dgpg_exact on cloud and traffic, whose studies train it; dgpg elsewhere)",
    )
    agents: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="number of agents N (default: the domain's own default; some domains fix N from their data)",
    )
    episodes: int = Field(10, ge=1, le=1_000_000, description="training episodes (one PPO update each)")
    env_steps: int | None = Field(
        None,
        ge=1,
        le=10**12,
        description="training budget in environment steps instead of episodes: episodes = ceil(env_steps / "
        "(envs x horizon)), written back into `episodes` of the run's config.yaml (null: use `episodes`)",
    )
    envs: int = Field(1, ge=1, le=4096, description="parallel training environments per episode")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="drives every random generator of the run")
    threads: int | None = Field(
        1,
        ge=1,
        le=256,
        description="torch intra-op threads (default 1: the networks are small, and on a busy machine torch's "
        "default of one thread per core spins and runs many times slower, see the README; null: torch's default). "
        "Same seed and same thread count give the same numbers; another thread count sums in another order",
    )
    device: str = Field(
        "cpu",
        description="where the environments, the analytical model and the networks live: cpu, cuda or cuda:K "
        "(the domain must support it, see `guidedmarl domains`; convex-layer references are solved on the CPU)",
    )
    memory_check: bool = Field(
        True,
        description="refuse to start a run whose estimated memory exceeds what the machine has available "
        "(guidedmarl/memory.py; false: start anyway)",
    )
    out: Path = Field(Path("runs/latest"), description="run directory")
    log: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list,
        description="optional loggers beside metrics.csv/metrics.json (always written): tensorboard, wandb",
    )
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    learner: LearnerConfig = Field(description="critic and advantage estimator (filled in from the preset `algo`)")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    domain_config: dict[str, Any] = Field(default_factory=dict, description="domain settings, checked by the domain")

    @model_validator(mode="before")
    @classmethod
    def _resolve_learner(cls, data: Any) -> Any:
        """Fill ``learner`` from the preset ``algo``, with the given ``learner`` settings on top."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        plugins = data.get("plugins") or []
        if isinstance(plugins, list):
            for target in plugins:
                if isinstance(target, str):
                    load_module(target)
        if data.get("algo") is None:
            data["algo"] = default_algo(data.get("domain"))
        algo = data["algo"]
        legacy = data.pop("guidance", None)
        if not isinstance(algo, str) or algo not in PRESETS:
            data["learner"] = resolve_learner("dgpg", None)  # the error is reported on `algo` alone
            return data
        overrides = data.get("learner") or {}
        if isinstance(overrides, BaseModel):
            overrides = overrides.model_dump()
        if not isinstance(overrides, dict):
            raise ValueError("learner: must be a mapping with 'critic' and/or 'estimator'")
        if isinstance(legacy, dict) and PRESETS.get(algo).estimator.get("kind") == "dgpg":
            old = {LEGACY_GUIDANCE_KEYS[k]: v for k, v in legacy.items() if k in LEGACY_GUIDANCE_KEYS}
            if legacy.get("exact_difference"):
                old["weight"] = "exact_difference"
            overrides = deep_merge({"estimator": old}, overrides)
        data["learner"] = deep_merge(PRESETS.get(algo).settings(), overrides)
        return data

    @field_validator("learner")
    @classmethod
    def _kinds_of_the_preset(cls, value: LearnerConfig, info: ValidationInfo) -> LearnerConfig:
        algo = info.data.get("algo")
        if isinstance(algo, str) and algo in PRESETS:
            check_preset_kinds(algo, value)
        return value

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not re.match(r"^(cpu|cuda(:\d+)?)$", value):
            raise ValueError(f"must be cpu, cuda or cuda:K (K a device index), got '{value}'")
        return value

    @field_validator("algo")
    @classmethod
    def _known_algo(cls, value: str) -> str:
        if value not in PRESETS:
            names = PRESETS.names()
            raise ValueError(
                f"unknown learner preset '{value}'{did_you_mean(value, names)}; available learner presets: "
                + ", ".join(names)
            )
        return value


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``Model``, ``Model | None``, ``list[Model]``), if one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _names_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The setting names valid at ``loc`` (the path of an unknown key) under ``model``."""
    for part in loc[:-1]:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _message(e: dict[str, Any], model: type[BaseModel] | None) -> str:
    """A pydantic error as a sentence: NaN and infinities said as such, unknown keys with a suggestion."""
    if e["type"] == "finite_number":
        try:
            value = float(e.get("input"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = float("inf")
        said = "is not a number (NaN)" if value != value else f"is infinite ({value})"
        return f"{said}; give a finite value"
    if e["type"] == "extra_forbidden":
        names = _names_at(model, tuple(e["loc"]))
        key = str(e["loc"][-1])
        listed = f"; valid here: {', '.join(names)}" if 0 < len(names) <= 12 else "; see `guidedmarl config show`"
        return f"unknown setting '{key}'{did_you_mean(key, names)}{listed}"
    if e["type"] == "literal_error" and isinstance(e.get("input"), str):
        options = re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))
        return e["msg"] + did_you_mean(e["input"], options)
    return e["msg"].removeprefix("Value error, ")


def format_validation_error(err: ValidationError, source: str = "config", model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field.path: message`` (``model``: the validated class, for "did you mean")."""
    lines = [f"invalid {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {_message(dict(e), model)}")
    return "\n".join(lines)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file into a dict, or JSON (.json)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings at the top level")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; values in ``override`` win."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def build_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a settings dict into a :class:`RunConfig`, with readable errors."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, RunConfig)) from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set`` values, ``["ppo.learning_rate=1e-3", ...]``, as a nested dict.

    Keys are dotted paths, values are parsed as YAML. A key below one that already holds
    a value (``--set a=1 --set a.b=2``) raises :class:`ConfigError`.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is already set to a value")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_settings(config: Path | None, overrides: list[str] | None) -> dict[str, Any]:
    """Settings of ``--config FILE`` (if given) with the ``--set`` ``overrides`` merged on top."""
    data: dict[str, Any] = load_config_file(config) if config else {}
    return deep_merge(data, parse_overrides(overrides or []))
