"""Command-line options generated from a study's pydantic settings model.

Each study states its settings once, as fields of a pydantic model (name, type, default,
bounds, ``Field(description=...)`` as the help text). :func:`add_study_command` turns the
model into a typer command: one option per field (``agents`` -> ``--agents``, a bool ->
``--flag/--no-flag``), plus ``--config`` / ``--set`` (run settings, read by
:func:`guidedmarl.config.load_settings` into the model's ``run_config``) and ``--debug``.
The command validates the options with the model itself, so the checks and their messages
are the model's. A field opts out of the command line, or changes its flag, with
``json_schema_extra=cli(...)``.

List options take commas (``--agents 5,20,50``), repeated flags (``--seeds 0 --seeds 1``) or
several values after one flag (``--seeds 0 1``); a field may use another separator (the
stress study's ``--variant`` takes ``;``, as its values contain commas).

:func:`command_line` writes the command back with every option resolved (for
``command.txt`` and the reports).
"""

from __future__ import annotations

import inspect
import shlex
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import rich.markup
import typer
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined
from typer.core import TyperCommand

from guidedmarl.config import load_settings
from guidedmarl.errors import ConfigError, GuidedMarlError


def cli(
    option: str | None = None,
    *,
    separator: str = ",",
    empty: str | None = None,
    hidden: bool = False,
    last: int = 0,
) -> dict[str, Any]:
    """Command-line metadata of a settings field (pass as ``Field(json_schema_extra=cli(...))``).

    Args:
        option: the flag (default ``--`` + the field name with ``-`` for ``_``).
        separator: splits the values of a list option (``,`` also splits at spaces).
        empty: how an empty list is written back by :func:`command_line` (e.g. ``"0"``).
        hidden: no command-line option for this field (set by the command itself or from
            ``--config`` / ``--set``).
        last: list the option after the study's own (options shared by studies: 1, then 2...).
    """
    return {"cli": {"option": option, "separator": separator, "empty": empty, "hidden": hidden, "last": last}}


@dataclass(frozen=True)
class OptionSpec:
    """How one settings field appears on the command line."""

    field: str
    flag: str
    kind: Literal["scalar", "list", "bool"]
    item: type  # the element type of a list, the type of a scalar
    separator: str
    empty: str | None
    default: Any  # the model's default (None when it comes from a factory)
    help: str
    shown_default: str | None


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return annotation


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def option_specs(model: type[BaseModel]) -> list[OptionSpec]:
    """The command-line options of ``model``, in field order (hidden fields left out, ``last`` ones last)."""
    ranked: list[tuple[int, OptionSpec]] = []
    for name, info in model.model_fields.items():
        meta = (info.json_schema_extra or {}).get("cli", {}) if isinstance(info.json_schema_extra, dict) else {}
        if meta.get("hidden"):
            continue
        annotation = _strip_optional(info.annotation)
        origin = typing.get_origin(annotation)
        if origin is list:
            (item,) = typing.get_args(annotation) or (str,)
            kind: Literal["scalar", "list", "bool"] = "list"
        elif annotation is bool:
            kind, item = "bool", bool
        else:
            kind, item = "scalar", annotation
        if item not in (int, float, str, Path, bool):
            item = str  # Literal, Any, unions: given as text and checked by the model
        default = None if info.default is PydanticUndefined else info.default
        sep = meta.get("separator", ",")
        if info.default_factory is not None:
            produced = info.default_factory()  # type: ignore[call-arg]
            shown = sep.join(_format(v) for v in produced) if isinstance(produced, list) else None
        else:
            shown = None
        flag = meta.get("option") or "--" + name.replace("_", "-")
        spec = OptionSpec(name, flag, kind, item, sep, meta.get("empty"), default, info.description or "", shown)
        ranked.append((int(meta.get("last") or 0), spec))
    return [spec for _, spec in sorted(ranked, key=lambda item: item[0])]  # stable: field order within a rank


def split_values(items: list[str] | None, separator: str = ",") -> list[str]:
    """``["a,b", "c d"]`` -> ``["a", "b", "c", "d"]`` (with ``,``; other separators split only at themselves)."""
    out: list[str] = []
    for item in items or []:
        text = item.replace(" ", ",") if separator == "," else item
        out += [p.strip() for p in text.split(separator) if p.strip()]
    return out


def parse_option(spec: OptionSpec, raw: Any) -> Any:
    """The value of one option as the model receives it (lists split and converted)."""
    if spec.kind != "list":
        return raw
    parts = split_values(raw, spec.separator)
    if spec.item in (int, float):
        noun = "integers" if spec.item is int else "numbers"
        values = []
        for part in parts:
            try:
                values.append(spec.item(part))
            except ValueError:
                raise ConfigError(f"{spec.flag} expects {noun}, got '{part}'") from None
        return values
    return parts


