"""Admin API over the dead-letter topics (Bearer GATEWAY_ADMIN_TOKEN): depth, list, inspect, redrive.

`{topic}` is a DLQ topic (`rag.documents.received.v1.dlq`) or the topic it belongs to. Redrives republish the
original record to its topic once per dead letter (idempotent, see `ragstream_common.dlq_service`) and are audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from ragstream_common.dlq_records import DeadLetter, DeadLetterFilter
from ragstream_common.dlq_service import (
    DeadLetterNotFound,
    DeadLetterUnavailable,
    RedriveMark,
    RedriveOutcome,
    UnknownDeadLetterTopic,
)
from ragstream_common.logs import get_logger

from ragstream_gateway import dead_letters as handlers
from ragstream_gateway.dead_letters import DeadLetterOperations
from ragstream_gateway.deps import GatewayDeps, client_ip, get_deps, require_admin
from ragstream_gateway.problems import Problem, problem_responses

log = get_logger(__name__)
router = APIRouter(prefix="/v1/admin/dlq", tags=["admin", "dlq"])
Admin = Annotated[str, Depends(require_admin)]
Deps = Annotated[GatewayDeps, Depends(get_deps)]
TopicPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,249}$", description="DLQ topic or its source topic")]
OffsetPath = Annotated[int, Path(ge=0, description="Offset of the dead letter in its DLQ topic")]
DLQ_PROBLEMS = (401, 403, 404, 422, 503)


class TopicDepthView(BaseModel):
    dlq_topic: str
    depth: int = Field(description="Records retained in the DLQ")
    redriven: int = Field(description="Retained records already redriven")
    first_offset: int
    end_offset: int


class DepthsView(BaseModel):
    topics: list[TopicDepthView]


class RedriveView(BaseModel):
    redriven_at: datetime
    actor: str
    target_topic: str


class DeadLetterView(BaseModel):
    dlq_topic: str
    dlq_offset: int
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    key: str
    event_type: str
    event_id: str
    tenant_id: str | None = Field(description="None when the event cannot be decoded")
    reason_class: str
    reason_message: str
    consumer_group: str
    attempts: int | None
    failure_kind: str | None = Field(description="permanent or unclassified, when the consumer recorded it")
    failed_at: datetime
    size_bytes: int
    redrive_of: str | None = Field(description="The dead letter this record was an earlier redrive of")
    redriven: RedriveView | None


class DeadLetterPageView(BaseModel):
    items: list[DeadLetterView]
    next_offset: int | None = Field(default=None, description="Pass as `offset` for the next page")


class PayloadView(BaseModel):
    encoding: Literal["json", "base64", "empty"]
    text: str = Field(description="The decoded event as JSON, else base64 of the first bytes (at most 4096 chars)")
    truncated: bool


class DeadLetterDetail(DeadLetterView):
    headers: dict[str, str] = Field(description="Original headers (CloudEvents, trace context)")
    payload: PayloadView


class RedriveResult(BaseModel):
    dlq_topic: str
    dlq_offset: int
    status: Literal["redriven", "already_redriven"]
    target_topic: str
    redriven_at: datetime


class BulkRedriveResult(BaseModel):
    redriven: int
    already_redriven: int


async def get_dead_letters(deps: Deps) -> DeadLetterOperations:
    if deps.dead_letters is None:
        raise Problem(503, "dead-letter operations are not configured", slug="dlq-unavailable")
    return deps.dead_letters


DeadLetters = Annotated[DeadLetterOperations, Depends(get_dead_letters)]


async def letter_filter(
    tenant: Annotated[str | None, Query(max_length=64, description="Only this tenant's events")] = None,
    reason: Annotated[str | None, Query(max_length=200, description="Only this error class")] = None,
    since: Annotated[datetime | None, Query(description="Dead-lettered at or after (RFC 3339)")] = None,
    until: Annotated[datetime | None, Query(description="Dead-lettered before (RFC 3339)")] = None,
) -> DeadLetterFilter:
    return DeadLetterFilter(tenant, reason, since, until)


Filter = Annotated[DeadLetterFilter, Depends(letter_filter)]
StartOffset = Annotated[int, Query(ge=0, description="Start reading the DLQ at this offset")]


def _redriven(mark: RedriveMark | None) -> RedriveView | None:
    return RedriveView(redriven_at=mark.redriven_at, actor=mark.actor, target_topic=mark.target_topic) if mark else None


def _fields(letter: DeadLetter) -> dict[str, Any]:
    return {name: getattr(letter, name) for name in DeadLetterView.model_fields if name != "redriven"}


def _result(outcome: RedriveOutcome) -> RedriveResult:
    return RedriveResult(
        dlq_topic=outcome.letter.dlq_topic,
        dlq_offset=outcome.letter.dlq_offset,
        status=outcome.status,
        target_topic=outcome.mark.target_topic,
        redriven_at=outcome.mark.redriven_at,
    )


def _problem(exc: Exception) -> Problem:
    if isinstance(exc, UnknownDeadLetterTopic):
        return Problem(404, str(exc), slug="dlq-topic-not-found")
    if isinstance(exc, DeadLetterNotFound):
        return Problem(404, str(exc), slug="dead-letter-not-found")
    # Kafka's error text stays in the log (with the request's correlation id, which the 503 carries too).
    log.warning("dead letters unavailable", error=repr(exc))
    return Problem(
        503,
        "the dead-letter topics cannot be reached; retry shortly",
        slug="dlq-unavailable",
        headers={"Retry-After": "5"},
    )


_EXPECTED = (UnknownDeadLetterTopic, DeadLetterNotFound, DeadLetterUnavailable)


@router.get("", response_model=DepthsView, responses=problem_responses(*DLQ_PROBLEMS), summary="Depth of every DLQ")
async def dlq_depths(_actor: Admin, dead_letters: DeadLetters) -> DepthsView:
    try:
        depths = await dead_letters.depths()
    except _EXPECTED as exc:
        raise _problem(exc) from exc
    return DepthsView(
        topics=[
            TopicDepthView(
                dlq_topic=d.dlq_topic,
                depth=d.depth,
                redriven=d.redriven,
                first_offset=d.first_offset,
                end_offset=d.end_offset,
            )
            for d in depths
        ]
    )


@router.get(
    "/{topic}/events",
    response_model=DeadLetterPageView,
    responses=problem_responses(*DLQ_PROBLEMS),
    summary="Dead letters of one DLQ, oldest first",
)
async def list_dead_letters(
    topic: TopicPath,
    where: Filter,
    _actor: Admin,
    dead_letters: DeadLetters,
    offset: StartOffset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> DeadLetterPageView:
    try:
        page = await dead_letters.list_page(topic, where, offset=offset, limit=limit)
    except _EXPECTED as exc:
        raise _problem(exc) from exc
    items = [DeadLetterView(**_fields(i.letter), redriven=_redriven(i.redriven)) for i in page.items]
    return DeadLetterPageView(items=items, next_offset=page.next_offset)


@router.get(
    "/{topic}/events/{offset}",
    response_model=DeadLetterDetail,
    responses=problem_responses(*DLQ_PROBLEMS),
    summary="One dead letter with its headers and a payload preview",
)
async def inspect_dead_letter(
    topic: TopicPath, offset: OffsetPath, _actor: Admin, dead_letters: DeadLetters
) -> DeadLetterDetail:
    try:
        inspected, mark = await dead_letters.inspect(topic, offset)
    except _EXPECTED as exc:
        raise _problem(exc) from exc
    payload = inspected.payload
    return DeadLetterDetail(
        **_fields(inspected.dead_letter),
        redriven=_redriven(mark),
        headers=inspected.headers,
        payload=PayloadView(encoding=payload.encoding, text=payload.text, truncated=payload.truncated),
    )


@router.post(
    "/{topic}/events/{offset}/redrive",
    response_model=RedriveResult,
    responses=problem_responses(*DLQ_PROBLEMS),
    summary="Republish one dead letter to its topic (once; a repeat answers already_redriven)",
)
async def redrive_dead_letter(
    topic: TopicPath, offset: OffsetPath, request: Request, actor: Admin, deps: Deps, dead_letters: DeadLetters
) -> RedriveResult:
    try:
        outcome = await handlers.redrive_one(dead_letters, deps.audit, topic, offset, actor, client_ip(request))
    except _EXPECTED as exc:
        raise _problem(exc) from exc
    return _result(outcome)


@router.post(
    "/{topic}/redrive",
    response_model=BulkRedriveResult,
    responses=problem_responses(*DLQ_PROBLEMS),
    summary="Republish every matching dead letter (each once)",
)
async def redrive_dead_letters(
    topic: TopicPath,
    where: Filter,
    request: Request,
    actor: Admin,
    deps: Deps,
    dead_letters: DeadLetters,
    offset: StartOffset = 0,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="At most this many")] = None,
) -> BulkRedriveResult:
    try:
        result = await handlers.redrive_matching(
            dead_letters, deps.audit, topic, where, actor, client_ip(request), offset=offset, limit=limit
        )
    except _EXPECTED as exc:
        raise _problem(exc) from exc
    return BulkRedriveResult(redriven=result.redriven, already_redriven=result.already_redriven)
