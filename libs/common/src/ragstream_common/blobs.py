"""Claim-check blob store: raw uploads live here and events carry only `blob://<key>`.

Postgres (`blobs` table, tenant-scoped by row-level security) is the embedded default; S3 is for production.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool

from ragstream_common.db import tenant_transaction

BLOB_SCHEME = "blob://"


@dataclass(frozen=True)
class Blob:
    data: bytes
    content_type: str


class BlobNotFound(KeyError):
    pass


class BlobStore(Protocol):
    async def put(self, tenant_id: str, key: str, data: bytes, content_type: str) -> str:
        """Store bytes; return the `blob://` URI an event may carry."""
        ...

    async def get(self, tenant_id: str, key: str) -> Blob: ...

    async def delete(self, tenant_id: str, key: str) -> None: ...


def blob_uri(key: str) -> str:
    return f"{BLOB_SCHEME}{key}"


def blob_key(uri: str) -> str:
    if not uri.startswith(BLOB_SCHEME) or len(uri) == len(BLOB_SCHEME):
        raise ValueError(f"not a blob URI: {uri!r}")
    return uri[len(BLOB_SCHEME):]


class PostgresBlobStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def put(self, tenant_id: str, key: str, data: bytes, content_type: str) -> str:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute(
                "INSERT INTO blobs (tenant_id, blob_key, content, content_type, size_bytes, sha256)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, blob_key) DO NOTHING",
                (tenant_id, key, data, content_type, len(data), hashlib.sha256(data).hexdigest()),
            )
        return blob_uri(key)

    async def get(self, tenant_id: str, key: str) -> Blob:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT content, content_type FROM blobs WHERE tenant_id = %s AND blob_key = %s", (tenant_id, key)
            )
            row = await cursor.fetchone()
        if row is None:
            raise BlobNotFound(key)
        return Blob(bytes(row[0]), row[1])

    async def delete(self, tenant_id: str, key: str) -> None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute("DELETE FROM blobs WHERE tenant_id = %s AND blob_key = %s", (tenant_id, key))


class S3BlobStore:
    """Objects under `<prefix><tenant>/<key>`; boto3 calls run in threads to keep the loop free."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def _object(self, tenant_id: str, key: str) -> str:
        return f"{self._prefix}{tenant_id}/{key}"

    async def put(self, tenant_id: str, key: str, data: bytes, content_type: str) -> str:
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self._bucket,
            Key=self._object(tenant_id, key),
            Body=data,
            ContentType=content_type or "application/octet-stream",
            ServerSideEncryption="aws:kms",
        )
        return blob_uri(key)

    async def get(self, tenant_id: str, key: str) -> Blob:
        try:
            response = await asyncio.to_thread(
                self._client.get_object, Bucket=self._bucket, Key=self._object(tenant_id, key)
            )
        except self._client.exceptions.NoSuchKey as exc:
            raise BlobNotFound(key) from exc
        data = await asyncio.to_thread(response["Body"].read)
        return Blob(data, response.get("ContentType", ""))

    async def delete(self, tenant_id: str, key: str) -> None:
        await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=self._object(tenant_id, key))


def build_blob_store(kind: str, pool: AsyncConnectionPool | None, bucket: str = "", prefix: str = "") -> BlobStore:
    if kind == "s3":
        if not bucket:
            raise ValueError("the s3 blob store needs a bucket")
        return S3BlobStore(bucket, prefix)
    if pool is None:
        raise ValueError("the postgres blob store needs a database pool")
    return PostgresBlobStore(pool)
