"""Connector work from rag.connectors.notified.v1: notifications, polls, resyncs, renewals and removals.

A batch is split by connector (each connector's events keep their order: one partition carries them all). Per
connector, in order: deliveries already processed are dropped; each notification is planned by its provider and
the items it names are applied; renewals run; then ONE sync covers every notification, poll and resync of the
batch (a hundred notifications for one drive cost one delta call); then the deliveries are marked processed.

Failures: a provider failure worth retrying (throttled past ProviderHttp's own retries, 5xx, network) is
recorded on the connector's sync state and its next poll moved to `provider_retry_s` from now; the event is
done. Retrying it in the consumer instead would hold every other connector of the partition behind one
provider's outage, and nothing is lost by not doing so: the poll lists every change since the saved cursor,
which is all a notification ever asks for. Any other failure (bad credentials, 403, a drive that is gone) is
recorded and raised as `PermanentError` (the event goes to the DLQ, the status API shows the error). Our own
infrastructure failing (Kafka, Postgres, the blob store) raises as it is: the consumer retries without loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry import context as otel_context
from rag.v1 import connectors_pb2
from ragstream_common.events import Envelope, EventSink, PermanentError
from ragstream_common.logs import get_logger

from ragstream_connectors.metrics import DROPPED, ERRORS, NOTIFICATIONS, SYNC_LAG
from ragstream_connectors.ports import (
    BlobFiles,
    ConnectorRecord,
    ConnectorStore,
    ProviderFactory,
    SecretUnsealer,
)
from ragstream_connectors.providers.base import ConnectorContext, CursorExpired, Provider, ProviderError
from ragstream_connectors.sync import ConnectorSync, SyncOptions

log = get_logger(__name__)
Notified = connectors_pb2.ConnectorNotified
Kind = connectors_pb2.ConnectorNotified.Kind


@dataclass(frozen=True)
class WorkerPorts:
    store: ConnectorStore
    secrets: SecretUnsealer
    providers: ProviderFactory
    blobs: BlobFiles
    sink: EventSink
    options: SyncOptions
    # The gateway's public address: a connector's webhook URL is `<base>/v1/webhooks/<connector id>`.
    webhook_base_url: str


@dataclass
class Work:
    """What one connector's events of a batch ask for, once coalesced."""

    sync: bool = False
    full: bool = False
    resync_requested_at: datetime | None = None
    renew: bool = False
    resubscribe: bool = False
    ensure_subscription: bool = False
    deliveries: list[str] = field(default_factory=list)
    received: list[datetime] = field(default_factory=list)


async def handle_connector_events(batch: Sequence[Envelope[Notified]], ports: WorkerPorts) -> None:
    """Each connector's events of the batch, one connector after another."""
    groups: dict[tuple[str, str], list[Envelope[Notified]]] = {}
    for envelope in batch:
        groups.setdefault((envelope.message.tenant_id, envelope.message.connector_id), []).append(envelope)
    for envelopes in groups.values():
        await handle_connector(envelopes, ports)


async def handle_connector(envelopes: Sequence[Envelope[Notified]], ports: WorkerPorts) -> None:
    first = envelopes[0].message
    if not first.tenant_id or not first.connector_id:
        raise PermanentError("ConnectorNotified needs a tenant_id and a connector_id")
    record = await ports.store.find(first.tenant_id, first.connector_id)
    if record is None or record.tenant_id != first.tenant_id:
        raise PermanentError(f"connector {first.connector_id!r} does not exist for tenant {first.tenant_id!r}")
    if record.status != "active":
        # Only the removal itself still concerns a connector on its way out.
        kept = [e for e in envelopes if e.message.kind == Kind.REMOVE]
        DROPPED.labels(record.provider, "inactive").inc(len(envelopes) - len(kept))
        if not kept:
            return
        envelopes = kept
    fresh = await _without_processed(envelopes, record, ports.store)
    if not fresh:
        return
    secrets = await ports.secrets.unseal(record.tenant_id, record.connector_id, record.secrets_ciphertext)
    webhook_url = f"{ports.webhook_base_url.rstrip('/')}/v1/webhooks/{record.connector_id}"
    context = ConnectorContext(
        record.tenant_id, record.connector_id, record.provider, record.config, secrets, webhook_url
    )
    await _run_guarded(record, context, ports, fresh)


