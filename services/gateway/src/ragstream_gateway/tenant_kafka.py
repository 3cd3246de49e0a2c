"""A tenant's Kafka access: the port that provisions it, and the credentials handed out once.

Provisioning a tenant creates its topics (kafka/tenant_topics.py), grants its principal `tenant-<id>` and the
services what they need on them, and creates or replaces that principal's SCRAM password: every step is
idempotent, so a provisioning that failed half-way is finished by running it again (a credential rotation is
the same run with a new password). Deprovisioning takes the tenant's grants and its user away first (access
ends at once, even for open connections), then the topics, then the services' grants.

Passwords are SecretStr from creation to the one response that shows them; nothing here logs them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr
from ragstream_common.kafka.tenant_topics import group_prefix, tenant_topics, tenant_user

# SCRAM users made by provisioning (kafka/access_admin.py) hold SCRAM-SHA-512 credentials.
TENANT_SASL_MECHANISM = "SCRAM-SHA-512"


class TenantKafkaError(RuntimeError):
    """A provisioning step failed (broker down or refusing); every step is idempotent, so retrying is safe."""


class TenantTopicCollision(ValueError):
    """Kafka would refuse the tenant's topics beside an existing topic of the same metric name ('.' vs '_')."""

    def __init__(self, tenant_id: str, existing: str) -> None:
        super().__init__(f"the topics of tenant {tenant_id!r} would collide with the existing topic {existing!r}")
        self.existing = existing


class TenantKafkaAccess(Protocol):
    """Provisions tenants' topics, principals and grants; raises TenantKafkaError when the broker fails it."""

    async def collision(self, tenant_id: str) -> str | None:
        """An existing topic Kafka would refuse the tenant's topics beside, or None."""
        ...

    async def provision(self, tenant_id: str, password: SecretStr) -> None:
        """Topics, the services' grants, the tenant's grants, then its user with `password` (created or replaced)."""
        ...

    async def deprovision(self, tenant_id: str) -> None:
        """The tenant's grants and user, then its topics, then the services' grants; what is gone already is fine."""
        ...


@dataclass(frozen=True)
class TenantListener:
    """How tenants reach the brokers (their listener may differ from the services')."""

    bootstrap_servers: str
    security_protocol: str


@dataclass(frozen=True)
class KafkaCredentials:
    """Everything a tenant's Kafka client needs; the password is shown once."""

    username: str
    password: SecretStr
    bootstrap_servers: str
    security_protocol: str
    sasl_mechanism: str
    documents_topic: str
    queries_topic: str
    answers_topic: str
    group_prefix: str


def new_password() -> SecretStr:
    """A random SCRAM password (256 bits, URL-safe text)."""
    return SecretStr(secrets.token_urlsafe(32))


async def refuse_collision(access: TenantKafkaAccess, tenant_id: str) -> None:
    """TenantTopicCollision when Kafka would refuse the tenant's topics: checked before anything is created."""
    existing = await access.collision(tenant_id)
    if existing is not None:
        raise TenantTopicCollision(tenant_id, existing)


async def issue_credentials(access: TenantKafkaAccess, tenant_id: str, listener: TenantListener) -> KafkaCredentials:
    """Provision (or finish provisioning) the tenant's Kafka access under a new password, and describe it."""
    await refuse_collision(access, tenant_id)
    password = new_password()
    await access.provision(tenant_id, password)
    names = tenant_topics(tenant_id)
    return KafkaCredentials(
        username=tenant_user(tenant_id),
        password=password,
        bootstrap_servers=listener.bootstrap_servers,
        security_protocol=listener.security_protocol,
        sasl_mechanism=TENANT_SASL_MECHANISM,
        documents_topic=names.documents,
        queries_topic=names.queries,
        answers_topic=names.answers,
        group_prefix=group_prefix(tenant_id),
    )
