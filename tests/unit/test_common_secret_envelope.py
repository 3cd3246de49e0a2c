"""Envelope encryption of connector secrets over an in-memory data key store: round trips, what must not open
(another tenant or purpose, altered bytes, another master key), rotation, caching, and secrets kept out of
every repr and error message."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import SecretStr, ValidationError
from ragstream_common.config import load_settings
from ragstream_common.secret_envelope import (
    LocalMasterKey,
    MasterKeyError,
    SealedSecretError,
    SecretsSettings,
    TenantSecretSealer,
    build_master_keys,
    main,
)
from ragstream_common.secret_keys_pg import WrappedKey

pytestmark = pytest.mark.unit
SECRETS = {"client_secret": "s3cr3t-value", "refresh_token": "1//0refresh"}


class MemoryDataKeys:
    """`DataKeyStore` over a dict; counts reads so caching shows."""

    def __init__(self) -> None:
        self.keys: dict[str, WrappedKey] = {}
        self.reads = 0

    async def read(self, tenant_id: str) -> WrappedKey | None:
        self.reads += 1
        return self.keys.get(tenant_id)

    async def insert_or_read(self, tenant_id: str, key: WrappedKey) -> WrappedKey:
        return self.keys.setdefault(tenant_id, key)


def _local(key_id: str = "k1", key: bytes | None = None) -> LocalMasterKey:
    return LocalMasterKey(key or os.urandom(32), key_id)


async def test_sealed_secrets_open_for_the_same_tenant_and_purpose() -> None:
    store = MemoryDataKeys()
    sealer = TenantSecretSealer(_local(), store)
    first = await sealer.seal("acme", "con_0123456789abcdef", SECRETS)
    second = await sealer.seal("acme", "con_0123456789abcdef", SECRETS)
    assert first[:1] == b"\x01" and first != second  # a fresh nonce every time
    assert b"s3cr3t" not in first
    assert await sealer.unseal("acme", "con_0123456789abcdef", first) == SECRETS
    assert list(store.keys) == ["acme"] and store.keys["acme"].wrapping == "local:k1"


async def test_another_purpose_or_tenant_does_not_open() -> None:
    sealer = TenantSecretSealer(_local(), MemoryDataKeys())
    sealed = await sealer.seal("acme", "con_a", SECRETS)
    await sealer.seal("globex", "con_a", {"other": "x"})  # globex has a data key of its own
    with pytest.raises(SealedSecretError, match="another tenant or purpose"):
        await sealer.unseal("acme", "con_b", sealed)
    with pytest.raises(SealedSecretError):
        await sealer.unseal("globex", "con_a", sealed)
    with pytest.raises(SealedSecretError, match="no data key"):
        await sealer.unseal("initech", "con_a", sealed)


@pytest.mark.parametrize("position", [0, 1, 12, 13, -1])
async def test_altered_bytes_do_not_open(position: int) -> None:
    sealer = TenantSecretSealer(_local(), MemoryDataKeys())
    sealed = bytearray(await sealer.seal("acme", "con_a", SECRETS))
    sealed[position] ^= 0x01
    with pytest.raises(SealedSecretError):
        await sealer.unseal("acme", "con_a", bytes(sealed))


async def test_truncated_bytes_do_not_open() -> None:
    sealer = TenantSecretSealer(_local(), MemoryDataKeys())
    sealed = await sealer.seal("acme", "con_a", SECRETS)
    for short in (b"", sealed[:1], sealed[:28], sealed[:-1]):
        with pytest.raises(SealedSecretError):
            await sealer.unseal("acme", "con_a", short)


async def test_another_master_key_cannot_unwrap_the_data_key() -> None:
    store = MemoryDataKeys()
    sealed = await TenantSecretSealer(_local("k1"), store).seal("acme", "con_a", SECRETS)
    # The same key id with other bytes: the wrapped key does not open.
    with pytest.raises(MasterKeyError, match="does not unwrap"):
        await TenantSecretSealer(_local("k1"), store).unseal("acme", "con_a", sealed)
    # Another key id: the service does not even hold the key named in the row.
    with pytest.raises(MasterKeyError, match="'local:k1'"):
        await TenantSecretSealer(_local("k2"), store).unseal("acme", "con_a", sealed)


async def test_a_wrapped_data_key_is_bound_to_its_tenant() -> None:
    master = _local()
    _, wrapped = await master.new_data_key("acme")
    with pytest.raises(MasterKeyError):
        await master.unwrap("globex", wrapped)


async def test_the_previous_master_key_still_opens_until_rewrapped() -> None:
    store, old = MemoryDataKeys(), _local("old")
    sealed = await TenantSecretSealer(old, store).seal("acme", "con_a", SECRETS)
    rotated = TenantSecretSealer(_local("new"), store, previous=[old])
    assert await rotated.unseal("acme", "con_a", sealed) == SECRETS
    await rotated.seal("globex", "con_a", SECRETS)
    assert store.keys["globex"].wrapping == "local:new"


async def test_a_racing_replica_key_wins_and_is_used() -> None:
    master, store = _local(), MemoryDataKeys()
    winner = TenantSecretSealer(master, store)
    sealed = await winner.seal("acme", "con_a", SECRETS)

    class LateReader(MemoryDataKeys):
        async def read(self, tenant_id: str) -> WrappedKey | None:
            return None  # read before the other replica's insert committed

        async def insert_or_read(self, tenant_id: str, key: WrappedKey) -> WrappedKey:
            return store.keys[tenant_id]

    loser = TenantSecretSealer(master, LateReader())
    assert await winner.unseal("acme", "con_b", await loser.seal("acme", "con_b", SECRETS)) == SECRETS
    assert await loser.unseal("acme", "con_a", sealed) == SECRETS


async def test_unwrapped_data_keys_are_cached_for_a_while() -> None:
    now = [0.0]
    store = MemoryDataKeys()
    sealer = TenantSecretSealer(_local(), store, cache_ttl_s=60, clock=lambda: now[0])
    sealed = await sealer.seal("acme", "con_a", SECRETS)
    for _ in range(3):
        await sealer.unseal("acme", "con_a", sealed)
    assert store.reads == 1
    now[0] = 61.0
    await sealer.unseal("acme", "con_a", sealed)
    assert store.reads == 2


async def test_only_string_secrets_are_sealed() -> None:
    sealer = TenantSecretSealer(_local(), MemoryDataKeys())
    with pytest.raises(TypeError):
        await sealer.seal("acme", "con_a", {"port": 443})  # type: ignore[dict-item]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_the_master_key_never_shows(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    raw = os.urandom(32)
    settings = SecretsSettings(master_key=SecretStr(_b64(raw)), master_key_id="k7")
    master, previous = build_master_keys(settings)
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(master)):
        assert _b64(raw) not in shown
    assert repr(master) == "LocalMasterKey('local:k7')" and previous == []

    monkeypatch.setenv("SECRETS_MASTER_KEY", _b64(raw[:16]) + "not base64!")
    with pytest.raises(SystemExit):
        load_settings(SecretsSettings)
    error = capsys.readouterr().err
    assert "SECRETS_MASTER_KEY" in error and "not base64" not in error


@pytest.mark.parametrize("key", ["not base64 at all", _b64(os.urandom(16))])
def test_a_malformed_master_key_is_refused_when_settings_load(key: str) -> None:
    with pytest.raises(ValidationError, match="new-master-key"):
        SecretsSettings(master_key=SecretStr(key))


def test_a_missing_master_key_fails_when_the_sealer_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRETS_MASTER_KEY", raising=False)
    with pytest.raises(ValueError, match="SECRETS_PROVIDER=local needs SECRETS_MASTER_KEY"):
        build_master_keys(SecretsSettings(provider="local"))
    with pytest.raises(ValueError, match="SECRETS_KMS_KEY_ID"):
        build_master_keys(SecretsSettings(provider="kms"))
    with pytest.raises(ValueError):
        LocalMasterKey(b"short", "k1")


def test_previous_keys_are_built_for_a_rotation() -> None:
    settings = SecretsSettings(
        master_key=SecretStr(_b64(os.urandom(32))),
        master_key_id="2025",
        previous_master_key=SecretStr(_b64(os.urandom(32))),
        previous_master_key_id="2024",
    )
    master, previous = build_master_keys(settings)
    assert master.wrapping == "local:2025" and [key.wrapping for key in previous] == ["local:2024"]


def test_new_master_key_prints_32_random_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-master-key"]) == 0
    first = capsys.readouterr().out.strip()
    main(["new-master-key"])
    assert len(base64.b64decode(first, validate=True)) == 32 and capsys.readouterr().out.strip() != first
