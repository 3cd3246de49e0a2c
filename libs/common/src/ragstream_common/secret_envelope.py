"""Envelope encryption of connector secrets (client secrets, refresh tokens, webhook signing keys).

Each tenant has one random 256-bit data key, created on first use and stored only wrapped by a master key
(`tenant_data_keys`): a local key from SECRETS_MASTER_KEY, or an AWS KMS key. A connector's secrets are JSON
sealed with AES-256-GCM under its tenant's data key, with the tenant and a purpose (the connector id) as
associated data, so a ciphertext copied to another connector or tenant does not open. Sealed bytes are
`0x01 || 96-bit nonce || ciphertext || 128-bit tag`. Unwrapped data keys stay in memory for a few minutes.

`python -m ragstream_common.secret_envelope rewrap` re-wraps every tenant's data key under the current master
key (a master key rotation, docs/connectors.md); `new-master-key` prints a fresh local master key.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import AsyncConnectionPool

from ragstream_common.config import load_settings
from ragstream_common.logs import get_logger
from ragstream_common.secret_keys_pg import PostgresDataKeys, WrappedKey, connect_as_owner, rewrap_all
from ragstream_common.secret_settings import MASTER_KEY_BYTES, NEW_KEY_HINT, RewrapSettings, decode_master_key
from ragstream_common.secret_settings import SecretsSettings as SecretsSettings

log = get_logger(__name__)
SEALED_FORMAT = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16


class SecretEnvelopeError(Exception):
    """Secrets that cannot be sealed or opened; messages name tenants and keys, never secret material."""


class SealedSecretError(SecretEnvelopeError):
    """Sealed bytes that do not open: another tenant or purpose, tampered or truncated bytes, another data key."""


class MasterKeyError(SecretEnvelopeError):
    """A data key this service's master keys cannot unwrap (wrong key, unknown wrapping, refused by KMS)."""


class MasterKey(Protocol):
    """Wraps tenants' data keys; the wrapping is bound to the tenant as associated data or KMS context."""

    @property
    def wrapping(self) -> str:
        """Stored with each wrapped key: "local:<key id>" or "kms:<key id>"."""
        ...

    async def new_data_key(self, tenant_id: str) -> tuple[bytes, bytes]:
        """A fresh 32-byte data key and its wrapped form."""
        ...

    async def wrap(self, tenant_id: str, data_key: bytes) -> bytes: ...

    async def unwrap(self, tenant_id: str, wrapped: bytes) -> bytes:
        """The data key; MasterKeyError when this key did not wrap it for this tenant."""
        ...


class DataKeyStore(Protocol):
    async def read(self, tenant_id: str) -> WrappedKey | None: ...

    async def insert_or_read(self, tenant_id: str, key: WrappedKey) -> WrappedKey:
        """Store `key` unless the tenant has one; return the stored one (a racing replica's may win)."""
        ...


