"""Where the CLI finds its gateway and credentials: flags, then environment, then a profile, then defaults.

Profiles live in `config.toml` in the user's config dir (platformdirs; `RAGSTREAM_CONFIG` names another file):

    [profiles.default]
    url = "http://127.0.0.1:8080"
    api_key = "..."
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_PROFILE = "default"
# The settings a profile may hold, by the name `config set` takes; secrets are masked by `config show`.
SETTINGS = ("url", "api_key", "admin_token")
SECRETS = frozenset({"api_key", "admin_token"})
ENV_VARS = {"url": "RAGSTREAM_URL", "api_key": "RAGSTREAM_API_KEY", "admin_token": "RAGSTREAM_ADMIN_TOKEN"}


class ConfigError(Exception):
    """The configuration cannot be read or lacks what a command needs (exit code 2)."""


@dataclass(frozen=True)
class Settings:
    """What one invocation talks to, resolved."""

    url: str
    api_key: str | None
    admin_token: str | None
    profile: str


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if override := env.get("RAGSTREAM_CONFIG"):
        return Path(override)
    return Path(platformdirs.user_config_dir("ragstream")) / "config.toml"


def load_profiles(path: Path) -> dict[str, dict[str, str]]:
    """Every profile in the file; none when it does not exist."""
    if not path.exists():
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: [profiles] must be a table")
    return {
        name: {key: str(value) for key, value in table.items() if key in SETTINGS}
        for name, table in profiles.items()
        if isinstance(table, dict)
    }


def save_profiles(path: Path, profiles: Mapping[str, Mapping[str, str]]) -> None:
    """Write the file readable by its owner only, since it may hold keys."""
    lines: list[str] = []
    for name in sorted(profiles):
        lines.append(f"[profiles.{json.dumps(name)}]")
        # JSON string escapes are valid TOML basic strings.
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in sorted(profiles[name].items()))
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    path.chmod(0o600)


def resolve(
    flags: Mapping[str, str | None],
    env: Mapping[str, str],
    profiles: Mapping[str, Mapping[str, str]],
    profile: str | None,
) -> Settings:
    """Each setting from the first of: its flag, its environment variable, the profile, the default.

    The profile is `--profile`, else `RAGSTREAM_PROFILE`, else "default"; naming one that does not exist is an
    error (a typo would otherwise silently fall back to the defaults)."""
    chosen = profile or env.get("RAGSTREAM_PROFILE")
    if chosen and chosen not in profiles and chosen != DEFAULT_PROFILE:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"no profile {chosen!r} in the config file (profiles: {known})")
    table = profiles.get(chosen or DEFAULT_PROFILE, {})

    def pick(name: str) -> str | None:
        return flags.get(name) or env.get(ENV_VARS[name]) or table.get(name) or None

    return Settings(
        url=(pick("url") or DEFAULT_URL).rstrip("/"),
        api_key=pick("api_key"),
        admin_token=pick("admin_token"),
        profile=chosen or DEFAULT_PROFILE,
    )


def mask(value: str) -> str:
    """Enough of a secret to tell two apart, never enough to use it."""
    return "****" if len(value) <= 8 else f"{value[:4]}…{value[-2:]} ({len(value)} chars)"
