"""The security event stream: every audit row, published to rag.security.events.v1 for a SIEM.

The audit log is the source of truth and this is an outbox relay over it: rows are claimed in their tenant's
chain order, published (CloudEvents, proto3 JSON of `rag.v1.SecurityEvent`, keyed by tenant), and the tenant's
export cursor moves only once Kafka acknowledged them, in the same transaction as the claim. So requests never
wait for Kafka, a broker outage only delays the stream (the relay retries with backoff, then catches up from the
cursor), and a crash between the acknowledgement and the commit publishes those rows again: consumers drop
duplicates by (tenant_id, seq). Replicas share the work per tenant (the claim skips locked cursors).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter
from rag.v1 import security_pb2
from ragstream_common.events import Emitted, RecordPublisher
from ragstream_common.kafka.cloudevents import JSON
from ragstream_common.kafka.routing import Routes, outgoing
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger

from ragstream_gateway.audit_chain import ChainRow

log = get_logger(__name__)
EXPORTED = Counter("ragstream_gateway_security_events_total", "Audit rows published to the security event stream")
EXPORT_FAILURES = Counter("ragstream_gateway_security_event_failures_total", "Failed security event export rounds")
MAX_BACKOFF_S = 30.0


class AuditOutbox(Protocol):
    async def drain(self, limit: int, publish: Callable[[Sequence[ChainRow]], Awaitable[None]]) -> int:
        """Claim up to `limit` unpublished rows, `publish` them, then advance the cursor; how many."""
        ...


def security_event(row: ChainRow) -> security_pb2.SecurityEvent:
    occurred_at = Timestamp()
    occurred_at.FromDatetime(row.at)
    return security_pb2.SecurityEvent(
        tenant_id=row.tenant_id,
        seq=row.seq,
        audit_id=row.audit_id,
        occurred_at=occurred_at,
        actor=row.actor,
        action=row.action,
        resource=row.resource,
        client_ip=row.client_ip,
        outcome=row.outcome,
        trace_id=row.trace_id,
        details_json=row.details_json,
        prev_hash=row.prev_hash,
        row_hash=row.row_hash,
    )


class SecurityEventRelay:
    def __init__(
        self,
        outbox: AuditOutbox,
        publisher: RecordPublisher,
        routes: Routes,
        *,
        interval_s: float = 1.0,
        batch_rows: int = 500,
        publish_timeout_s: float = 10.0,
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._routes = routes
        self._interval_s = interval_s
        self._batch_rows = batch_rows
        self._publish_timeout_s = publish_timeout_s

    async def publish(self, rows: Sequence[ChainRow]) -> None:
        records = [
            dataclasses.replace(outgoing(self._routes, Emitted(security_event(row))), content_type=JSON) for row in rows
        ]
        async with asyncio.timeout(self._publish_timeout_s):
            await self._publisher.publish_many(records)
        EXPORTED.inc(len(records))

    async def run_once(self) -> int:
        """Publish everything pending (in batches); how many rows went out."""
        total = 0
        while True:
            sent = await self._outbox.drain(self._batch_rows, self.publish)
            total += sent
            if sent < self._batch_rows:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Every `interval_s` until `stop`; failures back off (doubling to MAX_BACKOFF_S) and never end the loop."""
        delay = self._interval_s
        while not stop.is_set():
            try:
                await self.run_once()
                delay = self._interval_s
            except Exception as exc:
                EXPORT_FAILURES.inc()
                delay = min(max(delay * 2, self._interval_s), MAX_BACKOFF_S)
                log.warning("security event export failed; retrying", error=repr(exc), retry_in_s=delay)
            await sleep_or_stop(stop, delay)
