"""Data keys wrapped by AWS KMS, against moto's KMS server and the real Postgres (gateway login).

moto's server mode (`moto.server.ThreadedMotoServer`, https://docs.getmoto.org/en/latest/docs/server_mode.html)
serves the KMS JSON API over HTTP on 127.0.0.1, so boto3 signs, sends and parses real GenerateDataKey, Encrypt
and Decrypt requests (API reference: https://docs.aws.amazon.com/kms/latest/APIReference/). moto binds
ciphertexts to their EncryptionContext as KMS does ("Decrypt ... must use the same encryption context",
https://docs.aws.amazon.com/kms/latest/developerguide/encrypt_context.html).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import boto3
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from ragstream_common.db import create_pool
from ragstream_common.secret_envelope import (
    KmsMasterKey,
    LocalMasterKey,
    MasterKeyError,
    SecretsSettings,
    TenantSecretSealer,
    build_secret_sealer,
    rewrap_data_keys,
)
from ragstream_common.secret_keys_pg import PostgresDataKeys, connect_as_owner

pytestmark = pytest.mark.integration

REGION: Final = "eu-central-1"
SECRETS = {"client_secret": "box-secret", "primary_signature_key": "p", "secondary_signature_key": "s"}


@pytest.fixture(scope="module")
def kms_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def kms(kms_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A KMS client with dummy credentials in the environment (boto3 inside the sealer reads them too)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return boto3.client("kms", endpoint_url=kms_endpoint, region_name=REGION)


@pytest.fixture
async def gateway_pool(service_database_urls: dict[str, str]) -> AsyncIterator[AsyncConnectionPool]:
    pool = create_pool(service_database_urls["gateway"], max_size=2, name="test-secrets-kms")
    await pool.open(wait=True)
    yield pool
    await pool.close()


def new_tenant(admin_url: str) -> str:
    tenant_id = f"km-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (tenant_id, tenant_id))
    return tenant_id


def kms_settings(key_id: str, endpoint: str) -> SecretsSettings:
    return SecretsSettings(provider="kms", kms_key_id=key_id, kms_region=REGION, kms_endpoint_url=endpoint)


async def test_secrets_sealed_under_a_kms_wrapped_data_key(
    kms: Any, kms_endpoint: str, migrated_database: str, gateway_pool: AsyncConnectionPool
) -> None:
    key_id = kms.create_key(Description="ragstream connector secrets")["KeyMetadata"]["KeyId"]
    tenant = new_tenant(migrated_database)
    sealed = await build_secret_sealer(kms_settings(key_id, kms_endpoint), gateway_pool).seal(tenant, "con_a", SECRETS)

    stored = await PostgresDataKeys(gateway_pool).read(tenant)
    assert stored is not None and stored.wrapping == f"kms:{key_id}"
    # What Postgres holds is a KMS ciphertext: KMS opens it only with the tenant's encryption context.
    plain = kms.decrypt(CiphertextBlob=stored.ciphertext, EncryptionContext={"tenant_id": tenant})["Plaintext"]
    assert len(plain) == 32
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=stored.ciphertext, EncryptionContext={"tenant_id": "another"})

    restarted = build_secret_sealer(kms_settings(key_id, kms_endpoint), gateway_pool)
    assert await restarted.unseal(tenant, "con_a", sealed) == SECRETS


async def test_kms_refuses_a_data_key_presented_for_another_tenant(kms: Any, kms_endpoint: str) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    master = KmsMasterKey(key_id, region=REGION, endpoint_url=kms_endpoint)
    data_key, wrapped = await master.new_data_key("acme")
    assert await master.unwrap("acme", wrapped) == data_key
    with pytest.raises(MasterKeyError, match="refused"):
        await master.unwrap("globex", wrapped)
    rewrapped = await master.wrap("globex", data_key)
    assert await master.unwrap("globex", rewrapped) == data_key


async def test_moving_from_a_local_master_key_to_kms(
    kms: Any, kms_endpoint: str, migrated_database: str, gateway_pool: AsyncConnectionPool
) -> None:
    tenant, local_key = new_tenant(migrated_database), os.urandom(32)
    local = LocalMasterKey(local_key, "k1")
    sealed = await TenantSecretSealer(local, PostgresDataKeys(gateway_pool)).seal(tenant, "con_a", SECRETS)

    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    settings = kms_settings(key_id, kms_endpoint).model_copy(
        update={"previous_master_key": SecretStr(base64.b64encode(local_key).decode()), "previous_master_key_id": "k1"}
    )
    # During the move the services hold both: the local key still opens what it wrapped.
    assert await build_secret_sealer(settings, gateway_pool).unseal(tenant, "con_a", sealed) == SECRETS

    master = KmsMasterKey(key_id, region=REGION, endpoint_url=kms_endpoint)
    async with await connect_as_owner(migrated_database) as connection:
        assert await rewrap_data_keys(connection, master, [local], [tenant]) == 1
    kms_only = build_secret_sealer(kms_settings(key_id, kms_endpoint), gateway_pool)
    assert await kms_only.unseal(tenant, "con_a", sealed) == SECRETS
