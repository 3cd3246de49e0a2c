"""The intake bridge on Kafka: a pattern consumer of every tenant's intake topics, and the sink that forwards
their events onto the internal topics under their original CloudEvents ids."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from functools import partial
from typing import Protocol

from opentelemetry import trace
from ragstream_common.events import Emitted
from ragstream_common.kafka import ConsumerOptions, EventConsumer, EventPublisher, cloudevents
from ragstream_common.kafka.routing import outgoing
from ragstream_common.kafka.tenant_topics import INTAKE_PATTERN
from ragstream_common.service import start_consumer
from ragstream_common.tracing import ending, inject_headers

from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.intake import Forwarded, TenantGate, bridge_intake

tracer = trace.get_tracer("ragstream.kafka")


class RawPublisher(Protocol):
    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None: ...


class KafkaIntakeSink:
    """`IntakeSink` over the gateway's producer: each event to the internal topic the gateway's own events of
    that type go to, keyed the same way, with the tenant's event id and source kept.

    Events of one key go out one after another (their order is the document's version order); different keys
    go concurrently, so a batch costs about one acknowledgement round trip per key, not per event.
    """

    def __init__(self, publisher: RawPublisher) -> None:
        self._publisher = publisher

    async def forward(self, events: Sequence[Forwarded]) -> None:
        by_key: dict[tuple[str, str], list[Forwarded]] = {}
        for event in events:
            record = outgoing(GATEWAY_ROUTES, Emitted(event.message, event.context))
            by_key.setdefault((record.topic, record.key), []).append(event)
        await asyncio.gather(*(self._send_in_order(topic, key, run) for (topic, key), run in by_key.items()))

    async def _send_in_order(self, topic: str, key: str, events: list[Forwarded]) -> None:
        for event in events:
            await self._send(topic, key, event)

    async def _send(self, topic: str, key: str, event: Forwarded) -> None:
        span = tracer.start_span(
            f"{topic} publish",
            context=event.context,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.message.id": event.event_id,
            },
        )
        with ending([span]):
            value, headers = cloudevents.encode(event.message, source=event.source, event_id=event.event_id)
            headers.extend(inject_headers(trace.set_span_in_context(span, event.context)))
            await self._publisher.send_raw(topic, key.encode(), value, headers)


def intake_options(settings: GatewaySettings) -> ConsumerOptions:
    """Every tenant's intake topics by pattern; a short metadata refresh picks up a new tenant within seconds."""
    return ConsumerOptions(
        group_id=settings.intake_group_id,
        topics=(),
        topic_pattern=INTAKE_PATTERN,
        metadata_max_age_ms=settings.intake_metadata_max_age_ms,
    )


async def start_intake_bridge(
    stack: AsyncExitStack, settings: GatewaySettings, publisher: EventPublisher, gate: TenantGate | None = None
) -> EventConsumer:
    """The bridge's consumer, started; `publisher` forwards its events and takes its dead letters; `gate` refuses
    disabled tenants' events."""
    handler = partial(bridge_intake, sink=KafkaIntakeSink(publisher), gate=gate)
    return await start_consumer(stack, settings, intake_options(settings), handler, publisher)