class LocalMasterKey:
    """AES-256-GCM key wrapping with a key from the settings; the tenant id is the associated data."""

    def __init__(self, key: bytes, key_id: str) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise ValueError(f"a local master key is {MASTER_KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.wrapping = f"local:{key_id}"

    def __repr__(self) -> str:
        return f"LocalMasterKey({self.wrapping!r})"

    async def new_data_key(self, tenant_id: str) -> tuple[bytes, bytes]:
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, await self.wrap(tenant_id, data_key)

    async def wrap(self, tenant_id: str, data_key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, _data_key_context(tenant_id))

    async def unwrap(self, tenant_id: str, wrapped: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _data_key_context(tenant_id))
        except (InvalidTag, ValueError):
            raise MasterKeyError(f"{self.wrapping} does not unwrap tenant {tenant_id!r}'s data key") from None


class KmsMasterKey:
    """AWS KMS: GenerateDataKey / Encrypt / Decrypt with EncryptionContext {"tenant_id": ...}, so KMS itself
    refuses a key presented for another tenant (and CloudTrail records which tenant each call was for).
    boto3 is synchronous: its calls run in worker threads."""

    def __init__(
        self, key_id: str, *, client: Any = None, region: str | None = None, endpoint_url: str | None = None
    ) -> None:
        if client is None:
            import boto3  # the `s3` extra; only KMS deployments load it

            client = boto3.client("kms", region_name=region, endpoint_url=endpoint_url)
        self._client = client
        self._key_id = key_id
        self.wrapping = f"kms:{key_id}"

    def __repr__(self) -> str:
        return f"KmsMasterKey({self.wrapping!r})"

    async def new_data_key(self, tenant_id: str) -> tuple[bytes, bytes]:
        response = await asyncio.to_thread(
            self._client.generate_data_key,
            KeyId=self._key_id,
            KeySpec="AES_256",
            EncryptionContext={"tenant_id": tenant_id},
        )
        return bytes(response["Plaintext"]), bytes(response["CiphertextBlob"])

    async def wrap(self, tenant_id: str, data_key: bytes) -> bytes:
        response = await asyncio.to_thread(
            self._client.encrypt, KeyId=self._key_id, Plaintext=data_key, EncryptionContext={"tenant_id": tenant_id}
        )
        return bytes(response["CiphertextBlob"])

    async def unwrap(self, tenant_id: str, wrapped: bytes) -> bytes:
        refusals = (self._client.exceptions.InvalidCiphertextException, self._client.exceptions.IncorrectKeyException)
        try:
            response = await asyncio.to_thread(
                self._client.decrypt,
                CiphertextBlob=wrapped,
                KeyId=self._key_id,
                EncryptionContext={"tenant_id": tenant_id},
            )
        except refusals as exc:
            raise MasterKeyError(f"{self.wrapping} refused tenant {tenant_id!r}'s data key: {exc}") from None
        return bytes(response["Plaintext"])


class TenantSecretSealer:
    """Seals and opens a connector's secrets under its tenant's data key (created on the first seal)."""

    def __init__(
        self,
        master: MasterKey,
        store: DataKeyStore,
        *,
        previous: Sequence[MasterKey] = (),
        cache_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._master = master
        self._store = store
        self._unwrappers = {key.wrapping: key for key in (*previous, master)}
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[AESGCM, float]] = {}

    async def seal(self, tenant_id: str, purpose: str, secrets: Mapping[str, str]) -> bytes:
        if not all(isinstance(name, str) and isinstance(value, str) for name, value in secrets.items()):
            raise TypeError("secrets map names to strings")
        plaintext = json.dumps(dict(secrets), separators=(",", ":"), sort_keys=True).encode()
        aead = await self._data_key(tenant_id, create=True)
        nonce = os.urandom(NONCE_BYTES)
        return SEALED_FORMAT + nonce + aead.encrypt(nonce, plaintext, _secrets_context(tenant_id, purpose))

    async def unseal(self, tenant_id: str, purpose: str, ciphertext: bytes) -> dict[str, str]:
        if ciphertext[:1] != SEALED_FORMAT or len(ciphertext) < 1 + NONCE_BYTES + TAG_BYTES:
            raise SealedSecretError("not sealed secrets of a known format")
        aead = await self._data_key(tenant_id, create=False)
        nonce, body = ciphertext[1 : 1 + NONCE_BYTES], ciphertext[1 + NONCE_BYTES :]
        try:
            plaintext = aead.decrypt(nonce, body, _secrets_context(tenant_id, purpose))
        except InvalidTag:
            raise SealedSecretError(
                f"sealed secrets do not open for tenant {tenant_id!r} and purpose {purpose!r}:"
                " sealed for another tenant or purpose, or altered"
            ) from None
        secrets = json.loads(plaintext)
        if not isinstance(secrets, dict) or not all(isinstance(value, str) for value in secrets.values()):
            raise SealedSecretError("sealed secrets are not a map of strings")
        return secrets

    async def _data_key(self, tenant_id: str, *, create: bool) -> AESGCM:
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        stored = await self._store.read(tenant_id)
        if stored is not None:
            data_key = await self._unwrap(tenant_id, stored)
        elif create:
            data_key = await self._create(tenant_id)
        else:
            raise SealedSecretError(f"tenant {tenant_id!r} has no data key: nothing was sealed for it")
        aead = AESGCM(data_key)
        self._cache[tenant_id] = (aead, self._clock() + self._cache_ttl_s)
        return aead

    async def _create(self, tenant_id: str) -> bytes:
        data_key, wrapped = await self._master.new_data_key(tenant_id)
        mine = WrappedKey(wrapped, self._master.wrapping)
        stored = await self._store.insert_or_read(tenant_id, mine)
        if stored != mine:  # another replica created the tenant's key first: use that one
            return await self._unwrap(tenant_id, stored)
        log.info("tenant data key created", tenant_id=tenant_id, wrapping=stored.wrapping)
        return data_key

    async def _unwrap(self, tenant_id: str, stored: WrappedKey) -> bytes:
        unwrapper = self._unwrappers.get(stored.wrapping)
        if unwrapper is None:
            raise MasterKeyError(
                f"tenant {tenant_id!r}'s data key is wrapped by {stored.wrapping!r}, a master key this service"
                f" does not hold (it holds {sorted(self._unwrappers)}): set it as the SECRETS_PREVIOUS_* key"
            )
        return await unwrapper.unwrap(tenant_id, stored.ciphertext)


def build_master_keys(settings: SecretsSettings) -> tuple[MasterKey, list[MasterKey]]:
    """The master key new data keys are wrapped with, and the previous one(s) still trusted to unwrap."""
    previous: list[MasterKey] = []
    if settings.previous_master_key is not None:
        previous_id = settings.previous_master_key_id or "previous"
        previous.append(LocalMasterKey(decode_master_key(settings.previous_master_key), previous_id))
    if settings.previous_kms_key_id:
        previous.append(_kms_key(settings, settings.previous_kms_key_id))
    if settings.provider == "kms":
        if not settings.kms_key_id:
            raise ValueError("SECRETS_PROVIDER=kms needs the KMS key id, ARN or alias in SECRETS_KMS_KEY_ID")
        return _kms_key(settings, settings.kms_key_id), previous
    if settings.master_key is None:
        raise ValueError(
            f"SECRETS_PROVIDER=local needs SECRETS_MASTER_KEY (base64 of {MASTER_KEY_BYTES} random bytes)"
            f" to seal connector secrets; {NEW_KEY_HINT}"
        )
    return LocalMasterKey(decode_master_key(settings.master_key), settings.master_key_id), previous


def _kms_key(settings: SecretsSettings, key_id: str) -> KmsMasterKey:
    return KmsMasterKey(key_id, region=settings.kms_region, endpoint_url=settings.kms_endpoint_url)


def build_secret_sealer(settings: SecretsSettings, pool: AsyncConnectionPool) -> TenantSecretSealer:
    """The sealer a service uses; fails here, at startup, when the master key is missing or malformed."""
    master, previous = build_master_keys(settings)
    return TenantSecretSealer(master, PostgresDataKeys(pool), previous=previous, cache_ttl_s=settings.data_key_cache_s)


async def rewrap_data_keys(
    connection: psycopg.AsyncConnection[Any],
    master: MasterKey,
    previous: Sequence[MasterKey],
    tenants: Sequence[str] | None = None,
) -> int:
    """Re-wrap, under `master`, every tenant's (or `tenants`') data key that a `previous` key wrapped; the number
    re-wrapped. `connection`: the administrator's, acting as the schema owner (`connect_as_owner`).

    The data keys themselves do not change, so sealed secrets stay as they are. A key wrapped by a master key
    that is neither `master` nor in `previous` stops the run with MasterKeyError (rerun once it is configured).
    """
    unwrappers = {key.wrapping: key for key in previous}

    async def rewrap(tenant_id: str, stored: WrappedKey) -> WrappedKey | None:
        if stored.wrapping == master.wrapping:
            return None
        old = unwrappers.get(stored.wrapping)
        if old is None:
            raise MasterKeyError(f"tenant {tenant_id!r}'s data key is wrapped by {stored.wrapping!r}, not configured")
        data_key = await old.unwrap(tenant_id, stored.ciphertext)
        return WrappedKey(await master.wrap(tenant_id, data_key), master.wrapping)

    return await rewrap_all(connection, rewrap, tenants)


async def _rewrap_command(settings: RewrapSettings, tenants: Sequence[str] | None) -> int:
    master, previous = build_master_keys(settings.secrets)
    async with await connect_as_owner(settings.database_url) as connection:
        return await rewrap_data_keys(connection, master, previous, tenants)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragstream_common.secret_envelope", description=__doc__)
    parser.add_argument("command", choices=["rewrap", "new-master-key"])
    parser.add_argument("--tenant", action="append", help="rewrap only this tenant's key (repeatable)")
    arguments = parser.parse_args(argv)
    if arguments.command == "new-master-key":
        print(base64.b64encode(os.urandom(MASTER_KEY_BYTES)).decode())
        return 0
    settings = load_settings(RewrapSettings)
    try:
        count = asyncio.run(_rewrap_command(settings, arguments.tenant))
    except (SecretEnvelopeError, ValueError) as exc:
        print(f"rewrap failed: {exc}", file=sys.stderr)
        return 1
    print(f"data keys re-wrapped under {settings.secrets.provider} master key: {count}", file=sys.stderr)
    return 0


def _data_key_context(tenant_id: str) -> bytes:
    return json.dumps(["ragstream-data-key", tenant_id]).encode()


def _secrets_context(tenant_id: str, purpose: str) -> bytes:
    return json.dumps(["ragstream-secrets", tenant_id, purpose]).encode()


if __name__ == "__main__":
    sys.exit(main())
