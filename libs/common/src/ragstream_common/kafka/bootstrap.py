"""Create every declared topic idempotently: `python -m ragstream_common.kafka.bootstrap`.

Reads the KAFKA_* connection variables and KAFKA_REPLICATION_FACTOR (1 in compose, 3 in Kubernetes).
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragstream_common.config import load_settings
from ragstream_common.kafka.connection import client_options
from ragstream_common.kafka.topics import ALL_TOPICS, TopicSpec
from ragstream_common.kafka_settings import KafkaSettings


class BootstrapSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    replication_factor: int = Field(default=1, ge=1, validation_alias=AliasChoices("KAFKA_REPLICATION_FACTOR"))


async def ensure_topics(
    kafka: KafkaSettings, specs: tuple[TopicSpec, ...] = ALL_TOPICS, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, client_id="ragstream-bootstrap", **client_options(kafka)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new_topics = [NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.config()) for s in missing]
            try:
                await admin.create_topics(new_topics)
            except TopicAlreadyExistsError:
                pass  # another bootstrap won the race: same outcome
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _main(settings: BootstrapSettings) -> None:
    for attempt in range(30):
        try:
            created = await ensure_topics(settings.kafka, replication_factor=settings.replication_factor)
            break
        except KafkaConnectionError:
            if attempt == 29:
                raise
            await asyncio.sleep(1)
    print(f"topics ready ({len(ALL_TOPICS)} declared, {len(created)} created)", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(_main(load_settings(BootstrapSettings)))
