"""A real consumer process for lifecycle tests: records each handled event id, slowly, until SIGTERM.

The bootstrap servers come as an argument, the credentials as KAFKA_* variables (KafkaSettings reads them)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from ragstream_common.kafka import ConsumerOptions, Envelope, EventConsumer, EventPublisher
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.lifecycle import run_until_stopped
from ragstream_common.logs import configure_logging


async def main(bootstrap: str, topic: str, group: str, out_path: str, delay_s: float) -> None:
    async def body(stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
        publisher = EventPublisher(KafkaSettings(bootstrap_servers=bootstrap), source="test/counting-consumer")
        await publisher.start()
        stack.push_async_callback(publisher.stop)
        out = open(out_path, "a", buffering=1)
        stack.callback(out.close)

        async def handle(batch: Sequence[Envelope[Any]]) -> None:
            for envelope in batch:
                await asyncio.sleep(delay_s)
                out.write(f"{envelope.message.query_id}\n")
                out.flush()
                os.fsync(out.fileno())

        options = ConsumerOptions(group_id=group, topics=(topic,), max_batch=5)
        consumer = EventConsumer(KafkaSettings(bootstrap_servers=bootstrap), options, handle, publisher)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        print("ready", flush=True)
        return [consumer.run(stop)]

    await run_until_stopped(body, grace_s=10)


if __name__ == "__main__":
    configure_logging("counting-consumer")
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
