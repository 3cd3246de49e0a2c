"""The embed service's encoder on the real model, for every backend: both paths agree, each path keeps its own
thread count, and the ONNX exports stay within their stated bound of torch's vectors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

TEXTS = [
    "Uhuru Peak is the highest summit of Kilimanjaro.",
    "Kafka keeps records in partitions.",
    "Aspirin lowers the risk of a second myocardial infarction in patients with prior heart disease.",
    "How do I rotate an API key?",
]
# Least cosine to torch per text (the bounds onnx_export checks at build time, on other texts).
BOUNDS = {"torch": 0.99999, "onnx": 0.999, "onnx-int8": 0.98}


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.models import EncoderOptions

    reference = Encoder.load(EncoderOptions(backend="torch", batch_size=8))
    try:
        return reference.encode_sync(TEXTS)
    finally:
        reference.close()


@pytest.fixture(scope="module", params=["torch", "onnx", "onnx-int8"])
def encoder(request: pytest.FixtureRequest) -> Iterator[Any]:
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.models import EncoderOptions

    loaded = Encoder.load(EncoderOptions(backend=request.param, batch_size=2, document_threads=2, query_threads=1))
    loaded.backend = request.param
    yield loaded
    loaded.close()


def test_queries_and_documents_encode_with_their_own_thread_counts(encoder: Any) -> None:
    assert encoder.thread_counts() == {"documents": 2, "queries": 1}
    runners = encoder._runners
    if encoder.backend == "torch":  # one model in memory, each path its own thread count
        assert runners["documents"]._model is runners["queries"]._model
    assert encoder.model_name == "sentence-transformers/all-MiniLM-L6-v2" and encoder.model_version


async def test_both_paths_give_the_same_unit_vectors_close_to_torch(encoder: Any, torch_vectors: np.ndarray) -> None:
    as_queries, as_documents = await asyncio.gather(encoder.encode_queries(TEXTS), encoder.encode_documents(TEXTS))
    assert as_queries.shape == (len(TEXTS), encoder.dimensions) == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(as_queries, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(as_queries, as_documents, atol=1e-5)
    # Batches of 2 sorted by length come back in the caller's order.
    assert ((as_documents * torch_vectors).sum(axis=1) >= BOUNDS[encoder.backend]).all()
    # Different texts, different directions.
    assert float(as_queries[0] @ as_queries[1]) < 0.5


async def test_queries_may_run_another_backend_than_documents(torch_vectors: np.ndarray) -> None:
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.models import EncoderOptions

    mixed = Encoder.load(EncoderOptions(backend="onnx", query_backend="onnx-int8", batch_size=8))
    try:
        documents, queries = await asyncio.gather(mixed.encode_documents(TEXTS), mixed.encode_queries(TEXTS))
    finally:
        mixed.close()
    assert ((documents * torch_vectors).sum(axis=1) >= BOUNDS["onnx"]).all()
    assert ((queries * torch_vectors).sum(axis=1) >= BOUNDS["onnx-int8"]).all()
    # int8 is a different engine, not the fp32 one under another name.
    assert not np.allclose(documents, queries, atol=1e-4)


def test_an_unknown_backend_or_model_is_refused_by_name() -> None:
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.models import EncoderOptions

    with pytest.raises(ValueError, match="unknown embedding backend 'tensorrt'"):
        Encoder.load(EncoderOptions(backend="tensorrt"))
    with pytest.raises(ValueError, match="unknown embedding model 'bert-huge'"):
        Encoder.load(EncoderOptions(model="bert-huge"))
