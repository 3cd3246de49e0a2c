"""The document registry in Postgres (`documents`), always under the tenant's row-level security.

Version rules, shared by the gateway's own writes and the two Kafka projections:
- the gateway registers version n+1 over n (1 for new ids); equal content, title and metadata is a no-op;
- events of another producer register their version only when it is newer than the row's, or fill the
  placeholder the status projector left for a version it saw first (a new row, or an existing row it moved
  to that version: origin 'status' marks content columns that still describe an older version); a
  redelivered registration finds origin 'kafka' at its version and changes nothing;
- status events apply to the row's version or a newer one, never an older one, and within a version never
  step back (received < processing < indexed | failed); `deleted` at a version is final for it, and a
  `failed` mark at stage `publish` gives way to any status the pipeline reports for that version.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction

from ragstream_gateway.documents import is_unchanged
from ragstream_gateway.ports import (
    DocumentListing,
    DocumentRecord,
    DocumentStatus,
    DocumentVersion,
    Registration,
    StatusChange,
)

_COLUMNS = (
    "tenant_id, document_id, version, status, title, metadata, content_type, content_sha256, size_bytes,"
    " source_uri, chunk_count, error_stage, error, created_at, updated_at, indexed_at, deleted_at,"
    " published_version"
)
_NEW_VERSION = """
UPDATE documents SET version = version + 1, status = 'received', title = %(title)s, metadata = %(metadata)s,
    content_type = %(content_type)s, content_sha256 = %(sha256)s, size_bytes = %(size)s, source_uri = %(uri)s,
    chunk_count = 0, error_stage = NULL, error = NULL, origin = 'gateway', updated_at = now(), indexed_at = NULL,
    deleted_at = NULL
WHERE tenant_id = %(tenant)s AND document_id = %(doc)s
RETURNING version
"""
_FIRST_VERSION = """
INSERT INTO documents (tenant_id, document_id, version, status, title, metadata, content_type, content_sha256,
    size_bytes, source_uri, origin)
VALUES (%(tenant)s, %(doc)s, 1, 'received', %(title)s, %(metadata)s, %(content_type)s, %(sha256)s, %(size)s,
    %(uri)s, 'gateway')
"""
_EXTERNAL_VERSION = """
INSERT INTO documents AS d (tenant_id, document_id, version, status, title, metadata, content_type, content_sha256,
    size_bytes, source_uri, origin)
VALUES (%(tenant)s, %(doc)s, %(version)s, 'received', %(title)s, %(metadata)s, %(content_type)s, %(sha256)s,
    %(size)s, %(uri)s, 'kafka')
ON CONFLICT (tenant_id, document_id) DO UPDATE SET
    version = EXCLUDED.version, title = EXCLUDED.title, metadata = EXCLUDED.metadata,
    content_type = EXCLUDED.content_type, content_sha256 = EXCLUDED.content_sha256,
    size_bytes = EXCLUDED.size_bytes, source_uri = EXCLUDED.source_uri, origin = 'kafka', updated_at = now(),
    -- A placeholder keeps the status the pipeline already reported for this version.
    status = CASE WHEN d.version < EXCLUDED.version THEN 'received' ELSE d.status END,
    chunk_count = CASE WHEN d.version < EXCLUDED.version THEN 0 ELSE d.chunk_count END,
    error_stage = CASE WHEN d.version < EXCLUDED.version THEN NULL ELSE d.error_stage END,
    error = CASE WHEN d.version < EXCLUDED.version THEN NULL ELSE d.error END,
    indexed_at = CASE WHEN d.version < EXCLUDED.version THEN NULL ELSE d.indexed_at END,
    deleted_at = CASE WHEN d.version < EXCLUDED.version THEN NULL ELSE d.deleted_at END
WHERE d.version < EXCLUDED.version OR (d.version = EXCLUDED.version AND d.origin = 'status')
"""
_RANK = "CASE {} WHEN 'received' THEN 0 WHEN 'processing' THEN 1 ELSE 2 END"
_STATUS = f"""
INSERT INTO documents AS d (tenant_id, document_id, version, status, chunk_count, error_stage, error, origin,
    indexed_at, deleted_at)
VALUES (%(tenant)s, %(doc)s, %(version)s, %(status)s, coalesce(%(chunks)s, 0), %(stage)s, %(error)s, 'status',
    CASE WHEN %(status)s = 'indexed' THEN now() END, CASE WHEN %(status)s = 'deleted' THEN now() END)
ON CONFLICT (tenant_id, document_id) DO UPDATE SET
    version = EXCLUDED.version, status = EXCLUDED.status,
    chunk_count = CASE WHEN EXCLUDED.status = 'indexed' THEN EXCLUDED.chunk_count ELSE d.chunk_count END,
    error_stage = EXCLUDED.error_stage, error = EXCLUDED.error, updated_at = now(),
    -- Moved to a version nobody registered yet: the content columns are still the older version's, so the
    -- row is that version's placeholder until its registration fills it (see _EXTERNAL_VERSION).
    origin = CASE WHEN d.version < EXCLUDED.version THEN 'status' ELSE d.origin END,
    indexed_at = CASE WHEN EXCLUDED.status = 'indexed' THEN now() ELSE d.indexed_at END,
    deleted_at = CASE WHEN EXCLUDED.status = 'deleted' THEN coalesce(d.deleted_at, now()) ELSE d.deleted_at END
