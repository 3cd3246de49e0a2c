"""Generate handlers: retrieved sources in, a cited answer out (streamed to the gateway, published on Kafka)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from rag.v1 import queries_pb2
from ragstream_common.kafka import Envelope, OutgoingEvent
from ragstream_common.kafka.topics import ANSWERS_PRODUCED
from ragstream_common.logs import get_logger
from ragstream_common.messages import is_expired, now_timestamp

from ragstream_generate.backends.base import AnswerBackend, DraftAnswer
from ragstream_generate.ports import AnswerStream, EventSink, ReplyChannel

log = get_logger(__name__)


def to_answer_produced(
    query_id: str, tenant_id: str, draft: DraftAnswer, sources: Sequence[queries_pb2.ScoredChunk]
) -> queries_pb2.AnswerProduced:
    answer = queries_pb2.AnswerProduced(
        query_id=query_id,
        tenant_id=tenant_id,
        answer=draft.text,
        no_answer=draft.no_answer,
        degraded=draft.degraded,
        backend=draft.backend,
        produced_at=now_timestamp(),
    )
    for ref in draft.citations:
        chunk = sources[ref.source]
        answer.citations.append(
            queries_pb2.Citation(
                index=ref.index,
                document_id=chunk.document_id,
                chunk_id=chunk.chunk_id,
                title=chunk.title,
                snippet=ref.snippet,
                score=ref.score,
            )
        )
    return answer


async def stream_answer(
    backend: AnswerBackend, query_id: str, tenant_id: str, question: str, sources: Sequence[queries_pb2.ScoredChunk]
) -> AsyncIterator[str | queries_pb2.AnswerProduced]:
    """Tokens as the backend produces them, then the structured AnswerProduced."""
    async for event in backend.stream(question, sources):
        if isinstance(event, DraftAnswer):
            yield to_answer_produced(query_id, tenant_id, event, sources)
        else:
            yield event


async def answer_batch(
    batch: Sequence[Envelope[queries_pb2.QueryRetrieved]],
    backend: AnswerBackend,
    replies: ReplyChannel,
    sink: EventSink,
) -> None:
    """Answer the batch's live queries concurrently (LLM backends are I/O bound); publish all answers."""
    live = [e for e in batch if not is_expired(e.message.query)]
    answers = await asyncio.gather(*(_answer_one(e, backend, replies) for e in live))
    await sink.publish_many(
        [
            OutgoingEvent(ANSWERS_PRODUCED.name, answer.query_id, answer, context=envelope.trace_context)
            for envelope, answer in zip(live, answers, strict=True)
        ]
    )


async def _answer_one(
    envelope: Envelope[queries_pb2.QueryRetrieved], backend: AnswerBackend, replies: ReplyChannel
) -> queries_pb2.AnswerProduced:
    retrieved = envelope.message
    query = retrieved.query
    stream: AnswerStream | None = replies.open(query.reply_to, query.query_id) if query.reply_to else None
    if stream is not None:
        # Let the call reach the gateway while the answer is composed (a CPU-bound backend never yields).
        await asyncio.sleep(0)
    started = time.perf_counter()
    answer = queries_pb2.AnswerProduced()
    async for event in stream_answer(backend, query.query_id, query.tenant_id, query.question, retrieved.chunks):
        if isinstance(event, str):
            if stream is not None:
                await stream.token(event)
            continue
        answer = event
    answer.timings_ms.update(query.timings_ms)
    answer.timings_ms["generate"] = (time.perf_counter() - started) * 1000
    if stream is not None:
        await stream.done(answer)
    return answer

