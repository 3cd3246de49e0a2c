"""Kafka and Postgres failing mid-ingest.

Both scenarios need the consumer to treat an unreachable dependency as transient: retry without limit and without
committing (issue 9, deliverable 1). Until that lands, the handlers give up after three attempts and dead-letter
good events, which the audit reports as `dead_lettered_good` and lost documents.
"""

from __future__ import annotations

import asyncio

import pytest

from chaos.scenario import assert_clean, ingest_with_fault
from chaos.system import ChaosSystem

pytestmark = pytest.mark.chaos

BROKER_DOWN_S = 10.0
# The bar: longer than any bounded retry, so only retry-until-back keeps the documents.
POSTGRES_DOWN_S = 20.0


async def _broker_crash(system: ChaosSystem) -> None:
    system.kill9_broker()
    await asyncio.sleep(BROKER_DOWN_S)
    await system.restart_broker()


async def _postgres_crash(system: ChaosSystem) -> None:
    system.crash_postgres()
    await asyncio.sleep(POSTGRES_DOWN_S)
    await system.restart_postgres()


@pytest.mark.timeout(900)
async def test_broker_kill9_then_restart_mid_ingest(system: ChaosSystem) -> None:
    """kill -9 of the single broker, restarted on the same port and log directory: producers and consumers
    reconnect, unacknowledged uploads are retried by the client (503), nothing acknowledged is lost."""
    report = await ingest_with_fault(system, "broker-kill9", _broker_crash)
    assert_clean(report, system)


@pytest.mark.timeout(900)
async def test_postgres_immediate_shutdown_then_restart_mid_ingest(system: ChaosSystem) -> None:
    """Postgres immediate shutdown (SIGQUIT: no checkpoint, crash recovery at start) for 20 s: every writer
    retries until it is back, the gateway answers 503 meanwhile, then everything is indexed exactly once."""
    report = await ingest_with_fault(system, "postgres-crash", _postgres_crash)
    assert_clean(report, system)
