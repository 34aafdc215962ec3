"""What every command shares: the consoles and the one-line error exit."""

from __future__ import annotations

import typer
from rich.console import Console

from guidedmarl.errors import ConfigError

console = Console()
err_console = Console(stderr=True)


def fail(exc: BaseException, debug: bool = False) -> typer.Exit:
    """Print ``exc`` on one line (plus the traceback with ``debug``); the exit to raise.

    Exit code 2 for a configuration error, 1 for any other library error.
    """
    if debug:
        err_console.print_exception()
    message = str(exc).strip() or type(exc).__name__
    err_console.print("[red]error:[/red] ", end="")
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)
