"""LocalKafka: a real KRaft broker from Maven Central jars, started and stopped by us; clients sign in as its
super user (SASL/SCRAM-SHA-512), whose credential is created with the storage."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.kafka import LocalKafka
from ragstream_devstack.kafka_artifacts import ensure_kafka_jars
from ragstream_devstack.kafka_config import KAFKA_VERSION
from ragstream_devstack.processes import DevstackError
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka() -> Iterator[LocalKafka]:
    started = time.monotonic()
    with LocalKafka() as broker:
        broker.startup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        yield broker


async def _create_topic(kafka: KafkaSettings, name: str) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


def test_broker_starts_on_loopback(kafka: LocalKafka) -> None:
    assert kafka.bootstrap_servers.startswith("127.0.0.1:")
    assert kafka.log_file.read_text().count("Kafka Server started") == 1


async def test_record_round_trips_through_a_created_topic(kafka: LocalKafka) -> None:
    topic = f"devstack.{uuid.uuid4().hex[:8]}"
    await _create_topic(kafka.admin_settings, topic)
    big = b"x" * (2 * 1024 * 1024)  # above Kafka's 1 MiB default, below our 16 MiB limit
    producer = AIOKafkaProducer(**client_kwargs(kafka.admin_settings), max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
        await producer.send_and_wait(topic, big)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        **client_kwargs(kafka.admin_settings),
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        first = await consumer.getone()
        second = await consumer.getone()
    finally:
        await consumer.stop()
    assert (first.key, first.value) == (b"k", b"hello")
    assert second.value == big


async def test_topics_are_not_auto_created(kafka: LocalKafka) -> None:
    producer = AIOKafkaProducer(**client_kwargs(kafka.admin_settings), request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            await producer.send_and_wait(f"devstack.missing.{uuid.uuid4().hex[:8]}", b"x")
    finally:
        await producer.stop()


async def test_broker_config_has_the_dev_limits(kafka: LocalKafka) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(kafka.admin_settings))
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")])
    finally:
        await admin.close()
    configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
    assert configs["message.max.bytes"] == str(16 * 1024 * 1024)
    assert configs["auto.create.topics.enable"] == "false"


def test_stop_leaves_no_java_process_and_no_temp_dir() -> None:
    broker = LocalKafka().start()
    pid, data_dir = broker.pid, broker.data_dir
    assert pid is not None and psutil.pid_exists(pid)
    broker.stop()
    assert not psutil.pid_exists(pid)
    assert not data_dir.exists()
    ours = [p for p in psutil.process_iter(["cmdline"]) if str(data_dir) in " ".join(p.info["cmdline"] or [])]
    assert ours == []
    broker.stop()  # idempotent


def test_the_config_holding_the_admin_password_is_owner_only(kafka: LocalKafka) -> None:
    assert (kafka.data_dir / "server.properties").stat().st_mode & 0o077 == 0


def test_given_data_dir_is_kept_and_reused_on_new_ports(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("kafka")
    with LocalKafka(data_dir, admin_password="first-password") as first:
        first_port = first.port
    meta = (data_dir / "kraft" / "meta.properties").read_text()
    with LocalKafka(data_dir, admin_password="first-password") as second:
        assert second.port != first_port
    assert (data_dir / "kraft" / "meta.properties").read_text() == meta


def test_storage_without_the_admin_credential_is_reset_with_a_warning(
    tmp_path_factory: pytest.TempPathFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    """Storage formatted before the broker required SASL has no super user (nobody could sign in), and storage
    formatted for another admin password would refuse ours: either is formatted afresh, and the user is told."""
    data_dir = tmp_path_factory.mktemp("kafka")
    with LocalKafka(data_dir, admin_password="first-password"):
        pass
    meta = (data_dir / "kraft" / "meta.properties").read_text()
    capfd.readouterr()

    with LocalKafka(data_dir, admin_password="second-password") as kafka:  # the credentials directory was replaced
        assert asyncio.run(_topic_names(kafka.admin_settings)) is not None
    assert "local Kafka data in" in capfd.readouterr().err
    assert (data_dir / "kraft" / "meta.properties").read_text() != meta

    marker = next(data_dir.glob("admin-scram*"))
    marker.unlink()  # what a data directory from before SASL looks like: formatted, but never with the credential
    with LocalKafka(data_dir, admin_password="second-password"):
        pass
    assert "was reset" in capfd.readouterr().err
    with LocalKafka(data_dir, admin_password="second-password"):  # now formatted with it: kept, silently
        pass
    assert "was reset" not in capfd.readouterr().err


async def _topic_names(kafka: KafkaSettings) -> list[str]:
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


def test_jars_resolve_into_a_fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGSTREAM_CACHE_DIR", str(tmp_path))
    try:
        lib = ensure_kafka_jars()
        assert lib == tmp_path / "kafka" / KAFKA_VERSION / "lib"
        jars = {jar.name for jar in lib.glob("*.jar")}
        assert {f"kafka_2.13-{KAFKA_VERSION}.jar", f"kafka-clients-{KAFKA_VERSION}.jar"} <= jars
        assert any(name.startswith("log4j-slf4j-impl-") for name in jars)
        started = time.monotonic()
        assert ensure_kafka_jars() == lib
        assert time.monotonic() - started < 0.5  # cached: no second mvn run
    finally:
        shutil.rmtree(tmp_path / "kafka", ignore_errors=True)  # ~45 MB; pytest keeps old tmp dirs


def test_a_broker_that_cannot_bind_fails_with_its_log_and_cleans_up() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = LocalKafka(port=taken.getsockname()[1], startup_timeout=60)
        with pytest.raises(DevstackError, match="exited with status") as info:
            broker.start()
    assert "Address already in use" in str(info.value)
    assert broker.pid is None
    assert broker._data_dir is None  # temporary directory removed
