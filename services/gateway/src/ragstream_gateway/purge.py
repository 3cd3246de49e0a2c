"""Retention job: purge what deleted documents and deleted tenants left behind (docs/data-governance.md).

`python -m ragstream_gateway.purge` runs once and exits (a Kubernetes CronJob). Per tenant:
- live tenant: every blob no live document points at (a deleted document's, a superseded version's, an upload
  whose registration failed) once its last write is older than the document grace period; then each document
  deleted before that cutoff (leftover chunks with their postings and BM25 share; the registry row, index state
  and deleted connector item stay as content-free tombstones, ids and version numbers only, so old versions stay
  refused and a re-upload gets the next version); then cached embeddings older than the cutoff no chunk uses;
- tenant deleted (DELETE /v1/admin/tenants/{id}) before the tenant grace period: every blob, then every
  tenant-scoped row but the audit chain; the tenants row is kept, scrubbed, so the id is never reused.
The grace period is what keeps events still in flight working: nothing younger than it is touched. Every step is
idempotent (a crashed run is finished by the next) and the run holds an advisory lock, so overlapping runs skip.
Blobs go before the rows: a blob is never left behind without a row that could still name it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from ragstream_common.blob_settings import BlobStoreSettings
from ragstream_common.blobs import BlobInventory, StoredBlob, blob_key_of
from ragstream_common.logs import configure_logging, get_logger

log = get_logger(__name__)
REGISTRY = CollectorRegistry()
PURGED = Counter(
    "ragstream_purge_deleted_total", "What the retention job deleted, by kind", ["kind"], registry=REGISTRY
)
RUNS = Counter("ragstream_purge_runs_total", "Retention job runs by outcome", ["outcome"], registry=REGISTRY)
LAST_SUCCESS = Gauge(
    "ragstream_purge_last_success_timestamp_seconds", "End of the last complete retention run", registry=REGISTRY
)
TenantAction = Literal["sweep", "wait", "purge_tenant"]


class PurgeSettings(BaseSettings):
    """PURGE_* variables; the admin login's URL (GATEWAY_ADMIN_DATABASE_URL) and the shared BLOB_* block."""

    model_config = SettingsConfigDict(env_prefix="PURGE_", extra="ignore", validate_default=True)

    database_url: SecretStr = Field(
        default=SecretStr("postgresql://localhost/ragstream"),
        validation_alias=AliasChoices("PURGE_DATABASE_URL", "GATEWAY_ADMIN_DATABASE_URL", "DATABASE_URL"),
    )
    # Longer than any event may reasonably stay in flight (consumer lag, retries, a DLQ redrive).
    document_grace_s: float = Field(default=24 * 3600, ge=0)
    # Time to undo an offboarding by mistake (clear tenants.deleted_at) and to bill the last usage.
    tenant_grace_s: float = Field(default=7 * 24 * 3600, ge=0)
    # Cached embeddings deleted per tenant and run (the rest go next run).
    cache_batch: int = Field(default=10_000, ge=1)
    # Short-lived: metrics are pushed (a Prometheus Pushgateway) when set, logged always.
    pushgateway_url: str = ""
    blobs: BlobStoreSettings = Field(default_factory=BlobStoreSettings)


@dataclass(frozen=True)
class TenantMarks:
    tenant_id: str
    deleted_at: datetime | None
    purged_at: datetime | None = None


@dataclass
class PurgeReport:
    skipped: bool = False
    tenants_purged: list[str] = field(default_factory=list)
    documents_purged: list[tuple[str, str]] = field(default_factory=list)
    deleted: Tally[str] = field(default_factory=Tally)


class PurgeStore(Protocol):
    def exclusive(self) -> AbstractAsyncContextManager[bool]: ...

    async def cutoffs(self, document_grace_s: float, tenant_grace_s: float) -> tuple[datetime, datetime]: ...

    async def tenants(self) -> list[TenantMarks]: ...

    async def deleted_documents(self, tenant_id: str, cutoff: datetime) -> list[str]: ...

    async def live_source_uris(self, tenant_id: str) -> list[str]: ...

    async def purge_document(self, tenant_id: str, document_id: str, cutoff: datetime) -> dict[str, int] | None: ...

    async def purge_embedding_cache(self, tenant_id: str, cutoff: datetime, max_rows: int) -> int: ...

    async def purge_tenant(self, tenant_id: str, cutoff: datetime) -> dict[str, int] | None: ...


def tenant_action(tenant: TenantMarks, tenant_cutoff: datetime) -> TenantAction:
    """sweep: a live tenant's leftovers; wait: deleted, inside its grace (untouched, so it can still be undone);
    purge_tenant: deleted before the cutoff (again on later runs: it also sweeps what arrived late)."""
    if tenant.deleted_at is None:
        return "sweep"
    return "purge_tenant" if tenant.deleted_at < tenant_cutoff else "wait"


