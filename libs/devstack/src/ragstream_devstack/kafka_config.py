"""Single-node KRaft broker settings, rendered for a local JVM or the apache/kafka image.

Pure functions only, so the rendering is unit-testable without starting anything.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"
# Kafka 4.x distributions ship slf4j 1.7 + this log4j2 binding; keep them in step with KAFKA_VERSION.
LOG4J_VERSION = "2.24.3"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
NODE_ID = 1


class ExtraListener(NamedTuple):
    """A broker listener bound to `port` whose metadata names `advertised` ("host:port"), e.g. a TCP proxy's
    address, so that clients bootstrapping through the proxy keep talking through it."""

    port: int
    advertised: str


def single_node_settings(
    *,
    listen_host: str,
    advertised_host: str,
    broker_port: int,
    controller_port: int,
    controller_host: str | None = None,
    log_dir: Path | None = None,
    extra_listeners: Mapping[str, ExtraListener] | None = None,
) -> dict[str, str]:
    """Broker+controller in one process with replication factors of 1.

    A static voter set (controller.quorum.voters) is used rather than a dynamic quorum so
    the controller port may change between runs over the same data directory. The broker
    reaches its own controller at `controller_host` (default: `listen_host`).
    `extra_listeners` adds named PLAINTEXT listeners that advertise another address (a proxy in front of them).
    """
    voter_host = controller_host or listen_host
    extras = extra_listeners or {}
    extra_bind = "".join(f",{name}://{listen_host}:{x.port}" for name, x in extras.items())
    extra_advertised = "".join(f",{name}://{x.advertised}" for name, x in extras.items())
    extra_protocols = "".join(f",{name}:PLAINTEXT" for name in extras)
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{voter_host}:{controller_port}",
        "listeners": f"PLAINTEXT://{listen_host}:{broker_port},CONTROLLER://{listen_host}:{controller_port}"
        + extra_bind,
        "advertised.listeners": f"PLAINTEXT://{advertised_host}:{broker_port}" + extra_advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" + extra_protocols,
        "num.partitions": "1",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "message.max.bytes": str(MAX_MESSAGE_BYTES),
        "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
    }
    if log_dir is not None:
        settings["log.dirs"] = str(log_dir)
    return settings


def render_properties(settings: Mapping[str, str]) -> str:
    """server.properties text; values here never need Java-properties escaping."""
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def as_docker_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The apache/kafka image maps KAFKA_FOO_BAR env vars onto foo.bar properties."""
    return {"KAFKA_" + key.upper().replace(".", "_"): value for key, value in settings.items()}


def render_log4j2(log_file: Path) -> str:
    """log4j2 properties config: broker logs go to one file, not to our stdout."""
    return (
        "status = warn\n"
        "shutdownHook = disable\n"
        "appender.file.type = File\n"
        "appender.file.name = FILE\n"
        f"appender.file.fileName = {log_file}\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.file.ref = FILE\n"
        # The state-change and request loggers are chatty at INFO and useless here.
        "logger.statechange.name = state.change.logger\n"
        "logger.statechange.level = WARN\n"
        "logger.request.name = kafka.request.logger\n"
        "logger.request.level = WARN\n"
    )


def new_cluster_id() -> str:
    """Same shape as `kafka-storage random-uuid`: URL-safe base64 of 16 random bytes, never starting with '-'
    (Kafka's own generator skips those too; the storage tool's argument parser would read one as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def parse_java_major(version_output: str) -> int | None:
    """Major version from `java -version` output ('1.8.0_x' -> 8, '17.0.15' -> 17)."""
    for line in version_output.splitlines():
        if "version" not in line or '"' not in line:
            continue
        version = line.split('"')[1]
        parts = version.split(".")
        head = parts[1] if parts[0] == "1" and len(parts) > 1 else parts[0]
        digits = "".join(ch for ch in head if ch.isdigit())
        return int(digits) if digits else None
    return None
