import re
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from ragstream_common import tracing
from ragstream_common.config import ServiceSettings
from ragstream_common.kafka.topics import ALL_TOPICS, PIPELINE_TOPICS

pytestmark = pytest.mark.unit


def test_topic_names_follow_the_convention() -> None:
    for spec in PIPELINE_TOPICS:
        assert re.fullmatch(r"rag\.[a-z]+\.[a-z]+\.v1", spec.name), spec.name
        assert spec.event_types, spec.name
    names = [spec.name for spec in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert {f"{s.name}.dlq" for s in PIPELINE_TOPICS} <= set(names)


def test_bad_config_names_the_variable() -> None:
    code = "from ragstream_common.config import ServiceSettings, load_settings; load_settings(ServiceSettings)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"RAGSTREAM_GRPC_PORT": "not-a-port", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "RAGSTREAM_GRPC_PORT" in result.stderr


def test_shared_infrastructure_variables_have_no_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    settings = ServiceSettings()
    assert settings.kafka.bootstrap_servers == "broker:9092"
    assert settings.database_url == "postgresql://db/x"


def test_w3c_context_round_trips_through_kafka_headers() -> None:
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("parent") as span:
        headers = tracing.inject_headers()
    assert any(name == "traceparent" for name, _ in headers)
    extracted = trace.get_current_span(tracing.extract_headers(headers)).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id


def test_legacy_jaeger_header_is_accepted() -> None:
    trace_id = "00000000000000000000000000abcdef"
    headers = [("uber-trace-id", f"{trace_id}:00000000000000aa:0:1".encode())]
    extracted = trace.get_current_span(tracing.extract_headers(headers)).get_span_context()
    assert format(extracted.trace_id, "032x") == trace_id
    metadata = [("uber-trace-id", f"{trace_id}:00000000000000aa:0:1")]
    from_grpc = trace.get_current_span(tracing.extract_metadata(metadata)).get_span_context()
    assert format(from_grpc.trace_id, "032x") == trace_id


def test_services_run_on_uvloop_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import uvloop
    from ragstream_common.service import event_loop_factory

    factory = event_loop_factory(ServiceSettings().event_loop)
    assert factory is uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
    monkeypatch.setenv("RAGSTREAM_EVENT_LOOP", "asyncio")
    assert event_loop_factory(ServiceSettings().event_loop) is None


def test_without_an_exporter_spans_are_not_recorded_but_still_carry_the_trace() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    quiet = tracing.build_tracer_provider("svc", None)
    with quiet.get_tracer("t").start_as_current_span("work") as span:
        headers = tracing.inject_headers()
    assert not span.is_recording() and span.get_span_context().is_valid
    extracted = trace.get_current_span(tracing.extract_headers(headers)).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id

    exported = InMemorySpanExporter()
    recording = tracing.build_tracer_provider("svc", None, [SimpleSpanProcessor(exported)])
    with recording.get_tracer("t").start_as_current_span("work") as span:
        assert span.is_recording()
    assert [s.name for s in exported.get_finished_spans()] == ["work"]