def wanted_blob_keys(live_source_uris: Iterable[str]) -> frozenset[str]:
    """Keys of the blobs live documents point at; inline and foreign URIs name none."""
    keys = set()
    for uri in live_source_uris:
        try:
            keys.add(blob_key_of(uri))
        except ValueError:
            continue
    return frozenset(keys)


def purgeable_blob(blob: StoredBlob, wanted: frozenset[str], cutoff: datetime) -> bool:
    """Not pointed at by any live document and last written before the cutoff (a fresh blob may be an upload
    whose registration, or the event of a connector's new version, is still on its way)."""
    return blob.key not in wanted and blob.written_at < cutoff


async def run_purge(store: PurgeStore, blobs: BlobInventory, settings: PurgeSettings) -> PurgeReport:
    report = PurgeReport()
    async with store.exclusive() as held:
        if not held:
            log.info("purge skipped: another run holds the lock")
            RUNS.labels("skipped").inc()
            return PurgeReport(skipped=True)
        document_cutoff, tenant_cutoff = await store.cutoffs(settings.document_grace_s, settings.tenant_grace_s)
        for tenant in await store.tenants():
            action = tenant_action(tenant, tenant_cutoff)
            if action == "purge_tenant":
                await _purge_tenant(store, blobs, tenant.tenant_id, tenant_cutoff, report)
            elif action == "sweep":
                await _sweep_tenant(store, blobs, tenant.tenant_id, document_cutoff, settings.cache_batch, report)
    for kind, count in report.deleted.items():
        PURGED.labels(kind).inc(count)
    RUNS.labels("completed").inc()
    LAST_SUCCESS.set_to_current_time()
    log.info("purge completed", deleted=dict(report.deleted), tenants=report.tenants_purged)
    return report


async def _sweep_tenant(
    store: PurgeStore, blobs: BlobInventory, tenant_id: str, cutoff: datetime, cache_batch: int, report: PurgeReport
) -> None:
    # Listed before the blobs: a document registered meanwhile has a blob younger than the cutoff.
    wanted = wanted_blob_keys(await store.live_source_uris(tenant_id))
    doomed = [blob.key async for blob in blobs.listing(tenant_id) if purgeable_blob(blob, wanted, cutoff)]
    await _delete_blobs(blobs, tenant_id, doomed, report)
    for document_id in await store.deleted_documents(tenant_id, cutoff):
        counts = await store.purge_document(tenant_id, document_id, cutoff)
        if counts is None:
            continue  # restored (or deleted again) since it was listed: not ours any more
        report.documents_purged.append((tenant_id, document_id))
        report.deleted.update({f"rows:{table}": n for table, n in counts.items() if n})
        log.info("document purged", tenant_id=tenant_id, document_id=document_id, rows=counts)
    cached = await store.purge_embedding_cache(tenant_id, cutoff, cache_batch)
    if cached:
        report.deleted["embeddings"] += cached


async def _purge_tenant(
    store: PurgeStore, blobs: BlobInventory, tenant_id: str, cutoff: datetime, report: PurgeReport
) -> None:
    await _delete_blobs(blobs, tenant_id, [blob.key async for blob in blobs.listing(tenant_id)], report)
    counts = await store.purge_tenant(tenant_id, cutoff)
    if counts is None:
        return
    report.tenants_purged.append(tenant_id)
    report.deleted.update({f"rows:{table}": n for table, n in counts.items() if n})
    log.info("tenant purged", tenant_id=tenant_id, rows=counts)


async def _delete_blobs(blobs: BlobInventory, tenant_id: str, keys: list[str], report: PurgeReport) -> None:
    for key in keys:
        await blobs.delete(tenant_id, key)
    if keys:
        report.deleted["blobs"] += len(keys)
        log.info("blobs purged", tenant_id=tenant_id, count=len(keys))


async def purge_once(settings: PurgeSettings) -> PurgeReport:
    """One run against the configured database and blob store (the composition root)."""
    from ragstream_common.blobs import build_blob_store
    from ragstream_common.db import open_pool_at

    from ragstream_gateway.adapters.purge_pg import PostgresPurgeStore

    async with AsyncExitStack() as stack:
        pool = await open_pool_at(stack, settings.database_url.get_secret_value(), name="purge", max_size=2)
        return await run_purge(PostgresPurgeStore(pool), build_blob_store(settings.blobs, pool), settings)


async def listing_of(blobs: Iterable[StoredBlob]) -> AsyncIterator[StoredBlob]:
    """An in-memory listing (fakes and tests)."""
    for blob in blobs:
        yield blob


def main() -> None:
    from ragstream_common.config import load_settings

    configure_logging("purge")
    settings = load_settings(PurgeSettings)
    started = time.monotonic()
    try:
        asyncio.run(purge_once(settings))
    except Exception:
        RUNS.labels("failed").inc()
        log.exception("purge failed")
        raise
    finally:
        if settings.pushgateway_url:
            push_to_gateway(settings.pushgateway_url, job="ragstream-purge", registry=REGISTRY)
        log.info("purge finished", seconds=round(time.monotonic() - started, 3))


if __name__ == "__main__":
    main()
