"""A network partition between one service and its database, through a TCP proxy (tests/chaos/proxy.py).

Like the Postgres crash, this needs the consumer to retry an unreachable dependency without limit (issue 9,
deliverable 1) once the partition outlasts the bounded retries; here the hung connections are only reset when
the partition heals, so the handler in flight waits it out and its retry finds the database back.
"""

from __future__ import annotations

import asyncio

import pytest

from chaos.proxy import TcpProxy
from chaos.scenario import assert_clean, ingest_with_fault
from chaos.system import ChaosSystem

pytestmark = pytest.mark.chaos

PARTITION_S = 15.0


@pytest.mark.timeout(900)
async def test_retrieve_partitioned_from_postgres_mid_ingest(system: ChaosSystem) -> None:
    """retrieve (the writer of the chunk rows) loses Postgres for 15 s without a connection error: queries hang."""
    proxy = await TcpProxy("127.0.0.1", system.postgres_port).start()
    direct = f":{system.postgres_port}/"
    system.env_overrides["retrieve"] = {"DATABASE_URL": system.database_url.replace(direct, f":{proxy.port}/")}
    await asyncio.to_thread(system.stop, "retrieve")
    await system.restart("retrieve")

    async def partition(system: ChaosSystem) -> None:
        proxy.partition()
        await asyncio.sleep(PARTITION_S)
        proxy.heal()

    try:
        report = await ingest_with_fault(system, "partition-retrieve-postgres", partition)
    finally:
        del system.env_overrides["retrieve"]
        # Off the loop: the proxy in this loop carries retrieve's last commits while it shuts down.
        await asyncio.to_thread(system.stop, "retrieve")
        await proxy.stop()
    assert_clean(report, system)
