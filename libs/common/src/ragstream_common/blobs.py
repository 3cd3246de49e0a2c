"""Claim-check blob stores: raw uploads stay out of Kafka; events carry `blob://<key>` instead.

PostgresBlobStore (the `blobs` table, tenant-scoped by row-level security) is the default; S3BlobStore is
the production option (BLOB_STORE=s3). Both key objects per tenant, so the same `blob://<key>` in two
tenants' events names two different objects. The gateway writes blobs and the ingest worker reads them;
both build their store with `build_blob_store` from the same `BlobStoreSettings`, so they always agree on
where a blob lives.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool

from ragstream_common.blob_settings import BlobStoreSettings
from ragstream_common.db import tenant_transaction

BLOB_SCHEME = "blob://"


@dataclass(frozen=True)
class Blob:
    data: bytes
    content_type: str
    sha256: str


class BlobStore(Protocol):
    """Claim-check store for raw uploads; keys are per tenant and events carry `blob://<key>`."""

    async def put(self, tenant_id: str, key: str, data: bytes, content_type: str) -> str:
        """Store (idempotently) and return the URI to put in events."""
        ...

    async def get(self, tenant_id: str, key: str) -> Blob | None: ...

    async def delete(self, tenant_id: str, key: str) -> None: ...


class BlobNotFound(KeyError):
    """A `blob://` URI whose object does not exist (any more)."""


def blob_uri(key: str) -> str:
    return f"{BLOB_SCHEME}{key}"


def blob_key_of(uri: str) -> str:
    """The key inside a `blob://<key>` URI; ValueError for any other URI."""
    if not uri.startswith(BLOB_SCHEME) or len(uri) == len(BLOB_SCHEME):
        raise ValueError(f"not a blob URI: {uri!r}")
    return uri[len(BLOB_SCHEME) :]


class PostgresBlobStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def put(self, tenant_id: str, key: str, data: bytes, content_type: str) -> str:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            # Keys are content-addressed by the gateway, so an existing row already holds these bytes.
            await connection.execute(
                "INSERT INTO blobs (tenant_id, blob_key, content, content_type, size_bytes, sha256)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, blob_key) DO NOTHING",
                (tenant_id, key, data, content_type, len(data), hashlib.sha256(data).hexdigest()),
            )
        return blob_uri(key)

    async def get(self, tenant_id: str, key: str) -> Blob | None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT content, content_type, sha256 FROM blobs WHERE tenant_id = %s AND blob_key = %s",
                (tenant_id, key),
            )
            row = await cursor.fetchone()
        return Blob(bytes(row[0]), row[1], row[2]) if row else None

    async def delete(self, tenant_id: str, key: str) -> None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute("DELETE FROM blobs WHERE tenant_id = %s AND blob_key = %s", (tenant_id, key))


class S3BlobStore:
    """Objects at `<prefix><tenant_id>/<key>`; boto3 is synchronous, so calls run in worker threads."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        if client is None:
            import boto3  # production-only dependency; imported late so Postgres-only users never load it

            client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def _object_key(self, tenant_id: str, key: str) -> str:
        return f"{self._prefix}{tenant_id}/{key}"

    async def put(self, tenant_id: str, key: str, data: bytes, content_type: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self._bucket,
            Key=self._object_key(tenant_id, key),
            Body=data,
            ContentType=content_type or "application/octet-stream",
            Metadata={"sha256": digest},
        )
        return blob_uri(key)

    async def get(self, tenant_id: str, key: str) -> Blob | None:
        try:
            response = await asyncio.to_thread(
                self._client.get_object, Bucket=self._bucket, Key=self._object_key(tenant_id, key)
            )
        except self._client.exceptions.NoSuchKey:
            return None
        data = await asyncio.to_thread(response["Body"].read)
        digest = response.get("Metadata", {}).get("sha256") or hashlib.sha256(data).hexdigest()
        return Blob(data, response.get("ContentType", ""), digest)

    async def delete(self, tenant_id: str, key: str) -> None:
        await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=self._object_key(tenant_id, key))


def build_blob_store(settings: BlobStoreSettings, pool: AsyncConnectionPool | None) -> BlobStore:
    """The configured store: "postgres" (needs the pool) or "s3" (bucket, prefix, endpoint and region)."""
    if settings.store == "s3":
        if not settings.s3_bucket:
            raise ValueError("BLOB_STORE=s3 needs the bucket name in BLOB_S3_BUCKET")
        return S3BlobStore(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
    if pool is None:
        raise ValueError("the postgres blob store needs a database pool")
    return PostgresBlobStore(pool)
