"""Generate's usage records (metering): the tokens each answer read and wrote, for HTTP and Kafka callers alike,
after the batch's answers in the same emit, identified by the query so a redelivery counts once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import RecordingSink, envelope
from fakes.generate import RecordingReplyChannel, ScriptedBackend
from google.protobuf.timestamp_pb2 import Timestamp
from rag.v1 import queries_pb2, usage_pb2
from ragstream_common.kafka.routing import outgoing
from ragstream_common.kafka.topics import USAGE
from ragstream_generate.adapters.routes import GENERATE_ROUTES
from ragstream_generate.backends.base import AnswerEvent, DraftAnswer, whitespace_tokens
from ragstream_generate.backends.extractive import ExtractiveBackend
from ragstream_generate.handlers import answer_batch
from ragstream_generate.ports import AnswerBackend

pytestmark = pytest.mark.unit
QUESTION = "When are refunds issued?"
SOURCE = queries_pb2.ScoredChunk(
    chunk_id="c1", document_id="d1", version=1, title="Refunds", score=0.9, text="Refunds are issued within 30 days."
)
REQUESTED = Timestamp(seconds=1_790_000_000)


def _retrieved(query_id: str, reply_to: str = "") -> queries_pb2.QueryRetrieved:
    query = queries_pb2.QueryRequested(
        query_id=query_id, tenant_id="t1", question=QUESTION, reply_to=reply_to, requested_at=REQUESTED
    )
    query.deadline.FromDatetime(datetime.now(UTC) + timedelta(minutes=1))
    return queries_pb2.QueryRetrieved(query=query, chunks=[SOURCE])


async def _answer(*messages: queries_pb2.QueryRetrieved, backend: AnswerBackend) -> RecordingSink:
    sink = RecordingSink()
    batch = [envelope(m, m.query.query_id, offset=i) for i, m in enumerate(messages)]
    await answer_batch(batch, backend, RecordingReplyChannel(), sink)
    return sink


def _scripted(tokens_in: int, tokens_out: int) -> ScriptedBackend:
    draft = DraftAnswer(text="Within 30 days.", backend="scripted", tokens_in=tokens_in, tokens_out=tokens_out)
    script: list[AnswerEvent | Exception] = ["Within 30 days.", draft]
    return ScriptedBackend({QUESTION: script})


async def test_every_answer_records_its_tokens_after_the_answers() -> None:
    sink = await _answer(_retrieved("q1"), _retrieved("q2", reply_to="gw:50070"), backend=_scripted(40, 7))
    assert sink.calls == 1
    assert [type(m).__name__ for m in sink.messages()] == ["AnswerProduced", "UsageRecorded", "UsageRecorded"]
    usage = sink.messages(usage_pb2.UsageRecorded)
    assert [(u.usage_id, u.tenant_id, u.source) for u in usage] == [
        ("q1:tokens", "t1", "generate"),
        ("q2:tokens", "t1", "generate"),
    ]
    assert all(dict(u.quantities) == {"tokens_in": 40, "tokens_out": 7} for u in usage)
    assert usage[0].occurred_at == REQUESTED  # the query's time: a redelivery lands in the same window


async def test_the_extractive_backend_counts_whitespace_tokens() -> None:
    sink = await _answer(_retrieved("q1"), backend=ExtractiveBackend())
    [answer] = sink.messages(queries_pb2.AnswerProduced)
    [usage] = sink.messages(usage_pb2.UsageRecorded)
    assert usage.quantities["tokens_in"] == whitespace_tokens(QUESTION, SOURCE.text)
    assert usage.quantities["tokens_out"] == whitespace_tokens(answer.answer)


async def test_a_failed_answer_records_nothing() -> None:
    backend = ScriptedBackend({QUESTION: [RuntimeError("model down")]})
    sink = await _answer(_retrieved("q1"), backend=backend)
    assert sink.emitted == []


async def test_usage_is_routed_to_the_usage_topic_by_tenant() -> None:
    sink = await _answer(_retrieved("q1"), backend=_scripted(1, 1))
    record = outgoing(GENERATE_ROUTES, sink.emitted[-1])
    assert (record.topic, record.key) == (USAGE.name, "t1")
