"""How many records each dead-letter topic holds: high-water mark minus low-water mark, summed over partitions.

`report_dlq_depths` reads them for a consumer's topics every half minute over one long-lived DlqDepthReader and
sets `ragstream_dlq_depth`; the DLQ tooling takes one reading with `dlq_depths`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ragstream_common.kafka.connection import client_options, stop_consumer
from ragstream_common.kafka.metrics import DLQ_DEPTH, topic_label
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.logs import get_logger

log = get_logger(__name__)
DLQ_SUFFIX = ".dlq"


class DlqDepthReader:
    """Two group-less clients (an admin client for the metadata, a consumer for the ListOffsets requests),
    opened on first use and kept, so a periodic reporter does not reconnect every round."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None

    async def depths(self, topics: Iterable[str] | None = None) -> dict[str, int]:
        """{dlq topic: records retained} for the `<topic>.dlq` of each of `topics` (default: every `*.dlq` topic
        on the cluster); a DLQ that does not exist is left out."""
        admin, reader = await self._clients()
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
        depths = dict.fromkeys(dlqs, 0)
        if partitions:
            low = await reader.beginning_offsets(partitions)
            high = await reader.end_offsets(partitions)
            for partition in partitions:
                depths[partition.topic] += high[partition] - low[partition]
        return depths

    async def close(self) -> None:
        admin, reader, self._admin, self._reader = self._admin, self._reader, None, None
        if reader is not None:
            await stop_consumer(reader)
        if admin is not None:
            await admin.close()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._reader is None:
            kafka = self._kafka
            admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, **client_options(kafka))
            reader = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, **client_options(kafka))
            self._admin, self._reader = admin, reader
            await admin.start()
            await reader.start()
        return self._admin, self._reader


async def dlq_depths(kafka: KafkaSettings, topics: Iterable[str] | None = None) -> dict[str, int]:
    """One reading with clients of its own (the DLQ tooling's); see DlqDepthReader.depths."""
    reader = DlqDepthReader(kafka)
    try:
        return await reader.depths(topics)
    finally:
        await reader.close()


async def report_dlq_depths(kafka: KafkaSettings, topics: Iterable[str], interval_s: float) -> None:
    """Set `ragstream_dlq_depth` for the DLQs of `topics` every `interval_s` until cancelled, over one pair of
    clients; after a failed round they are reopened."""
    topics = tuple(topics)
    reader = DlqDepthReader(kafka)
    try:
        while True:
            try:
                for dlq, depth in by_label(await asyncio.wait_for(reader.depths(topics), interval_s)).items():
                    DLQ_DEPTH.labels(dlq).set(depth)
            except Exception as exc:  # a metric must never take the consumer down; the next round tries again
                log.warning("DLQ depth not read", error=repr(exc))
                await reader.close()
            await asyncio.sleep(interval_s)
    finally:
        await reader.close()


def by_label(depths: dict[str, int]) -> dict[str, int]:
    """Depths under bounded topic labels: tenants' own DLQs summed as one (`topic_label`)."""
    summed: dict[str, int] = {}
    for dlq, depth in depths.items():
        summed[topic_label(dlq)] = summed.get(topic_label(dlq), 0) + depth
    return summed
