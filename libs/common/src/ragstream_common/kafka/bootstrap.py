"""Create every declared topic idempotently: `python -m ragstream_common.kafka.bootstrap`."""

from __future__ import annotations

import asyncio
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from ragstream_common.kafka.connection import client_options
from ragstream_common.kafka.topics import ALL_TOPICS, TopicSpec


async def ensure_topics(
    bootstrap_servers: str, specs: tuple[TopicSpec, ...] = ALL_TOPICS, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="ragstream-bootstrap", **client_options()
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new_topics = [
                NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.config()) for s in missing
            ]
            try:
                await admin.create_topics(new_topics)
            except TopicAlreadyExistsError:
                pass  # another bootstrap won the race: same outcome
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _main() -> None:
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    replication = int(os.environ.get("KAFKA_REPLICATION_FACTOR", "1"))
    for attempt in range(30):
        try:
            created = await ensure_topics(servers, replication_factor=replication)
            break
        except KafkaConnectionError:
            if attempt == 29:
                raise
            await asyncio.sleep(1)
    print(f"topics ready ({len(ALL_TOPICS)} declared, {len(created)} created)", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(_main())
