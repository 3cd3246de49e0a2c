"""The connector registry in Postgres (migration 0009): `connectors`, `connector_sync_state`, `connector_deliveries`.

Every statement runs in the connector's tenant transaction under row-level security, except `find`: the webhook
path knows only the connector id, so it asks `ragstream_find_connector` (SECURITY DEFINER), which returns that
one row's tenant, provider, status, config and sealed secrets. Secrets are sealed with the tenant's data key
(ragstream_common.secret_envelope, the connector id bound as associated data, so a ciphertext copied onto another
connector does not open) before they reach SQL, and opened only where the webhook path or a rotation needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction
from ragstream_common.logs import get_logger
from ragstream_common.secret_envelope import SecretsSettings, build_secret_sealer

from ragstream_gateway.connector_ports import (
    ConnectorRecord,
    ConnectorStatus,
    ConnectorSyncStatus,
    NewConnector,
)

log = get_logger(__name__)


class SecretSealer(Protocol):
    """ragstream_common.secret_envelope.TenantSecretSealer: AES-GCM under the tenant's data key."""

    async def seal(self, tenant_id: str, purpose: str, secrets: Mapping[str, str]) -> bytes: ...

    async def unseal(self, tenant_id: str, purpose: str, ciphertext: bytes) -> dict[str, str]: ...


_INSERT_CONNECTOR = """
INSERT INTO connectors (connector_id, tenant_id, provider, name, config, secrets_ciphertext)
VALUES (%(id)s, %(tenant)s, %(provider)s, %(name)s, %(config)s, %(ciphertext)s)
RETURNING status, created_at
"""
# The first poll is due at once: the worker's scheduler starts the connector even if RESYNC is never published.
_INSERT_SYNC_STATE = """
INSERT INTO connector_sync_state (connector_id, tenant_id, next_poll_at) VALUES (%(id)s, %(tenant)s, now())
"""
_SELECT = """
SELECT c.connector_id, c.tenant_id, c.provider, c.name, c.status, c.config, c.created_at,
    s.last_notification_at, s.last_sync_at, s.items_synced, s.error_count, s.last_error,
    s.subscription_expires_at, s.next_poll_at
FROM connectors c LEFT JOIN connector_sync_state s ON s.connector_id = c.connector_id
WHERE c.tenant_id = %(tenant)s AND (%(id)s::text IS NULL OR c.connector_id = %(id)s)
ORDER BY c.created_at, c.connector_id
"""
_FIND = "SELECT tenant_id, provider, status, config, secrets_ciphertext FROM ragstream_find_connector(%s)"
_SET_STATUS = """
UPDATE connectors SET status = %(status)s, updated_at = now(),
    removed_at = CASE WHEN %(status)s = 'removed' THEN now() END
WHERE connector_id = %(id)s AND (%(expected)s::text[] IS NULL OR status = ANY(%(expected)s::text[]))
"""
_SET_SECRETS = "UPDATE connectors SET secrets_ciphertext = %s, updated_at = now() WHERE connector_id = %s"
_DELIVERY_SEEN = "SELECT 1 FROM connector_deliveries WHERE connector_id = %s AND delivery_id = %s"
_RECORD_DELIVERY = """
INSERT INTO connector_deliveries (connector_id, delivery_id, tenant_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING
"""
_NOTIFIED = "UPDATE connector_sync_state SET last_notification_at = now(), updated_at = now() WHERE connector_id = %s"


def open_connector_directory(settings: SecretsSettings, pool: AsyncConnectionPool) -> PostgresConnectorDirectory | None:
    """The directory, or None (the connector API answers 503) while no master key is configured at all; a key
    that is configured but unusable fails the start."""
    if settings.provider == "local" and settings.master_key is None:
        log.warning("connectors disabled: set SECRETS_MASTER_KEY (or SECRETS_PROVIDER=kms) to seal their secrets")
        return None
    return PostgresConnectorDirectory(pool, build_secret_sealer(settings, pool))


