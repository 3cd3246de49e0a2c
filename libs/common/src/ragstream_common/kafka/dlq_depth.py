"""How many records each dead-letter topic holds: high-water mark minus low-water mark, summed over partitions.

`dlq_depths` opens two short-lived, group-less clients (an admin client for the metadata, a consumer for two
ListOffsets requests), cheap enough to run every half minute; `report_dlq_depths` does so for a consumer's
topics and sets `ragstream_dlq_depth`. The DLQ tooling reuses `dlq_depths`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ragstream_common.kafka.connection import client_options
from ragstream_common.kafka.metrics import DLQ_DEPTH
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.logs import get_logger

log = get_logger(__name__)
DLQ_SUFFIX = ".dlq"


async def dlq_depths(kafka: KafkaSettings, topics: Iterable[str] | None = None) -> dict[str, int]:
    """{dlq topic: records retained} for the `<topic>.dlq` of each of `topics` (default: every `*.dlq` topic
    on the cluster); a DLQ that does not exist is left out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, **client_options(kafka))
    reader = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, **client_options(kafka))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = {f"{t}{DLQ_SUFFIX}" for t in topics} if topics is not None else existing
        dlqs = sorted(t for t in wanted if t.endswith(DLQ_SUFFIX) and t in existing)
        # The admin client's metadata names the partitions (a consumer's knows only topics it tracks).
        described = await admin.describe_topics(dlqs) if dlqs else []
        partitions = [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            for partition in topic.get("partitions", [])
        ]
        if not partitions:
            return dict.fromkeys(dlqs, 0)
        await reader.start()
        low = await reader.beginning_offsets(partitions)
        high = await reader.end_offsets(partitions)
    finally:
        await reader.stop()
        await admin.close()
    depths = dict.fromkeys(dlqs, 0)
    for partition in partitions:
        depths[partition.topic] += high[partition] - low[partition]
    return depths


async def report_dlq_depths(kafka: KafkaSettings, topics: Iterable[str], interval_s: float) -> None:
    """Set `ragstream_dlq_depth` for the DLQs of `topics` every `interval_s` until cancelled."""
    topics = tuple(topics)
    while True:
        try:
            for dlq, depth in (await asyncio.wait_for(dlq_depths(kafka, topics), interval_s)).items():
                DLQ_DEPTH.labels(dlq).set(depth)
        except Exception as exc:  # a metric must never take the consumer down; the next round tries again
            log.warning("DLQ depth not read", error=repr(exc))
        await asyncio.sleep(interval_s)
