"""Blobs stored in parts (`put_file`, migration 0009) in the real Postgres: written under the gateway's login
(the connectors worker has the same INSERT grants), read back whole by ingest, in bounded memory on the way in;
and ingest refusing a stored document over INGEST_MAX_DOCUMENT_BYTES before loading it."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from ragstream_common.blobs import PART_BYTES, Blob, BlobIntegrityError, BlobNotFound, PostgresBlobStore
from ragstream_common.db import create_pool
from ragstream_ingest.adapters.content import BlobTooLargeError, UriContentSource
from ragstream_ingest.config import IngestSettings

pytestmark = pytest.mark.integration
SIZE = 20 * 1024 * 1024 + 12_345  # six parts, the last one short
PoolOf = Callable[[str], Awaitable[AsyncConnectionPool]]


@pytest.fixture
async def pool_of(service_database_urls: dict[str, str]) -> AsyncIterator[PoolOf]:
    pools: list[AsyncConnectionPool] = []

    async def open_(identity: str) -> AsyncConnectionPool:
        pool = create_pool(service_database_urls[identity], max_size=1, name=f"test-parts-{identity}")
        await pool.open(wait=True)
        pools.append(pool)
        return pool

    yield open_
    for pool in pools:
        await pool.close()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """SIZE random bytes on disk (written a MiB at a time) and their sha256."""
    path, digest = tmp_path_factory.mktemp("blobs") / "big.bin", hashlib.sha256()
    with path.open("wb") as file:
        for offset in range(0, SIZE, 1024 * 1024):
            piece = os.urandom(min(1024 * 1024, SIZE - offset))
            digest.update(piece)
            file.write(piece)
    return path, digest.hexdigest()


def _ids() -> tuple[str, str]:
    return f"bp-{uuid.uuid4().hex[:8]}", f"sha256-{uuid.uuid4().hex}"


def _stored_layout(admin_url: str, tenant: str, key: str) -> tuple[bool, int, int]:
    """(content is NULL, parts, part rows) as the administrator sees them."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT content IS NULL, parts, (SELECT count(*) FROM blob_parts p WHERE p.tenant_id = b.tenant_id"
            " AND p.blob_key = b.blob_key) FROM blobs b WHERE tenant_id = %s AND blob_key = %s",
            (tenant, key),
        ).fetchone()
    assert row is not None
    return bool(row[0]), int(row[1]), int(row[2])


async def test_a_20_mb_file_round_trips_through_parts(
    pool_of: PoolOf, migrated_database: str, big_file: tuple[Path, str]
) -> None:
    path, digest = big_file
    tenant, key = _ids()
    writer, reader = PostgresBlobStore(await pool_of("gateway")), PostgresBlobStore(await pool_of("ingest"))

    assert await writer.put_file(tenant, key, path, "application/pdf") == f"blob://{key}"
    assert _stored_layout(migrated_database, tenant, key) == (True, 6, 6)
    assert await reader.size(tenant, key) == SIZE

    blob = await reader.get(tenant, key)
    assert blob is not None and len(blob.data) == SIZE and blob.content_type == "application/pdf"
    assert blob.sha256 == digest == hashlib.sha256(blob.data).hexdigest()
    # Other tenants see nothing under the same key.
    assert await reader.get(f"{tenant}-other", key) is None and await reader.size(f"{tenant}-other", key) is None

    # Keys are content addressed: storing again changes nothing (and costs no part writes).
    assert await writer.put_file(tenant, key, path, "application/pdf") == f"blob://{key}"
    assert _stored_layout(migrated_database, tenant, key) == (True, 6, 6)


async def test_put_file_streams_in_bounded_memory(pool_of: PoolOf, big_file: tuple[Path, str]) -> None:
    path, _ = big_file
    tenant, key = _ids()
    writer = PostgresBlobStore(await pool_of("gateway"))
    tracemalloc.start()
    try:
        await writer.put_file(tenant, key, path, "application/octet-stream")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A part or two in flight, never the 20 MB file.
    assert peak < 3 * PART_BYTES, f"peak {peak} bytes"


