"""The retention job against real Postgres (every service's own login), the Postgres blob store and the SASL broker:
a deleted document, then a deleted tenant, leave nothing behind in any table of the schema or in the blob store
once the job ran (the audit chain excepted, by policy: docs/data-governance.md), and what is live stays. A purged
document's id stays only in its content-free tombstone (registry row and index state), which keeps old versions
refused and gives a re-upload under the same id the next version."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import boto3
import httpx
import numpy as np
import psycopg
import pytest
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from moto.server import ThreadedMotoServer
from psycopg_pool import AsyncConnectionPool
from ragstream_common.blobs import PostgresBlobStore, S3BlobStore
from ragstream_common.db import create_pool
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.credentials import LocalCredentials
from ragstream_embed.adapters.cache_pg import PostgresEmbeddingCache
from ragstream_gateway.adapters.purge_pg import PostgresPurgeStore
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.ports import StatusChange
from ragstream_gateway.purge import PurgeReport, PurgeSettings, run_purge
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.adapters.pg_search import PostgresSearchIndex
from ragstream_retrieve.models import ChunkToIndex, DocumentVersion, SearchFilters, UpsertOutcome
from support.kafka_clients import client_kwargs, signed_in_as
from support.tenant_kafka import (
    REFUSAL_BOUND_S,
    provisioning_gateway_settings,
)

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
ADMIN_TOKEN = "admin-secret-for-tests-32-chars-min"
MODEL = "test-model"
# Tables where a purged id may stay by policy: the append-only, hash-chained audit log (and, for a tenant, its
# chain head, its export cursor and the scrubbed tenants row that keeps the id from being reused).
AUDIT_CHAIN = ("audit_log", "audit_chain_heads", "audit_export")
# Where a purged document's id stays: its tombstone, which keeps the version bookkeeping and no content.
TOMBSTONE = {"documents", "document_index_state"}
VECTOR = np.full(384, 0.05, dtype=np.float32)
Gateway = tuple[GatewaySettings, GatewayDeps]


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], service_identities: LocalCredentials, kafka_topics: str
) -> AsyncIterator[Gateway]:
    settings = await provisioning_gateway_settings(service_database_urls, service_identities, kafka_topics, ADMIN_TOKEN)
    async with AsyncExitStack() as stack:
        yield settings, await open_deps(settings, stack)


@pytest.fixture(scope="module")
async def pools(service_database_urls: dict[str, str]) -> AsyncIterator[dict[str, AsyncConnectionPool]]:
    opened = {}
    for identity in ("gateway-admin", "embed", "retrieve"):
        pool = create_pool(service_database_urls[identity], max_size=2, name=f"purge-test-{identity}")
        await pool.open(wait=True)
        opened[identity] = pool
    yield opened
    for pool in opened.values():
        await pool.close()


def _client(gateway: Gateway, key: str = ADMIN_TOKEN) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(*gateway), client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers={"Authorization": f"Bearer {key}"})


async def _tenant_with_key(gateway: Gateway, tenant_id: str) -> tuple[str, dict]:
    async with _client(gateway) as admin:
        created = await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": f"Name {tenant_id}"})
        assert created.status_code == 201, created.text
        key = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"name": "purge test"})
        assert key.status_code == 201, key.text
    return key.json()["api_key"], created.json()["kafka"]


async def _upload(client: httpx.AsyncClient, document_id: str, text: str) -> int:
    files = {"file": ("notes.txt", text.encode(), "text/plain")}
    response = await client.post("/v1/documents", files=files, data={"id": document_id, "title": text[:40]})
    assert response.status_code == 202, response.text
    return int(response.json()["version"])


async def _index(pools: dict[str, AsyncConnectionPool], tenant: str, document_id: str, version: int, text: str) -> str:
    """What embed and retrieve would write for a one-chunk document, under their own logins; the chunk's hash."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    await PostgresEmbeddingCache(pools["embed"]).store(tenant, MODEL, {digest: VECTOR})
    outcome = await _index_chunk(pools, tenant, document_id, version, text)
    assert outcome is UpsertOutcome.INDEXED
    return digest


