"""Service processes failing mid-ingest: kill -9 and restart, replicas joining and leaving, a frozen worker.

Each scenario uploads its own corpus through the gateway, injects its fault once 30% is acknowledged, lets the
uploader finish (it retries what the gateway refused or dropped), heals the system and audits: every acknowledged
document indexed exactly once, findable, and never dead-lettered.
"""

from __future__ import annotations

import asyncio

import pytest

from chaos.scenario import FAST_CORPUS, INDEXED_AT, assert_clean, ingest_with_fault, kill9_then_restart
from chaos.system import ChaosSystem

pytestmark = pytest.mark.chaos

# The consumer's session timeout (ConsumerOptions.session_timeout_ms): a worker frozen longer is out of its group.
SESSION_TIMEOUT_S = 30.0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["ingest", "embed", "retrieve", "gateway"])
async def test_kill9_mid_ingest_then_restart(system: ChaosSystem, name: str) -> None:
    """Uncommitted work is read again by the restarted process; writes are idempotent. For the gateway, uploads in
    flight fail with connection errors and the client retries them."""
    # The gateway goes down while uploads are in flight (they outpace the pipeline); a worker once work is
    # at every stage of the pipeline.
    indexed_at = 0.0 if name == "gateway" else INDEXED_AT
    report = await ingest_with_fault(system, f"kill9-{name}", kill9_then_restart(name), indexed_at=indexed_at)
    assert_clean(report, system)


@pytest.mark.chaos_fast
@pytest.mark.timeout(600)
async def test_kill9_retrieve_small_corpus(system: ChaosSystem) -> None:
    """The fast member of the suite (`make test`): the writer of the chunk rows killed mid-ingest."""
    report = await ingest_with_fault(system, "kill9-retrieve-fast", kill9_then_restart("retrieve"), size=FAST_CORPUS)
    assert_clean(report, system)


async def _replicas_join_then_leave(system: ChaosSystem) -> None:
    replicas = [system.add_replica("embed"), system.add_replica("retrieve")]
    await system.wait_serving(180, names=tuple(replicas))
    await asyncio.sleep(8)  # both groups rebalance and the replicas take partitions with work on them
    for name in replicas:
        system.remove_replica(name)


@pytest.mark.timeout(900)
async def test_second_embed_and_retrieve_replica_join_then_leave(system: ChaosSystem) -> None:
    """Two rebalances of the embed and retrieve groups mid-ingest: nothing handled twice into the index."""
    report = await ingest_with_fault(system, "replicas", _replicas_join_then_leave)
    assert_clean(report, system)


@pytest.mark.timeout(900)
async def test_frozen_worker_past_session_timeout_then_resumed(system: ChaosSystem) -> None:
    """retrieve is SIGSTOPped with a batch in hand past its session timeout: its replica takes the partitions and
    redoes the batch; when the frozen one resumes, its late write and failed commit must not duplicate chunks."""
    replica = system.add_replica("retrieve")
    await system.wait_serving(180, names=(replica,))

    async def freeze(system: ChaosSystem) -> None:
        system.sigstop("retrieve")
        await asyncio.sleep(SESSION_TIMEOUT_S + 10)
        system.sigcont("retrieve")
        await asyncio.sleep(5)

    try:
        report = await ingest_with_fault(system, "sigstop-retrieve", freeze)
    finally:
        system.sigcont_if_frozen("retrieve")
    assert_clean(report, system)
