"""Entry point: `ragstream` (commands are registered by the modules of this package)."""

from __future__ import annotations

import typer

app = typer.Typer(name="ragstream", help="Ragstream from the command line.", no_args_is_help=True)
