"""The sync engine: a provider's changes become document events, versions and a saved cursor. Pure over ports.

Per page of changes: every item is taken (downloaded to the blob store when new or changed), the rows of the
items that get an event are written `pending` with their new versions, the page's events are published and
acknowledged, and only then are the rows confirmed and the page's cursor written, in one transaction. A crash
anywhere replays at most the page in hand. A pending row on the replay means its event may or may not be out:
the same content is published again under the same version (every consumer treats that idempotently), other
content (the item changed while the worker was down) under the next version, so one (document, version) never
stands for two contents. Nothing before the page is lost, nothing after it was done.

A full enumeration (first sync, resync, expired cursor) stamps `full_sync_started_at`; every listed item's
`seen_at` moves; at the final page, live items not seen since the stamp are deleted. That is what catches a
delete that no notification or delta reported, even across a worker restart halfway through.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from google.protobuf.message import Message
from opentelemetry import context as otel_context
from rag.v1 import documents_pb2, usage_pb2
from ragstream_common.events import Emitted, EventSink
from ragstream_common.logs import get_logger
from ragstream_common.messages import now_timestamp
from ragstream_common.usage_records import usage_record

from ragstream_connectors.items import (
    document_id_for,
    event_metadata,
    last_copy_of_each,
    metadata_unchanged,
    stored_tag,
)
from ragstream_connectors.metrics import CURSOR_RESTARTS, ERRORS, ITEMS, ITEMS_PER_SYNC, SYNC_SECONDS
from ragstream_connectors.ports import BlobFiles, ConnectorRecord, ConnectorStore, ItemRecord, PageWrite
from ragstream_connectors.providers.base import CursorExpired, Downloaded, ItemChange, Provider, ProviderError

log = get_logger(__name__)
# Generic webhooks push every change; there is nothing to list, so nothing may be deleted for being unlisted.
NOT_LISTING = frozenset({"webhook"})
DELETE_SLICE = 500


@dataclass(frozen=True)
class SyncOptions:
    download_dir: Path
    max_file_bytes: int = 512 * 1024 * 1024
    poll_interval_s: float = 900.0
    # A provider that stays unavailable through ProviderHttp's retries is polled again this soon.
    provider_retry_s: float = 60.0


@dataclass(frozen=True)
class Outcome:
    """What became of one change: the event to publish, the row to write, or only a sighting."""

    action: str  # created, updated, deleted, unchanged, skipped, ignored
    event: Emitted | None = None
    row: ItemRecord | None = None
    seen: str | None = None
    error: str | None = None


class ConnectorSync:
    """One connector's changes into events; `context` is the trace the events continue."""

    def __init__(
        self,
        connector: ConnectorRecord,
        provider: Provider,
        *,
        store: ConnectorStore,
        blobs: BlobFiles,
        sink: EventSink,
        options: SyncOptions,
        context: otel_context.Context | None = None,
    ) -> None:
        self._provider = provider
        self._store = store
        self._blobs = blobs
        self._sink = sink
        self._options = options
        self._context = context
        self._tenant, self._id, self._kind = connector.tenant_id, connector.connector_id, connector.provider

    async def apply_items(self, changes: Sequence[ItemChange], deliveries: Sequence[str] = ()) -> None:
        """Items a notification named (Box events, generic webhooks); the saved cursor stays where it is, and
        `deliveries` are marked processed with the items' rows."""
        await self._apply_page(changes, cursor=None, deliveries=deliveries)

    async def sync(self, *, full: bool = False, requested_at: datetime | None = None) -> int:
        """Changes since the saved cursor (none saved: enumerate everything); `full` enumerates everything
        unless an enumeration started after `requested_at` is still running, which a redelivered resync
        resumes. The number of changes listed."""
        if self._kind in NOT_LISTING:
            return 0
        state = await self._store.sync_state(self._tenant, self._id)
        running = state.full_sync_started_at
        resumes = running is not None and requested_at is not None and running >= requested_at
        cursor = None if (full and not resumes) or state.cursor is None else state.cursor
        mode = "full" if cursor is None or running is not None else "delta"
        started = time.monotonic()
        if cursor is None:
            await self._store.start_full_sync(self._tenant, self._id)
        try:
            listed = await self._follow(cursor)
        except CursorExpired:
            if cursor is None:
                raise ProviderError("the provider refused a full enumeration as expired", transient=False) from None
            CURSOR_RESTARTS.labels(self._kind).inc()
            log.info("cursor expired, enumerating everything", connector_id=self._id)
            mode = "full"
            await self._store.start_full_sync(self._tenant, self._id)
            listed = await self._follow(None)
        SYNC_SECONDS.labels(self._kind, mode).observe(time.monotonic() - started)
        ITEMS_PER_SYNC.labels(self._kind).observe(listed)
        return listed

    async def purge(self) -> int:
        """DocumentDeleted for every live item (the connector is removed with `purge`); how many."""
        return await self._delete_rows(self._store.live_items)

    async def _follow(self, cursor: str | None) -> int:
        listed = 0
        async for page in self._provider.changes(cursor):
            listed += len(page.changes)
            await self._apply_page(page.changes, cursor=page.cursor)
            if page.final:
                await self._delete_rows(self._store.unseen_live_items)
                await self._store.finish_sync(self._tenant, self._id, self._options.poll_interval_s)
        return listed

    async def _apply_page(
        self, changes: Sequence[ItemChange], *, cursor: str | None, deliveries: Sequence[str] = ()
    ) -> None:
        unique = last_copy_of_each(changes)
        rows = await self._store.items(self._tenant, self._id, [c.item_id for c in unique]) if unique else {}
        outcomes = [await self._take(change, rows.get(change.item_id)) for change in unique]
        events = [o.event for o in outcomes if o.event is not None]
        if events:
            reserved = [replace(o.row, pending=True) for o in outcomes if o.event is not None and o.row is not None]
            await self._store.save_page(self._tenant, self._id, PageWrite(items=reserved))
            await self._sink.emit([*events, Emitted(self._synced_usage(events), self._context)])
        errors = [o.error for o in outcomes if o.error]
        write = PageWrite(
            items=[o.row for o in outcomes if o.row is not None],
            seen=[o.seen for o in outcomes if o.seen is not None],
            cursor=cursor,
            listed=len(unique),
            error=errors[-1] if errors else None,
            deliveries=deliveries,
        )
        await self._store.save_page(self._tenant, self._id, write)
        for outcome in outcomes:
            if outcome.action != "ignored":
                ITEMS.labels(self._kind, outcome.action).inc()

    def _synced_usage(self, events: Sequence[Emitted]) -> usage_pb2.UsageRecorded:
        """The page's items that became document events, for metering. Its id is the connector and the page's
        (document, version, kind) set, so a replayed page (same versions, see above) counts once."""
        digest = hashlib.sha256("\n".join(sorted(_identity(e.message) for e in events)).encode()).hexdigest()[:32]
        return usage_record(
            self._tenant, f"{self._id}:{digest}:items", "connectors", connector_items_synced=len(events)
        )

    async def _take(self, change: ItemChange, row: ItemRecord | None) -> Outcome:
        live = row is not None and not row.deleted
        if change.deleted:
            return self._deleted(row) if row is not None and live else Outcome("ignored")
        if not change.is_file:
            return Outcome("ignored")  # folders and the like: never documents
        tag = stored_tag(change)
        confirmed = row is not None and live and not row.pending
        if row is not None and confirmed and change.version_tag and row.version_tag == tag and row.title == change.name:
            return Outcome("unchanged", seen=change.item_id)
        if change.size_bytes is not None and change.size_bytes > self._options.max_file_bytes:
            return self._skipped(change, row, f"{change.size_bytes} bytes is over the limit")
        if change.content_url:
            # Fetched by the ingest worker through its SSRF guard, never by us.
            source = documents_pb2.DocumentSource(
                uri=change.content_url, content_type=change.content_type, filename=change.name
            )
            again = row is not None and live and row.pending and row.version_tag == tag
            return self._published(change, row, source, sha256="", tag=tag, again=again)
        return await self._downloaded(change, row, tag)

    async def _downloaded(self, change: ItemChange, row: ItemRecord | None, tag: str) -> Outcome:
        try:
            downloaded = await self._provider.download(change, self._options.download_dir)
        except CursorExpired:
            return self._skipped(change, row, "gone before its content was read")
        except ProviderError as exc:
            if exc.transient:
                raise
            return self._skipped(change, row, f"unreadable: {exc}")
        try:
            if downloaded.size_bytes > self._options.max_file_bytes:
                return self._skipped(change, row, f"{downloaded.size_bytes} bytes is over the limit")
            same = (
                row is not None
                and not row.deleted
                and row.content_sha256 == downloaded.sha256
                and row.title == change.name
                and metadata_unchanged(row.version_tag, change)
            )
            if same and row is not None and not row.pending:
                return Outcome("unchanged", row=replace(row, version_tag=tag))
            source = await self._stored(change, row, downloaded)
        finally:
            await asyncio.to_thread(downloaded.path.unlink, True)
        # A pending row with the same content: its version again, whether or not it went out before the crash.
        return self._published(change, row, source, sha256=downloaded.sha256, tag=tag, again=same)

    async def _stored(
        self, change: ItemChange, row: ItemRecord | None, downloaded: Downloaded
    ) -> documents_pb2.DocumentSource:
        document_id = row.document_id if row is not None else document_id_for(self._id, change.item_id)
        content_type = change.content_type or downloaded.content_type
        key = f"{document_id}/{downloaded.sha256}"
        # The download was hashed as it streamed: the blob store reads the file once, to write it.
        uri = await self._blobs.put_file(self._tenant, key, downloaded.path, content_type, sha256=downloaded.sha256)
        return documents_pb2.DocumentSource(
            uri=uri,
            content_type=content_type,
            filename=change.name,
            size_bytes=downloaded.size_bytes,
            sha256=downloaded.sha256,
        )

    def _published(
        self,
        change: ItemChange,
        row: ItemRecord | None,
        source: documents_pb2.DocumentSource,
        *,
        sha256: str,
        tag: str,
        again: bool = False,
    ) -> Outcome:
        """The event of the item's next version, or with `again` of its pending one (a replay, same content)."""
        document_id = row.document_id if row is not None else document_id_for(self._id, change.item_id)
        version = (row.version if again else row.version + 1) if row is not None else 1
        event: documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated
        # A restore after a delete is a new version too: versions of a document only grow.
        event = documents_pb2.DocumentReceived() if version == 1 else documents_pb2.DocumentUpdated()
        event.tenant_id, event.document_id, event.version = self._tenant, document_id, version
        event.title = change.name or change.item_id
        event.metadata.update(event_metadata(self._id, self._kind, change))
        event.source.CopyFrom(source)
        event.occurred_at.CopyFrom(now_timestamp())
        if isinstance(event, documents_pb2.DocumentUpdated):
            event.previous_version = version - 1
        new_row = ItemRecord(change.item_id, document_id, version, tag, sha256, change.name)
        action = "created" if row is None or row.deleted else "republished" if again else "updated"
        return Outcome(action, event=Emitted(event, self._context), row=new_row)

    def _deleted(self, row: ItemRecord) -> Outcome:
        event = documents_pb2.DocumentDeleted(
            tenant_id=self._tenant, document_id=row.document_id, version=row.version, occurred_at=now_timestamp()
        )
        return Outcome("deleted", event=Emitted(event, self._context), row=replace(row, deleted=True))

    def _skipped(self, change: ItemChange, row: ItemRecord | None, reason: str) -> Outcome:
        ERRORS.labels(self._kind, "item").inc()
        log.warning("item skipped", connector_id=self._id, item_id=change.item_id, reason=reason)
        # A skipped item still exists: seen, so that a full enumeration does not delete its earlier version.
        return Outcome("skipped", seen=change.item_id if row is not None else None, error=f"{change.item_id}: {reason}")

    async def _delete_rows(self, fetch: Callable[[str, str, int], Awaitable[list[ItemRecord]]]) -> int:
        deleted = 0
        while rows := await fetch(self._tenant, self._id, DELETE_SLICE):
            outcomes = [self._deleted(row) for row in rows]
            await self._sink.emit([o.event for o in outcomes if o.event is not None])
            await self._store.save_page(self._tenant, self._id, PageWrite(items=[o.row for o in outcomes if o.row]))
            ITEMS.labels(self._kind, "deleted").inc(len(rows))
            deleted += len(rows)
        return deleted


def _identity(message: Message) -> str:
    """A document event as `<kind>:<document>/<version>`: what one synced item is in a page's usage id."""
    assert isinstance(
        message, documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated | documents_pb2.DocumentDeleted
    )
    return f"{type(message).__name__}:{message.document_id}/{message.version}"