async def _index_chunk(
    pools: dict[str, AsyncConnectionPool], tenant: str, document_id: str, version: int, text: str
) -> UpsertOutcome:
    """A ChunksEmbedded of the version as the indexer applies it (retrieve's own login)."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    chunk = ChunkToIndex(f"{document_id}:{version}:0", 0, text, "", digest, 12, VECTOR, {"purge": 1, RUN: 2})
    index = PostgresChunkIndex(pools["retrieve"])
    return await index.upsert_document(
        DocumentVersion(tenant, document_id, version, text[:40], {}, MODEL, "1", [chunk])
    )


async def _searchable_texts(pools: dict[str, AsyncConnectionPool], tenant: str, document_id: str) -> list[str]:
    """The document's chunk texts that a dense search finds (retrieve's login)."""
    search = PostgresSearchIndex(pools["retrieve"])
    candidates = await search.dense_candidates(tenant, VECTOR, SearchFilters(document_ids=(document_id,)), 10)
    chunks = await search.fetch_chunks(tenant, [candidate.key for candidate in candidates])
    return [chunk.text for chunk in chunks.values()]


async def _tombstone(database_url: str, tenant: str, document_id: str) -> tuple[object, ...] | None:
    """The registry row's columns that could carry content, its marks, and the index state's versions."""
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT d.status, d.version, d.title, d.metadata, d.content_type, d.content_sha256, d.size_bytes,"
            " d.source_uri, d.chunk_count, d.error_stage, d.error, d.deleted_at IS NOT NULL, d.purged_at IS NOT NULL,"
            " s.deleted_through_version, s.chunk_count"
            " FROM documents d JOIN document_index_state s USING (tenant_id, document_id)"
            " WHERE d.tenant_id = %s AND d.document_id = %s",
            (tenant, document_id),
        )
        return await cursor.fetchone()


def _scrubbed(version: int) -> tuple[object, ...]:
    return ("deleted", version, "", {}, "", "", 0, "", 0, None, None, True, True, version, 0)


async def _purge(pools: dict[str, AsyncConnectionPool], **grace: float) -> PurgeReport:
    settings = PurgeSettings(document_grace_s=grace.get("document", 0), tenant_grace_s=grace.get("tenant", 0))
    pool = pools["gateway-admin"]
    return await run_purge(PostgresPurgeStore(pool), PostgresBlobStore(pool), settings)


async def _tables_holding(database_url: str, needles: list[str], skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every table of the schema whose rows, as text (bytea as hex), hold any needle: {table: needle}. Read as the
    administrator, whom row-level security does not bind."""
    found: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
        )
        tables = [row[0] for row in await cursor.fetchall()]
        assert {"documents", "chunks", "blobs", "blob_parts", "embedding_cache", "tenants"} <= set(tables)
        for table in tables:
            if table in skip:
                continue
            for needle in needles:
                query = f'SELECT 1 FROM "{table}" t WHERE position(%s in lower(t::text)) > 0 LIMIT 1'
                if await (await connection.execute(query, (needle.lower(),))).fetchone():
                    found[table] = needle
    return found


def _needles(*texts: str) -> list[str]:
    """Each text, and its hex form as a bytea column renders it."""
    return [*texts, *(text.encode().hex() for text in texts)]


async def _blob_keys(pools: dict[str, AsyncConnectionPool], tenant: str) -> set[str]:
    return {blob.key async for blob in PostgresBlobStore(pools["gateway-admin"]).listing(tenant, page_size=2)}


