"""Embed's usage records (metering): the chunks of each ChunksReady event, after the batch's outputs in the same
emit, identified by the source event so a redelivered batch counts once."""

from __future__ import annotations

import hashlib

import pytest
from fakes import RecordingSink, envelope
from fakes.embed import DictEmbeddingCache, HashEncoder
from google.protobuf.timestamp_pb2 import Timestamp
from rag.v1 import chunks_pb2, documents_pb2, usage_pb2
from ragstream_common.kafka.routing import outgoing
from ragstream_common.kafka.topics import USAGE
from ragstream_embed.adapters.routes import CHUNK_ROUTES
from ragstream_embed.handlers import ChunkEvent, embed_chunk_batch

pytestmark = pytest.mark.unit
OCCURRED = Timestamp(seconds=1_790_000_000)


def _ready(tenant_id: str, document_id: str, *texts: str) -> chunks_pb2.ChunksReady:
    ready = chunks_pb2.ChunksReady(tenant_id=tenant_id, document_id=document_id, version=1, occurred_at=OCCURRED)
    for position, text in enumerate(texts):
        digest = hashlib.sha256(text.encode()).hexdigest()
        ready.chunks.append(chunks_pb2.Chunk(chunk_id=f"{document_id}-{position}", text=text, content_sha256=digest))
    return ready


async def _embed(*messages: ChunkEvent, cache: DictEmbeddingCache | None = None) -> RecordingSink:
    sink = RecordingSink()
    batch = [envelope(m, offset=i) for i, m in enumerate(messages)]
    await embed_chunk_batch(batch, HashEncoder(), cache or DictEmbeddingCache(), sink)
    return sink


async def test_each_document_of_the_batch_records_its_chunks_after_the_outputs() -> None:
    deleted = documents_pb2.DocumentDeleted(tenant_id="t1", document_id="d0")
    sink = await _embed(_ready("t1", "d1", "a.", "b."), deleted, _ready("t2", "d2", "c."))
    assert sink.calls == 1
    kinds = [type(m).__name__ for m in sink.messages()]
    assert kinds == ["ChunksEmbedded", "DocumentDeleted", "ChunksEmbedded", "UsageRecorded", "UsageRecorded"]
    first, second = sink.messages(usage_pb2.UsageRecorded)
    assert (first.tenant_id, first.usage_id, first.source, dict(first.quantities)) == (
        "t1",
        "id-0:chunks",
        "embed",
        {"chunks_embedded": 2},
    )
    assert (second.tenant_id, second.usage_id, dict(second.quantities)) == ("t2", "id-2:chunks", {"chunks_embedded": 1})
    assert first.occurred_at == OCCURRED  # the source event's time: a redelivery lands in the same window


async def test_a_redelivered_batch_records_the_same_usage_even_from_the_cache() -> None:
    cache = DictEmbeddingCache()
    first = await _embed(_ready("t1", "d1", "a."), cache=cache)
    again = await _embed(_ready("t1", "d1", "a."), cache=cache)
    assert first.messages(usage_pb2.UsageRecorded) == again.messages(usage_pb2.UsageRecorded)


async def test_usage_is_routed_to_the_usage_topic_by_tenant() -> None:
    sink = await _embed(_ready("t1", "d1", "a."))
    record = outgoing(CHUNK_ROUTES, sink.emitted[-1])
    assert (record.topic, record.key) == (USAGE.name, "t1")