async def test_empty_and_small_files(pool_of: PoolOf, migrated_database: str, tmp_path: Path) -> None:
    writer, reader = PostgresBlobStore(await pool_of("gateway")), PostgresBlobStore(await pool_of("ingest"))
    tenant, key = _ids()
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    await writer.put_file(tenant, key, empty, "text/plain")
    assert _stored_layout(migrated_database, tenant, key) == (False, 0, 0)
    assert await reader.get(tenant, key) == Blob(b"", "text/plain", hashlib.sha256(b"").hexdigest())

    small = tmp_path / "small.txt"
    small.write_bytes(b"one part")
    await writer.put_file(tenant, f"{key}-small", small, "text/plain")
    assert _stored_layout(migrated_database, tenant, f"{key}-small") == (True, 1, 1)
    found = await reader.get(tenant, f"{key}-small")
    assert found is not None and found.data == b"one part"
    # Whole-content blobs (`put`) still read as before.
    await writer.put(tenant, f"{key}-whole", b"whole", "text/plain")
    assert await reader.size(tenant, f"{key}-whole") == 5

    # No service login may delete blobs; the administrator's delete takes the parts with the row.
    admin = create_pool(migrated_database, max_size=1, name="test-parts-admin")
    await admin.open(wait=True)
    try:
        await PostgresBlobStore(admin).delete(tenant, f"{key}-small")
    finally:
        await admin.close()
    assert await reader.get(tenant, f"{key}-small") is None
    with psycopg.connect(migrated_database, autocommit=True) as connection:
        query = "SELECT count(*) FROM blob_parts WHERE tenant_id = %s AND blob_key = %s"
        assert connection.execute(query, (tenant, f"{key}-small")).fetchone() == (0,)


async def test_content_that_does_not_match_its_hash_is_rolled_back(pool_of: PoolOf, tmp_path: Path) -> None:
    """A caller's hash (a download hashed as it streamed) is checked against what is written: a file that changed
    since, or any other mismatch, leaves no blob and no parts behind."""
    path = tmp_path / "changed.bin"
    path.write_bytes(b"x" * 100)
    stale = hashlib.sha256(b"x" * 99).hexdigest()
    writer, reader = PostgresBlobStore(await pool_of("gateway")), PostgresBlobStore(await pool_of("ingest"))
    tenant, key = _ids()
    with pytest.raises(BlobIntegrityError):
        await writer.put_file(tenant, key, path, "text/plain", sha256=stale)
    assert await reader.size(tenant, key) is None
    right = hashlib.sha256(b"x" * 100).hexdigest()
    assert await writer.put_file(tenant, key, path, "text/plain", sha256=right) == f"blob://{key}"
    stored = await reader.get(tenant, key)
    assert stored is not None and stored.sha256 == right and stored.data == b"x" * 100


class CountedReads(PostgresBlobStore):
    """The real store, counting whole-content reads."""

    gets = 0

    async def get(self, tenant_id: str, key: str) -> Blob | None:
        self.gets += 1
        return await super().get(tenant_id, key)


async def test_ingest_refuses_a_blob_over_the_limit_before_reading_it(
    pool_of: PoolOf, big_file: tuple[Path, str]
) -> None:
    path, digest = big_file
    tenant, key = _ids()
    await PostgresBlobStore(await pool_of("gateway")).put_file(tenant, key, path, "application/pdf")
    store = CountedReads(await pool_of("ingest"))
    settings = IngestSettings()
    assert settings.max_document_bytes == 100 * 1024 * 1024

    def source(limit: int) -> UriContentSource:
        return UriContentSource(
            store, timeout_s=1, max_bytes=settings.fetch_max_bytes, allow_private_networks=False, max_blob_bytes=limit
        )

    with pytest.raises(BlobTooLargeError, match="over the 10485760-byte limit") as refused:
        await source(10 * 1024 * 1024).read(tenant, f"blob://{key}")
    assert (refused.value.error_class, refused.value.retryable) == ("too_large", False)
    assert store.gets == 0

    content = await source(settings.max_document_bytes).read(tenant, f"blob://{key}")
    assert hashlib.sha256(content.data).hexdigest() == digest and content.content_type == "application/pdf"
    with pytest.raises(BlobNotFound):
        await source(settings.max_document_bytes).read(tenant, "blob://missing")


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_MAX_DOCUMENT_BYTES", "2048")
    assert IngestSettings().max_document_bytes == 2048
