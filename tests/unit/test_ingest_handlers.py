"""The ingest handler over in-memory ports: outputs, their order, failures as events, contract violations."""

from __future__ import annotations

import pytest
from fakes import RecordingSink, envelope, metric
from fakes.ingest import DictContentSource
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from rag.v1 import chunks_pb2, documents_pb2, status_pb2
from ragstream_common.events import PermanentError
from ragstream_ingest.chunker import Chunker
from ragstream_ingest.fetch import BlockedAddressError
from ragstream_ingest.handlers import ingest_batch
from ragstream_ingest.ports import RawContent

pytestmark = pytest.mark.unit
TEXT = "# Mitosis\n\nCells divide into two daughter cells. " * 40


def _received(document_id: str = "d1", version: int = 1, **source: str) -> documents_pb2.DocumentReceived:
    event = documents_pb2.DocumentReceived(tenant_id="t1", document_id=document_id, version=version, title="Cells")
    event.source.CopyFrom(documents_pb2.DocumentSource(**(source or {"text": TEXT})))
    event.metadata["team"] = "bio"
    return event


async def _run(*messages: object, source: DictContentSource | None = None) -> RecordingSink:
    sink = RecordingSink()
    batch = [envelope(m, offset=i) for i, m in enumerate(messages)]  # type: ignore[type-var]  # test messages
    await ingest_batch(batch, source or DictContentSource(), Chunker(64, 8), sink)
    return sink


async def test_a_text_document_becomes_processing_status_then_chunks() -> None:
    before = metric("ragstream_ingest_chunks_total")
    sink = await _run(_received())
    processing, ready = sink.messages()
    assert isinstance(processing, status_pb2.DocumentProcessing) and processing.stage == "embed"
    assert isinstance(ready, chunks_pb2.ChunksReady)
    assert (ready.tenant_id, ready.document_id, ready.version, ready.title) == ("t1", "d1", 1, "Cells")
    assert dict(ready.metadata) == {"team": "bio"}
    assert len(ready.chunks) > 1 and all(c.token_count <= 64 for c in ready.chunks)
    assert [c.position for c in ready.chunks] == list(range(len(ready.chunks)))
    assert all(c.heading == "Mitosis" for c in ready.chunks)
    assert metric("ragstream_ingest_chunks_total") - before == len(ready.chunks)
    assert sink.calls == 1


async def test_blob_content_is_read_through_the_content_source_with_the_declared_type() -> None:
    source = DictContentSource(
        {"t1:blob://k1": RawContent(b"<html><body><p>Mitochondria make ATP.</p></body></html>", "text/html")}
    )
    sink = await _run(_received(uri="blob://k1"), source=source)
    ready = sink.messages(chunks_pb2.ChunksReady)[0]
    assert ready.content_type == "text/html"
    assert "Mitochondria make ATP." in ready.chunks[0].text


@pytest.mark.parametrize(
    ("content", "stage", "error_class"),
    [
        (None, "fetch", "blob_not_found"),
        (BlockedAddressError("169.254.169.254 is not allowed"), "fetch", BlockedAddressError.error_class),
        (RawContent(b"%PDF-1.7 truncated", "application/pdf"), "parse", None),
        (RawContent(b"   \n\t ", "text/plain"), None, "empty_document"),
    ],
)
async def test_a_bad_document_ends_as_document_failed_not_an_error(
    content: RawContent | Exception | None, stage: str | None, error_class: str | None
) -> None:
    contents = {} if content is None else {"t1:blob://bad": content}
    before = metric("ragstream_ingest_documents_total", outcome="failed")
    sink = await _run(_received(uri="blob://bad"), source=DictContentSource(contents))
    [failed] = sink.messages()
    assert isinstance(failed, status_pb2.DocumentFailed)
    assert (failed.tenant_id, failed.document_id, failed.version) == ("t1", "d1", 1)
    assert failed.reason
    assert stage is None or failed.stage == stage
    assert error_class is None or failed.error_class == error_class
    assert metric("ragstream_ingest_documents_total", outcome="failed") - before == 1


async def test_deletes_are_forwarded_in_batch_order_behind_earlier_versions() -> None:
    deleted = documents_pb2.DocumentDeleted(tenant_id="t1", document_id="d1", version=2)
    sink = await _run(_received(version=1), deleted, _received(document_id="d2"))
    kinds = [type(m).__name__ for m in sink.messages()]
    assert kinds == ["DocumentProcessing", "ChunksReady", "DocumentDeleted", "DocumentProcessing", "ChunksReady"]
    assert sink.messages(documents_pb2.DocumentDeleted)[0] == deleted


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (
            documents_pb2.DocumentReceived(document_id="d1", version=1, source=documents_pb2.DocumentSource(text="x")),
            "tenant_id",
        ),
        (
            documents_pb2.DocumentReceived(tenant_id="t1", version=1, source=documents_pb2.DocumentSource(text="x")),
            "document_id",
        ),
        (
            documents_pb2.DocumentReceived(
                tenant_id="t1", document_id="d1", source=documents_pb2.DocumentSource(text="x")
            ),
            "version",
        ),
        (documents_pb2.DocumentReceived(tenant_id="t1", document_id="d1", version=1), "source"),
    ],
)
async def test_contract_violations_are_permanent_and_emit_nothing(
    event: documents_pb2.DocumentReceived, problem: str
) -> None:
    sink = RecordingSink()
    with pytest.raises(PermanentError, match=problem):
        await ingest_batch([envelope(event)], DictContentSource(), Chunker(64, 8), sink)
    assert sink.emitted == []


async def test_outputs_continue_the_trace_of_their_input() -> None:
    # A recording provider of its own: without one every span id is 0 and the check would prove nothing.
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("upload") as span:
        incoming = envelope(_received())
    sink = RecordingSink()
    await ingest_batch([incoming], DictContentSource(), Chunker(64, 8), sink)
    contexts = {trace.get_current_span(e.context).get_span_context().span_id for e in sink.emitted}
    assert span.get_span_context().span_id != 0
    assert contexts == {span.get_span_context().span_id}


async def test_a_failed_emit_propagates_so_the_consumer_retries() -> None:
    sink = RecordingSink(fail_with=ConnectionError("broker down"))
    with pytest.raises(ConnectionError):
        await ingest_batch([envelope(_received())], DictContentSource(), Chunker(64, 8), sink)
