"""`make run`: Kafka, Postgres, migrations, topics and all five services under honcho until Ctrl-C.

KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, when set, are used instead of the local servers. Data persists in
`var/` (RAGSTREAM_DATA_DIR), so documents survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
from pathlib import Path

from honcho.manager import Manager

from ragstream_devstack.kafka import LocalKafka
from ragstream_devstack.postgres import LocalPostgres
from ragstream_devstack.providers import DATABASE_ENV, KAFKA_ENV
from ragstream_devstack.system import SERVICE_NAMES, SystemPorts, service_command, service_env, wait_until_serving


def prepare_platform(kafka: str, database_url: str) -> None:
    """The one-shot steps before services start: schema migrations and topic bootstrap."""
    from ragstream_common.kafka.bootstrap import ensure_topics
    from ragstream_common.kafka_settings import KafkaSettings
    from ragstream_common.migrate import apply_migrations

    applied = apply_migrations(database_url)
    created = asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=kafka)))
    print(f"migrations applied: {applied or 'none pending'}; topics created: {len(created)}", flush=True)


def _print_health_when_ready(ports: SystemPorts, access: dict[str, str]) -> None:
    addresses = {name: f"127.0.0.1:{ports.grpc[name]}" for name in SERVICE_NAMES}
    try:
        statuses = asyncio.run(wait_until_serving(addresses, timeout_s=240))
    except Exception as exc:
        print(f"\n!! not every service became healthy: {exc}\n", flush=True)
        return
    rows = "\n".join(f"  {name:<9} grpc 127.0.0.1:{ports.grpc[name]:<6} {status}" for name, status in statuses.items())
    print(
        f"\nRagstream is up.\n  gateway   http://127.0.0.1:{ports.http}  (docs: /docs, health: /healthz)\n{rows}\n"
        f"  tenant {access['GATEWAY_DEV_TENANT']!r}, API key {access['GATEWAY_DEV_API_KEY']!r},"
        f" admin token {access['GATEWAY_ADMIN_TOKEN']!r}\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )


def local_access() -> dict[str, str]:
    """A tenant and API key for trying the system locally, and an admin token (each overridable)."""
    return {
        "GATEWAY_DEV_TENANT": os.environ.get("GATEWAY_DEV_TENANT", "default"),
        "GATEWAY_DEV_API_KEY": os.environ.get("GATEWAY_DEV_API_KEY", "dev-key"),
        "GATEWAY_ADMIN_TOKEN": os.environ.get("GATEWAY_ADMIN_TOKEN", secrets.token_urlsafe(24)),
    }


def run(data_dir: Path) -> int:
    ports = SystemPorts.defaults()
    with contextlib.ExitStack() as stack:
        kafka = (
            os.environ.get(KAFKA_ENV)
            or stack.enter_context(
                LocalKafka(data_dir / "kafka", port=int(os.environ.get("RAGSTREAM_KAFKA_PORT", 9092)))
            ).bootstrap_servers
        )
        database_url = (
            os.environ.get(DATABASE_ENV)
            or stack.enter_context(
                LocalPostgres(data_dir / "postgres", port=int(os.environ.get("RAGSTREAM_POSTGRES_PORT", 5432)))
            ).database_url
        )
        print(f"{KAFKA_ENV}={kafka}\n{DATABASE_ENV}={database_url}", flush=True)
        prepare_platform(kafka, database_url)
        manager = Manager()
        access = local_access()
        for name in SERVICE_NAMES:
            env = service_env(name, kafka=kafka, database_url=database_url, ports=ports, extra=access)
            # exec: the service itself, not a shell around it, receives honcho's signals.
            manager.add_process(name, "exec " + " ".join(service_command(name)), env=env)
        threading.Thread(target=_print_health_when_ready, args=(ports, access), daemon=True).start()
        try:
            manager.loop()
        finally:
            # Also when the loop itself failed (e.g. its output pipe closed): leave no service behind.
            manager.terminate()
        return 0 if manager.returncode in (0, None, 130, 143) else int(manager.returncode)
    return 0


def main() -> int:
    data_dir = Path(os.environ.get("RAGSTREAM_DATA_DIR", "var")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return run(data_dir)


if __name__ == "__main__":
    sys.exit(main())
