"""`ragstream config set|show`: profiles in the TOML config file. Secrets are typed at a hidden prompt when
no value is given, and never printed back."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ragstream_cli.config import SECRETS, SETTINGS, config_path, load_profiles, mask, resolve, save_profiles
from ragstream_cli.render import console, table
from ragstream_cli.session import session

config_app = typer.Typer(help="Profiles: gateway URL, API key, admin token.", no_args_is_help=True)


def setting_name(name: str) -> str:
    """`api-key` and `api_key` both name the setting `api_key`."""
    normalized = name.replace("-", "_")
    if normalized not in SETTINGS:
        raise typer.BadParameter(f"one of {', '.join(SETTINGS)}", param_hint="NAME")
    return normalized


@config_app.command("set")
def set_value(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="url, api_key or admin_token")],
    value: Annotated[str | None, typer.Argument(help="Omit it for a hidden prompt (keys)")] = None,
) -> None:
    """Store a setting in the profile (--profile, default "default")."""
    key = setting_name(name)
    if value is None:
        value = typer.prompt(key, hide_input=key in SECRETS)
    path = config_path()
    profiles = load_profiles(path)
    profile = session(ctx).profile or os.environ.get("RAGSTREAM_PROFILE") or "default"
    profiles.setdefault(profile, {})[key] = value
    save_profiles(path, profiles)
    shown = mask(value) if key in SECRETS else value
    console.print(f"{profile}.{key} = {shown} ({path})", markup=False)


@config_app.command("show")
def show(ctx: typer.Context) -> None:
    """Every profile, and what this invocation resolves to (flags > environment > profile > default)."""
    path = config_path()
    profiles = load_profiles(path)
    rows = [
        {"profile": name, "setting": key, "value": mask(value) if key in SECRETS else value}
        for name, table_ in sorted(profiles.items())
        for key, value in sorted(table_.items())
    ]
    console.print(f"config file: {path}{'' if path.exists() else ' (none yet)'}", markup=False)
    if rows:
        table(rows, ["profile", "setting", "value"])
    current = session(ctx)
    flags = {"url": current.url, "api_key": current.api_key, "admin_token": current.admin_token}
    resolved = resolve(flags, os.environ, profiles, current.profile)
    effective = [
        {"setting": "profile", "value": resolved.profile},
        {"setting": "url", "value": resolved.url},
        *(
            {"setting": key, "value": mask(secret) if (secret := getattr(resolved, key)) else "(not set)"}
            for key in ("api_key", "admin_token")
        ),
    ]
    table(effective, ["setting", "value"], title="in effect")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
