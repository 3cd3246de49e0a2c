"""The periodic poll and subscription renewal: what keeps a connector correct when webhooks are lost.

Every tick, connectors whose poll is due (or whose subscription expires within `renew_before_s`) are claimed,
one tenant transaction each: the claim moves `next_poll_at` on only if it still holds the value just read, so
of several replicas exactly one wins a connector. The winner publishes POLL (a delta sync from the saved cursor,
which repairs any missed notification) and RENEW when the subscription is about to expire, on the connector's
own partition, behind its other work. A failing tick is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rag.v1 import connectors_pb2
from ragstream_common.events import Emitted, EventSink
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger
from ragstream_common.messages import now_timestamp

from ragstream_connectors.metrics import SCHEDULED
from ragstream_connectors.ports import DueConnector, ScheduleStore

log = get_logger(__name__)
Kind = connectors_pb2.ConnectorNotified.Kind
# Longer than any provider retries a delivery (Box: a day; Graph: four hours): replays are still recognised.
KEEP_DELIVERIES_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ScheduleOptions:
    interval_s: float = 30.0
    poll_interval_s: float = 900.0
    renew_before_s: float = 86400.0
    max_per_tick: int = 100


class Scheduler:
    def __init__(self, store: ScheduleStore, sink: EventSink, options: ScheduleOptions) -> None:
        self._store = store
        self._sink = sink
        self._options = options

    async def tick(self, now: datetime | None = None) -> list[Emitted]:
        """Claim what is due and publish its work; the events published."""
        options = self._options
        due = await self._store.due_connectors(options.renew_before_s, options.max_per_tick)
        renew_by = (now or datetime.now(UTC)) + timedelta(seconds=options.renew_before_s)
        events: list[Emitted] = []
        for connector in due:
            if not await self._store.claim(connector, options.poll_interval_s, KEEP_DELIVERIES_S):
                continue  # another replica has it
            events.append(Emitted(_work(connector, Kind.POLL)))
            SCHEDULED.labels("poll").inc()
            expires = connector.subscription_expires_at
            if expires is not None and expires <= renew_by:
                events.append(Emitted(_work(connector, Kind.RENEW)))
                SCHEDULED.labels("renew").inc()
        if events:
            await self._sink.emit(events)
        return events

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `interval_s` until `stop` is set."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:  # the next tick retries; a claimed poll not published is due again later
                log.warning("scheduler tick failed", error=repr(exc))
            await sleep_or_stop(stop, self._options.interval_s)


def _work(
    connector: DueConnector, kind: connectors_pb2.ConnectorNotified.Kind.ValueType
) -> connectors_pb2.ConnectorNotified:
    return connectors_pb2.ConnectorNotified(
        tenant_id=connector.tenant_id,
        connector_id=connector.connector_id,
        provider=connector.provider,
        kind=kind,
        received_at=now_timestamp(),
    )
