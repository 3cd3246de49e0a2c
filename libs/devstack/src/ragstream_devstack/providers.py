"""Pick where Kafka and Postgres come from: env, Docker (testcontainers) or local launchers.

Order: KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL if set (nothing is started; the other KAFKA_* variables say how to
authenticate, as the broker's administrator); else testcontainers if a Docker engine answers; else LocalKafka /
LocalPostgres. Kafka we start requires SASL/SCRAM: its super user's password is the `kafka-admin` local secret.
RAGSTREAM_DEVSTACK_BACKEND=local|docker skips the Docker probe and forces one of the two.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Literal

from ragstream_common.kafka_settings import KafkaSettings

from ragstream_devstack.containers import docker_available, kafka_container, postgres_container
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.kafka import LocalKafka
from ragstream_devstack.kafka_identities import admin_kafka_settings, admin_password
from ragstream_devstack.postgres import LocalPostgres
from ragstream_devstack.processes import DevstackError

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
DATABASE_ENV = "DATABASE_URL"
BACKEND_ENV = "RAGSTREAM_DEVSTACK_BACKEND"

Backend = Literal["docker", "local"]


@functools.cache
def _probe_backend() -> Backend:
    return "docker" if docker_available() else "local"


def choose_backend(*, allow_docker: bool = True) -> Backend:
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower()
    if choice == "local":
        return "local"
    if choice == "docker":
        return "docker"
    if choice != "auto":
        raise DevstackError(f"{BACKEND_ENV} must be auto, docker or local, not {choice!r}")
    return _probe_backend() if allow_docker else "local"


@contextlib.contextmanager
def provide_kafka(credentials: LocalCredentials, *, allow_docker: bool = True) -> Iterator[KafkaSettings]:
    """Yields how the broker's super user reaches Kafka (bootstrap servers and SASL settings) for as long as the
    context is open."""
    external = os.environ.get(KAFKA_ENV)
    if external:
        yield admin_kafka_settings(credentials, external)
    elif choose_backend(allow_docker=allow_docker) == "docker":
        with kafka_container(admin_password(credentials)) as bootstrap_servers:
            yield admin_kafka_settings(credentials, bootstrap_servers)
    else:
        with LocalKafka(admin_password=admin_password(credentials)) as kafka:
            yield kafka.admin_settings


@contextlib.contextmanager
def provide_postgres(*, allow_docker: bool = True) -> Iterator[str]:
    """Yields a postgresql:// URL (pgvector available) for as long as the context is open."""
    external = os.environ.get(DATABASE_ENV)
    if external:
        yield external
    elif choose_backend(allow_docker=allow_docker) == "docker":
        with postgres_container() as url:
            yield url
    else:
        with LocalPostgres() as postgres:
            yield postgres.database_url
