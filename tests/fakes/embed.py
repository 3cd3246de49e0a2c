"""Fakes of the embed handlers' ports: a deterministic encoder and an in-memory embedding cache."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def unit_vector(text: str, dimensions: int) -> np.ndarray:
    """A float32 unit vector seeded by the text's hash: the same text always gets the same direction."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class HashEncoder:
    """`Encoder` returning `unit_vector(text)` rows; records the texts of each call on each path."""

    model_name: str = "test/hash-encoder"
    model_version: str = "0.1"
    dimensions: int = 8
    document_calls: list[list[str]] = field(default_factory=list)
    query_calls: list[list[str]] = field(default_factory=list)

    def vector(self, text: str) -> np.ndarray:
        return unit_vector(text, self.dimensions)

    async def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.document_calls.append(list(texts))
        return self._encode(texts)

    async def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.query_calls.append(list(texts))
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([self.vector(t) for t in texts], dtype=np.float32).reshape(len(texts), self.dimensions)


@dataclass
class DictEmbeddingCache:
    """`EmbeddingCache` over a dict keyed (tenant, model, content hash); a stored entry is never overwritten
    (like the table's ON CONFLICT DO NOTHING). Records every lookup as (tenant, model, hashes)."""

    entries: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    lookups: list[tuple[str, str, list[str]]] = field(default_factory=list)

    async def lookup(self, tenant_id: str, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        self.lookups.append((tenant_id, model, list(hashes)))
        found = {h: self.entries.get((tenant_id, model, h)) for h in hashes}
        return {h: vector for h, vector in found.items() if vector is not None}

    async def store(self, tenant_id: str, model: str, vectors: dict[str, np.ndarray]) -> None:
        for digest, vector in vectors.items():
            self.entries.setdefault((tenant_id, model, digest), vector)
