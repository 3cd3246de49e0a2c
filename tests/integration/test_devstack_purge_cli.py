"""`make purge` (python -m ragstream_devstack.purge): the gateway's retention job run once as the gateway's admin
login, with a grace override, then `--find` reporting where a text is still stored. On a database of its own (a
purge with no grace would otherwise reach other tests' deleted documents): a deleted document's text, in its chunk
and its raw upload blob, is found before the run and nowhere after it; a live document's text stays. What the
job purges in detail is test_data_purge.py's subject.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from psycopg import sql
from ragstream_common.blobs import PostgresBlobStore
from ragstream_common.db import create_pool
from ragstream_common.migrate import apply_migrations
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.pg_identities import login_url
from ragstream_devstack.purge import find_text, main
from ragstream_devstack.restore import with_database
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.models import ChunkToIndex, DocumentVersion

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
TENANT = f"purge-cli-{RUN}"
DELETED_TEXT = f"marmalade heron {RUN} lighthouse"
LIVE_TEXT = f"copper kettle {RUN} harbour"


async def _document(database_url: str, document_id: str, text: str) -> None:
    """A registered, indexed one-chunk document with its raw upload in the Postgres blob store."""
    pool = create_pool(database_url, max_size=2, name="purge-cli")
    await pool.open(wait=True)
    try:
        uri = await PostgresBlobStore(pool).put(TENANT, f"{document_id}/raw", text.encode(), "text/plain")
        async with pool.connection() as connection:
            await connection.execute(
                "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (TENANT, TENANT)
            )
            await connection.execute(
                "INSERT INTO documents (tenant_id, document_id, version, status, title, size_bytes, chunk_count,"
                " source_uri) VALUES (%s, %s, 1, 'indexed', %s, %s, 1, %s)",
                (TENANT, document_id, text, len(text), uri),
            )
        chunk = ChunkToIndex(
            f"{document_id}-v1-0", 0, text, "", f"{document_id}-0", 4, np.full(384, 0.05, dtype=np.float32), {}
        )
        version = DocumentVersion(TENANT, document_id, 1, text, {}, "purge-cli-model", "1", [chunk])
        await PostgresChunkIndex(pool).upsert_document(version)
    finally:
        await pool.close()


@pytest.fixture
def purge_database(migrated_database: str, service_database_urls: dict[str, str]) -> Iterator[str]:
    """A new migrated database with one live and one deleted document; the administrator's URL. (The logins'
    passwords are cluster-wide: service_database_urls provisioned them.)"""
    name = f"purge_cli_{RUN}"
    database_url = with_database(migrated_database, name)
    with psycopg.connect(migrated_database, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        apply_migrations(database_url)
        asyncio.run(_document(database_url, "kept", LIVE_TEXT))
        asyncio.run(_document(database_url, "deleted", DELETED_TEXT))
        with psycopg.connect(database_url, autocommit=True) as connection:
            # As DELETE /v1/documents/{id} leaves it (the indexer had not removed the chunk yet).
            connection.execute(
                "UPDATE documents SET status = 'deleted', deleted_at = now() - interval '1 second'"
                " WHERE tenant_id = %s AND document_id = 'deleted'",
                (TENANT,),
            )
        yield database_url
    finally:
        with psycopg.connect(migrated_database, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_make_purge_removes_a_deleted_documents_text_and_keeps_the_live_one(
    purge_database: str,
    local_credentials: LocalCredentials,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As `make run` would have it: the gateway's admin login for the job, the administrator's URL for --find.
    monkeypatch.setenv("PURGE_DATABASE_URL", login_url(purge_database, "gateway-admin", credentials=local_credentials))
    monkeypatch.setenv("DATABASE_URL", purge_database)
    monkeypatch.delenv("BLOB_STORE", raising=False)
    before = find_text(purge_database, DELETED_TEXT)
    assert {"public.chunks.text", "public.blobs.content", "public.documents.title"} <= set(before), before

    # The default grace (a day) keeps a document deleted a second ago: the text is still there, exit 1.
    assert main(["--find", DELETED_TEXT]) == 1
    assert "purged 0 document(s)" in capsys.readouterr().out

    # GRACE=0 purges it: nothing of its text is left in any table or blob.
    assert main(["--grace", "0", "--find", DELETED_TEXT]) == 0
    out = capsys.readouterr().out
    assert f"purged 1 document(s) ['{TENANT}/deleted']" in out and "not found" in out, out
    assert find_text(purge_database, DELETED_TEXT) == {}
    # The live document is untouched.
    assert {"public.chunks.text", "public.blobs.content"} <= set(find_text(purge_database, LIVE_TEXT))
