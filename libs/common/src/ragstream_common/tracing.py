"""OpenTelemetry setup and context propagation through Kafka headers and gRPC metadata.

Spans are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set. Extraction accepts W3C
`traceparent`/`tracestate` and, for legacy callers, Jaeger's `uber-trace-id`; injection writes W3C only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators import textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

KafkaHeaders = Sequence[tuple[str, bytes]]

# W3C first so that it wins when a caller sends both formats.
# Span attributes naming a question and its tenant on every hop (a query_id finds its trace in Jaeger).
QUERY_ID_ATTRIBUTE = "rag.query_id"
TENANT_ID_ATTRIBUTE = "rag.tenant_id"
_EXTRACTOR = CompositePropagator([JaegerPropagator(), TraceContextTextMapPropagator(), W3CBaggagePropagator()])
_INJECTOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


class _AcceptJaegerPropagator(CompositePropagator):
    """Global propagator: extract W3C or Jaeger, inject W3C only."""

    def __init__(self) -> None:
        super().__init__([])

    # `None` (accepted besides the base signature's types) means the default getter/setter, as before.
    def extract(
        self,
        carrier: textmap.CarrierT,
        context: otel_context.Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] | None = None,
    ) -> otel_context.Context:
        if getter is None:
            return _EXTRACTOR.extract(carrier, context)
        return _EXTRACTOR.extract(carrier, context, getter)

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: otel_context.Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] | None = None,
    ) -> None:
        if setter is None:
            _INJECTOR.inject(carrier, context)
        else:
            _INJECTOR.inject(carrier, context, setter)

    @property
    def fields(self) -> set[str]:
        return set(_EXTRACTOR.fields)


def setup_tracing(
    service_name: str,
    otlp_endpoint: str | None,
    extra_processors: Iterable[SpanProcessor] = (),
) -> TracerProvider:
    """Install the global tracer provider and propagator; export OTLP only when an endpoint is set."""
    provider = build_tracer_provider(service_name, otlp_endpoint, extra_processors)
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(_AcceptJaegerPropagator())
    return provider


def build_tracer_provider(
    service_name: str, otlp_endpoint: str | None, extra_processors: Iterable[SpanProcessor] = ()
) -> TracerProvider:
    """With nowhere to send spans, none is recorded (ALWAYS_OFF): spans still get trace and span ids, which reach
    the logs and the events this service publishes, at a fraction of a recorded span's cost. Otherwise the sampler
    is the SDK's (OTEL_TRACES_SAMPLER, default parent-based always-on)."""
    processors = list(extra_processors)
    exporting = bool(otlp_endpoint or processors)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=None if exporting else ALWAYS_OFF
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def inject_headers(context: otel_context.Context | None = None) -> list[tuple[str, bytes]]:
    """W3C trace headers for a Kafka record, from `context` or the current one."""
    carrier: dict[str, str] = {}
    _INJECTOR.inject(carrier, context=context)
    return [(name, value.encode()) for name, value in carrier.items()]


def extract_headers(headers: KafkaHeaders) -> otel_context.Context:
    """The parent context carried by Kafka record headers (W3C or Jaeger)."""
    carrier = {name.lower(): value.decode("latin-1") for name, value in headers if value is not None}
    return _EXTRACTOR.extract(carrier)


def extract_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> otel_context.Context:
    """The parent context carried by gRPC invocation metadata."""
    carrier = {
        key.lower(): value.decode("latin-1") if isinstance(value, bytes) else value for key, value in (metadata or ())
    }
    return _EXTRACTOR.extract(carrier)


def inject_metadata(context: otel_context.Context | None = None) -> list[tuple[str, str]]:
    carrier: dict[str, str] = {}
    _INJECTOR.inject(carrier, context=context)
    return list(carrier.items())


def trace_id_hex(context: otel_context.Context | None = None) -> str:
    span_context = trace.get_current_span(context).get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


@contextlib.contextmanager
def ending(spans: list[trace.Span]) -> Iterator[list[trace.Span]]:
    """End every span of `spans` (which may grow inside the block) on exit; on an error, mark each failed first."""
    try:
        yield spans
    except Exception as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
        raise
    finally:
        for span in spans:
            span.end()
