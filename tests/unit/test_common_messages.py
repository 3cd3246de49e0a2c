"""Shared rag.v1 message helpers: stage timings into protobuf map fields, the vector wire form, query deadlines
and the document partition key."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rag.v1 import queries_pb2
from ragstream_common import messages
from ragstream_common.messages import StageTimer, document_key, is_expired, pack_vector, unpack_vector

pytestmark = pytest.mark.unit


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """A perf_counter that returns the queued readings in order, so durations are exact."""
    readings: list[float] = []
    monkeypatch.setattr(messages, "time", SimpleNamespace(perf_counter=lambda: readings.pop(0)))
    yield readings
    assert not readings, "every queued clock reading should have been used"


def test_stage_timer_writes_milliseconds_into_a_protobuf_map_field(clock: list[float]) -> None:
    query = queries_pb2.QueryRequested()
    clock.extend([10.0, 10.25])
    with StageTimer(query.timings_ms, "retrieve"):
        pass
    assert dict(query.timings_ms) == {"retrieve": pytest.approx(250.0)}


def test_stage_timer_accumulates_repeated_runs_of_a_stage_and_keeps_stages_apart(clock: list[float]) -> None:
    query = queries_pb2.QueryRequested(timings_ms={"embed": 5.0})
    clock.extend([0.0, 0.010, 1.0, 1.002, 2.0, 2.5])
    with StageTimer(query.timings_ms, "embed"):
        pass
    with StageTimer(query.timings_ms, "embed"):
        pass
    with StageTimer(query.timings_ms, "generate"):
        pass
    assert query.timings_ms["embed"] == pytest.approx(5.0 + 10.0 + 2.0)
    assert query.timings_ms["generate"] == pytest.approx(500.0)
    # The map survives the wire: timings travel with the event.
    assert dict(queries_pb2.QueryRequested.FromString(query.SerializeToString()).timings_ms) == dict(query.timings_ms)


def test_stage_timer_records_a_stage_that_fails_and_lets_the_error_through(clock: list[float]) -> None:
    timings: dict[str, float] = {}
    clock.extend([3.0, 3.1])
    with pytest.raises(RuntimeError), StageTimer(timings, "search"):
        raise RuntimeError("index unavailable")
    assert timings == {"search": pytest.approx(100.0)}


def test_packed_vectors_are_little_endian_float32() -> None:
    packed = pack_vector(np.array([1.0, -2.5, 0.125], dtype=np.float32))
    assert packed == struct.pack("<3f", 1.0, -2.5, 0.125)


def test_packing_converts_big_endian_and_float64_input_to_the_wire_form() -> None:
    expected = struct.pack("<2f", 0.5, 3.0)
    assert pack_vector(np.array([0.5, 3.0], dtype=">f4")) == expected
    assert pack_vector(np.array([0.5, 3.0], dtype=np.float64)) == expected


def test_unpacked_vectors_are_little_endian_float32() -> None:
    vector = unpack_vector(struct.pack("<2f", 1.5, -4.0))
    assert vector.dtype == np.dtype("<f4")
    assert vector.tolist() == [1.5, -4.0]


@given(st.lists(st.floats(width=32, allow_nan=False), max_size=64))
def test_vectors_round_trip_through_the_wire_form(values: list[float]) -> None:
    vector = np.array(values, dtype=np.float32)
    packed = pack_vector(vector)
    assert len(packed) == 4 * len(values)
    np.testing.assert_array_equal(unpack_vector(packed), vector)


def _query_with_deadline(deadline: datetime) -> queries_pb2.QueryRequested:
    query = queries_pb2.QueryRequested(query_id="q-1")
    query.deadline.FromDatetime(deadline)
    return query


def test_a_query_without_a_deadline_never_expires() -> None:
    query = queries_pb2.QueryRequested(query_id="q-1")
    assert not is_expired(query)
    assert not is_expired(query, now=datetime(9999, 1, 1, tzinfo=UTC))


def test_a_query_expires_once_its_deadline_is_reached() -> None:
    deadline = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    query = _query_with_deadline(deadline)
    assert not is_expired(query, now=deadline - timedelta(milliseconds=1))
    assert is_expired(query, now=deadline)
    assert is_expired(query, now=deadline + timedelta(seconds=1))


def test_without_an_explicit_now_the_current_time_decides() -> None:
    now = datetime.now(UTC)
    assert is_expired(_query_with_deadline(now - timedelta(minutes=1)))
    assert not is_expired(_query_with_deadline(now + timedelta(hours=1)))


def test_document_key_joins_tenant_and_document() -> None:
    assert document_key("tenant-a", "doc-7") == "tenant-a/doc-7"
    # Same document id under two tenants: two keys, so their events never share an ordering.
    assert document_key("tenant-a", "doc-7") != document_key("tenant-b", "doc-7")