class PostgresConnectorDirectory:
    """Implements connector_ports.ConnectorDirectory on the gateway's login."""

    def __init__(self, pool: AsyncConnectionPool, sealer: SecretSealer) -> None:
        self._pool = pool
        self._sealer = sealer

    async def create(self, connector: NewConnector) -> ConnectorRecord:
        tenant_id, connector_id = connector.tenant_id, connector.connector_id
        # Sealed first, outside the transaction: the tenant's first seal creates its data key.
        ciphertext = await self._sealer.seal(tenant_id, connector_id, connector.secrets)
        params = {
            "id": connector_id,
            "tenant": tenant_id,
            "provider": connector.provider,
            "name": connector.name,
            "config": Jsonb(dict(connector.config)),
            "ciphertext": ciphertext,
        }
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(_INSERT_CONNECTOR, params)
            row = await cursor.fetchone()
            await connection.execute(_INSERT_SYNC_STATE, params)
        assert row is not None  # INSERT ... RETURNING yields the row or raises
        status, created_at = row
        return ConnectorRecord(
            connector_id,
            tenant_id,
            connector.provider,
            connector.name,
            status,
            dict(connector.config),
            {},
            created_at,
        )

    async def find(self, connector_id: str) -> ConnectorRecord | None:
        """The webhook path's lookup; `name` and `created_at` are not part of it (empty and None)."""
        async with self._pool.connection() as connection, connection.transaction():
            cursor = await connection.execute(_FIND, (connector_id,))
            row = await cursor.fetchone()
        if row is None:
            return None
        tenant_id, provider, status, config, ciphertext = row
        secrets = await self._sealer.unseal(tenant_id, connector_id, bytes(ciphertext))
        return ConnectorRecord(connector_id, tenant_id, provider, "", status, config, secrets)

    async def get(self, tenant_id: str, connector_id: str) -> tuple[ConnectorRecord, ConnectorSyncStatus] | None:
        rows = await self._select(tenant_id, connector_id)
        return rows[0] if rows else None

    async def list(self, tenant_id: str) -> Sequence[tuple[ConnectorRecord, ConnectorSyncStatus]]:
        return await self._select(tenant_id, None)

    async def set_status(
        self,
        tenant_id: str,
        connector_id: str,
        status: ConnectorStatus,
        *,
        expected: Collection[ConnectorStatus] | None = None,
    ) -> bool:
        params = {"status": status, "id": connector_id, "expected": list(expected) if expected is not None else None}
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(_SET_STATUS, params)
            return cursor.rowcount > 0

    async def replace_secrets(self, tenant_id: str, connector_id: str, secrets: Mapping[str, str]) -> None:
        ciphertext = await self._sealer.seal(tenant_id, connector_id, secrets)
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute(_SET_SECRETS, (ciphertext, connector_id))

    async def update_secrets(
        self, tenant_id: str, connector_id: str, change: Callable[[Mapping[str, str]], Mapping[str, str]]
    ) -> bool:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT secrets_ciphertext FROM connectors WHERE connector_id = %s FOR UPDATE", (connector_id,)
            )
            row = await cursor.fetchone()
            if row is None:
                return False
            current = await self._sealer.unseal(tenant_id, connector_id, bytes(row[0]))
            ciphertext = await self._sealer.seal(tenant_id, connector_id, change(current))
            await connection.execute(_SET_SECRETS, (ciphertext, connector_id))
            return True

    async def delivery_seen(self, tenant_id: str, connector_id: str, delivery_id: str) -> bool:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(_DELIVERY_SEEN, (connector_id, delivery_id))
            return await cursor.fetchone() is not None

    async def record_delivery(self, tenant_id: str, connector_id: str, delivery_id: str) -> None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute(_RECORD_DELIVERY, (connector_id, delivery_id, tenant_id))
            await connection.execute(_NOTIFIED, (connector_id,))

    async def _select(
        self, tenant_id: str, connector_id: str | None
    ) -> Sequence[tuple[ConnectorRecord, ConnectorSyncStatus]]:
        """The tenant's connectors (all, or the one named), oldest first."""
        async with (
            tenant_transaction(self._pool, tenant_id) as connection,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(_SELECT, {"tenant": tenant_id, "id": connector_id})
            rows = await cursor.fetchall()
        return [_from_row(row) for row in rows]


def _from_row(row: Mapping[str, Any]) -> tuple[ConnectorRecord, ConnectorSyncStatus]:
    record = ConnectorRecord(
        row["connector_id"],
        row["tenant_id"],
        row["provider"],
        row["name"],
        row["status"],
        row["config"],
        {},  # the API never needs them: not opened
        row["created_at"],
    )
    sync = ConnectorSyncStatus(
        last_notification_at=row["last_notification_at"],
        last_sync_at=row["last_sync_at"],
        items_synced=row["items_synced"] or 0,
        error_count=row["error_count"] or 0,
        last_error=row["last_error"],
        subscription_expires_at=row["subscription_expires_at"],
        next_poll_at=row["next_poll_at"],
    )
    return record, sync
