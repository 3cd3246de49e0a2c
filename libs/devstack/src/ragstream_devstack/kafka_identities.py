"""Kafka principals of the local services: SCRAM-SHA-512 users with exactly the ACLs of kafka/acls.py.

The local broker (kafka.py) knows one user from the start, the super user `ragstream-admin`, whose password is
the `kafka-admin` secret. `provision_kafka_identities` signs in as that user and creates `ragstream-<service>`
(secret `kafka-<service>`) for every service, and `ragstream-provisioner` (the gateway's tenant admin path),
each with its grants; `kafka_identity_env` hands each service its own credentials.
An external broker (KAFKA_BOOTSTRAP_SERVERS set) is reached as the KAFKA_* variables say; its principals are
provisioned the same way when those name a SCRAM or PLAIN user allowed to (a super user), else left alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os

from pydantic import SecretStr
from ragstream_common.kafka.acls import (
    ADMIN_USER,
    PROVISIONER_USER,
    TENANT_TOPIC_PREFIX,
    AclGrant,
    principal,
    service_user,
    static_grants,
)
from ragstream_common.kafka.connection import wait_until_signed_in
from ragstream_common.kafka_settings import KafkaSettings

from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.kafka_config import CLIENT_PROTOCOL, SASL_MECHANISM

ADMIN_SECRET = "kafka-admin"
# The gateway's tenant admin path signs in as the provisioner (GatewaySettings.kafka_provisioner_*).
PROVISIONER_ENV = ("GATEWAY_KAFKA_PROVISIONER_USERNAME", "GATEWAY_KAFKA_PROVISIONER_PASSWORD")


# How long a new service credential may take to reach the broker before provisioning gives up.
SIGN_IN_WAIT_S = 30.0


def admin_password(credentials: LocalCredentials) -> str:
    """The local broker's super user password (made on first use, kept with the other local secrets)."""
    return credentials.secret(ADMIN_SECRET)


def user_password(credentials: LocalCredentials, user: str) -> SecretStr:
    """The password of a provisioned SCRAM user: secret `kafka-<service>` of `ragstream-<service>`."""
    return SecretStr(credentials.secret(f"kafka-{user.removeprefix('ragstream-')}"))


def admin_kafka_settings(credentials: LocalCredentials, kafka: str) -> KafkaSettings:
    """How the super user reaches the broker at `kafka`: topic bootstrap, provisioning, test fixtures."""
    if _is_external(kafka):
        return KafkaSettings()
    return KafkaSettings(
        bootstrap_servers=kafka,
        security_protocol=CLIENT_PROTOCOL,
        sasl_mechanism=SASL_MECHANISM,
        sasl_username=ADMIN_USER,
        sasl_password=SecretStr(admin_password(credentials)),
    )


def kafka_identity_env(service: str, *, credentials: LocalCredentials, kafka: str) -> dict[str, str]:
    """KAFKA_* of `service` signed in as `ragstream-<service>`; the gateway also gets the provisioner's
    credentials. Against a broker without SCRAM users (external, no SASL admin) only the address."""
    admin = admin_kafka_settings(credentials, kafka)
    if not _manages_users(admin):
        return {"KAFKA_BOOTSTRAP_SERVERS": kafka}
    user = service_user(service)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": admin.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": admin.security_protocol,
        "KAFKA_SASL_MECHANISM": SASL_MECHANISM,
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": user_password(credentials, user).get_secret_value(),
    }
    if service == "gateway":
        username, password = PROVISIONER_ENV
        env[username] = PROVISIONER_USER
        env[password] = user_password(credentials, PROVISIONER_USER).get_secret_value()
    return env


def provision_kafka_identities(*, credentials: LocalCredentials, kafka: str) -> None:
    """Create or update every service principal and the provisioner with exactly their static grants (acls.py),
    signed in as the super user. Internal-topic grants no longer in the map are revoked; tenants' grants stay."""
    admin = admin_kafka_settings(credentials, kafka)
    if not _manages_users(admin):
        return
    # A private loop in a worker thread: callers may themselves run inside an event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _provision(admin, credentials)).result()


async def _provision(admin_settings: KafkaSettings, credentials: LocalCredentials) -> None:
    from ragstream_common.kafka.access_admin import KafkaAccessAdmin

    admin = KafkaAccessAdmin(admin_settings)
    try:
        for user, grants in static_grants().items():
            await admin.upsert_scram_user(user, user_password(credentials, user))
            stale = [g for g in await admin.grants_of(principal(user)) if _static(g) and g not in grants]
            await admin.revoke(stale)
            await admin.grant(grants)
    finally:
        await admin.close()
    # Services start right after this: each must find its (new or changed) credential accepted.
    for user in static_grants():
        settings = admin_settings.model_copy(
            update={"sasl_username": user, "sasl_password": user_password(credentials, user)}
        )
        if not await wait_until_signed_in(settings, SIGN_IN_WAIT_S):
            raise RuntimeError(f"the broker still refuses {user} {SIGN_IN_WAIT_S:.0f} s after provisioning")


def _static(grant: AclGrant) -> bool:
    # Tenants' topics and groups are granted per tenant by the gateway's provisioning: never revoked here.
    return not grant.name.startswith(TENANT_TOPIC_PREFIX)


def _manages_users(admin: KafkaSettings) -> bool:
    return admin.security_protocol.startswith("SASL") and admin.sasl_mechanism in (
        "SCRAM-SHA-256",
        "SCRAM-SHA-512",
        "PLAIN",
    )


def _is_external(kafka: str) -> bool:
    # `make run`, the fixtures and the benchmarks use the broker named by KAFKA_BOOTSTRAP_SERVERS when it is set.
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() == kafka.strip() != ""