async def _without_processed(
    envelopes: Sequence[Envelope[Notified]], record: ConnectorRecord, store: ConnectorStore
) -> list[Envelope[Notified]]:
    """Drop notifications whose delivery was processed before, or appears twice in this batch."""
    ids = [e.message.delivery_id for e in envelopes if e.message.kind == Kind.NOTIFICATION and e.message.delivery_id]
    done = await store.processed_deliveries(record.tenant_id, record.connector_id, ids) if ids else set()
    fresh: list[Envelope[Notified]] = []
    for envelope in envelopes:
        message = envelope.message
        if message.kind == Kind.NOTIFICATION and message.delivery_id:
            if message.delivery_id in done:
                DROPPED.labels(record.provider, "duplicate").inc()
                log.info("duplicate delivery dropped", connector_id=record.connector_id, delivery=message.delivery_id)
                continue
            done.add(message.delivery_id)
        fresh.append(envelope)
    return fresh


async def _run_guarded(
    record: ConnectorRecord, context: ConnectorContext, ports: WorkerPorts, envelopes: Sequence[Envelope[Notified]]
) -> None:
    """Run the connector's events against its provider; provider failures recorded and classified."""
    store = ports.store
    try:
        provider = ports.providers(context)  # refuses a connector whose config or secrets are incomplete
        try:
            await ConnectorRun(record, provider, ports, envelopes[0].trace_context).handle(envelopes)
        finally:
            await provider.aclose()
    except ProviderError as exc:
        await store.record_error(record.tenant_id, record.connector_id, str(exc)[:500])
        ERRORS.labels(record.provider, "transient" if exc.transient else "permanent").inc()
        if exc.transient:
            await store.poll_soon(record.tenant_id, record.connector_id, ports.options.provider_retry_s)
            log.warning("provider unavailable; polling again soon", connector_id=record.connector_id, error=str(exc))
            return
        raise PermanentError(f"{record.provider} refused: {exc}") from exc
    except CursorExpired as exc:  # outside a change listing: nothing to restart, a broken contract
        await store.record_error(record.tenant_id, record.connector_id, str(exc)[:500])
        raise PermanentError(f"{record.provider}: unexpected expiry: {exc}") from exc


