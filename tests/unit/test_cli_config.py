"""The CLI's configuration: flags over environment over profile over defaults, the TOML file, masking."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from ragstream_cli.config import (
    DEFAULT_URL,
    ConfigError,
    config_path,
    load_profiles,
    mask,
    resolve,
    save_profiles,
)

pytestmark = pytest.mark.unit

PROFILES = {
    "default": {"url": "http://profile:1", "api_key": "profile-key"},
    "staging": {"url": "http://staging:2/", "api_key": "staging-key", "admin_token": "staging-admin"},
}
NO_FLAGS: dict[str, str | None] = {"url": None, "api_key": None, "admin_token": None}


def test_defaults_without_anything() -> None:
    settings = resolve(NO_FLAGS, {}, {}, None)
    assert (settings.url, settings.api_key, settings.admin_token, settings.profile) == (
        DEFAULT_URL,
        None,
        None,
        "default",
    )


def test_profile_then_environment_then_flags() -> None:
    assert resolve(NO_FLAGS, {}, PROFILES, None).api_key == "profile-key"
    env = {"RAGSTREAM_API_KEY": "env-key", "RAGSTREAM_URL": "http://env:3"}
    from_env = resolve(NO_FLAGS, env, PROFILES, None)
    assert (from_env.url, from_env.api_key) == ("http://env:3", "env-key")
    flags = {**NO_FLAGS, "api_key": "flag-key"}
    from_flag = resolve(flags, env, PROFILES, None)
    assert (from_flag.url, from_flag.api_key) == ("http://env:3", "flag-key")


def test_profile_chosen_by_flag_or_environment() -> None:
    by_flag = resolve(NO_FLAGS, {"RAGSTREAM_PROFILE": "default"}, PROFILES, "staging")
    assert (by_flag.profile, by_flag.url, by_flag.admin_token) == ("staging", "http://staging:2", "staging-admin")
    assert resolve(NO_FLAGS, {"RAGSTREAM_PROFILE": "staging"}, PROFILES, None).api_key == "staging-key"


def test_unknown_profile_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ConfigError, match="no profile 'prod'"):
        resolve(NO_FLAGS, {}, PROFILES, "prod")


def test_file_round_trip_is_private(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "config.toml"
    tricky = {"default": {"url": "http://h:1", "api_key": 'quote"and\\backslash'}, "a b": {"url": "http://x"}}
    save_profiles(path, tricky)
    assert load_profiles(path) == tricky
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[profiles.default\nurl=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profiles(path)
    assert load_profiles(tmp_path / "absent.toml") == {}


def test_config_path_override() -> None:
    assert config_path({"RAGSTREAM_CONFIG": "/x/y.toml"}) == Path("/x/y.toml")
    assert config_path({}).name == "config.toml"


def test_mask_never_shows_a_usable_key() -> None:
    secret = "rs_live_0123456789abcdef"
    assert "0123456789" not in mask(secret) and mask(secret).startswith("rs_l")
    assert mask("short") == "****"
