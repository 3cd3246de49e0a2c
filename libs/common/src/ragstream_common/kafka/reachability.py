"""Is the Kafka cluster there? An admin client kept open asks it for its metadata: the services' Kafka check."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from ragstream_common.kafka.connection import client_options
from ragstream_common.kafka_settings import KafkaSettings


class KafkaReachability:
    """`reachable()` once the cluster answered a metadata request; raises (or hangs, hence the probe's
    timeout) while no broker answers. The client reconnects by itself when the brokers come back."""

    def __init__(self, kafka: KafkaSettings, client_id: str = "ragstream-readiness") -> None:
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers, client_id=client_id, **client_options(kafka)
        )

    async def start(self) -> None:
        await self._admin.start()

    async def close(self) -> None:
        await self._admin.close()

    async def reachable(self) -> bool:
        brokers = (await self._admin.describe_cluster()).get("brokers", [])
        return bool(brokers)