class ConnectorRun:
    """One connector's events of one batch, against its provider."""

    def __init__(
        self, record: ConnectorRecord, provider: Provider, ports: WorkerPorts, context: otel_context.Context
    ) -> None:
        self.record, self.ports = record, ports
        self._provider = provider
        self._sync = ConnectorSync(
            record,
            provider,
            store=ports.store,
            blobs=ports.blobs,
            sink=ports.sink,
            options=ports.options,
            context=context,
        )

    async def handle(self, envelopes: Sequence[Envelope[Notified]]) -> None:
        work = Work()
        for envelope in envelopes:
            message = envelope.message
            NOTIFICATIONS.labels(self.record.provider, Kind.Name(message.kind).lower()).inc()
            if message.kind == Kind.REMOVE:
                await self._remove(purge=message.purge)
                return  # what followed the removal no longer matters
            await self._collect(message, work)
        subscription_failure = await self._subscription_or_failure(work)
        # The sync runs even when the subscription could not be made: the periodic poll is what repairs what
        # webhooks miss, so it must never depend on them.
        if work.sync or work.full:
            await self._sync.sync(full=work.full, requested_at=work.resync_requested_at)
        if subscription_failure is not None and subscription_failure.transient:
            raise subscription_failure  # the poll comes back soon (_run_guarded) and tries again
        if work.deliveries:
            await self.ports.store.mark_processed(self.record.tenant_id, self.record.connector_id, work.deliveries)
        now = datetime.now(UTC)
        for received in work.received:
            SYNC_LAG.labels(self.record.provider).observe(max(0.0, (now - received).total_seconds()))

    async def _collect(self, message: Notified, work: Work) -> None:
        received = message.received_at.ToDatetime(tzinfo=UTC) if message.HasField("received_at") else None
        if message.kind == Kind.NOTIFICATION:
            plan = await self._provider.plan(message.payload, dict(message.attributes))
            delivery = [message.delivery_id] if message.delivery_id else []
            if plan.items and not (plan.sync or plan.renew or plan.resubscribe):
                # Done once its items are in: marked with their rows, so that a replay of this batch never
                # re-applies an older notification over a newer one (a stale upsert after a delete).
                await self._sync.apply_items(plan.items, delivery)
            else:
                if plan.items:
                    await self._sync.apply_items(plan.items)
                work.deliveries.extend(delivery)
            work.sync |= plan.sync
            work.renew |= plan.renew
            work.resubscribe |= plan.resubscribe
            if received is not None:
                work.received.append(received)
        elif message.kind == Kind.RESYNC:
            # A new connector's first event: subscribe now, not a poll interval later.
            work.full = work.ensure_subscription = True
            if received is not None:
                work.resync_requested_at = max(received, work.resync_requested_at or received)
        elif message.kind == Kind.POLL:
            work.sync = work.ensure_subscription = True
        elif message.kind == Kind.RENEW:
            work.renew = True
        else:
            raise PermanentError(f"unknown ConnectorNotified kind {message.kind}")

    async def _subscription_or_failure(self, work: Work) -> ProviderError | None:
        """`_subscription`, with a provider's refusal recorded (status API, metric, log) instead of raised."""
        try:
            await self._subscription(work)
        except ProviderError as exc:
            tenant, connector = self.record.tenant_id, self.record.connector_id
            await self.ports.store.record_error(tenant, connector, f"subscription: {exc}"[:500])
            ERRORS.labels(self.record.provider, "subscription").inc()
            log.warning("subscription failed; syncing by polling", connector_id=connector, error=str(exc))
            return exc
        return None

    async def _subscription(self, work: Work) -> None:
        """Renew, recreate or create the provider subscription, before the sync, which then covers any change
        that happened while there was none."""
        tenant, connector = self.record.tenant_id, self.record.connector_id
        if not (work.renew or work.resubscribe or work.ensure_subscription):
            return
        existing = (await self.ports.store.sync_state(tenant, connector)).subscription
        if existing is not None and work.renew and not work.resubscribe:
            try:
                renewed = await self._provider.subscribe(existing)
            except ProviderError as exc:
                if exc.status != 404:
                    raise
                log.info("subscription gone, subscribing anew", connector_id=connector)
                work.resubscribe = True
            else:
                await self.ports.store.save_subscription(tenant, connector, renewed)
                return
        if existing is None or work.resubscribe:
            created = await self._provider.subscribe(None)
            if created is not None or existing is not None:
                await self.ports.store.save_subscription(tenant, connector, created)
            # Notifications may have been lost while it was gone: enumerate everything.
            work.full = work.full or work.resubscribe

    async def _remove(self, *, purge: bool) -> None:
        tenant, connector = self.record.tenant_id, self.record.connector_id
        existing = (await self.ports.store.sync_state(tenant, connector)).subscription
        if existing is not None:
            try:
                await self._provider.unsubscribe(existing)
            except (ProviderError, CursorExpired) as exc:  # best effort: an expired subscription ends by itself
                log.warning("unsubscribe failed", connector_id=connector, error=str(exc))
            await self.ports.store.save_subscription(tenant, connector, None)
        purged = await self._sync.purge() if purge else 0
        await self.ports.store.mark_removed(tenant, connector)
        log.info("connector removed", connector_id=connector, purged=purged)