async def test_a_deleted_document_leaves_nothing_behind_and_live_content_stays(
    gateway: Gateway, pools: dict[str, AsyncConnectionPool], migrated_database: str
) -> None:
    tenant = f"purge-{RUN}"
    key, _ = await _tenant_with_key(gateway, tenant)
    doomed, live = f"doomed-{RUN}", f"live-{RUN}"
    secret = f"zanzibar quokka {RUN} ledger"  # the distinctive phrase of the document that goes
    old_live, new_live = f"first draft {RUN} of the live one", f"final text {RUN} of the live one"
    async with _client(gateway, key) as client:
        doomed_version = await _upload(client, doomed, secret)
        await _upload(client, live, old_live)
        live_version = await _upload(client, live, new_live)  # v1's blob is superseded
        doomed_hash = await _index(pools, tenant, doomed, doomed_version, secret)
        live_hash = await _index(pools, tenant, live, live_version, new_live)
        assert (await client.delete(f"/v1/documents/{doomed}")).status_code == 202
    blobs_before = await _blob_keys(pools, tenant)
    # Inside the grace period nothing goes: events still in flight may need it.
    waiting = await _purge(pools, document=3600)
    assert (tenant, doomed) not in waiting.documents_purged and await _blob_keys(pools, tenant) == blobs_before
    assert set(await _tables_holding(migrated_database, [secret])) >= {"documents", "chunks"}

    report = await _purge(pools)

    # The session database is shared: other modules' leftovers may be purged too; only this tenant's are asserted.
    assert [item for item in report.documents_purged if item[0] == tenant] == [(tenant, doomed)]
    assert await _tables_holding(migrated_database, _needles(secret, old_live)) == {}
    # The audit chain keeps the id and the content hash of what was uploaded and deleted, never the content; the
    # tombstone keeps the id and version numbers only.
    assert await _tables_holding(migrated_database, [doomed_hash], skip=("audit_log",)) == {}
    assert set(await _tables_holding(migrated_database, [doomed], skip=("audit_log",))) == TOMBSTONE
    assert await _tombstone(migrated_database, tenant, doomed) == _scrubbed(doomed_version)
    live_sha = hashlib.sha256(new_live.encode()).hexdigest()
    assert len(blobs_before) == 3 and await _blob_keys(pools, tenant) == {f"{live}/{live_sha}"}
    assert set(await _tables_holding(migrated_database, [new_live, live_hash])) >= {"chunks", "embedding_cache"}
    async with _client(gateway, key) as client:
        # The tombstone answers as the deleted document did before the purge: its status and version, no content.
        shown = (await client.get(f"/v1/documents/{doomed}")).json()
        assert (shown["status"], shown["version"], shown["title"]) == ("deleted", doomed_version, "")
        assert (await client.get(f"/v1/documents/{live}")).json()["version"] == live_version
    again = await _purge(pools)  # idempotent: nothing of this tenant left to do
    assert not [item for item in again.documents_purged if item[0] == tenant]


async def test_a_purged_document_refuses_old_versions_and_takes_a_reupload_as_the_next_version(
    gateway: Gateway, pools: dict[str, AsyncConnectionPool], migrated_database: str
) -> None:
    tenant = f"again-{RUN}"
    key, _ = await _tenant_with_key(gateway, tenant)
    document = f"phoenix-{RUN}"
    old_text, new_text = f"obsidian pelican {RUN} first life", f"cobalt heron {RUN} second life"
    async with _client(gateway, key) as client:
        old_version = await _upload(client, document, old_text)
        await _index(pools, tenant, document, old_version, old_text)
        assert (await client.delete(f"/v1/documents/{document}")).status_code == 202
    assert (tenant, document) in (await _purge(pools)).documents_purged
    assert await _tombstone(migrated_database, tenant, document) == _scrubbed(old_version)

    # A redriven or late ChunksEmbedded of the purged version: the kept index state refuses it.
    assert await _index_chunk(pools, tenant, document, old_version, old_text) is UpsertOutcome.DELETED
    assert await _searchable_texts(pools, tenant, document) == []
    assert await _tables_holding(migrated_database, _needles(old_text)) == {}

    async with _client(gateway, key) as client:
        new_version = await _upload(client, document, new_text)
        assert new_version > old_version
        assert await _index_chunk(pools, tenant, document, new_version, new_text) is UpsertOutcome.INDEXED
        # The status projector's write of the pipeline's `indexed` (the registry port).
        assert await gateway[1].registry.apply_status(StatusChange(tenant, document, new_version, "indexed", 1))
        shown = (await client.get(f"/v1/documents/{document}")).json()
        assert (shown["version"], shown["status"]) == (new_version, "indexed")
        assert await _searchable_texts(pools, tenant, document) == [new_text]
        assert (await _purge(pools)).documents_purged.count((tenant, document)) == 0  # live again: not a tombstone
        # Deleted again, it is purged again (the re-upload cleared the tombstone's mark).
        assert (await client.delete(f"/v1/documents/{document}")).status_code == 202
    assert (tenant, document) in (await _purge(pools)).documents_purged
    assert await _tombstone(migrated_database, tenant, document) == _scrubbed(new_version)
    assert await _tables_holding(migrated_database, _needles(new_text)) == {}


