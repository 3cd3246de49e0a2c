"""The generate handler over in-memory ports: the live stream to the gateway, the Kafka answer, expiry, failures
that end one query only, contract violations, trace contexts and metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import RecordingSink, envelope, metric
from fakes.generate import FailAt, RecordingReplyChannel, ScriptedBackend
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from rag.v1 import queries_pb2
from ragstream_common.events import Emitted, Envelope, PermanentError
from ragstream_common.kafka.routing import outgoing
from ragstream_common.kafka.tenant_topics import tenant_topics
from ragstream_generate.adapters.routes import GENERATE_ROUTES
from ragstream_generate.backends.base import AnswerEvent, CitationRef, DraftAnswer
from ragstream_generate.backends.extractive import ExtractiveBackend
from ragstream_generate.handlers import BackendContractError, answer_batch, stream_answer
from ragstream_generate.ports import AnswerBackend

pytestmark = pytest.mark.unit
GATEWAY = "gateway-0:50070"
SOURCES = [
    queries_pb2.ScoredChunk(
        chunk_id="c1", document_id="d1", version=1, title="Refund policy", score=0.9,
        text="Refunds are issued within 30 days of purchase. Damaged goods are replaced for free.",
    ),
    queries_pb2.ScoredChunk(
        chunk_id="c2", document_id="d2", version=1, title="Security", score=0.5,
        text="All data is encrypted at rest with AES-256.",
    ),
]  # fmt: skip
QUESTION = "When are refunds issued?"
DRAFT = DraftAnswer(
    text="Refunds are issued within 30 days [1].",
    citations=[CitationRef(index=1, source=0, snippet="Refunds are issued within 30 days of purchase.", score=0.9)],
    backend="scripted",
)
SCRIPT: list[AnswerEvent | Exception] = ["Refunds ", "are issued ", "within 30 days [1].", DRAFT]


def _retrieved(
    query_id: str = "q1", question: str = QUESTION, reply_to: str = GATEWAY, expires_in: timedelta | None = None
) -> queries_pb2.QueryRetrieved:
    query = queries_pb2.QueryRequested(query_id=query_id, tenant_id="t1", question=question, reply_to=reply_to)
    deadline = Timestamp()
    deadline.FromDatetime(datetime.now(UTC) + (expires_in if expires_in is not None else timedelta(minutes=1)))
    query.deadline.CopyFrom(deadline)
    query.timings_ms.update({"embed": 4.0, "retrieve": 6.0})
    return queries_pb2.QueryRetrieved(query=query, chunks=SOURCES)


async def _run(
    *messages: queries_pb2.QueryRetrieved,
    backend: AnswerBackend | None = None,
    replies: RecordingReplyChannel | None = None,
    sink: RecordingSink | None = None,
) -> tuple[RecordingSink, RecordingReplyChannel]:
    sink = sink or RecordingSink()
    replies = replies or RecordingReplyChannel()
    batch = [envelope(m, m.query.query_id, offset=i) for i, m in enumerate(messages)]
    await answer_batch(batch, backend or ScriptedBackend({QUESTION: SCRIPT}), replies, sink)
    return sink, replies


async def test_an_http_callers_answer_streams_live_with_citations_and_never_goes_to_kafka() -> None:
    sink, replies = await _run(_retrieved())
    stream = replies.stream_for("q1")
    assert stream.address == GATEWAY
    # Tokens first, in order, then exactly one done carrying the structured answer.
    assert [kind for kind, _ in stream.received] == ["token", "token", "token", "done"]
    assert "".join(stream.tokens()) == "Refunds are issued within 30 days [1]."
    answer = stream.answer()
    assert answer is not None
    # Only its usage record goes to Kafka (tests/unit/test_generate_usage.py).
    assert sink.messages(queries_pb2.AnswerProduced) == []
    assert (answer.query_id, answer.tenant_id, answer.answer) == ("q1", "t1", DRAFT.text)
    assert (answer.backend, answer.no_answer, answer.degraded) == ("scripted", False, False)
    [citation] = answer.citations
    assert (citation.index, citation.document_id, citation.chunk_id, citation.title) == (1, "d1", "c1", "Refund policy")
    assert citation.snippet == "Refunds are issued within 30 days of purchase."
    # Earlier stages' timings travel on, with this stage's added.
    assert answer.timings_ms["embed"] == 4.0 and answer.timings_ms["retrieve"] == 6.0
    assert answer.timings_ms["generate"] >= 0.0
    assert answer.produced_at.seconds > 0
    assert sink.calls == 1


async def test_the_extractive_backend_answers_through_the_handler() -> None:
    sink, replies = await _run(_retrieved(reply_to=""), _retrieved("q2"), backend=ExtractiveBackend())
    [answer] = sink.messages(queries_pb2.AnswerProduced)
    assert answer.query_id == "q1" and answer.backend == "extractive" and not answer.no_answer
    assert answer.citations and all(c.chunk_id in {"c1", "c2"} for c in answer.citations)
    stream = replies.stream_for("q2")
    assert stream.tokens() and stream.received[-1][0] == "done"


async def test_expired_queries_are_dropped_without_work() -> None:
    backend = ScriptedBackend({QUESTION: SCRIPT})
    before = metric("ragstream_generate_answers_total", backend="scripted", outcome="expired")
    sink, replies = await _run(_retrieved(expires_in=-timedelta(seconds=1)), backend=backend)
    assert backend.questions == [] and replies.streams == [] and sink.emitted == []
    assert metric("ragstream_generate_answers_total", backend="scripted", outcome="expired") - before == 1


async def test_without_reply_to_only_the_kafka_answer_goes_out() -> None:
    tokens_before = metric("ragstream_generate_tokens_streamed_total")
    sink, replies = await _run(_retrieved(reply_to=""))
    assert replies.streams == []
    assert [a.query_id for a in sink.messages(queries_pb2.AnswerProduced)] == ["q1"]
    assert metric("ragstream_generate_tokens_streamed_total") == tokens_before


@pytest.mark.parametrize("fail_at", ["open", "token", "done"])
async def test_a_gateway_that_stopped_waiting_gets_nothing_and_kafka_neither(fail_at: FailAt) -> None:
    before = metric("ragstream_generate_answers_total", backend="scripted", outcome="answered")
    sink, replies = await _run(_retrieved(), replies=RecordingReplyChannel(fail_at=fail_at))
    # The answer was made, but an HTTP caller's answer has no other way out than its live stream.
    assert sink.messages(queries_pb2.AnswerProduced) == []
    assert metric("ragstream_generate_answers_total", backend="scripted", outcome="answered") - before == 1
    if fail_at == "token":
        # The first failure drops the stream: nothing more is sent to it.
        assert replies.stream_for("q1").received == []


@pytest.mark.parametrize(
    ("script", "streamed"),
    [
        ([RuntimeError("model crashed")], False),  # up front: no stream is opened
        (["Refunds ", RuntimeError("model crashed")], True),  # mid-stream: tokens went out, no done follows
        (["Refunds ", "are issued."], True),  # ends without its final DraftAnswer
    ],
)
async def test_a_failing_backend_ends_its_own_query_and_not_the_batch(
    script: list[AnswerEvent | Exception], streamed: bool
) -> None:
    backend = ScriptedBackend({QUESTION: SCRIPT, "broken?": script})
    before = metric("ragstream_generate_answers_total", backend="scripted", outcome="failed")
    sink, replies = await _run(
        _retrieved("q1", "broken?"), _retrieved("q2"), _retrieved("q3", reply_to=""), backend=backend
    )
    assert [a.query_id for a in sink.messages(queries_pb2.AnswerProduced)] == ["q3"]
    assert metric("ragstream_generate_answers_total", backend="scripted", outcome="failed") - before == 1
    failed = [s for s in replies.streams if s.query_id == "q1"]
    assert bool(failed) is streamed
    assert all(s.answer() is None for s in failed)
    # An open stream is ended without an answer, and the waiting gateway hears of the failure now.
    assert all(s.received[-1] == ("abort", None) for s in failed)
    [(address, query_id, reason)] = replies.failures
    assert query_id == "q1" and address and reason
    assert replies.stream_for("q2").answer() is not None


async def test_the_grpc_stream_raises_when_a_backend_ends_without_an_answer() -> None:
    backend = ScriptedBackend({QUESTION: ["half an answer"]})
    with pytest.raises(BackendContractError):
        _ = [event async for event in stream_answer(backend, "q1", "t1", QUESTION, SOURCES)]


async def test_kafka_callers_answers_are_emitted_together_in_batch_order() -> None:
    sink, replies = await _run(_retrieved("q1", reply_to=""), _retrieved("q2"), _retrieved("q3", reply_to=""))
    assert [a.query_id for a in sink.messages(queries_pb2.AnswerProduced)] == ["q1", "q3"]
    assert sink.calls == 1
    assert [s.query_id for s in replies.streams] == ["q2"]


@pytest.mark.parametrize("field", ["query_id", "tenant_id"])
async def test_a_query_without_ids_is_a_permanent_error_before_any_work(field: str) -> None:
    broken = _retrieved("q2")
    broken.query.ClearField(field)
    backend = ScriptedBackend({QUESTION: SCRIPT})
    sink, replies = RecordingSink(), RecordingReplyChannel()
    batch: list[Envelope[queries_pb2.QueryRetrieved]] = [envelope(_retrieved("q1"), "q1"), envelope(broken, "q2")]
    with pytest.raises(PermanentError, match=field):
        await answer_batch(batch, backend, replies, sink)
    assert backend.questions == [] and replies.streams == [] and sink.emitted == []


async def test_a_failed_emit_propagates_so_the_consumer_retries() -> None:
    with pytest.raises(ConnectionError):
        await _run(_retrieved(reply_to=""), sink=RecordingSink(fail_with=ConnectionError("broker down")))


async def test_each_answer_continues_the_trace_of_its_query() -> None:
    tracer = TracerProvider().get_tracer("test")  # a recording tracer: real, distinct trace ids
    incoming = []
    for query_id in ("q1", "q2"):
        with tracer.start_as_current_span(f"retrieve {query_id}"):
            incoming.append(envelope(_retrieved(query_id, reply_to=""), query_id))
    sink, replies = RecordingSink(), RecordingReplyChannel()
    await answer_batch(incoming, ScriptedBackend({QUESTION: SCRIPT}), replies, sink)
    expected = [trace.get_current_span(e.trace_context).get_span_context().trace_id for e in incoming]
    answers = [e for e in sink.emitted if isinstance(e.message, queries_pb2.AnswerProduced)]
    emitted = [trace.get_current_span(e.context).get_span_context().trace_id for e in answers]
    assert emitted == expected and len(set(expected)) == 2


async def test_metrics_count_outcomes_citations_latency_tokens_and_degradation() -> None:
    no_answer = DraftAnswer(text="Nothing found.", no_answer=True, backend="scripted")
    degraded = DraftAnswer(text=DRAFT.text, citations=DRAFT.citations, degraded=True, backend="extractive")
    backend = ScriptedBackend({QUESTION: SCRIPT, "unknown?": ["Nothing found.", no_answer], "slow?": [degraded]})

    def snapshot() -> list[float]:
        return [
            metric("ragstream_generate_answers_total", backend="scripted", outcome="answered"),
            metric("ragstream_generate_answers_total", backend="scripted", outcome="no_answer"),
            metric("ragstream_generate_answers_total", backend="extractive", outcome="answered"),
            metric("ragstream_generate_degraded_answers_total"),
            metric("ragstream_generate_citations_per_answer_count"),
            metric("ragstream_generate_citations_per_answer_sum"),
            metric("ragstream_generate_answer_seconds_count", backend="scripted"),
            metric("ragstream_generate_tokens_streamed_total"),
        ]

    before = snapshot()
    await _run(_retrieved("q1"), _retrieved("q2", "unknown?"), _retrieved("q3", "slow?"), backend=backend)
    moved = [after - earlier for after, earlier in zip(snapshot(), before, strict=True)]
    # 3 answers with 1 + 0 + 1 citations; 3 + 1 tokens streamed (the degraded answer streamed none).
    assert moved == [1, 1, 1, 1, 3, 2, 2, 4]


def test_answers_route_to_their_own_tenants_answers_topic_keyed_by_query_id() -> None:
    for tenant in ("t1", "t1.eu"):
        answer = queries_pb2.AnswerProduced(query_id="q1", tenant_id=tenant, answer="Yes.")
        record = outgoing(GENERATE_ROUTES, Emitted(answer))
        assert (record.topic, record.key, record.message) == (tenant_topics(tenant).answers, "q1", answer)
    assert outgoing(GENERATE_ROUTES, Emitted(answer)).topic == "rag.tenant.t1.eu.answers.v1"
