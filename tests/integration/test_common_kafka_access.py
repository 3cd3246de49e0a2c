"""KafkaAccessAdmin against the real SASL/SCRAM broker with the StandardAuthorizer: users, grants, refusals."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from pydantic import SecretStr
from ragstream_common.kafka.access_admin import CLUSTER, AclGrant, KafkaAccessAdmin, KafkaAccessError
from ragstream_common.kafka_settings import KafkaSettings
from support.kafka_clients import client_kwargs, signed_in_as

pytestmark = pytest.mark.integration


def _user() -> str:
    return f"test-user-{uuid.uuid4().hex[:8]}"


async def _can_sign_in(settings: KafkaSettings) -> bool:
    client = AIOKafkaClient(**client_kwargs(settings), request_timeout_ms=5000)
    try:
        await client.bootstrap()
        return True
    except KafkaError:
        return False
    finally:
        await client.close()


async def test_a_user_exists_between_upsert_and_delete(kafka_admin: KafkaSettings) -> None:
    user, password = _user(), SecretStr(uuid.uuid4().hex)
    admin = KafkaAccessAdmin(kafka_admin)
    await admin.upsert_scram_user(user, password)
    assert await _can_sign_in(signed_in_as(kafka_admin, user, password))
    assert not await _can_sign_in(signed_in_as(kafka_admin, user, "wrong-password"))

    await admin.upsert_scram_user(user, SecretStr("rotated-password"))  # replaces the credential
    assert await _can_sign_in(signed_in_as(kafka_admin, user, "rotated-password"))
    assert not await _can_sign_in(signed_in_as(kafka_admin, user, password))

    await admin.delete_scram_user(user)
    await admin.delete_scram_user(user)  # already gone: no error
    assert not await _can_sign_in(signed_in_as(kafka_admin, user, "rotated-password"))
    await admin.close()


async def test_grants_are_idempotent_listed_and_revoked_one_by_one(kafka_admin: KafkaSettings) -> None:
    principal = f"User:{_user()}"
    topic = f"test.access.{uuid.uuid4().hex[:8]}.v1"
    grants = [
        AclGrant(principal, "topic", topic, "literal", "read"),
        AclGrant(principal, "topic", topic, "literal", "describe"),
        AclGrant(principal, "group", "test-access-", "prefixed", "read"),
        AclGrant(principal, "cluster", CLUSTER, "literal", "describe"),
    ]
    admin = KafkaAccessAdmin(kafka_admin)
    assert await admin.grants_of(principal) == []
    await admin.grant(grants)
    await admin.grant(grants[:2])  # again: nothing changes
    assert set(await admin.grants_of(principal)) == set(grants)

    await admin.revoke(grants[:1])
    assert set(await admin.grants_of(principal)) == set(grants[1:])
    await admin.revoke(grants)  # the revoked one is absent: ignored
    assert await admin.grants_of(principal) == []
    await admin.close()


async def test_a_principal_without_cluster_alter_cannot_create_users_or_grants(kafka_admin: KafkaSettings) -> None:
    user, password = _user(), SecretStr(uuid.uuid4().hex)
    admin = KafkaAccessAdmin(kafka_admin)
    await admin.upsert_scram_user(user, password)
    intruder = KafkaAccessAdmin(signed_in_as(kafka_admin, user, password))
    try:
        with pytest.raises(KafkaAccessError, match="AUTHORIZATION"):
            await intruder.grant([AclGrant(f"User:{user}", "topic", "rag.", "prefixed", "read")])
        with pytest.raises(KafkaAccessError, match="AUTHORIZATION"):
            await intruder.upsert_scram_user(_user(), SecretStr("x"))
        with pytest.raises(KafkaAccessError, match="AUTHORIZATION"):
            await intruder.grants_of(f"User:{user}")
        assert await admin.grants_of(f"User:{user}") == []
    finally:
        await admin.delete_scram_user(user)
        await intruder.close()
        await admin.close()
