"""Run a real EventConsumer (with its own dead-letter producer) until a condition holds, then stop it cleanly."""

from __future__ import annotations

import asyncio
from typing import Any

from ragstream_common.kafka import ConsumerOptions, EventConsumer, EventPublisher
from ragstream_common.kafka_settings import KafkaSettings


async def consume_until(
    kafka: KafkaSettings, topic: str, group: str, handler: Any, stop_when: Any, timeout_s: float = 30
) -> EventConsumer:
    publisher = EventPublisher(kafka, source="test/dlq")
    await publisher.start()
    consumer = EventConsumer(kafka, ConsumerOptions(group_id=group, topics=(topic,)), handler, publisher)
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(timeout_s):
            while not stop_when():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await consumer.stop()
        await publisher.stop()
    return consumer
