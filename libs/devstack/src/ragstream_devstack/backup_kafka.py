"""Kafka's part of a backup: each topic's partitions and explicitly set configs, and every consumer group's
committed offsets; and putting them back.

Records themselves are not copied: the documents can be re-ingested and every other topic is derived (see
docs/disaster-recovery.md). Offsets matter when a database is restored to the backup's moment while the broker
kept its data: rewinding the consumer groups to the offsets of that moment makes the services re-process what
came after it (handlers are idempotent and version-aware). A group with live members cannot be altered: it is
skipped and reported, never forced. Runs as the broker's super user over confluent-kafka's AdminClient.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Collection
from typing import Any

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic
from ragstream_common.kafka.access_admin import admin_config
from ragstream_common.kafka_settings import KafkaSettings

TIMEOUT_S = 30.0
COORDINATOR_WAIT_S = 60.0
# Groups whose committed offsets may be rewritten: nobody is consuming with them.
_INACTIVE = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN)


def admin_client(settings: KafkaSettings) -> AdminClient:
    return AdminClient({**admin_config(settings), "client.id": "ragstream-backup"})


def capture_kafka(settings: KafkaSettings) -> dict[str, Any]:
    """{"topics": {name: {partitions, replication_factor, config}}, "groups": {id: {topic: {partition: offset}}}}."""
    client = admin_client(settings)
    return {"topics": _topics(client), "groups": _groups(client)}


def _topics(client: AdminClient) -> dict[str, dict[str, Any]]:
    metadata = client.list_topics(timeout=TIMEOUT_S).topics
    names = sorted(name for name in metadata if not name.startswith("__"))  # the broker's own topics
    resources = [ConfigResource("topic", name) for name in names]
    described = client.describe_configs(resources, request_timeout=TIMEOUT_S) if resources else {}
    topics = {}
    for resource, future in described.items():
        entries: dict[str, ConfigEntry] = _wait(future)
        explicit = {k: str(e.value) for k, e in entries.items() if _set_on_topic(e)}
        partitions = metadata[resource.name].partitions
        first = partitions.get(0)
        topics[resource.name] = {
            "partitions": len(partitions),
            "replication_factor": len(first.replicas) if first is not None else 1,
            "config": dict(sorted(explicit.items())),
        }
    return dict(sorted(topics.items()))


def _set_on_topic(entry: ConfigEntry) -> bool:
    """A config set for the topic itself, not inherited from the broker's defaults (the source is a plain int
    at runtime, the enum in the stubs: both compare through the enum)."""
    return ConfigSource(entry.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG


def _groups(client: AdminClient) -> dict[str, dict[str, dict[str, int]]]:
    listed = _wait(client.list_consumer_groups(request_timeout=TIMEOUT_S))
    groups = {}
    for group_id in sorted(g.group_id for g in listed.valid):
        groups[group_id] = committed_offsets(client, group_id)
    return groups


def committed_offsets(client: AdminClient, group_id: str) -> dict[str, dict[str, int]]:
    """topic -> partition (as text: JSON keys) -> committed offset; partitions without a commit are left out."""
    request = [ConsumerGroupTopicPartitions(group_id)]
    answer = _wait(client.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group_id])
    offsets: dict[str, dict[str, int]] = {}
    for partition in answer.topic_partitions or ():
        if partition.offset >= 0:
            offsets.setdefault(partition.topic, {})[str(partition.partition)] = int(partition.offset)
    return {
        topic: dict(sorted(by_partition.items(), key=lambda i: int(i[0]))) for topic, by_partition in offsets.items()
    }


def restore_kafka(
    settings: KafkaSettings, captured: dict[str, Any], groups: Collection[str] | None = None
) -> dict[str, Any]:
    """Create missing topics and set every recorded config; rewind each inactive group (of `groups`, default
    all) to its recorded offsets. Returns what was done and `problems` (empty when all matches the backup)."""
    client = admin_client(settings)
    report: dict[str, Any] = {"topics_created": [], "configs_set": 0, "groups_restored": [], "groups_skipped": []}
    problems: list[str] = []
    _restore_topics(client, captured.get("topics", {}), report, problems)
    existing = client.list_topics(timeout=TIMEOUT_S).topics
    for group_id, offsets in captured.get("groups", {}).items():
        if groups is not None and group_id not in groups:
            continue
        present = {t: p for t, p in offsets.items() if t in existing}
        if not present:
            continue
        state = _group_state(client, group_id)
        if state not in _INACTIVE:
            report["groups_skipped"].append(f"{group_id} ({state.name}: has members; stop its consumers first)")
            continue
        if _has_other_partitions(committed_offsets(client, group_id), present):
            # Offsets committed since the backup on other topics would survive an alter: start the group afresh.
            _wait(client.delete_consumer_groups([group_id], request_timeout=TIMEOUT_S)[group_id])
        alter_offsets(client, group_id, present)
        if committed_offsets(client, group_id) != present:
            problems.append(f"group {group_id}: committed offsets differ from the backup's after restoring")
        report["groups_restored"].append(group_id)
    report["problems"] = problems
    return report


def _restore_topics(
    client: AdminClient, topics: dict[str, dict[str, Any]], report: dict[str, Any], problems: list[str]
) -> None:
    metadata = client.list_topics(timeout=TIMEOUT_S)
    brokers = max(len(metadata.brokers), 1)
    missing = [name for name in topics if name not in metadata.topics]
    if missing:
        new = [
            NewTopic(
                name,
                num_partitions=topics[name]["partitions"],
                replication_factor=min(int(topics[name]["replication_factor"]), brokers),
                config=topics[name]["config"],
            )
            for name in missing
        ]
        for future in client.create_topics(new, request_timeout=TIMEOUT_S).values():
            _wait(future)
        report["topics_created"] = missing
    for name, spec in topics.items():
        if name in metadata.topics and len(metadata.topics[name].partitions) != spec["partitions"]:
            problems.append(
                f"topic {name}: {len(metadata.topics[name].partitions)} partitions, backup has {spec['partitions']}"
            )
        if not spec["config"]:
            continue
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in spec["config"].items()]
        resource = ConfigResource("topic", name, incremental_configs=entries)
        for future in client.incremental_alter_configs([resource], request_timeout=TIMEOUT_S).values():
            _wait(future)
        report["configs_set"] += len(entries)


def _has_other_partitions(current: dict[str, dict[str, int]], wanted: dict[str, dict[str, int]]) -> bool:
    return any(
        partition not in wanted.get(topic, {}) for topic, by_partition in current.items() for partition in by_partition
    )


def _group_state(client: AdminClient, group_id: str) -> ConsumerGroupState:
    description = _wait(client.describe_consumer_groups([group_id], request_timeout=TIMEOUT_S)[group_id])
    state = description.state
    return state if isinstance(state, ConsumerGroupState) else ConsumerGroupState.UNKNOWN


def alter_offsets(client: AdminClient, group_id: str, offsets: dict[str, dict[str, int]]) -> None:
    partitions = [
        TopicPartition(topic, int(partition), offset)
        for topic, by_partition in offsets.items()
        for partition, offset in by_partition.items()
    ]
    request = [ConsumerGroupTopicPartitions(group_id, partitions)]
    # A broker that has never had a group creates its offsets topic on the first request and answers "not the
    # coordinator" (or nothing) until it is loaded: librdkafka does not retry that, so short tries are repeated.
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while True:
        try:
            answer = _wait(client.alter_consumer_group_offsets(request, request_timeout=5.0)[group_id])
            # Per-partition refusals (the coordinator still loading) come back as values, not exceptions.
            refused = [p.error for p in answer.topic_partitions or () if p.error is not None]
            if not refused:
                return
            raise RuntimeError(f"offset commit refused: {refused[0]}")
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _wait(future: concurrent.futures.Future[Any]) -> Any:
    try:
        return future.result(timeout=TIMEOUT_S + 5)
    except KafkaException as exc:
        raise RuntimeError(f"Kafka admin request failed: {exc.args[0] if exc.args else exc}") from exc