WHERE d.version < EXCLUDED.version
   OR (d.version = EXCLUDED.version AND d.status <> 'deleted' AND (
        EXCLUDED.status = 'deleted' OR d.error_stage = 'publish'
        OR {_RANK.format("d.status")} <= {_RANK.format("EXCLUDED.status")}))
"""


class PostgresDocumentRegistry:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def get(self, tenant_id: str, document_id: str) -> DocumentRecord | None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            return await _select(connection, tenant_id, document_id)

    async def list(
        self, tenant_id: str, *, limit: int, cursor: str | None, status: DocumentStatus | None
    ) -> DocumentListing:
        after = _decode_cursor(cursor) if cursor else None
        conditions = ["tenant_id = %(tenant)s"]
        params: dict[str, Any] = {"tenant": tenant_id, "limit": limit + 1}
        if status:
            conditions.append("status = %(status)s")
            params["status"] = status
        else:
            conditions.append("status <> 'deleted'")
        if after:
            # Keyset order matches the (tenant_id, created_at DESC, document_id) index.
            conditions.append("(created_at < %(at)s OR (created_at = %(at)s AND document_id > %(after_id)s))")
            params.update(at=after[0], after_id=after[1])
        query = (
            f"SELECT {_COLUMNS} FROM documents WHERE {' AND '.join(conditions)}"
            " ORDER BY created_at DESC, document_id LIMIT %(limit)s"
        )
        async with (
            tenant_transaction(self._pool, tenant_id) as connection,
            connection.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(query, params)
            rows = [DocumentRecord(**row) for row in await cur.fetchall()]
        more = len(rows) > limit
        items = rows[:limit]
        return DocumentListing(items, _encode_cursor(items[-1]) if more and items else None)

    async def register(self, version: DocumentVersion) -> Registration:
        params = _version_params(version)
        for _ in range(3):
            try:
                async with tenant_transaction(self._pool, version.tenant_id) as connection:
                    return await _register(connection, version, params)
            except UniqueViolation:
                continue  # a concurrent first upload of the same id won; the next round sees its row
        raise RuntimeError(f"could not register {version.document_id}: concurrent first uploads kept colliding")

    async def mark_publish_failed(self, tenant_id: str, document_id: str, version: int, error: str) -> None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute(
                "UPDATE documents SET status = 'failed', error_stage = 'publish', error = %s, updated_at = now()"
                " WHERE tenant_id = %s AND document_id = %s AND version = %s AND status = 'received'",
                (error[:2000], tenant_id, document_id, version),
            )

    async def mark_published(self, tenant_id: str, document_id: str, version: int) -> None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute(
                "UPDATE documents SET published_version = GREATEST(published_version, %s)"
                " WHERE tenant_id = %s AND document_id = %s",
                (version, tenant_id, document_id),
            )

    async def mark_deleted(self, tenant_id: str, document_id: str, version: int) -> None:
        await self.apply_status(StatusChange(tenant_id, document_id, version, "deleted"))

    async def register_external(self, version: DocumentVersion, number: int) -> bool:
        params = {**_version_params(version), "version": number}
        return await self._changes_rows(version.tenant_id, _EXTERNAL_VERSION, params)

    async def apply_status(self, change: StatusChange) -> bool:
        params = {
            "tenant": change.tenant_id,
            "doc": change.document_id,
            "version": change.version,
            "status": change.status,
            "chunks": change.chunk_count,
            "stage": change.error_stage,
            "error": change.error[:2000] if change.error else None,
        }
        return await self._changes_rows(change.tenant_id, _STATUS, params)

    async def _changes_rows(self, tenant_id: str, statement: str, params: dict[str, Any]) -> bool:
        """Run `statement` in the tenant's transaction; True when it changed (or inserted) a row."""
        connection: AsyncConnection
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(statement, params)
            return cursor.rowcount > 0


async def _select(
    connection: AsyncConnection, tenant_id: str, document_id: str, *, lock: bool = False
) -> DocumentRecord | None:
    query = f"SELECT {_COLUMNS} FROM documents WHERE tenant_id = %s AND document_id = %s"
    async with connection.cursor(row_factory=dict_row) as cur:
        await cur.execute(query + (" FOR UPDATE" if lock else ""), (tenant_id, document_id))
        row = await cur.fetchone()
    return DocumentRecord(**row) if row else None


async def _register(connection: AsyncConnection, version: DocumentVersion, params: dict[str, Any]) -> Registration:
    current = await _select(connection, version.tenant_id, version.document_id, lock=True)
    if current is None:
        await connection.execute(_FIRST_VERSION, params)
        return Registration(1, "received")
    if is_unchanged(current, version.content_sha256, version.title, version.metadata):
        return Registration(current.version, current.status, unchanged=True)
    cursor = await connection.execute(_NEW_VERSION, params)
    row = await cursor.fetchone()
    assert row is not None
    previous = current.version if current.status != "deleted" else None
    return Registration(int(row[0]), "received", previous_version=previous)


def _encode_cursor(record: DocumentRecord) -> str:
    raw = json.dumps([record.created_at.isoformat(), record.document_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, document_id = json.loads(raw)
        return datetime.fromisoformat(created_at), str(document_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("not a cursor this API issued") from exc


def _version_params(version: DocumentVersion) -> dict[str, object]:
    """The query parameters that describe a version's content."""
    return {
        "tenant": version.tenant_id,
        "doc": version.document_id,
        "title": version.title,
        "metadata": Jsonb(dict(version.metadata)),
        "content_type": version.content_type,
        "sha256": version.content_sha256,
        "size": version.size_bytes,
        "uri": version.source_uri,
    }
