"""Local token keys: every service trusts every minter's public keys, only minters get a private key, and a
rotation adds, switches and retires keys without a gap."""

from __future__ import annotations

from pathlib import Path

import pytest
from ragstream_common.service_tokens import TokenSettings
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.token_keys import (
    MINTING_SERVICES,
    add_signing_key,
    key_ids,
    main,
    retire_signing_key,
    signing_key_id,
    token_identity_env,
    use_signing_key,
)

pytestmark = pytest.mark.unit


def _settings(service: str, credentials: LocalCredentials) -> TokenSettings:
    env = token_identity_env(service, credentials=credentials)
    fields = {
        "TOKEN_TRUSTED_KEYS": "trusted_keys",
        "TOKEN_SIGNING_KEY": "signing_key",
        "TOKEN_SIGNING_KEY_ID": "signing_key_id",
    }
    return TokenSettings(**{fields[name]: value for name, value in env.items() if name in fields})  # type: ignore[arg-type]


def test_minters_sign_tokens_every_service_verifies(tmp_path: Path) -> None:
    credentials = LocalCredentials(tmp_path)
    embed_env = token_identity_env("embed", credentials=credentials)
    assert "TOKEN_SIGNING_KEY" not in embed_env and embed_env["REPLY_ALLOWED_TARGETS"] == "127.0.0.1"
    embed = _settings("embed", credentials).verifier()
    assert len(embed.key_ids) == len(MINTING_SERVICES)
    for service in MINTING_SERVICES:
        minter = _settings(service, credentials).required_minter(service)
        assert embed.verify(minter.mint("t", ["embed"], "embed"), "embed", "embed").issuer == service
    # Kept: a second call (another process of the same system) finds the same keys.
    assert token_identity_env("gateway", credentials=credentials) == token_identity_env(
        "gateway", credentials=credentials
    )
    assert (tmp_path / f"token-key-{signing_key_id('gateway', credentials=credentials)}").stat().st_mode & 0o077 == 0


def test_rotation_adds_switches_and_retires(tmp_path: Path) -> None:
    credentials = LocalCredentials(tmp_path)
    old = signing_key_id("retrieve", credentials=credentials)
    old_minter = _settings("retrieve", credentials).required_minter("retrieve")
    new = add_signing_key("retrieve", credentials=credentials)
    assert key_ids("retrieve", credentials=credentials) == [old, new]
    assert signing_key_id("retrieve", credentials=credentials) == old  # trusted first, used later
    with pytest.raises(ValueError):
        retire_signing_key("retrieve", old, credentials=credentials)
    use_signing_key("retrieve", new, credentials=credentials)
    during = _settings("embed", credentials).verifier()
    new_minter = _settings("retrieve", credentials).required_minter("retrieve")
    assert new_minter.key_id == new
    for minter in (old_minter, new_minter):
        assert during.verify(minter.mint("t", ["embed"], "embed"), "embed", "embed").tenant == "t"
    retire_signing_key("retrieve", old, credentials=credentials)
    assert old not in _settings("embed", credentials).verifier().key_ids
    with pytest.raises(ValueError):
        use_signing_key("retrieve", old, credentials=credentials)
    with pytest.raises(ValueError):
        key_ids("embed", credentials=credentials)


def test_the_rotation_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--credentials", str(tmp_path)]
    assert main([*args, "add", "gateway"]) == 0
    new = capsys.readouterr().out.splitlines()[0]
    assert main([*args, "use", "gateway", new]) == 0
    assert f"{new}  (signing)" in capsys.readouterr().out
