"""Connector events over in-memory ports: batching and coalescing, duplicate deliveries, inactive connectors,
transient versus permanent provider failures, subscriptions (create, renew, recreate), removal with purge, and
the scheduler that polls and renews."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import RecordingSink, envelope, metric
from fakes.connectors import CONNECTOR, DOWNLOAD_DIR, TENANT, Drive, MemoryBlobs, MemoryStore, doc, file
from google.protobuf.timestamp_pb2 import Timestamp
from rag.v1 import connectors_pb2, usage_pb2
from ragstream_common.events import Envelope, PermanentError
from ragstream_common.failures import FailureKind, classify
from ragstream_connectors.handlers import WorkerPorts, handle_connector_events
from ragstream_connectors.ports import DueConnector
from ragstream_connectors.providers.base import (
    ConnectorContext,
    ItemChange,
    NotificationPlan,
    ProviderError,
    Subscription,
)
from ragstream_connectors.scheduler import ScheduleOptions, Scheduler
from ragstream_connectors.sync import SyncOptions

pytestmark = pytest.mark.unit
Kind = connectors_pb2.ConnectorNotified.Kind
SUBSCRIPTION = Subscription("sub-1", datetime(2026, 1, 20, tzinfo=UTC), "drives/d/root")


class Unsealer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []

    async def unseal(self, tenant_id: str, purpose: str, ciphertext: bytes) -> dict[str, str]:
        self.calls.append((tenant_id, purpose, ciphertext))
        return {"client_secret": "s3cret"}


class Harness:
    def __init__(self, provider: str = "sharepoint", *, status: str = "active") -> None:
        self.store = MemoryStore()
        self.store.add(provider, status=status)
        self.drive = Drive()
        self.sink = RecordingSink()
        self.unsealer = Unsealer()
        self.contexts: list[ConnectorContext] = []
        self.offset = 0

        def build(context: ConnectorContext) -> Drive:
            self.contexts.append(context)
            return self.drive

        self.ports = WorkerPorts(
            store=self.store,
            secrets=self.unsealer,
            providers=build,  # type: ignore[arg-type]
            blobs=MemoryBlobs(),
            sink=self.sink,
            options=SyncOptions(DOWNLOAD_DIR),
            webhook_base_url="https://rag.example.com/",
        )

    def event(self, kind: int, **fields: Any) -> Envelope[connectors_pb2.ConnectorNotified]:
        fields.setdefault("tenant_id", TENANT)
        fields.setdefault("connector_id", CONNECTOR)
        message = connectors_pb2.ConnectorNotified(provider="sharepoint", kind=kind, **fields)  # type: ignore[arg-type]
        self.offset += 1
        return envelope(message, f"{TENANT}/{CONNECTOR}", offset=self.offset)

    def notification(self, delivery_id: str, received_at: datetime | None = None) -> Envelope[Any]:
        stamp = Timestamp()
        stamp.FromDatetime(received_at or datetime.now(UTC))
        return self.event(Kind.NOTIFICATION, delivery_id=delivery_id, payload=b"{}", received_at=stamp)

    async def handle(self, *envelopes: Envelope[Any]) -> None:
        await handle_connector_events(list(envelopes), self.ports)

    def events(self) -> list[tuple[str, str, int]]:
        documents = [m for m in self.sink.messages() if not isinstance(m, usage_pb2.UsageRecorded)]
        return [(type(m).__name__, m.document_id, m.version) for m in documents]


async def test_notifications_of_a_batch_share_one_sync_and_are_marked_processed() -> None:
    harness = Harness()
    harness.drive.put(file("a"), logged=False)
    lag_before = metric("ragstream_connectors_sync_lag_seconds_count", provider="sharepoint")
    await harness.handle(*(harness.notification(f"n{i}") for i in range(100)))
    assert harness.drive.listings == [None] and len(harness.drive.planned) == 100
    assert harness.events() == [("DocumentReceived", doc("a"), 1)]
    assert all(harness.store.deliveries[(CONNECTOR, f"n{i}")] for i in range(100))
    assert metric("ragstream_connectors_sync_lag_seconds_count", provider="sharepoint") == lag_before + 100
    # The provider saw the connector as configured, its secrets opened for this connector only.
    (context,) = harness.contexts
    assert context.webhook_url == f"https://rag.example.com/v1/webhooks/{CONNECTOR}"
    assert context.secrets == {"client_secret": "s3cret"} and harness.unsealer.calls == [(TENANT, CONNECTOR, b"sealed")]
    assert harness.drive.closed == 1


async def test_a_delivery_is_processed_once() -> None:
    harness = Harness()
    harness.store.deliveries[(CONNECTOR, "seen")] = True
    dropped = metric("ragstream_connectors_notifications_dropped_total", provider="sharepoint", reason="duplicate")
    await harness.handle(harness.notification("seen"), harness.notification("new"), harness.notification("new"))
    assert len(harness.drive.planned) == 1
    await harness.handle(harness.notification("new"))  # redelivered after it was processed
    assert len(harness.drive.planned) == 1 and len(harness.drive.listings) == 1
    assert metric("ragstream_connectors_notifications_dropped_total", provider="sharepoint", reason="duplicate") == (
        dropped + 3
    )


async def test_items_a_notification_names_are_applied_in_order() -> None:
    harness = Harness("webhook")
    harness.drive.plans = [
        NotificationPlan(items=[ItemChange(item_id="x", name="X", inline_content=b"one")]),
        NotificationPlan(items=[ItemChange(item_id="x", deleted=True)]),
    ]
    await harness.handle(harness.notification("d1"), harness.notification("d2"))
    assert harness.events() == [("DocumentReceived", doc("x"), 1), ("DocumentDeleted", doc("x"), 1)]
    assert harness.drive.listings == []


async def test_a_batch_replayed_after_a_poison_event_never_reapplies_older_items() -> None:
    harness = Harness("webhook")
    harness.drive.plans = [
        NotificationPlan(items=[ItemChange(item_id="x", name="X", inline_content=b"one")]),
        NotificationPlan(items=[ItemChange(item_id="x", deleted=True)]),
        PermanentError("webhook body is not JSON"),
    ]
    batch = [harness.notification("d1"), harness.notification("d2"), harness.notification("d3")]
    with pytest.raises(PermanentError):
        await harness.handle(*batch)
    # The consumer retries the failed batch one event at a time: the applied deliveries are recognised.
    await harness.handle(batch[0])
    await harness.handle(batch[1])
    assert harness.events() == [("DocumentReceived", doc("x"), 1), ("DocumentDeleted", doc("x"), 1)]
    assert len(harness.drive.planned) == 3


async def test_events_of_several_connectors_are_handled_per_connector() -> None:
    harness = Harness()
    other = "con_fedcba9876543210"
    harness.store.add(connector_id=other)
    harness.drive.put(file("a"), logged=False)
    await harness.handle(
        harness.notification("n1"), harness.event(Kind.POLL, connector_id=other), harness.notification("n2")
    )
    assert [c.connector_id for c in harness.contexts] == [CONNECTOR, other]
    assert harness.drive.listings == [None, None]


@pytest.mark.parametrize("status", ["removed", "removing"])
async def test_an_inactive_connector_only_handles_its_removal(status: str) -> None:
    harness = Harness(status=status)
    await harness.handle(harness.notification("n1"), harness.event(Kind.POLL))
    assert harness.contexts == [] and harness.drive.planned == []
    await harness.handle(harness.notification("n2"), harness.event(Kind.REMOVE))
    assert harness.drive.planned == [] and harness.store.connectors[CONNECTOR].status == "removed"


async def test_an_unknown_connector_or_another_tenants_is_permanent() -> None:
    harness = Harness()
    with pytest.raises(PermanentError):
        await harness.handle(harness.event(Kind.POLL, connector_id="con_ffffffffffffffff"))
    with pytest.raises(PermanentError):
        await harness.handle(harness.event(Kind.POLL, tenant_id="t2"))
    assert harness.contexts == []


async def test_a_provider_outage_moves_the_poll_forward_and_a_permanent_failure_is_dead_lettered() -> None:
    """A provider down past its retries must not hold the partition: the event is done, the poll comes soon."""
    harness = Harness()
    harness.drive.changes_error = ProviderError("503 after retries", transient=True, status=503)
    await harness.handle(harness.notification("n1"))
    assert harness.store.poll_delays == [harness.ports.options.provider_retry_s]
    assert (CONNECTOR, "n1") not in harness.store.deliveries  # not processed: the poll does the work
    harness.drive.changes_error = ProviderError("401 invalid_client", transient=False, status=401)
    with pytest.raises(PermanentError) as permanent:
        await harness.handle(harness.notification("n1"))
    assert classify(permanent.value) is FailureKind.PERMANENT and "401" in str(permanent.value)
    state = harness.store.state()
    assert state.error_count == 2 and "invalid_client" in (state.last_error or "")
    assert harness.drive.closed == 2


async def test_a_provider_refusing_the_connectors_config_is_recorded_and_permanent() -> None:
    harness = Harness()

    def refuse(context: ConnectorContext) -> Drive:
        raise ProviderError("graph connector lacks client_state", transient=False)

    harness.ports = replace(harness.ports, providers=refuse)  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="client_state"):
        await harness.handle(harness.event(Kind.POLL))
    assert harness.store.state().last_error == "graph connector lacks client_state"


async def test_a_poll_syncs_and_subscribes_when_there_is_no_subscription() -> None:
    harness = Harness()
    harness.drive.subscription = SUBSCRIPTION
    await harness.handle(harness.event(Kind.POLL), harness.event(Kind.POLL))
    assert harness.drive.subscribed == [None] and harness.drive.listings == [None]
    assert harness.store.state().subscription == SUBSCRIPTION
    await harness.handle(harness.event(Kind.POLL))
    assert harness.drive.subscribed == [None] and harness.drive.listings == [None, "0"]


async def test_a_renewal_extends_the_subscription() -> None:
    harness = Harness()
    harness.store.states[CONNECTOR] = replace(harness.store.state(), subscription=SUBSCRIPTION, cursor="0")
    renewed = replace(SUBSCRIPTION, expires_at=SUBSCRIPTION.expires_at + timedelta(days=20))  # type: ignore[operator]
    harness.drive.subscription = renewed
    await harness.handle(harness.event(Kind.RENEW), harness.event(Kind.RENEW))
    assert harness.drive.subscribed == [SUBSCRIPTION] and harness.store.state().subscription == renewed
    assert harness.drive.listings == []


async def test_a_subscription_gone_is_recreated_and_everything_enumerated() -> None:
    harness = Harness()
    harness.drive.put(file("a"), logged=False)
    harness.store.states[CONNECTOR] = replace(harness.store.state(), subscription=SUBSCRIPTION, cursor="0")
    harness.drive.subscribe_error = ProviderError("404 subscription not found", transient=False, status=404)
    # Renewing gave 404, and so does creating one: recorded for the status API, not dead-lettered.
    await harness.handle(harness.event(Kind.RENEW))
    assert (harness.store.state().last_error or "").startswith("subscription: 404")
    harness.drive.subscribe_error = None
    harness.drive.plans = [NotificationPlan(resubscribe=True)]  # Graph's `subscriptionRemoved`
    harness.drive.subscription = replace(SUBSCRIPTION, subscription_id="sub-2")
    await harness.handle(harness.notification("lifecycle-1"))
    assert harness.drive.subscribed[-1] is None and harness.store.state().subscription == harness.drive.subscription
    assert harness.drive.listings == [None] and harness.events() == [("DocumentReceived", doc("a"), 1)]


async def test_a_poll_syncs_even_when_the_subscription_cannot_be_made() -> None:
    """Graph cannot validate a private URL, Drive refuses plain http: polling must still repair everything."""
    harness = Harness()
    harness.drive.put(file("a"), logged=False)
    harness.drive.subscribe_error = ProviderError("403 Forbidden", transient=False, status=403)
    await harness.handle(harness.event(Kind.POLL))
    assert harness.events() == [("DocumentReceived", doc("a"), 1)]
    assert "403" in (harness.store.state().last_error or "")
    harness.drive.subscribe_error = ProviderError("503 busy", transient=True, status=503)
    await harness.handle(harness.event(Kind.POLL))  # synced, then polled again soon to retry the subscription
    assert harness.store.poll_delays == [harness.ports.options.provider_retry_s]


async def test_a_renewal_refused_with_404_subscribes_anew_and_resyncs() -> None:
    harness = Harness()
    harness.store.states[CONNECTOR] = replace(harness.store.state(), subscription=SUBSCRIPTION, cursor="0")
    calls: list[Subscription | None] = []

    async def subscribe(existing: Subscription | None) -> Subscription | None:
        calls.append(existing)
        if existing is not None:
            raise ProviderError("404", transient=False, status=404)
        return replace(SUBSCRIPTION, subscription_id="sub-2")

    harness.drive.subscribe = subscribe  # type: ignore[method-assign]
    await harness.handle(harness.event(Kind.RENEW))
    assert calls == [SUBSCRIPTION, None] and harness.drive.listings == [None]
    assert harness.store.state().subscription is not None
    assert harness.store.state().subscription.subscription_id == "sub-2"  # type: ignore[union-attr]


async def test_a_resync_enumerates_everything_once_per_batch() -> None:
    harness = Harness()
    harness.store.states[CONNECTOR] = replace(harness.store.state(), cursor="0")
    stamp = Timestamp()
    stamp.FromDatetime(harness.store.now)
    await harness.handle(
        harness.event(Kind.RESYNC, received_at=stamp), harness.notification("n1"), harness.event(Kind.POLL)
    )
    assert harness.drive.listings == [None]


async def test_removal_unsubscribes_purges_and_ignores_what_follows() -> None:
    harness = Harness()
    harness.drive.put(file("a"), file("b"), logged=False)
    await harness.handle(harness.event(Kind.POLL))
    harness.store.states[CONNECTOR] = replace(harness.store.state(), subscription=SUBSCRIPTION)
    harness.drive.unsubscribe_error = ProviderError("503", transient=True, status=503)
    await harness.handle(harness.event(Kind.REMOVE, purge=True), harness.notification("late"))
    assert harness.events()[2:] == [("DocumentDeleted", doc("a"), 1), ("DocumentDeleted", doc("b"), 1)]
    assert harness.store.connectors[CONNECTOR].status == "removed"
    assert harness.store.state().subscription is None and harness.drive.planned == []


async def test_removal_without_purge_keeps_the_documents() -> None:
    harness = Harness()
    harness.drive.put(file("a"), logged=False)
    await harness.handle(harness.event(Kind.POLL))
    harness.store.states[CONNECTOR] = replace(harness.store.state(), subscription=SUBSCRIPTION)
    await harness.handle(harness.event(Kind.REMOVE))
    assert harness.drive.unsubscribed == [SUBSCRIPTION] and len(harness.events()) == 1


async def test_a_batch_without_ids_is_permanent() -> None:
    harness = Harness()
    with pytest.raises(PermanentError):
        await harness.handle(harness.event(Kind.POLL, tenant_id=""))


class TestScheduler:
    def scheduler(self, store: MemoryStore, sink: RecordingSink) -> Scheduler:
        return Scheduler(store, sink, ScheduleOptions(interval_s=0.01, poll_interval_s=900, renew_before_s=86400))

    @staticmethod
    def kinds(sink: RecordingSink) -> Sequence[tuple[str, int]]:
        return [(m.connector_id, m.kind) for m in sink.messages()]

    async def test_due_connectors_are_polled_and_expiring_subscriptions_renewed(self) -> None:
        store, sink = MemoryStore(), RecordingSink()
        store.add()
        store.add(connector_id="con_expiring0000000")
        store.add(connector_id="con_notdue00000000")
        soon = store.now + timedelta(hours=2)
        store.states["con_expiring0000000"] = replace(
            store.states["con_expiring0000000"],
            next_poll_at=store.now + timedelta(minutes=5),
            subscription=replace(SUBSCRIPTION, expires_at=soon),
        )
        store.states["con_notdue00000000"] = replace(
            store.states["con_notdue00000000"], next_poll_at=store.now + timedelta(minutes=5)
        )
        emitted = await self.scheduler(store, sink).tick(now=store.now)
        assert self.kinds(sink) == [
            (CONNECTOR, Kind.POLL),
            ("con_expiring0000000", Kind.POLL),
            ("con_expiring0000000", Kind.RENEW),
        ]
        assert len(emitted) == 3 and all(m.tenant_id == TENANT and m.provider for m in sink.messages())
        assert store.state().next_poll_at == store.now + timedelta(seconds=900)
        await self.scheduler(store, sink).tick(now=store.now)  # claimed: the poll is not due again
        assert len(sink.messages()) == 5  # only the expiring subscription, still unrenewed, again

    async def test_a_connector_another_replica_claimed_is_left_alone(self) -> None:
        store, sink = MemoryStore(), RecordingSink()
        store.add()
        store.claims_lost.add(CONNECTOR)
        assert await self.scheduler(store, sink).tick() == [] and sink.calls == 0

    async def test_a_failing_tick_does_not_stop_the_scheduler(self) -> None:
        class FlakyStore(MemoryStore):
            failures = 1

            async def due_connectors(self, renew_within_s: float, limit: int) -> list[DueConnector]:
                if self.failures:
                    self.failures -= 1
                    raise ConnectionError("database restarting")
                return await super().due_connectors(renew_within_s, limit)

        store, sink = FlakyStore(), RecordingSink()
        store.add()
        stop = asyncio.Event()
        task = asyncio.create_task(self.scheduler(store, sink).run(stop))
        async with asyncio.timeout(5):
            while not sink.messages():
                await asyncio.sleep(0.01)
        stop.set()
        await task
        assert store.failures == 0 and self.kinds(sink) == [(CONNECTOR, Kind.POLL)]
