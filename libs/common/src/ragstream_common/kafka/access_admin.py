"""Kafka principals and their ACLs: SCRAM-SHA-512 users and ALLOW grants, over the broker's admin API.

aiokafka has no SCRAM or ACL admin calls, so this wraps confluent-kafka's AdminClient (the `kafka-admin` extra of
ragstream-common). Its calls block on futures; each runs in a worker thread. The caller's principal needs ALTER
(users, ACLs) and DESCRIBE (listing ACLs) on the cluster: the local super user, or `ragstream-provisioner`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

# AclGrant and its vocabulary live in the pure acls module (no confluent-kafka needed to name grants).
from ragstream_common.kafka.acls import CLUSTER, AclGrant, Operation, PatternKind, ResourceKind
from ragstream_common.kafka_settings import KafkaSettings

__all__ = ["CLUSTER", "AclGrant", "KafkaAccessAdmin", "KafkaAccessError", "Operation", "admin_config"]

SCRAM_ITERATIONS = 8192
REQUEST_TIMEOUT_S = 30.0

_RESOURCES: dict[ResourceKind, ResourceType] = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.BROKER,  # librdkafka's name for Kafka's CLUSTER resource (same wire value)
}
_PATTERNS: dict[PatternKind, ResourcePatternType] = {
    "literal": ResourcePatternType.LITERAL,
    "prefixed": ResourcePatternType.PREFIXED,
}
_OPERATIONS: dict[Operation, AclOperation] = {
    "read": AclOperation.READ,
    "write": AclOperation.WRITE,
    "describe": AclOperation.DESCRIBE,
    "create": AclOperation.CREATE,
    "delete": AclOperation.DELETE,
    "alter": AclOperation.ALTER,
    "describe_configs": AclOperation.DESCRIBE_CONFIGS,
    "alter_configs": AclOperation.ALTER_CONFIGS,
}


class KafkaAccessError(RuntimeError):
    """The broker refused or failed an access-admin request (never carries a password)."""


class KafkaAccessAdmin:
    """Async facade over confluent-kafka's AdminClient for SCRAM users and ACLs."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._client = AdminClient(admin_config(settings))

    async def upsert_scram_user(self, user: str, password: SecretStr) -> None:
        """Create `user` or replace its SCRAM-SHA-512 credential (a fresh salt each time)."""
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(user, info, password.get_secret_value().encode())
        await self._wait(self._client.alter_user_scram_credentials, [upsert], request_timeout=REQUEST_TIMEOUT_S)

    async def delete_scram_user(self, user: str) -> None:
        """Remove `user`'s SCRAM-SHA-512 credential; a user that has none is not an error."""
        deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
        try:
            await self._wait(self._client.alter_user_scram_credentials, [deletion], request_timeout=REQUEST_TIMEOUT_S)
        except KafkaAccessError as exc:
            if not isinstance(exc.__cause__, KafkaException) or not _is_missing_user(exc.__cause__):
                raise

    async def grant(self, grants: Sequence[AclGrant]) -> None:
        """Add the ALLOW ACLs; granting an existing one again changes nothing."""
        bindings = list(dict.fromkeys(_binding(g) for g in grants))
        if bindings:
            await self._wait(self._client.create_acls, bindings, request_timeout=REQUEST_TIMEOUT_S)

    async def revoke(self, grants: Sequence[AclGrant]) -> None:
        """Remove exactly these ALLOW ACLs (others of the same principal stay); absent ones are ignored."""
        filters = list(dict.fromkeys(_binding_filter(g) for g in grants))
        if filters:
            await self._wait(self._client.delete_acls, filters, request_timeout=REQUEST_TIMEOUT_S)

    async def grants_of(self, principal: str) -> list[AclGrant]:
        """Every ALLOW ACL of `principal` this module can express (topic, group, cluster), sorted."""
        any_of = AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]  # None matches any name (documented), the stub says str
            ResourcePatternType.ANY,
            principal,
            None,  # type: ignore[arg-type]  # any host
            AclOperation.ANY,
            AclPermissionType.ALLOW,
        )
        future = self._client.describe_acls(any_of, request_timeout=REQUEST_TIMEOUT_S)
        bindings: list[AclBinding] = await asyncio.to_thread(_result, future)
        if not bindings:
            # librdkafka reports a refused DescribeAcls as an empty list: tell "none" from "not allowed to look".
            await self._require_cluster_describe()
        grants = (_grant(b) for b in bindings)
        return sorted((g for g in grants if g is not None), key=_sort_key)

    async def _require_cluster_describe(self) -> None:
        future = self._client.describe_cluster(request_timeout=REQUEST_TIMEOUT_S, include_authorized_operations=True)
        cluster = await asyncio.to_thread(_result, future)
        if AclOperation.DESCRIBE not in (cluster.authorized_operations or ()):
            raise KafkaAccessError("CLUSTER_AUTHORIZATION_FAILED: listing ACLs needs DESCRIBE on the cluster")

    async def close(self) -> None:
        """Nothing to release eagerly: librdkafka's threads stop when the client is collected."""
        return None

    async def _wait(self, call: Any, argument: list[Any], **kwargs: Any) -> None:
        """Issue one batched request and wait for every item's future (off the event loop)."""
        futures: dict[Any, concurrent.futures.Future[Any]] = call(argument, **kwargs)
        await asyncio.to_thread(_results, list(futures.values()))


