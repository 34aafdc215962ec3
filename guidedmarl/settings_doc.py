"""Every setting of a run with its default, description and allowed range, read from the pydantic models.

One walk (:func:`settings_entries`) over a resolved :class:`~guidedmarl.config.RunConfig`
(the learner of a preset, the settings of a domain) feeds both ``guidedmarl config show``
(:func:`as_yaml`: a commented YAML file that loads back and runs) and the settings
reference of the documentation (:func:`as_markdown`), so neither can drift from the code.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

import annotated_types as at
import yaml
from pydantic import BaseModel

LEFT_OUT = ("out",)
"""Top-level settings not written by ``config show`` (``out`` defaults from domain, algo, N and seed)."""


@dataclass(frozen=True)
class Entry:
    """One setting: its dotted path, default, description and allowed range (``""`` when unbounded)."""

    path: str
    value: Any
    description: str
    range: str
    section: bool  # a nested group of settings (its value is shown by the entries under it)


def _range(info: Any) -> str:
    """The bounds of a field as text: ``> 0, <= 1``, ``one of a, b``, ``at least 1 item``."""
    parts = []
    for m in info.metadata:
        for cls, attr, op in ((at.Gt, "gt", ">"), (at.Ge, "ge", ">="), (at.Lt, "lt", "<"), (at.Le, "le", "<=")):
            if isinstance(m, cls):
                parts.append(f"{op} {getattr(m, attr)}")
        if isinstance(m, at.MinLen):
            text = info.annotation is str or info.annotation == "str"
            parts.append("not empty" if text and m.min_length == 1 else f"at least {m.min_length} item(s)")
    literal = _literal(info.annotation)
    if literal:
        parts.append("one of " + ", ".join(map(str, literal)))
    return ", ".join(parts)


def _literal(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        found = _literal(arg)
        if found:
            return found
    return ()


def settings_entries(model: BaseModel, prefix: str = "", left_out: tuple[str, ...] = ()) -> list[Entry]:
    """Every field of ``model`` (recursively, nested models as sections), in declaration order."""
    out: list[Entry] = []
    for name, info in type(model).model_fields.items():
        if name in left_out:
            continue
        value = getattr(model, name)
        path = f"{prefix}{name}"
        description = " ".join((info.description or "").split())
        if not description and (name == "kind" or isinstance(value, BaseModel)):
            owner = type(model) if name == "kind" else type(value)
            description = (owner.__doc__ or "").strip().split("\n")[0]  # the class's own summary line
        if isinstance(value, BaseModel):
            out.append(Entry(path, None, description, "", True))
            out += settings_entries(value, f"{path}.")
        else:
            out.append(Entry(path, _plain(value), description, _range(info), False))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def as_yaml(entries: list[Entry], header: str = "") -> str:
    """A commented YAML document of ``entries``: ``# description (range)`` above each ``key: default``."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for e in entries:
        depth = e.path.count(".")
        pad = "  " * depth
        note = " ".join(p for p in (e.description, f"({e.range})" if e.range else "") if p)
        if note:
            lines.append(f"{pad}# {note}")
        key = e.path.rsplit(".", 1)[-1]
        lines.append(f"{pad}{key}:" if e.section else f"{pad}{key}: {_scalar(e.value)}")
    text = "\n".join(lines) + "\n"
    yaml.safe_load(text)  # what is printed must load back
    return text


def as_markdown(entries: list[Entry]) -> str:
    """``entries`` as a Markdown table: setting, default, range, description."""
    rows = ["| setting | default | allowed | description |", "|---|---|---|---|"]
    for e in entries:
        default = "" if e.section else f"`{_scalar(e.value)}`"
        cells = [f"`{e.path}`", default, e.range, e.description]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def resolved_defaults(domain: str | None, algo: str | None = None) -> tuple[BaseModel, list[Entry]]:
    """The default RunConfig of ``domain`` and preset ``algo`` (None: the domain's default preset;
    domain settings filled in) and its entries."""
    from guidedmarl.config import RunConfig
    from guidedmarl.domain import get_domain

    cfg = RunConfig.model_validate({"domain": domain or "DOMAIN", "algo": algo})
    entries = settings_entries(cfg, left_out=LEFT_OUT)
    if domain is None:
        return cfg, [e if e.path != "domain" else Entry("domain", None, e.description + " (required)", "", False)
                     for e in entries]  # fmt: skip
    settings = get_domain(domain).settings_model()
    at_domain = [i for i, e in enumerate(entries) if e.path == "domain_config"][0]
    block = [Entry("domain_config", None, f"settings of the domain '{domain}'", "", True)]
    block += settings_entries(settings, "domain_config.")
    return cfg, entries[:at_domain] + block + entries[at_domain + 1 :]
