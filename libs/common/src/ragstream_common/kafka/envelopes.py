"""Records into `Envelope`s, and a handler call inside one CONSUMER span per envelope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from opentelemetry import context as otel_context
from opentelemetry import trace

from ragstream_common.events import BatchHandler, Envelope
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.metrics import CONSUMED
from ragstream_common.kafka.topics import TOPICS_BY_NAME
from ragstream_common.tracing import ending, extract_headers

tracer = trace.get_tracer("ragstream.kafka")


def decode(record: ConsumerRecord) -> Envelope[Any]:
    """The envelope of `record`; InvalidEvent when it cannot be decoded."""
    headers = cloudevents.headers_to_dict(list(record.headers or ()))
    spec = TOPICS_BY_NAME.get(record.topic)
    message, attributes = cloudevents.decode(record.value, headers, spec.event_types if spec else ())
    return Envelope(
        message=message,
        key=(record.key or b"").decode("utf-8", "replace"),
        event_id=attributes.event_id,
        event_type=attributes.event_type,
        source=attributes.source,
        time=attributes.time,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        trace_context=extract_headers(list(record.headers or ())),
    )


def decode_or_error(record: ConsumerRecord) -> Envelope[Any] | cloudevents.InvalidEvent:
    try:
        return decode(record)
    except cloudevents.InvalidEvent as exc:
        return exc


async def handle_traced(handler: BatchHandler, envelopes: Sequence[Envelope[Any]], group: str) -> None:
    """Run `handler` over `envelopes`, each in its CONSUMER span continuing the producer's trace."""
    spans = [
        tracer.start_span(
            f"{e.topic} process",
            context=e.trace_context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": e.topic,
                "messaging.kafka.destination.partition": e.partition,
                "messaging.kafka.message.offset": e.offset,
                "messaging.message.id": e.event_id,
                "messaging.consumer.group.name": group,
            },
        )
        for e in envelopes
    ]
    traced = [
        _with_context(e, trace.set_span_in_context(s, e.trace_context)) for e, s in zip(envelopes, spans, strict=True)
    ]
    with ending(spans):
        if len(traced) == 1:
            # A single event's trace is also the current one, so that the handler's own spans join it.
            token = otel_context.attach(traced[0].trace_context)
            try:
                await handler(traced)
            finally:
                otel_context.detach(token)
        else:
            await handler(traced)
    for e in envelopes:
        CONSUMED.labels(e.topic, group).inc()


def _with_context(envelope: Envelope[Any], context: otel_context.Context) -> Envelope[Any]:
    return Envelope(**{**envelope.__dict__, "trace_context": context})
