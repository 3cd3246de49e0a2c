"""The connectors worker's usage records (metering): the items each applied page turned into document events,
in the same emit as those events, identified by the page's document versions so a replayed page counts once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fakes import RecordingSink
from fakes.connectors import CONNECTOR, TENANT, Killed, file, make_world
from rag.v1 import usage_pb2
from ragstream_common.events import Emitted
from ragstream_common.kafka.routing import outgoing
from ragstream_common.kafka.topics import USAGE
from ragstream_connectors.adapters.routes import CONNECTORS_ROUTES

pytestmark = pytest.mark.unit


def _usage(sink: RecordingSink) -> list[usage_pb2.UsageRecorded]:
    return sink.messages(usage_pb2.UsageRecorded)


async def test_each_page_with_events_records_its_items_in_the_same_emit() -> None:
    world = make_world()
    world.drive.put(file("a"), file("b"), file("c"), logged=False)
    await world.engine().sync()
    usage = _usage(world.sink)
    assert sum(u.quantities["connector_items_synced"] for u in usage) == 3
    assert len(usage) == world.sink.calls  # one record per emitted page, beside its events
    for record in usage:
        assert (record.tenant_id, record.source) == (TENANT, "connectors")
        assert record.usage_id.startswith(f"{CONNECTOR}:") and record.usage_id.endswith(":items")
    assert len({u.usage_id for u in usage}) == len(usage)


async def test_a_sync_without_changes_records_nothing() -> None:
    world = make_world()
    world.drive.put(file("a"), logged=False)
    await world.engine().sync()
    before = len(_usage(world.sink))
    await world.engine().sync()
    assert len(_usage(world.sink)) == before


class DiesAfterPublishing(RecordingSink):
    """Kafka acknowledges the page, then the worker dies before it confirms it."""

    async def emit(self, events: Sequence[Emitted]) -> None:
        await super().emit(events)
        raise Killed("killed after the publish")


async def test_a_page_replayed_after_a_crash_records_the_same_usage_id() -> None:
    world = make_world()
    world.sink = DiesAfterPublishing()
    world.drive.put(file("a", "first text"), logged=False)
    with pytest.raises(Killed):
        await world.engine().sync()
    world.sink = RecordingSink(emitted=list(world.sink.emitted))
    await world.engine().sync()
    first, replayed = _usage(world.sink)
    # The same version again: metering counts it once (within the window it falls in; the page has no time of
    # its own, so a replay in a later minute is dated then).
    assert (first.usage_id, dict(first.quantities)) == (replayed.usage_id, dict(replayed.quantities))


async def test_usage_is_routed_to_the_usage_topic_by_tenant() -> None:
    world = make_world()
    world.drive.put(file("a"), logged=False)
    await world.engine().sync()
    usage = next(e for e in world.sink.emitted if isinstance(e.message, usage_pb2.UsageRecorded))
    record = outgoing(CONNECTORS_ROUTES, usage)
    assert (record.topic, record.key) == (USAGE.name, TENANT)
