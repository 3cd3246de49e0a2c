"""Entry point: `ragstream`. The global flags live here; each group of commands in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from ragstream_cli import admin, ask, docs, ingest, operations, settings_cmd, status_cmd
from ragstream_cli.session import HandledGroup, Session

app = typer.Typer(
    name="ragstream",
    help="Ragstream from the command line, over the public HTTP API.",
    no_args_is_help=True,
    cls=HandledGroup,
    rich_markup_mode=None,
)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option("--url", help="Gateway URL [env RAGSTREAM_URL; default http://127.0.0.1:8080]")
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Tenant API key [env RAGSTREAM_API_KEY]")] = None,
    admin_token: Annotated[
        str | None, typer.Option("--admin-token", help="Admin token or admin key [env RAGSTREAM_ADMIN_TOKEN]")
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Profile of the config file [env RAGSTREAM_PROFILE]")
    ] = None,
) -> None:
    """Flags override the environment, which overrides the profile."""
    existing = ctx.obj if isinstance(ctx.obj, Session) else Session()
    existing.url, existing.api_key, existing.admin_token, existing.profile = url, api_key, admin_token, profile
    ctx.obj = existing


ingest.register(app)
ask.register(app)
docs.register(app)
admin.register(app)
operations.register(app)
settings_cmd.register(app)
status_cmd.register(app)
