"""The retention job's selection logic (ragstream_gateway/purge.py): which blobs, documents and tenants a run
purges, in which order, and what it leaves alone (inside the grace period, wanted again, restored)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from ragstream_common.blobs import StoredBlob
from ragstream_gateway.purge import (
    PurgeSettings,
    TenantMarks,
    purgeable_blob,
    run_purge,
    tenant_action,
    wanted_blob_keys,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
CUTOFF = NOW - timedelta(hours=24)
OLD, FRESH = CUTOFF - timedelta(seconds=1), CUTOFF + timedelta(seconds=1)


def test_wanted_keys_come_from_blob_uris_only() -> None:
    uris = ["blob://d1/aaa", "blob://d2/bbb", "", "https://example.com/x", "blob://"]
    assert wanted_blob_keys(uris) == {"d1/aaa", "d2/bbb"}


@pytest.mark.parametrize(
    ("key", "written_at", "expected"),
    [
        ("d1/old-version", OLD, True),  # superseded and old enough
        ("d1/current", OLD, False),  # a live document points at it
        ("d3/fresh-upload", FRESH, False),  # its registration or event may still be on its way
        ("d1/old-version", CUTOFF, False),  # the cutoff itself is inside the grace period
    ],
)
def test_a_blob_goes_when_unwanted_and_older_than_the_cutoff(key: str, written_at: datetime, expected: bool) -> None:
    assert purgeable_blob(StoredBlob(key, written_at), frozenset({"d1/current"}), CUTOFF) is expected


@pytest.mark.parametrize(
    ("deleted_at", "expected"),
    [(None, "sweep"), (FRESH, "wait"), (CUTOFF, "wait"), (OLD, "purge_tenant")],
)
def test_a_tenant_is_purged_only_after_its_grace_period(deleted_at: datetime | None, expected: str) -> None:
    assert tenant_action(TenantMarks("t", deleted_at), CUTOFF) == expected


class FakeStore:
    """PurgeStore in memory; `calls` records what the job did, in order."""

    def __init__(self, tenants: list[TenantMarks], *, locked: bool = False) -> None:
        self.marks = tenants
        self.locked = locked
        self.calls: list[tuple[str, ...]] = []
        self.deleted_docs: dict[str, list[str]] = {"live": ["gone", "restored"]}
        self.live_uris: dict[str, list[str]] = {"live": ["blob://keep/current", ""]}

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        yield not self.locked

    async def cutoffs(self, document_grace_s: float, tenant_grace_s: float) -> tuple[datetime, datetime]:
        return NOW - timedelta(seconds=document_grace_s), NOW - timedelta(seconds=tenant_grace_s)

    async def tenants(self) -> list[TenantMarks]:
        return self.marks

    async def deleted_documents(self, tenant_id: str, cutoff: datetime) -> list[str]:
        return self.deleted_docs.get(tenant_id, [])

    async def live_source_uris(self, tenant_id: str) -> list[str]:
        return self.live_uris.get(tenant_id, [])

    async def purge_document(self, tenant_id: str, document_id: str, cutoff: datetime) -> dict[str, int] | None:
        self.calls.append(("document", tenant_id, document_id))
        return None if document_id == "restored" else {"documents": 1, "chunks": 2}

    async def purge_embedding_cache(self, tenant_id: str, cutoff: datetime, max_rows: int) -> int:
        self.calls.append(("cache", tenant_id))
        return 3

    async def purge_tenant(self, tenant_id: str, cutoff: datetime) -> dict[str, int] | None:
        self.calls.append(("tenant", tenant_id))
        return {"documents": 5}


class FakeBlobs:
    def __init__(self, blobs: dict[str, list[StoredBlob]], calls: list[tuple[str, ...]]) -> None:
        self.blobs = blobs
        self.calls = calls

    async def listing(self, tenant_id: str) -> AsyncIterator[StoredBlob]:
        for blob in list(self.blobs.get(tenant_id, [])):
            yield blob

    async def delete(self, tenant_id: str, key: str) -> None:
        self.calls.append(("blob", tenant_id, key))
        self.blobs[tenant_id] = [blob for blob in self.blobs[tenant_id] if blob.key != key]


def _blobs(store: FakeStore, written: datetime) -> FakeBlobs:
    return FakeBlobs(
        {
            "live": [
                StoredBlob("keep/current", written - timedelta(days=30)),
                StoredBlob("keep/superseded", written),
                StoredBlob("gone/only", written),
            ],
            "deleted-long-ago": [StoredBlob("x/any", NOW)],
            "deleted-recently": [StoredBlob("y/any", written)],
        },
        store.calls,
    )


def _tenants() -> list[TenantMarks]:
    return [
        TenantMarks("live", None),
        TenantMarks("deleted-long-ago", NOW - timedelta(days=8)),
        TenantMarks("deleted-recently", NOW - timedelta(days=1)),
    ]


async def test_a_run_purges_leftovers_of_live_tenants_and_whole_deleted_tenants() -> None:
    store = FakeStore(_tenants())
    blobs = _blobs(store, NOW - timedelta(days=2))

    report = await run_purge(store, blobs, PurgeSettings())

    assert store.calls == [
        ("blob", "live", "keep/superseded"),  # blobs first: none is left without a row that could name it
        ("blob", "live", "gone/only"),
        ("document", "live", "gone"),
        ("document", "live", "restored"),
        ("cache", "live"),
        ("blob", "deleted-long-ago", "x/any"),  # a deleted tenant's blobs go whatever their age
        ("tenant", "deleted-long-ago"),
    ]
    assert report.documents_purged == [("live", "gone")]  # "restored" was live again when its turn came
    assert report.tenants_purged == ["deleted-long-ago"]
    assert report.deleted == {
        "blobs": 3,
        "rows:documents": 6,
        "rows:chunks": 2,
        "embeddings": 3,
    }
    assert [blob.key for blob in blobs.blobs["live"]] == ["keep/current"]
    assert [blob.key for blob in blobs.blobs["deleted-recently"]] == ["y/any"]


async def test_nothing_inside_the_grace_period_goes() -> None:
    store = FakeStore(_tenants())
    blobs = _blobs(store, NOW - timedelta(hours=1))

    await run_purge(store, blobs, PurgeSettings(document_grace_s=86400, tenant_grace_s=30 * 86400))

    assert [call for call in store.calls if call[0] in ("blob", "tenant")] == []


async def test_a_zero_grace_period_purges_at_once() -> None:
    store = FakeStore([TenantMarks("deleted-recently", NOW - timedelta(seconds=1))])
    blobs = _blobs(store, NOW - timedelta(seconds=1))

    report = await run_purge(store, blobs, PurgeSettings(document_grace_s=0, tenant_grace_s=0))

    assert report.tenants_purged == ["deleted-recently"] and blobs.blobs["deleted-recently"] == []


async def test_a_run_skips_while_another_holds_the_lock() -> None:
    store = FakeStore(_tenants(), locked=True)

    report = await run_purge(store, _blobs(store, OLD), PurgeSettings())

    assert report.skipped and store.calls == []


def test_grace_periods_default_to_a_day_and_a_week_and_read_purge_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (PurgeSettings().document_grace_s, PurgeSettings().tenant_grace_s) == (86400, 604800)
    monkeypatch.setenv("PURGE_DOCUMENT_GRACE_S", "0")
    monkeypatch.setenv("GATEWAY_ADMIN_DATABASE_URL", "postgresql://admin@db/ragstream")
    settings = PurgeSettings()
    assert settings.document_grace_s == 0
    assert settings.database_url.get_secret_value() == "postgresql://admin@db/ragstream"
    with pytest.raises(ValueError):
        PurgeSettings(document_grace_s=-1)
