"""The second registry model, WordLlama's static l2_supercat embeddings: loaded from its wheel with the network
unreachable, the library's own embedding to the bit, unit vectors of 256 dimensions on either path whatever
EMBED_BACKEND says, and served beside the primary by EmbedRequest.model."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import grpc
import numpy as np
import pytest
from rag.v1 import services_pb2, services_pb2_grpc
from ragstream_common.db import create_pool
from ragstream_embed.adapters.encoder import Encoder
from ragstream_embed.adapters.grpc_api import EmbedServicer
from ragstream_embed.adapters.served_models import ServedModels
from ragstream_embed.adapters.static_runner import TENSOR, TOKENIZER, WEIGHTS, StaticRunner
from ragstream_embed.models import EncoderOptions, model_spec

pytestmark = pytest.mark.integration
KEY = "wordllama-l2-supercat"
TEXTS = ["The cat sat on the mat.", "A feline rested on a rug.", "Quantum chromodynamics binds quarks.", ""]


def test_it_loads_with_no_network_and_embeds_as_the_library_does(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access while loading a packaged model")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    spec = model_spec(KEY)
    assert spec.kind == "static" and model_spec(spec.name) is spec
    runner = StaticRunner(spec.weights_dir())
    vectors = runner(TEXTS, 32)
    assert vectors.shape == (4, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # Related sentences are nearer than unrelated ones.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]

    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    matrix = load_file(str(spec.weights_dir() / WEIGHTS))[TENSOR]
    library = WordLlamaInference(matrix, Tokenizer.from_file(str(spec.weights_dir() / TOKENIZER)))
    np.testing.assert_allclose(vectors[:3], library.embed(TEXTS[:3], norm=True), atol=1e-6)


async def test_the_encoder_ignores_the_backend_and_serves_beside_the_primary() -> None:
    encoder = await asyncio.to_thread(Encoder.load, EncoderOptions(model=KEY, backend="onnx-int8"))
    try:
        assert (encoder.model_name, encoder.dimensions) == ("dleemiller/word-llama-l2-supercat@256", 256)
        documents, queries = await encoder.encode_documents(TEXTS[:2]), await encoder.encode_queries(TEXTS[:2])
        np.testing.assert_allclose(documents, queries, atol=1e-6)
        served = ServedModels(encoder, EncoderOptions(model=KEY))
        assert await served.encoder("") is encoder and await served.encoder(KEY) is encoder
        assert await served.encoder("no-such-model") is None
        minilm = await served.encoder("sentence-transformers/all-MiniLM-L6-v2")
        assert minilm is not None and minilm.dimensions == 384 and served.extras() == []
        await served.refresh(["sentence-transformers/all-MiniLM-L6-v2", "dleemiller/word-llama-l2-supercat@256"])
        assert served.extras() == [minilm]
        served.close()
    finally:
        encoder.close()


async def test_embed_requests_pick_their_model_over_grpc() -> None:
    encoder = await asyncio.to_thread(Encoder.load, EncoderOptions(model=KEY))
    served = ServedModels(encoder, EncoderOptions(model=KEY))
    server = grpc.aio.server()
    services_pb2_grpc.add_EmbedServiceServicer_to_server(EmbedServicer(served), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = services_pb2_grpc.EmbedServiceStub(channel)
            primary = await stub.Embed(services_pb2.EmbedRequest(texts=["a cat"]))
            assert (primary.model, primary.dimensions) == ("dleemiller/word-llama-l2-supercat@256", 256)
            other = await stub.Embed(services_pb2.EmbedRequest(texts=["a cat"], model="all-minilm-l6-v2"))
            assert (other.model, other.dimensions, len(other.embeddings[0].values)) == (
                "sentence-transformers/all-MiniLM-L6-v2",
                384,
                384,
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Embed(services_pb2.EmbedRequest(texts=["a cat"], model="bge-small-en-v1.5"))
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await server.stop(None)
        served.close()
        encoder.close()


async def test_the_embed_login_reads_which_models_the_generations_need(service_database_urls: dict[str, str]) -> None:
    encoder = await asyncio.to_thread(Encoder.load, EncoderOptions(model=KEY))
    served = ServedModels(encoder, EncoderOptions(model=KEY))
    pool = create_pool(service_database_urls["embed"], max_size=1, name="test-embed-generations")
    await pool.open(wait=True)
    stop = asyncio.Event()
    try:
        following = asyncio.ensure_future(served.follow(pool, stop, interval_s=0.05))
        deadline = asyncio.get_running_loop().time() + 30
        while not served.extras() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await following
        # The session database's live generation is MiniLM's: served beside the primary, for its vectors.
        assert [e.model_name for e in served.extras()] == ["sentence-transformers/all-MiniLM-L6-v2"]
    finally:
        await pool.close()
        served.close()
        encoder.close()
