"""Single-node KRaft broker settings, rendered for a local JVM or the apache/kafka image.

Pure functions only, so the rendering is unit-testable without starting anything.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final, NamedTuple

from ragstream_common.kafka.acls import ADMIN_USER

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


# Clients and the broker itself (inter-broker) authenticate with SCRAM-SHA-512 on this listener. The controller
# listener (no client uses it) authenticates too, with PLAIN against one static user: KRaft cannot use SCRAM there
# (the credentials live in the metadata it serves), and an unauthenticated one would need ANONYMOUS as super user.
CLIENT_LISTENER = "SASL_PLAINTEXT"
CLIENT_PROTOCOL: Final = "SASL_PLAINTEXT"
SASL_MECHANISM: Final = "SCRAM-SHA-512"
CONTROLLER_MECHANISM = "PLAIN"
SCRAM_ITERATIONS = 8192
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def single_node_settings(
    *,
    listen_host: str,
    advertised_host: str,
    broker_port: int,
    controller_port: int,
    admin_password: str,
    controller_host: str | None = None,
    log_dir: Path | None = None,
    extra_listeners: Mapping[str, ExtraListener] | None = None,
) -> dict[str, str]:
    """Broker+controller in one process with replication factors of 1, SASL/SCRAM and ACLs.

    A static voter set (controller.quorum.voters) is used rather than a dynamic quorum so
    the controller port may change between runs over the same data directory. The broker
    reaches its own controller at `controller_host` (default: `listen_host`).
    `extra_listeners` adds named SASL listeners that advertise another address (a proxy in front of them).
    Only ADMIN_USER is a super user; it is also the broker's own (inter-broker) principal, so
    `admin_password` must be the one its SCRAM credential was formatted with (`scram_credential_argument`).
    """
    voter_host = controller_host or listen_host
    extras = extra_listeners or {}
    extra_bind = "".join(f",{name}://{listen_host}:{x.port}" for name, x in extras.items())
    extra_advertised = "".join(f",{name}://{x.advertised}" for name, x in extras.items())
    extra_protocols = "".join(f",{name}:{CLIENT_PROTOCOL}" for name in extras)
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{voter_host}:{controller_port}",
        "listeners": f"{CLIENT_LISTENER}://{listen_host}:{broker_port},CONTROLLER://{listen_host}:{controller_port}"
        + extra_bind,
        "advertised.listeners": f"{CLIENT_LISTENER}://{advertised_host}:{broker_port}" + extra_advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": CLIENT_LISTENER,
        "listener.security.protocol.map": f"{CLIENT_LISTENER}:{CLIENT_PROTOCOL},CONTROLLER:SASL_PLAINTEXT"
        + extra_protocols,
        **_sasl_settings([CLIENT_LISTENER, *extras], admin_password),
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


def _sasl_settings(listeners: list[str], admin_password: str) -> dict[str, str]:
    """SCRAM-SHA-512 on every client listener, the StandardAuthorizer denying what no ACL allows."""
    _check_secret(admin_password)
    credential = f'username="{ADMIN_USER}" password="{admin_password}"'
    login = f"org.apache.kafka.common.security.scram.ScramLoginModule required {credential};"
    jaas = {f"listener.name.{name.lower()}.scram-sha-512.sasl.jaas.config": login for name in listeners}
    controller_login = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'{credential} user_{ADMIN_USER}="{admin_password}";'
    )
    return {
        "sasl.enabled.mechanisms": SASL_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SASL_MECHANISM,
        **jaas,
        "sasl.mechanism.controller.protocol": CONTROLLER_MECHANISM,
        "listener.name.controller.sasl.enabled.mechanisms": CONTROLLER_MECHANISM,
        "listener.name.controller.plain.sasl.jaas.config": controller_login,
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN_USER}",
    }


def scram_credential_argument(admin_password: str) -> str:
    """`kafka-storage format --add-scram` value that creates ADMIN_USER's credential with the cluster."""
    _check_secret(admin_password)
    return f"{SASL_MECHANISM}=[name={ADMIN_USER},password={admin_password},iterations={SCRAM_ITERATIONS}]"


def _check_secret(password: str) -> None:
    # It is quoted into JAAS and storage-tool syntax: generated secrets are URL-safe, so refuse anything else.
    if not password or not all(c.isalnum() or c in "-_." for c in password):
        raise ValueError("the Kafka admin password must be non-empty and URL-safe ([A-Za-z0-9._-])")


def render_properties(settings: Mapping[str, str]) -> str:
    """server.properties text; values here never need Java-properties escaping."""
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def as_docker_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The apache/kafka image maps KAFKA_FOO_BAR env vars onto foo.bar properties ('_' in a name is written
    '__', '-' is written '___'), e.g. for a compose file. With SASL listeners the image's entrypoint also wants
    KAFKA_OPTS naming a JAAS file, and it formats storage without SCRAM credentials: containers.py runs the
    broker with the rendered properties instead."""
    return {"KAFKA_" + _docker_name(key): value for key, value in settings.items()}


def _docker_name(key: str) -> str:
    return key.replace("_", "__").replace("-", "___").replace(".", "_").upper()


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
