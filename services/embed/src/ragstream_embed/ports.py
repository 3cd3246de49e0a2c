"""What the embed handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from ragstream_common.kafka import OutgoingEvent


class Encoder(Protocol):
    model_name: str
    model_version: str
    dimensions: int

    async def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        ...

    async def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingCache(Protocol):
    async def lookup(self, tenant_id: str, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors by content hash (missing hashes are absent)."""
        ...

    async def store(self, tenant_id: str, model: str, vectors: dict[str, np.ndarray]) -> None: ...


class EventSink(Protocol):
    async def publish_many(self, events: Sequence[OutgoingEvent]) -> None: ...