def validate_settings(model: type[BaseModel], data: dict[str, Any], source: str = "study settings") -> Any:
    """``model`` validated from ``data``; a :class:`ConfigError` on one line naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
            problems.append(f"{loc}: " + " ".join(e["msg"].removeprefix("Value error, ").split()))
        raise ConfigError(f"invalid {source}: " + "; ".join(problems)) from None


class ListOptionsCommand(TyperCommand):
    """Lets a list option take several values after one flag: ``--seeds 0 1`` = ``--seeds 0 --seeds 1``."""

    list_flags: tuple[str, ...] = ()

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        current: str | None = None
        for arg in args:
            if arg in self.list_flags:
                current = arg
                rewritten.append(arg)
                continue
            if current is not None and not arg.startswith("-") and rewritten[-1] != current:
                rewritten += [current, arg]
                continue
            if arg.startswith("-"):
                current = None
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


def _parameter(spec: OptionSpec) -> inspect.Parameter:
    if spec.kind == "list":
        annotation: Any = Optional[list[str]]
        default = None
    elif spec.kind == "bool":
        annotation, default = bool, bool(spec.default)
    else:
        annotation, default = Optional[spec.item], spec.default
    flags = [f"{spec.flag}/--no-{spec.flag[2:]}"] if spec.kind == "bool" else [spec.flag]
    # the help is rendered as rich markup: escape it, or "pip install -e '.[ray]'" loses its "[ray]"
    text = rich.markup.escape(spec.help + (f" (default {spec.shown_default})" if spec.shown_default else ""))
    option = typer.Option(default, *flags, help=text, show_default=spec.shown_default is None)
    return inspect.Parameter(spec.field, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


COMMON = (
    ("config", Optional[Path], typer.Option(None, "--config", help="YAML or TOML run settings (ppo, learner, eval, "
                                                                    "domain_config...) applied to every run")),
    ("set_", Optional[list[str]], typer.Option(None, "--set", help="run-settings override, e.g. --set ppo.entropy_coef=0")),
    ("debug", bool, typer.Option(False, "--debug", help="show the traceback of an error")),
)  # fmt: skip


@dataclass
class Invocation:
    """What the command received besides the settings: for :func:`command_line`."""

    config: Path | None
    overrides: list[str]
    debug: bool


def add_study_command(
    app: typer.Typer,
    name: str,
    model: type[BaseModel],
    run: Callable[[Any, Invocation], None],
    help: str,
    fail: Callable[[BaseException, bool], typer.Exit],
) -> None:
    """Register ``name`` on ``app``: options from ``model``, then ``run(settings, invocation)``.

    A library error (:class:`~guidedmarl.errors.GuidedMarlError`) raised while parsing or
    running is turned into an exit by ``fail`` (exit 2 for a configuration error, 1 otherwise).
    """
    specs = option_specs(model)

    def command(**kwargs: Any) -> None:
        debug = bool(kwargs.pop("debug"))
        invocation = Invocation(kwargs.pop("config"), list(kwargs.pop("set_") or []), debug)
        try:
            values = {s.field: parse_option(s, kwargs[s.field]) for s in specs if kwargs[s.field] is not None}
            values["run_config"] = load_settings(invocation.config, invocation.overrides)
            settings = validate_settings(model, values)
            run(settings, invocation)
        except GuidedMarlError as exc:
            raise fail(exc, debug) from None

    params = [_parameter(s) for s in specs] + [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=a) for n, a, o in COMMON
    ]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = help
    command.__name__ = name
    cls = type(f"{name.title()}Command", (ListOptionsCommand,), {"list_flags": tuple(s.flag for s in specs if s.kind == "list")})
    app.command(name, cls=cls, help=help)(command)


def command_line(
    study: str,
    settings: BaseModel,
    invocation: Invocation | None = None,
    formatters: Mapping[str, Callable[[Any], str]] | None = None,
) -> str:
    """The command as typed (when run as ``guidedmarl``), plus the same with every option resolved.

    Options are written in field order: lists joined with their separator when it is ``,``
    (repeated flags otherwise), booleans as ``--flag`` / ``--no-flag``, None left out (or
    ``none`` for a text option whose default is not None).
    """
    typed = shlex.join(["guidedmarl", *sys.argv[1:]]) if sys.argv and Path(sys.argv[0]).name == "guidedmarl" else None
    parts = ["guidedmarl", "study", study]
    formatters = formatters or {}
    for spec in option_specs(type(settings)):
        value = getattr(settings, spec.field)
        if spec.field in formatters:
            value = formatters[spec.field](value)
        if value is None:
            if spec.item is str and spec.kind == "scalar" and spec.default is not None:
                parts += [spec.flag, "none"]
            continue
        if spec.kind == "bool":
            parts.append(spec.flag if value else f"--no-{spec.flag[2:]}")
        elif isinstance(value, list):
            if not value:
                parts += [spec.flag, spec.empty] if spec.empty is not None else []
            elif spec.separator == ",":
                parts += [spec.flag, ",".join(_format(v) for v in value)]
            else:
                for v in value:
                    parts += [spec.flag, str(v)]
        else:
            parts += [spec.flag, str(value)]
    if invocation is not None:
        parts += ["--config", str(invocation.config)] if invocation.config else []
        for item in invocation.overrides:
            parts += ["--set", item]
    resolved = shlex.join(parts)
    return resolved if typed is None or typed == resolved else f"{typed}\nresolved: {resolved}"
