"""Query API: `POST /v1/query` (JSON or Server-Sent Events) and `POST /v1/search`.

Mounted by `create_app` when it is given a `QueryDispatcher`; the query domain (models, replies, the dispatcher)
lives in `ragstream_gateway.query`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from rag.v1 import queries_pb2
from sse_starlette import EventSourceResponse

from ragstream_gateway.audit_trail import note_question
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import Principal, get_queries, get_settings
from ragstream_gateway.problems import Problem, concealed, problem_responses
from ragstream_gateway.query.models import (
    QueryBody,
    QueryResponse,
    SearchBody,
    SearchResponse,
    agent_step_out,
    chunk_out,
    citation_out,
)
from ragstream_gateway.query.replies import DoneEvent, FailureEvent, SourcesEvent, StepEvent, TokenEvent
from ragstream_gateway.query.service import QueryDispatcher, QueryRequest, QueryTimeout, Submission, total_timings
from ragstream_gateway.routes.quotas import count_question

router = APIRouter(prefix="/v1", tags=["query"])
# The `query` scope, and one question counted against the tenant's daily quota (routes/quotas.py).
Asker = Annotated[Principal, Depends(count_question)]
PROBLEMS = problem_responses(401, 403, 422, 429, 502, 503, 504)


def _timeout_s(timeout_ms: int | None, settings: GatewaySettings) -> float:
    return (timeout_ms or settings.query_timeout_ms) / 1000


def _timed_out(submission: Submission) -> Problem:
    return Problem(
        504, "no answer within the query deadline", slug="query-timeout", extensions={"query_id": submission.query_id}
    )


def _failed(request: Request, submission: Submission, event: FailureEvent) -> Problem:
    """The worker's reason is logged, not returned: it is an exception text of another service."""
    stage = event.stage[:64] or "a pipeline"
    return concealed(
        request,
        502,
        f"the {stage} stage could not answer the query",
        slug="query-failed",
        cause=f"{stage}: {event.reason}",
        extensions={"query_id": submission.query_id},
    )


# The SSE events of POST /v1/query, in the order they come (the OpenAPI description of its stream).
SSE_ORDER = "step... (agent mode), sources, token..., done | error"


@router.post(
    "/query",
    response_model=QueryResponse,
    response_model_exclude_none=True,  # `steps` and `exit_reason` only in agent mode
    responses={**PROBLEMS, 200: {"content": {"text/event-stream": {"description": SSE_ORDER}}}},
)
async def query(
    body: QueryBody,
    request: Request,
    principal: Asker,
    settings: Annotated[GatewaySettings, Depends(get_settings)],
    dispatcher: Annotated[QueryDispatcher, Depends(get_queries)],
) -> Any:
    """Ask a question; the answer cites the indexed chunks it comes from. With `"mode": "agent"` the answer may
    first run follow-up searches of its own (at most `max_steps` steps, the question's included): it cites chunks
    from any step, and the answer lists the `steps` and the `exit_reason`.

    `Accept: text/event-stream` streams, in this order: `step`s (agent mode, each as it completes), `sources`,
    `token`s, then `done` (or `error`)."""
    note_question(body.question)  # audited as its hash unless the tenant opted in to the text
    streamed = "text/event-stream" in request.headers.get("accept", "")
    submission = await dispatcher.submit(
        QueryRequest(
            principal.tenant_id,
            body.question,
            body.top_k,
            body.filters,
            body.mode,
            body.retrieval,
            _timeout_s(body.timeout_ms, settings),
            body.max_steps,
            # One JSON body carries the answer and its citations, never the sources event: not sent at all.
            answer_only=not streamed and body.mode != "search",
        )
    )
    agent = body.mode == "agent"
    if streamed:
        return EventSourceResponse(_stream(request, dispatcher, submission, agent), ping=15)
    answer = sources = None
    try:
        async for event in dispatcher.follow(submission):
            if isinstance(event, FailureEvent):
                raise _failed(request, submission, event)
            if isinstance(event, SourcesEvent):
                sources = event
            elif isinstance(event, DoneEvent):
                answer = event.answer
    except QueryTimeout:
        raise _timed_out(submission) from None
    if answer is None:  # search mode
        return QueryResponse(
            query_id=submission.query_id,
            answer="",
            no_answer=not (sources and sources.chunks),
            degraded=False,
            backend="",
            citations=[],
            timings=total_timings(submission, sources.timings_ms if sources else {}),
        )
    return _answered(submission, answer, agent)


def _answered(submission: Submission, answer: queries_pb2.AnswerProduced, agent: bool) -> QueryResponse:
    """The JSON answer, and the SSE `done` event; outside agent mode without `steps` and `exit_reason`."""
    return QueryResponse(
        query_id=submission.query_id,
        answer=answer.answer,
        no_answer=answer.no_answer,
        degraded=answer.degraded,
        backend=answer.backend,
        citations=[citation_out(c) for c in answer.citations],
        timings=total_timings(submission, dict(answer.timings_ms)),
        steps=[agent_step_out(step) for step in answer.steps] if agent else None,
        exit_reason=answer.exit_reason if agent else None,
    )


async def _stream(
    request: Request, dispatcher: QueryDispatcher, submission: Submission, agent: bool
) -> AsyncIterator[dict[str, str]]:
    try:
        async for event in dispatcher.follow(submission, sources_first=True):
            if isinstance(event, StepEvent):
                yield _sse("step", agent_step_out(event.step).model_dump())
            elif isinstance(event, SourcesEvent):
                results = [chunk_out(c).model_dump() for c in event.chunks]
                yield _sse("sources", {"query_id": submission.query_id, "results": results})
            elif isinstance(event, TokenEvent):
                yield _sse("token", {"text": event.text})
            elif isinstance(event, DoneEvent):
                yield _sse("done", _answered(submission, event.answer, agent).model_dump(exclude_none=True))
            else:
                failed = _failed(request, submission, event)
                yield _sse("error", {"status": failed.status, "detail": failed.detail, **failed.extensions})
    except QueryTimeout:
        yield _sse(
            "error", {"query_id": submission.query_id, "status": 504, "detail": "no answer within the query deadline"}
        )


def _sse(event: str, data: dict[str, Any]) -> dict[str, str]:
    return {"event": event, "data": json.dumps(data)}


@router.post("/search", response_model=SearchResponse, responses=PROBLEMS)
async def search(
    request: Request,
    body: SearchBody,
    principal: Asker,
    settings: Annotated[GatewaySettings, Depends(get_settings)],
    dispatcher: Annotated[QueryDispatcher, Depends(get_queries)],
) -> SearchResponse:
    """Ranked chunks alone (hybrid, dense or lexical), for clients that bring their own LLM."""
    note_question(body.query)
    submission = await dispatcher.submit(
        QueryRequest(
            principal.tenant_id,
            body.query,
            body.top_k,
            body.filters,
            "search",
            body.retrieval,
            _timeout_s(body.timeout_ms, settings),
        )
    )
    try:
        async for event in dispatcher.follow(submission):
            if isinstance(event, FailureEvent):
                raise _failed(request, submission, event)
            if isinstance(event, SourcesEvent):
                return SearchResponse(
                    query_id=submission.query_id,
                    results=[chunk_out(c) for c in event.chunks],
                    timings=total_timings(submission, event.timings_ms),
                )
    except QueryTimeout:
        raise _timed_out(submission) from None
    raise Problem(502, "the retrieve stage ended without sources", slug="query-failed")