def admin_config(settings: KafkaSettings) -> dict[str, str | int | float | bool]:
    """librdkafka configuration from the shared KAFKA_* settings (SCRAM or PLAIN, optionally over TLS)."""
    if settings.sasl_mechanism == "OAUTHBEARER":
        # MSK IAM: principals and grants are IAM roles and policies (Terraform), not SCRAM users and ACLs.
        raise ValueError("KafkaAccessAdmin needs SCRAM or PLAIN credentials; with MSK IAM, access is IAM policy")
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol.lower(),
        "client.id": "ragstream-access-admin",
        "log.connection.close": "false",  # idle admin connections are closed by the broker: not news
    }
    if settings.security_protocol.startswith("SASL") and settings.sasl_mechanism is not None:
        password = settings.sasl_password
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username or ""
        config["sasl.password"] = password.get_secret_value() if password is not None else ""
    return config


def _binding(grant: AclGrant) -> AclBinding:
    return AclBinding(*_binding_fields(grant))


def _binding_filter(grant: AclGrant) -> AclBindingFilter:
    return AclBindingFilter(*_binding_fields(grant))


def _binding_fields(
    grant: AclGrant,
) -> tuple[ResourceType, str, ResourcePatternType, str, str, AclOperation, AclPermissionType]:
    pattern = _PATTERNS[grant.pattern] if grant.resource_type != "cluster" else ResourcePatternType.LITERAL
    return (
        _RESOURCES[grant.resource_type],
        grant.name,
        pattern,
        grant.principal,
        "*",
        _OPERATIONS[grant.operation],
        AclPermissionType.ALLOW,
    )


def _grant(binding: AclBinding) -> AclGrant | None:
    """The AclGrant a described binding stands for, or None for one outside this module's vocabulary."""
    if binding.host != "*" or binding.permission_type != AclPermissionType.ALLOW:
        return None
    resource = next((k for k, v in _RESOURCES.items() if v == binding.restype), None)
    pattern = next((k for k, v in _PATTERNS.items() if v == binding.resource_pattern_type), None)
    operation = next((k for k, v in _OPERATIONS.items() if v == binding.operation), None)
    if resource is None or pattern is None or operation is None:
        return None
    return AclGrant(binding.principal, resource, binding.name, pattern, operation)


def _sort_key(grant: AclGrant) -> tuple[str, str, str, str, str]:
    return (grant.principal, grant.resource_type, grant.name, grant.pattern, grant.operation)


def _result(future: concurrent.futures.Future[Any]) -> Any:
    try:
        return future.result()
    except KafkaException as exc:
        raise KafkaAccessError(_describe(exc)) from exc


def _results(futures: list[concurrent.futures.Future[Any]]) -> None:
    for future in futures:
        _result(future)


def _describe(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return str(exc)


def _is_missing_user(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError.RESOURCE_NOT_FOUND