async def test_a_run_skips_while_another_holds_the_lock(pools: dict[str, AsyncConnectionPool]) -> None:
    async with PostgresPurgeStore(pools["gateway-admin"]).exclusive() as held:
        assert held
        assert (await _purge(pools)).skipped


async def _signs_in(settings: KafkaSettings) -> bool:
    client = AIOKafkaClient(**client_kwargs(settings), request_timeout_ms=5000)
    try:
        await client.bootstrap()
        return True
    except KafkaError:
        return False
    finally:
        await client.close()


async def test_a_deleted_tenant_is_purged_with_its_kafka_credentials(
    gateway: Gateway, pools: dict[str, AsyncConnectionPool], migrated_database: str
) -> None:
    tenant = f"gone-{RUN}"
    key, kafka = await _tenant_with_key(gateway, tenant)
    phrase = f"vermilion aardvark {RUN} charter"
    tenant_kafka = signed_in_as(gateway[0].kafka, kafka["username"], kafka["password"])
    assert await _signs_in(tenant_kafka)
    async with _client(gateway, key) as client:
        version = await _upload(client, f"doc-{RUN}", phrase)
        await _index(pools, tenant, f"doc-{RUN}", version, phrase)
    async with _client(gateway) as admin:
        assert (await admin.delete(f"/v1/admin/tenants/{tenant}")).status_code == 204
        assert (await admin.get(f"/v1/admin/tenants/{tenant}")).json()["disabled"] is True
    async with _client(gateway, key) as client:
        assert (await client.get(f"/v1/documents/doc-{RUN}")).status_code in (401, 403)
    deadline = time.monotonic() + REFUSAL_BOUND_S
    while await _signs_in(tenant_kafka):  # the SCRAM user is gone, so is every ACL granted to it
        assert time.monotonic() < deadline, "the deleted tenant's Kafka credentials still work"
        await asyncio.sleep(0.5)
    waiting = await _purge(pools, tenant=3600)  # inside the tenant grace period: untouched
    assert tenant not in waiting.tenants_purged and await _blob_keys(pools, tenant)

    report = await _purge(pools)

    assert tenant in report.tenants_purged
    assert await _blob_keys(pools, tenant) == set()
    assert await _tables_holding(migrated_database, [tenant], skip=("tenants", *AUDIT_CHAIN)) == {}
    assert await _tables_holding(migrated_database, _needles(phrase)) == {}
    # The name stays only where the audit chain recorded the tenant's creation.
    assert await _tables_holding(migrated_database, [f"Name {tenant}"], skip=AUDIT_CHAIN) == {}
    async with await psycopg.AsyncConnection.connect(migrated_database) as connection:
        cursor = await connection.execute(
            "SELECT name, disabled_at IS NOT NULL, deleted_at IS NOT NULL, purged_at IS NOT NULL FROM tenants"
            " WHERE tenant_id = %s",
            (tenant,),
        )
        assert await cursor.fetchone() == ("", True, True, True)
    async with _client(gateway) as admin:  # the id is never handed out again
        again = await admin.post("/v1/admin/tenants", json={"tenant_id": tenant, "name": "another"})
        assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"


@pytest.fixture
def s3_store() -> Iterator[S3BlobStore]:
    """An S3BlobStore (key prefix "raw/") on moto's S3 server, a real HTTP endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="eu-west-3",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket="purge-test", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    yield S3BlobStore("purge-test", prefix="raw/", client=client)
    server.stop()


async def test_the_s3_listing_pages_through_one_tenants_objects_only(s3_store: S3BlobStore) -> None:
    for index in range(5):
        await s3_store.put("a", f"doc/{index}", b"x", "text/plain")
    await s3_store.put("a.b", "doc/0", b"y", "text/plain")  # "a" is a prefix of "a.b"'s id, not of its keys
    listed = [blob async for blob in s3_store.listing("a", page_size=2)]  # three pages
    assert sorted(blob.key for blob in listed) == [f"doc/{index}" for index in range(5)]
    assert all(blob.written_at.tzinfo is not None for blob in listed)
    for blob in listed:
        await s3_store.delete("a", blob.key)
    assert [blob async for blob in s3_store.listing("a")] == []
    assert [blob.key async for blob in s3_store.listing("a.b")] == ["doc/0"]
