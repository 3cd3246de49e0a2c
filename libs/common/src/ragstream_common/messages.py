"""Small helpers over rag.v1 messages that several services share."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from datetime import UTC, datetime

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from rag.v1 import queries_pb2


def now_timestamp() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def document_key(tenant_id: str, document_id: str) -> str:
    """The partition key of every document-scoped event: keeps one document's events in order."""
    return f"{tenant_id}/{document_id}"


def is_expired(query: queries_pb2.QueryRequested, now: datetime | None = None) -> bool:
    """True once the query's deadline has passed: stages then drop it without work."""
    if not query.HasField("deadline"):
        return False
    deadline: datetime = query.deadline.ToDatetime(tzinfo=UTC)
    return (now or datetime.now(UTC)) >= deadline


def pack_vector(vector: np.ndarray) -> bytes:
    """Little-endian float32 bytes, the wire form of vectors in events."""
    return np.asarray(vector, dtype="<f4").tobytes()


def unpack_vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


class StageTimer:
    """Records how long a stage took into a `timings_ms` map field.

    `timings` is a protobuf `map<string, double>` field (a `ScalarMap`, which is a `MutableMapping`) or a plain dict.
    """

    def __init__(self, timings: MutableMapping[str, float], stage: str) -> None:
        self._timings = timings
        self._stage = stage
        self._start = 0.0

    def __enter__(self) -> StageTimer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        elapsed = (time.perf_counter() - self._start) * 1000
        self._timings[self._stage] = self._timings.get(self._stage, 0.0) + elapsed
