"""`TenantKafkaAccess` over the broker's admin API, signed in as `ragstream-provisioner`.

SCRAM users and ACLs go through `KafkaAccessAdmin`; topics through confluent-kafka's AdminClient too (aiokafka's
admin client does not report per-topic errors such as "already exists"). Blocking calls run in a worker thread.
Any failure becomes a TenantKafkaError naming the step; error texts come from the broker and never hold a
password.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr
from ragstream_common.kafka.access_admin import KafkaAccessAdmin, admin_config
from ragstream_common.kafka.connection import wait_until_signed_in
from ragstream_common.kafka.tenant_topics import (
    service_grants,
    tenant_grants,
    tenant_topic_specs,
    tenant_topics,
    tenant_user,
    topic_collision,
)
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.logs import get_logger

from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.tenant_kafka import TenantKafkaError, TenantListener

log = get_logger(__name__)
TIMEOUT_S = 15.0
SIGN_IN_WAIT_S = 10.0


class KafkaTenantProvisioner:
    """Creates and removes tenants' topics, SCRAM users and grants (see tenant_kafka.py for the order)."""

    def __init__(self, settings: KafkaSettings, replication_factor: int = 1) -> None:
        self._settings = settings
        self._access = KafkaAccessAdmin(settings)
        self._topics = AdminClient(admin_config(settings))
        self._replication_factor = replication_factor

    async def collision(self, tenant_id: str) -> str | None:
        async with _step("list topics", tenant_id):
            metadata = await asyncio.to_thread(self._topics.list_topics, timeout=TIMEOUT_S)
        return topic_collision(tenant_id, metadata.topics)

    async def provision(self, tenant_id: str, password: SecretStr) -> None:
        async with _step("create topics", tenant_id):
            await self._create_topics(tenant_id)
        async with _step("grant", tenant_id):
            await self._access.grant(service_grants(tenant_id))
            await self._access.grant(tenant_grants(tenant_id))
        async with _step("set the SCRAM credential", tenant_id):
            await self._access.upsert_scram_user(tenant_user(tenant_id), password)
        await self._until_signed_in(tenant_user(tenant_id), password)
        log.info("tenant kafka access provisioned", tenant_id=tenant_id, user=tenant_user(tenant_id))

    async def deprovision(self, tenant_id: str) -> None:
        async with _step("revoke the tenant's grants", tenant_id):
            await self._access.revoke(tenant_grants(tenant_id))
        async with _step("delete the SCRAM user", tenant_id):
            await self._access.delete_scram_user(tenant_user(tenant_id))
        async with _step("delete topics", tenant_id):
            await self._delete_topics(tenant_id)
        async with _step("revoke the services' grants", tenant_id):
            await self._access.revoke(service_grants(tenant_id))
        log.info("tenant kafka access removed", tenant_id=tenant_id)

    async def close(self) -> None:
        await self._access.close()

    async def _until_signed_in(self, user: str, password: SecretStr) -> None:
        """Wait until the broker accepts the new credential, so the credentials handed out work at once; a broker
        still refusing after SIGN_IN_WAIT_S is logged only."""
        settings = self._settings.model_copy(update={"sasl_username": user, "sasl_password": password})
        if not await wait_until_signed_in(settings, SIGN_IN_WAIT_S):
            log.warning("new tenant credential not accepted yet", user=user)

    async def _create_topics(self, tenant_id: str) -> None:
        new = [
            NewTopic(spec.name, spec.partitions, self._replication_factor, config=spec.config())
            for spec in tenant_topic_specs(tenant_id)
        ]
        futures = self._topics.create_topics(new, operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)
        await asyncio.to_thread(_settle, list(futures.values()), KafkaError.TOPIC_ALREADY_EXISTS)

    async def _delete_topics(self, tenant_id: str) -> None:
        names = list(tenant_topics(tenant_id).all)
        futures = self._topics.delete_topics(names, operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)
        await asyncio.to_thread(_settle, list(futures.values()), KafkaError.UNKNOWN_TOPIC_OR_PART)


def open_tenant_provisioner(settings: GatewaySettings) -> KafkaTenantProvisioner | None:
    """The provisioner when GATEWAY_KAFKA_PROVISIONER_USERNAME/PASSWORD are set; None (tenants get no Kafka
    access) otherwise."""
    username, password = settings.kafka_provisioner_username, settings.kafka_provisioner_password
    if not username or password is None:
        return None
    kafka = settings.kafka.model_copy(update={"sasl_username": username, "sasl_password": password})
    return KafkaTenantProvisioner(kafka, settings.kafka_replication_factor)


def tenant_listener(settings: GatewaySettings) -> TenantListener:
    """What tenants are told to connect to: GATEWAY_KAFKA_TENANT_BOOTSTRAP_SERVERS, else the services' brokers."""
    servers = settings.kafka_tenant_bootstrap_servers or settings.kafka.bootstrap_servers
    return TenantListener(servers, settings.kafka.security_protocol)


@asynccontextmanager
async def _step(step: str, tenant_id: str) -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:
        log.error("tenant kafka provisioning failed", tenant_id=tenant_id, step=step, error=str(exc))
        raise TenantKafkaError(f"{step} for tenant {tenant_id!r}: {exc}") from exc


def _settle(futures: list[concurrent.futures.Future[Any]], harmless: int) -> None:
    """Wait for every per-topic result; the `harmless` error code (already there, already gone) is success."""
    for future in futures:
        try:
            future.result(timeout=TIMEOUT_S * 2)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError) and error.code() == harmless):
                raise
