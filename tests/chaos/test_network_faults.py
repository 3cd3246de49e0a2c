"""Network partitions between one worker and a dependency, through a TCP proxy (tests/chaos/proxy.py).

Like the crashes, these need the consumer to retry an unreachable dependency without limit (issue 9,
deliverable 1) once the partition outlasts the bounded retries. A partition is a blackhole, not a refusal: the
hung connections are reset only when it heals, so clients find out through their own timeouts.
"""

from __future__ import annotations

import asyncio

import pytest
from ragstream_devstack.pg_identities import login_url

from chaos.proxy import TcpProxy
from chaos.scenario import Fault, assert_clean, ingest_with_fault
from chaos.system import ChaosSystem

pytestmark = pytest.mark.chaos

POSTGRES_PARTITION_S = 15.0
# "Healed after a minute": longer than the consumer's session timeout, so the broker evicts the cut-off member
# and its partitions wait unassigned (no other replica) until it rejoins.
BROKER_PARTITION_S = 60.0


def _blackhole_for(proxy: TcpProxy, seconds: float) -> Fault:
    async def partition(system: ChaosSystem) -> None:
        proxy.partition()
        await asyncio.sleep(seconds)
        proxy.heal()

    return partition


async def _run_behind_proxy(system: ChaosSystem, name: str, env: dict[str, str]) -> None:
    system.env_overrides[name] = env
    await asyncio.to_thread(system.stop, name)
    await system.restart(name)


async def _restore(system: ChaosSystem, name: str, proxy: TcpProxy) -> None:
    del system.env_overrides[name]
    # Off the loop: the proxy in this loop carries the worker's last commits while it shuts down.
    await asyncio.to_thread(system.stop, name)
    await proxy.stop()


@pytest.mark.timeout(900)
async def test_retrieve_partitioned_from_postgres_mid_ingest(system: ChaosSystem) -> None:
    """retrieve (the writer of the chunk rows) loses Postgres for 15 s without a connection error: queries hang."""
    proxy = await TcpProxy("127.0.0.1", system.postgres_port).start()
    # retrieve's own login, through the proxy.
    own_login = login_url(system.database_url, "retrieve", credentials=system.credentials)
    database_url = own_login.replace(f":{system.postgres_port}/", f":{proxy.port}/")
    await _run_behind_proxy(system, "retrieve", {"DATABASE_URL": database_url})
    try:
        report = await ingest_with_fault(
            system, "partition-retrieve-postgres", _blackhole_for(proxy, POSTGRES_PARTITION_S)
        )
    finally:
        await _restore(system, "retrieve", proxy)
    assert_clean(report, system)


@pytest.mark.timeout(900)
async def test_embed_partitioned_from_the_broker_mid_ingest(system: ChaosSystem) -> None:
    """embed loses the broker for a minute: its fetches, produces and commits hang, the group coordinator evicts
    it, and its in-flight batch must neither be lost nor land twice once it rejoins.

    embed bootstraps through the proxy to a broker listener that advertises the proxy's port, so every
    connection it opens (bootstrap, partition leader, group coordinator) goes through the proxy."""
    listener_port, proxy_port = system.partition_listener
    proxy = await TcpProxy("127.0.0.1", listener_port, listen_port=proxy_port).start()
    await _run_behind_proxy(system, "embed", {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{proxy_port}"})
    try:
        report = await ingest_with_fault(system, "partition-embed-broker", _blackhole_for(proxy, BROKER_PARTITION_S))
    finally:
        await _restore(system, "embed", proxy)
    assert_clean(report, system)
