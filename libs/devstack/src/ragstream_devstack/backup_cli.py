"""The `backup`, `restore` and `dr-drill` subcommands of `python -m ragstream_devstack`.

By default they act on the system `make run` serves: its Postgres (DATABASE_URL, else 127.0.0.1 on
RAGSTREAM_POSTGRES_PORT) and its broker as the super user (KAFKA_BOOTSTRAP_SERVERS with the KAFKA_* variables,
else 127.0.0.1 on RAGSTREAM_KAFKA_PORT with the admin password kept in $RAGSTREAM_DATA_DIR/credentials).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path

from ragstream_common.kafka_settings import KafkaSettings

from ragstream_devstack.processes import DevstackError

RESTORED_PREFIX = "ragstream_restored_"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser("backup", help="back up a running system (Postgres, Kafka configs and offsets)")
    backup.add_argument("--to", type=Path, required=True, dest="directory", help="a new, empty directory")
    backup.add_argument("--database-url", default=None, help="the administrator's URL (default: make run's)")
    backup.add_argument("--no-kafka", action="store_true", help="leave the broker out")
    backup.add_argument("--queries", type=int, default=8, help="fixed searches recorded for verification")
    restore = commands.add_parser("restore", help="restore a backup into a new database, verify it, print the RTO")
    restore.add_argument("--from", type=Path, required=True, dest="directory")
    restore.add_argument(
        "--database-url",
        default=None,
        help=f"the new database, as the administrator's URL (default: make run's server, {RESTORED_PREFIX}<time>)",
    )
    restore.add_argument("--no-kafka", action="store_true", help="leave topic configs and group offsets alone")
    restore.add_argument("--group", action="append", default=None, help="restore only these groups' offsets")
    drill = commands.add_parser("dr-drill", help="index N documents, back up, restore, replay; print the RTOs")
    drill.add_argument("--documents", type=int, default=200)
    drill.add_argument("--no-replay", action="store_true", help="skip the rebuild by replaying the documents topic")
    drill.add_argument("--report", type=Path, default=None, help="also write the figures here as JSON")


def run_command(args: argparse.Namespace) -> int:
    if args.command == "backup":
        return _backup(args)
    if args.command == "restore":
        return _restore(args)
    from ragstream_devstack.drill import run_drill

    figures = run_drill(args.documents, replay=not args.no_replay)
    if args.report:
        args.report.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures), flush=True)
    return 0 if figures["passed"] else 1


def _backup(args: argparse.Namespace) -> int:
    from ragstream_devstack.backup import summary, take_backup

    database_url = args.database_url or system_database_url()
    kafka = None if args.no_kafka else system_kafka_admin()
    blob_store = os.environ.get("BLOB_STORE", "postgres")
    result = take_backup(database_url, args.directory, kafka=kafka, queries=args.queries, blob_store=blob_store)
    print(summary(result), flush=True)
    return 0


def _restore(args: argparse.Namespace) -> int:
    from ragstream_devstack.restore import restore_backup, with_database

    target = args.database_url or with_database(
        system_database_url(), RESTORED_PREFIX + datetime.now().strftime("%Y%m%d_%H%M%S")
    )
    kafka = None if args.no_kafka else system_kafka_admin()
    result = restore_backup(args.directory, target, kafka=kafka, kafka_groups=args.group)
    print(result.summary(), flush=True)
    return 0 if result.verified else 1


def system_database_url() -> str:
    from ragstream_devstack.postgres import DEFAULT_DATABASE, SUPERUSER
    from ragstream_devstack.run_settings import RunSettings

    settings = RunSettings()
    if settings.external_database_url:
        return settings.external_database_url
    return f"postgresql://{SUPERUSER}@127.0.0.1:{settings.postgres_port}/{DEFAULT_DATABASE}"


def system_kafka_admin() -> KafkaSettings:
    """The running system's broker as its super user; the stored password is never made up here."""
    from pydantic import SecretStr
    from ragstream_common.kafka.acls import ADMIN_USER

    from ragstream_devstack.credentials import LocalCredentials
    from ragstream_devstack.kafka_config import CLIENT_PROTOCOL, SASL_MECHANISM
    from ragstream_devstack.kafka_identities import ADMIN_SECRET
    from ragstream_devstack.run_settings import RunSettings

    settings = RunSettings()
    if settings.external_kafka:
        return KafkaSettings()
    password = LocalCredentials(settings.data_dir / "credentials").stored(ADMIN_SECRET)
    if password is None:
        raise DevstackError(
            f"no Kafka admin password in {settings.data_dir / 'credentials'}: is `make run` using another"
            " RAGSTREAM_DATA_DIR? (or pass --no-kafka)"
        )
    return KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{settings.kafka_port}",
        security_protocol=CLIENT_PROTOCOL,
        sasl_mechanism=SASL_MECHANISM,
        sasl_username=ADMIN_USER,
        sasl_password=SecretStr(password),
    )
