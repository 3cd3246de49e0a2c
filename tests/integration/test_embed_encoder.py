"""The embed service's encoder on the real model: both paths agree, each with its own torch thread count."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def encoder() -> Iterator[Any]:
    from ragstream_embed.adapters.encoder import SentenceTransformerEncoder

    loaded = SentenceTransformerEncoder.load("cpu", 8, torch_threads=2, query_torch_threads=1)
    yield loaded
    loaded.close()


def test_queries_and_documents_encode_with_their_own_thread_counts(encoder: Any) -> None:
    assert encoder.thread_counts() == {"documents": 2, "queries": 1}


async def test_both_paths_give_the_same_unit_vectors(encoder: Any) -> None:
    texts = ["Uhuru Peak is the highest summit of Kilimanjaro.", "Kafka keeps records in partitions."]
    as_queries, as_documents = await asyncio.gather(encoder.encode_queries(texts), encoder.encode_documents(texts))
    assert as_queries.shape == (2, encoder.dimensions) == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(as_queries, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(as_queries, as_documents, atol=1e-5)
    # Different texts, different directions.
    assert float(as_queries[0] @ as_queries[1]) < 0.5
