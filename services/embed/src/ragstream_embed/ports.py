"""What the embed handlers need from the outside world (events go out through `ragstream_common.events.EventSink`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Encoder(Protocol):
    model_name: str
    model_version: str
    dimensions: int

    async def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        ...

    async def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """As `encode_documents`, on the query path (its own model thread)."""
        ...


class EmbeddingCache(Protocol):
    """Vectors by (tenant, model, content hash): a tenant never sees another tenant's entries."""

    async def lookup(self, tenant_id: str, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors by content hash (missing hashes are absent)."""
        ...

    async def store(self, tenant_id: str, model: str, vectors: dict[str, np.ndarray]) -> None: ...


class EncoderSet(Protocol):
    async def encoder(self, model: str) -> Encoder | None:
        """The encoder of `model` (key or recorded name; "" = the primary), or None when not served."""
        ...
