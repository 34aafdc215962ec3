"""``guidedmarl config show``: every setting with its default, description and range, as a YAML file to start from."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from guidedmarl.commands.common import fail
from guidedmarl.errors import GuidedMarlError

config_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Settings: show the resolved defaults.")


@config_app.command()
def show(
    domain: Annotated[Optional[str], typer.Option(help="fill in this domain's settings (domain_config)")] = None,
    algo: Annotated[
        Optional[str], typer.Option(help="learner preset whose learner settings are shown (default: the domain's)")
    ] = None,
    markdown: Annotated[bool, typer.Option(help="a Markdown table (the docs' settings reference) instead of YAML")] = False,
    debug: Annotated[bool, typer.Option(help="show the traceback of an error")] = False,
) -> None:
    """Print the full resolved defaults, each with its description and range.

    The YAML loads back: ``guidedmarl config show --domain cloud > my_run.yaml``, edit, then
    ``guidedmarl run --config my_run.yaml``.
    """
    from guidedmarl.config import ConfigError
    from guidedmarl.settings_doc import as_markdown, as_yaml, resolved_defaults

    try:
        cfg, entries = resolved_defaults(domain, algo)
    except (GuidedMarlError, ValueError) as exc:
        raise fail(exc if isinstance(exc, GuidedMarlError) else ConfigError(str(exc)), debug) from None
    if markdown:
        typer.echo(as_markdown(entries), nl=False)
        return
    what = f"domain {domain}" if domain else "no domain (set `domain`)"
    header = (f"guidedmarl run settings: defaults for {what}, learner preset {cfg.algo}.\n"
              "Each setting: its description and (allowed range). Keep only what you change, or all of it;\n"
              "run with: guidedmarl run --config THIS_FILE [--set key=value ...]")  # fmt: skip
    typer.echo(as_yaml(entries, header), nl=False)
