"""Claim-check blob stores: raw uploads stay out of Kafka; events carry `blob://<key>` instead.

PostgresBlobStore (the `blobs` table, tenant-scoped by row-level security) is the default; S3BlobStore is
the production option (BLOB_STORE=s3). Both key objects per tenant, so the same `blob://<key>` in two
tenants' events names two different objects. The gateway writes blobs and the ingest worker reads them;
both build their store with `build_blob_store` from the same `BlobStoreSettings`, so they always agree on
where a blob lives. Large content (a connector's download) goes in with `put_file`, streamed from a local file
in bounded memory: in Postgres as 4 MiB rows of `blob_parts`, in S3 as a managed multipart upload. The retention
job lists a tenant's blobs with their last write (`BlobInventory`) to drop what no live document needs.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from ragstream_common.blob_settings import BlobStoreSettings
from ragstream_common.db import tenant_transaction

BLOB_SCHEME = "blob://"
# One `blob_parts` row: small enough to stream, large enough that a 200 MB file is 50 rows.
PART_BYTES = 4 * 1024 * 1024
# Keys per page of a tenant's listing (S3's own maximum).
LISTING_PAGE = 1000
_TOUCH = "UPDATE blobs SET created_at = now() WHERE tenant_id = %s AND blob_key = %s"


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

    async def put_file(
        self, tenant_id: str, key: str, path: Path, content_type: str, *, sha256: str | None = None
    ) -> str:
        """Store the file's content (idempotently: keys are content addressed), streaming it in bounded memory.
        `sha256`: the content's hash when the caller already has it (a download hashed as it streamed), so the
        file is read once; content that does not match it is refused (BlobIntegrityError)."""
        ...

    async def get(self, tenant_id: str, key: str) -> Blob | None: ...

    async def size(self, tenant_id: str, key: str) -> int | None:
        """The blob's size in bytes without reading it (None when missing), so readers can refuse large ones."""
        ...

    async def delete(self, tenant_id: str, key: str) -> None: ...


@dataclass(frozen=True)
class StoredBlob:
    key: str
    # The last write of the key (a content-addressed re-put counts): the retention job's age of the blob.
    written_at: datetime


class BlobInventory(Protocol):
    """What the retention job (ragstream_gateway/purge.py) needs of a store: a tenant's blobs, and deletion."""

    def listing(self, tenant_id: str, page_size: int = LISTING_PAGE) -> AsyncIterator[StoredBlob]:
        """Every blob of the tenant, `page_size` keys at a time (keys in the store's order)."""
        ...

    async def delete(self, tenant_id: str, key: str) -> None: ...


class BlobNotFound(KeyError):
    """A `blob://` URI whose object does not exist (any more)."""


class BlobIntegrityError(Exception):
    """Stored content that does not match its metadata, or a file that changed while it was being stored."""


def blob_uri(key: str) -> str:
    return f"{BLOB_SCHEME}{key}"


def blob_key_of(uri: str) -> str:
    """The key inside a `blob://<key>` URI; ValueError for any other URI."""
    if not uri.startswith(BLOB_SCHEME) or len(uri) == len(BLOB_SCHEME):
        raise ValueError(f"not a blob URI: {uri!r}")
    return uri[len(BLOB_SCHEME) :]


