"""`python -m ragstream_gateway.audit_verify --tenant ID [--tenant ID...] | --all`: verify audit hash chains offline.

Connects with DATABASE_URL: a login that may read `audit_log` and `audit_chain_heads` (the gateway's admin login,
`ragstream_gateway_admin`, one tenant at a time; the database administrator for `--all`). No gateway needs to
run. Prints one JSON object per tenant (`tenant_id`, `valid`, `entries`, `first_bad_id`, `first_bad_seq`,
`problem`) and exits 0 when every chain verifies, 1 when one does not, 2 when it could not check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from ragstream_common.config import DEFAULT_DATABASE_URL, load_settings
from ragstream_common.db import create_pool

from ragstream_gateway.adapters.audit_pg import PostgresAuditLog
from ragstream_gateway.audit_chain import Verification, verify_chain


class VerifySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL"))


async def verify_tenants(database_url: str, tenants: list[str] | None) -> dict[str, Verification]:
    """Each tenant's verification; every tenant with a chain when `tenants` is None."""
    pool = create_pool(database_url, max_size=1, name="audit-verify")
    await pool.open(wait=True, timeout=30)
    try:
        if tenants is None:
            async with pool.connection() as connection:
                cursor = await connection.execute("SELECT tenant_id FROM audit_chain_heads ORDER BY tenant_id")
                tenants = [row[0] for row in await cursor.fetchall()]
        log = PostgresAuditLog(pool)
        return {tenant: await verify_chain(log, tenant) for tenant in tenants}
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragstream_gateway.audit_verify", description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tenant", action="append", help="a tenant id (repeatable)")
    which.add_argument("--all", action="store_true", help="every tenant with an audit chain")
    args = parser.parse_args(argv)
    settings = load_settings(VerifySettings)
    try:
        results = asyncio.run(verify_tenants(settings.database_url, None if args.all else args.tenant))
    except Exception as exc:
        print(f"audit verification failed: {exc!r}", file=sys.stderr)
        return 2
    for tenant_id, result in results.items():
        print(json.dumps({"tenant_id": tenant_id, **asdict(result)}))
    return 0 if all(result.valid for result in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
