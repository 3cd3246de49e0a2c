"""Idempotent, acks=all event publishing with CloudEvents headers and trace context; acknowledged records are
counted in `ragstream_producer_records_total{topic}`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry import trace

from ragstream_common.events import OutgoingEvent
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.connection import client_options
from ragstream_common.kafka.metrics import count_acknowledged
from ragstream_common.kafka.topics import LARGE_MESSAGE_BYTES
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.tracing import ending, inject_headers

tracer = trace.get_tracer("ragstream.kafka")


class EventPublisher:
    """Publishes typed events; every `publish*` returns only once the brokers acknowledged."""

    def __init__(self, kafka: KafkaSettings, *, source: str, linger_ms: int = 0, client_id: str = "") -> None:
        self._source = source
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=client_id or source,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_request_size=LARGE_MESSAGE_BYTES,
            request_timeout_ms=30000,
            **client_options(kafka),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, event: OutgoingEvent) -> None:
        await self.publish_many([event])

    async def publish_many(self, events: Sequence[OutgoingEvent]) -> None:
        """Send all, then wait for every acknowledgement (so batches share round trips).

        Each event gets a PRODUCER span (send until acknowledged) that its consumer's span continues."""
        pending: list[asyncio.Future[Any]] = []
        with ending([]) as spans:
            for event in events:
                span = tracer.start_span(
                    f"{event.topic} publish",
                    context=event.context,
                    kind=trace.SpanKind.PRODUCER,
                    attributes={"messaging.system": "kafka", "messaging.destination.name": event.topic},
                )
                spans.append(span)
                value, headers = cloudevents.encode(event.message, source=self._source, content_type=event.content_type)
                headers.extend(inject_headers(trace.set_span_in_context(span, event.context)))
                delivery = await self._producer.send(event.topic, value=value, key=event.key.encode(), headers=headers)
                delivery.add_done_callback(partial(count_acknowledged, event.topic))
                pending.append(delivery)
            if pending:
                await asyncio.gather(*pending)

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Forward a record as-is (dead-lettering keeps the original bytes and headers)."""
        delivery = await self._producer.send(topic, value=value, key=key, headers=headers)
        delivery.add_done_callback(partial(count_acknowledged, topic))
        await delivery
