"""The dead-letter operations of the admin API over Kafka: the shared `ragstream_common.dlq` service, reading the
declared DLQ topics and republishing through the gateway's own acks=all producer."""

from __future__ import annotations

from contextlib import AsyncExitStack

from ragstream_common.dlq_store import open_dead_letter_service
from ragstream_common.kafka import EventPublisher

from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.dead_letters import DeadLetterOperations


async def open_dead_letters(
    stack: AsyncExitStack, settings: GatewaySettings, publisher: EventPublisher
) -> DeadLetterOperations:
    return await open_dead_letter_service(stack, settings.kafka, publisher)
