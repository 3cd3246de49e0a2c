"""`make run`: Kafka, Postgres, Redis, migrations, topics and every registered service, supervised until Ctrl-C.

Every process (Kafka and Postgres too) runs under our Supervisor, which restarts any that exits with a back-off of
1 s doubling to 30 s and, on Ctrl-C or SIGTERM, stops the services, then Kafka, then Postgres. Settings come from
the environment (run_settings.RunSettings): KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, when set, are used instead of
the local servers. Data persists in `var/` (RAGSTREAM_DATA_DIR), so documents survive a restart. Redis (the
gateway's rate limits and quota counters; REDIS_URL instead, RAGSTREAM_REDIS_PORT, default 6380) keeps nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.identities import provision_identities
from ragstream_devstack.kafka import LocalKafka
from ragstream_devstack.kafka_identities import admin_kafka_settings, admin_password
from ragstream_devstack.postgres import LocalPostgres
from ragstream_devstack.processes import ProcessSpec
from ragstream_devstack.providers import DATABASE_ENV, KAFKA_ENV
from ragstream_devstack.redis import REDIS_ENV, LocalRedis
from ragstream_devstack.run_settings import RunSettings
from ragstream_devstack.supervisor import Supervisor
from ragstream_devstack.system import (
    SERVICE_NAMES,
    SystemPorts,
    public_base_url,
    service_command,
    service_env,
    wait_until_serving,
)

SERVICE_STOP_GRACE_S = 20.0
# Not 6379: installing Debian's redis-server starts a system Redis there.
DEFAULT_REDIS_PORT = 6380


def prepare_platform(kafka: str, database_url: str, credentials: LocalCredentials) -> None:
    """The one-shot steps before services start: schema migrations, topic bootstrap, service identities."""
    from ragstream_common.kafka.bootstrap import ensure_topics
    from ragstream_common.migrate import apply_migrations

    applied = apply_migrations(database_url)
    # Topics are created as the broker's super user; services then sign in as themselves (kafka_identities).
    created = asyncio.run(ensure_topics(admin_kafka_settings(credentials, kafka)))
    provision_identities(credentials=credentials, kafka=kafka, database_url=database_url)
    print(f"migrations applied: {applied or 'none pending'}; topics created: {len(created)}", flush=True)


def _client_hints(ports: SystemPorts, access: dict[str, str]) -> str:
    """The two first clients of the API: the web console and the command line, with the dev key to use."""
    key = access["GATEWAY_DEV_API_KEY"]
    return (
        f"  console    http://127.0.0.1:{ports.http}/ui  (sign in with API key {key!r})\n"
        f"  CLI        export RAGSTREAM_API_KEY={key}; uv run ragstream ingest ./docs;"
        ' uv run ragstream ask "..."\n'
    )


def _print_health_when_ready(ports: SystemPorts, access: dict[str, str]) -> None:
    addresses = {name: f"127.0.0.1:{ports.grpc[name]}" for name in SERVICE_NAMES}
    try:
        statuses = asyncio.run(wait_until_serving(addresses, timeout_s=240))
    except Exception as exc:
        print(f"\n!! not every service became healthy: {exc}\n", flush=True)
        return
    rows = "\n".join(f"  {name:<10} grpc 127.0.0.1:{ports.grpc[name]:<6} {status}" for name, status in statuses.items())
    print(
        f"\nRagstream is up.\n  gateway    http://127.0.0.1:{ports.http}  (API docs: /docs, /redoc; health: /healthz)\n"
        f"{_client_hints(ports, access)}{rows}\n"
        f"  connectors: POST /v1/connectors (scope connectors:admin); webhooks at"
        f" {public_base_url(ports)}/v1/webhooks/<connector_id> (docs/connectors.md)\n"
        "  usage: GET /v1/usage?from=&to=&granularity=minute|hour|day and GET /v1/usage/cost (tenant key;"
        " counted by metering within a minute, docs/observability.md)\n"
        f"  tenant {access['GATEWAY_DEV_TENANT']!r}, API key {access['GATEWAY_DEV_API_KEY']!r},"
        f" admin token {access['GATEWAY_ADMIN_TOKEN']!r}\n"
        "  Kafka and Postgres require each service's own credentials (var/credentials; docs/security.md);\n"
        "  gRPC calls need a token from POST /v1/auth/token; a tenant's Kafka credentials come with\n"
        "  POST /v1/admin/tenants or POST /v1/admin/tenants/{id}/kafka-credentials.\n"
        "Processes that exit are restarted (back-off 1 s doubling to 30 s). Ctrl-C stops everything.\n",
        flush=True,
    )


def local_access() -> dict[str, str]:
    """A tenant and API key for trying the system locally, and an admin token (each overridable)."""
    return RunSettings().access()


def _start_kafka(supervisor: Supervisor, data_dir: Path, settings: RunSettings, credentials: LocalCredentials) -> str:
    kafka = LocalKafka(
        data_dir / "kafka",
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        admin_password=admin_password(credentials),
    )
    supervisor.start(kafka.process_spec())
    return kafka.bootstrap_servers


def _start_postgres(supervisor: Supervisor, data_dir: Path, settings: RunSettings) -> str:
    postgres = LocalPostgres(data_dir / "postgres", port=settings.postgres_port)
    supervisor.start(postgres.process_spec())
    postgres.ensure_database()
    return postgres.database_url


def _start_redis(supervisor: Supervisor, data_dir: Path, credentials: LocalCredentials) -> str:
    port = int(os.environ.get("RAGSTREAM_REDIS_PORT") or DEFAULT_REDIS_PORT)
    redis = LocalRedis(data_dir / "redis", password=credentials.secret("redis"), port=port)
    supervisor.start(redis.process_spec())
    return redis.url


def service_spec(
    name: str,
    *,
    kafka: str,
    database_url: str,
    ports: SystemPorts,
    credentials: LocalCredentials,
    access: dict[str, str],
    redis_url: str | None = None,
) -> ProcessSpec:
    """One service as the supervisor runs it: the same command and environment as the e2e tests use."""
    env = service_env(
        name,
        kafka=kafka,
        database_url=database_url,
        ports=ports,
        credentials=credentials,
        extra=access,
        redis_url=redis_url,
    )
    return ProcessSpec(name, tuple(service_command(name)), env=env, grace_s=SERVICE_STOP_GRACE_S)


def run(data_dir: Path, settings: RunSettings | None = None) -> int:
    settings = settings or RunSettings(data_dir=data_dir)
    ports = settings.system_ports()
    access = settings.access()
    credentials = LocalCredentials(data_dir / "credentials")
    # Until the supervisor serves, SIGTERM aborts the startup as Ctrl-C does; leaving the `with` stops what started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with Supervisor(backoff=settings.backoff()) as supervisor:
            # Postgres first, so the reverse order stops the services, then Kafka, then Postgres.
            database_url = settings.external_database_url or _start_postgres(supervisor, data_dir, settings)
            kafka = settings.external_kafka or _start_kafka(supervisor, data_dir, settings, credentials)
            redis_url = os.environ.get(REDIS_ENV) or _start_redis(supervisor, data_dir, credentials)
            print(f"{KAFKA_ENV}={kafka}\n{DATABASE_ENV}={database_url}", flush=True)
            prepare_platform(kafka, database_url, credentials)
            for name in SERVICE_NAMES:
                spec = service_spec(
                    name,
                    kafka=kafka,
                    database_url=database_url,
                    ports=ports,
                    credentials=credentials,
                    access=access,
                    redis_url=redis_url,
                )
                supervisor.start(spec)
            threading.Thread(target=_print_health_when_ready, args=(ports, access), daemon=True).start()
            supervisor.serve()
    except KeyboardInterrupt:
        pass
    print("Ragstream stopped.", flush=True)
    return 0


def main() -> int:
    settings = RunSettings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return run(data_dir, settings)


if __name__ == "__main__":
    sys.exit(main())
