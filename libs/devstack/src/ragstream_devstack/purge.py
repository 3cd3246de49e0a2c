"""`python -m ragstream_devstack.purge` (`make purge`): the retention job, once, on the system `make run` serves.

The job is the gateway's own (`ragstream_gateway.purge`, the CronJob on Kubernetes): here it logs in as the same
role, the gateway's admin login (`ragstream_gateway_admin`), with the password `make run` keeps in
$RAGSTREAM_DATA_DIR/credentials, and uses the same BLOB_* settings as the gateway (the Postgres blob store unless
BLOB_STORE says otherwise). PURGE_DATABASE_URL or GATEWAY_ADMIN_DATABASE_URL, when set, name another database.

`--grace S` overrides the document grace period and `--tenant-grace S` the tenant one (seconds; `make purge
GRACE=0 TENANT_GRACE=0`). Zero purges what was deleted a moment ago: for trying the deletion path locally, never
for a live system, where the grace is what keeps events still in flight working (docs/data-governance.md).

`--find TEXT` then looks for TEXT everywhere the database and the Postgres blob store keep content (every column
of every row of every table, the blob contents included), as the administrator, and prints where it is still
found; it exits 1 when it is found anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from typing import Any

import psycopg
from psycopg import sql
from pydantic import SecretStr

from ragstream_devstack.processes import DevstackError

ADMIN_IDENTITY = "gateway-admin"
_URL_VARIABLES = ("PURGE_DATABASE_URL", "GATEWAY_ADMIN_DATABASE_URL")
_COLUMNS = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2, a.attnum
"""


def purge_database_url() -> str:
    """The retention job's login: the environment's, else `make run`'s gateway admin login and stored password."""
    for variable in _URL_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    from ragstream_devstack.backup_cli import system_database_url
    from ragstream_devstack.credentials import LocalCredentials
    from ragstream_devstack.pg_identities import login_url
    from ragstream_devstack.run_settings import RunSettings

    credentials = LocalCredentials(RunSettings().data_dir / "credentials")
    if credentials.stored(f"postgres-{ADMIN_IDENTITY}") is None:
        raise DevstackError(
            f"no password for the gateway's admin login in {credentials.directory}: start `make run` first (or set"
            " PURGE_DATABASE_URL)"
        )
    return login_url(system_database_url(), ADMIN_IDENTITY, credentials=credentials)


def run_purge_once(grace_s: float | None, tenant_grace_s: float | None) -> dict[str, Any]:
    """One run of the retention job with the given grace periods (None: the job's defaults); what it purged."""
    from ragstream_gateway.purge import PurgeSettings, purge_once

    overrides: dict[str, Any] = {"database_url": SecretStr(purge_database_url())}
    if grace_s is not None:
        overrides["document_grace_s"] = grace_s
    if tenant_grace_s is not None:
        overrides["tenant_grace_s"] = tenant_grace_s
    settings = PurgeSettings(**overrides)
    report = asyncio.run(purge_once(settings))
    return {
        "skipped": report.skipped,
        "document_grace_s": settings.document_grace_s,
        "tenant_grace_s": settings.tenant_grace_s,
        "documents_purged": [f"{tenant}/{document}" for tenant, document in report.documents_purged],
        "tenants_purged": list(report.tenants_purged),
        "deleted": dict(report.deleted),
    }


def find_text(database_url: str, text: str) -> Counter[str]:
    """`schema.table.column` -> rows holding `text` (case-insensitive in text, exact bytes in bytea), read as
    `database_url`'s user (the administrator: row-level security admits every tenant)."""
    found: Counter[str] = Counter()
    with psycopg.connect(database_url) as connection:
        for schema, table, column, type_name in connection.execute(_COLUMNS).fetchall():
            if type_name == "bytea":
                condition = sql.SQL("position(convert_to({needle}, 'UTF8') in {column}) > 0")
            else:
                condition = sql.SQL("strpos(lower({column}::text), lower({needle})) > 0")
            query = sql.SQL("SELECT count(*) FROM {table} WHERE {condition}").format(
                table=sql.Identifier(schema, table),
                condition=condition.format(column=sql.Identifier(column), needle=sql.Literal(text)),
            )
            row = connection.execute(query).fetchone()
            if row and row[0]:
                found[f"{schema}.{table}.{column}"] = int(row[0])
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ragstream_devstack.purge", description=__doc__.split("\n")[0])
    parser.add_argument("--grace", type=float, default=None, help="document grace period in seconds (default 86400)")
    parser.add_argument("--tenant-grace", type=float, default=None, help="tenant grace period (default 604800)")
    parser.add_argument("--find", default=None, help="afterwards, report where this text is still stored")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        report = run_purge_once(args.grace, args.tenant_grace)
        if report["skipped"]:
            print("purge skipped: another run holds the lock", flush=True)
        print(
            f"purged {len(report['documents_purged'])} document(s) {report['documents_purged']},"
            f" {len(report['tenants_purged'])} tenant(s) {report['tenants_purged']}; deleted {report['deleted']}"
            f" (grace: documents {report['document_grace_s']:g}s, tenants {report['tenant_grace_s']:g}s)",
            flush=True,
        )
        if args.find is None:
            return 0
        if os.environ.get("BLOB_STORE", "postgres") != "postgres":
            print("note: blobs are in an object store; --find searched the database only", flush=True)
        from ragstream_devstack.backup_cli import system_database_url

        found = find_text(system_database_url(), args.find)
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for place, rows in sorted(found.items()):
        print(f"  still found in {place}: {rows} row(s)")
    print(f"{args.find!r}: {'found' if found else 'not found'} in the database and the Postgres blob store")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