class PostgresBlobStore:
    """Small blobs in `blobs.content`; `put_file` blobs as `blobs.parts` rows of `blob_parts` (migration 0009)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def put(self, tenant_id: str, key: str, data: bytes, content_type: str) -> str:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            # Keys are content-addressed by the gateway, so an existing row already holds these bytes; its write
            # time moves, so the retention job does not drop a blob that is wanted again (see `listing`).
            await connection.execute(
                "INSERT INTO blobs (tenant_id, blob_key, content, content_type, size_bytes, sha256)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, blob_key) DO UPDATE SET created_at = now()",
                (tenant_id, key, data, content_type, len(data), hashlib.sha256(data).hexdigest()),
            )
        return blob_uri(key)

    async def put_file(
        self, tenant_id: str, key: str, path: Path, content_type: str, *, sha256: str | None = None
    ) -> str:
        size, digest = await asyncio.to_thread(_size_and_sha256, path, sha256)
        if size == 0:
            return await self.put(tenant_id, key, b"", content_type)
        parts = -(-size // PART_BYTES)
        async with tenant_transaction(self._pool, tenant_id) as connection:
            # The row goes first: a concurrent writer of the same key waits on it, then finds it and skips.
            cursor = await connection.execute(
                "INSERT INTO blobs (tenant_id, blob_key, content, content_type, size_bytes, sha256, parts)"
                " VALUES (%s, %s, NULL, %s, %s, %s, %s) ON CONFLICT (tenant_id, blob_key) DO NOTHING"
                " RETURNING blob_key",
                (tenant_id, key, content_type, size, digest, parts),
            )
            if await cursor.fetchone() is None:
                await connection.execute(_TOUCH, (tenant_id, key))
                return blob_uri(key)
            with path.open("rb") as file:
                written = hashlib.sha256()
                for part_no in range(parts):
                    piece = await asyncio.to_thread(_read_part, file)
                    written.update(piece)
                    await connection.execute(
                        "INSERT INTO blob_parts (tenant_id, blob_key, part_no, content) VALUES (%s, %s, %s, %s)",
                        (tenant_id, key, part_no, piece),
                    )
            if written.hexdigest() != digest or _file_size(path) != size:  # rolls the transaction back
                raise BlobIntegrityError(f"{path} does not hold the content of blob {key!r} (changed, or another hash)")
        return blob_uri(key)

    async def get(self, tenant_id: str, key: str) -> Blob | None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT content, content_type, sha256, parts, size_bytes FROM blobs"
                " WHERE tenant_id = %s AND blob_key = %s",
                (tenant_id, key),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            content, content_type, digest, parts, size = row
            if content is None:
                content = await _joined_parts(connection, tenant_id, key, parts, size)
        return Blob(bytes(content), content_type, digest)

    async def size(self, tenant_id: str, key: str) -> int | None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(
                "SELECT size_bytes FROM blobs WHERE tenant_id = %s AND blob_key = %s", (tenant_id, key)
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else None

    async def delete(self, tenant_id: str, key: str) -> None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            await connection.execute("DELETE FROM blob_parts WHERE tenant_id = %s AND blob_key = %s", (tenant_id, key))
            await connection.execute("DELETE FROM blobs WHERE tenant_id = %s AND blob_key = %s", (tenant_id, key))

    async def listing(self, tenant_id: str, page_size: int = LISTING_PAGE) -> AsyncIterator[StoredBlob]:
        after = ""
        while True:
            async with tenant_transaction(self._pool, tenant_id) as connection:
                cursor = await connection.execute(
                    "SELECT blob_key, created_at FROM blobs WHERE tenant_id = %s AND blob_key > %s"
                    " ORDER BY blob_key LIMIT %s",
                    (tenant_id, after, page_size),
                )
                rows = await cursor.fetchall()
            for key, written_at in rows:
                yield StoredBlob(key, written_at)
            if len(rows) < page_size:
                return
            after = rows[-1][0]


async def _joined_parts(
    connection: psycopg.AsyncConnection[Any], tenant_id: str, key: str, parts: int, size: int
) -> bytearray:
    """A parted blob's bytes, fetched a part at a time through a server-side cursor (no second full copy)."""
    content = bytearray()
    count = 0
    async with connection.cursor(name="blob_parts_read") as cursor:
        cursor.itersize = 1
        await cursor.execute(
            "SELECT content FROM blob_parts WHERE tenant_id = %s AND blob_key = %s ORDER BY part_no", (tenant_id, key)
        )
        async for (piece,) in cursor:
            content += piece
            count += 1
    if count != parts or len(content) != size:
        raise BlobIntegrityError(f"blob {key!r}: {count} of {parts} parts, {len(content)} of {size} bytes")
    return content


def _size_and_sha256(path: Path, known_sha256: str | None = None) -> tuple[int, str]:
    """The file's size, and its sha256 (read and hashed only when the caller did not know it)."""
    if known_sha256 is not None:
        return _file_size(path), known_sha256
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256")
    return _file_size(path), digest.hexdigest()


def _read_part(file: BinaryIO) -> bytes:
    return file.read(PART_BYTES)


def _file_size(path: Path) -> int:
    return path.stat().st_size


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

    async def put_file(
        self, tenant_id: str, key: str, path: Path, content_type: str, *, sha256: str | None = None
    ) -> str:
        from boto3.s3.transfer import TransferConfig

        _, digest = await asyncio.to_thread(_size_and_sha256, path, sha256)
        # Managed multipart upload: at most max_concurrency parts of multipart_chunksize in memory at once.
        transfer = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=4)
        await asyncio.to_thread(
            self._client.upload_file,
            str(path),
            self._bucket,
            self._object_key(tenant_id, key),
            ExtraArgs={"ContentType": content_type or "application/octet-stream", "Metadata": {"sha256": digest}},
            Config=transfer,
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

    async def size(self, tenant_id: str, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            response = await asyncio.to_thread(
                self._client.head_object, Bucket=self._bucket, Key=self._object_key(tenant_id, key)
            )
        except ClientError as exc:
            # HEAD responses have no body, so a missing object is a bare 404.
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(response["ContentLength"])

    async def delete(self, tenant_id: str, key: str) -> None:
        await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=self._object_key(tenant_id, key))

    async def listing(self, tenant_id: str, page_size: int = LISTING_PAGE) -> AsyncIterator[StoredBlob]:
        # The trailing slash keeps tenant "a" from listing tenant "a.b"'s objects.
        prefix = self._object_key(tenant_id, "")
        token: dict[str, str] = {}
        while True:
            page = await asyncio.to_thread(
                self._client.list_objects_v2, Bucket=self._bucket, Prefix=prefix, MaxKeys=page_size, **token
            )
            for item in page.get("Contents", []):
                yield StoredBlob(item["Key"][len(prefix) :], item["LastModified"])
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}


def build_blob_store(settings: BlobStoreSettings, pool: AsyncConnectionPool | None) -> PostgresBlobStore | S3BlobStore:
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
