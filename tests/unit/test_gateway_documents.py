"""Document intake order and failure handling, and the projections' event mapping, over stand-in ports."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from unittest.mock import AsyncMock

import pytest
from rag.v1 import documents_pb2, status_pb2
from ragstream_common.kafka.routing import outgoing
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.documents import Caller, DocumentService, PublishFailed, Submission, is_unchanged
from ragstream_gateway.ports import DocumentRecord, Registration, StatusChange
from ragstream_gateway.projector import external_version, status_change

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _record(**changes: object) -> DocumentRecord:
    fields: dict[str, object] = {
        "tenant_id": "t",
        "document_id": "d",
        "version": 1,
        "status": "indexed",
        "title": "T",
        "metadata": {},
        "content_type": "text/plain",
        "content_sha256": hashlib.sha256(b"hello").hexdigest(),
        "size_bytes": 5,
        "source_uri": "",
        "chunk_count": 1,
        "error_stage": None,
        "error": None,
        "created_at": NOW,
        "updated_at": NOW,
        "indexed_at": NOW,
        "deleted_at": None,
    }
    fields.update(changes)
    return DocumentRecord(**fields)  # type: ignore[arg-type]


def _service(current: DocumentRecord | None, registration: Registration) -> tuple[DocumentService, AsyncMock]:
    ports = AsyncMock()
    ports.registry.get.return_value = current
    ports.registry.register.return_value = registration
    ports.blobs.put.return_value = "blob://d/sha"
    service = DocumentService(
        ports.registry, ports.blobs, ports.sink, ports.audit, inline_text_max_bytes=4, publish_timeout_s=1
    )
    return service, ports


def _submission(content: bytes = b"hello", *, inline: bool = True) -> Submission:
    return Submission("t", "d", "T", {}, content, "text/plain", inline_allowed=inline)


async def test_unchanged_submission_touches_nothing() -> None:
    service, ports = _service(_record(), Registration(9, "x"))
    _, registration = await service.submit(_submission(), Caller("key:k"))
    assert registration == Registration(1, "indexed", unchanged=True)
    ports.blobs.put.assert_not_called()
    ports.registry.register.assert_not_called()
    ports.sink.emit.assert_not_called()


@pytest.mark.parametrize(("source_uri", "inline"), [("", True), ("blob://d/sha", False)])
async def test_an_identical_retry_of_a_version_still_received_publishes_it_again(source_uri: str, inline: bool) -> None:
    """The gateway may have died between registering a version and publishing it: the retry publishes it."""
    record = _record(version=3, status="received", source_uri=source_uri, published_version=2)
    service, ports = _service(record, Registration(9, "x"))
    _, registration = await service.submit(_submission(), Caller("key:k"))
    assert registration == Registration(3, "received", previous_version=2)
    ports.registry.register.assert_not_called()
    ports.blobs.put.assert_not_called()
    # The same usage id as the first try's: metering counts the version once.
    emitted, usage = ports.sink.emit.call_args.args[0]
    assert usage.message.usage_id == "t/d/3:document"
    message = emitted.message
    assert isinstance(message, documents_pb2.DocumentUpdated) and (message.version, message.previous_version) == (3, 2)
    assert (message.source.text, message.source.uri) == (("hello", "") if inline else ("", source_uri))
    assert ports.audit.record.call_args.args[0].action == "document.republish"
    ports.registry.mark_published.assert_awaited_once_with("t", "d", 3)


async def test_an_identical_retry_of_a_published_version_in_flight_is_a_no_op() -> None:
    service, ports = _service(_record(version=3, status="received", published_version=3), Registration(9, "x"))
    _, registration = await service.submit(_submission(), Caller("key:k"))
    assert registration == Registration(3, "received", unchanged=True)
    ports.sink.emit.assert_not_called()


async def test_a_published_version_is_recorded_after_the_acknowledgement() -> None:
    service, ports = _service(None, Registration(1, "received"))
    await service.submit(_submission(), Caller("key:k"))
    names = [name for name, *_ in ports.mock_calls if not name.startswith("audit")]
    assert names[-2:] == ["sink.emit", "registry.mark_published"]


@pytest.mark.parametrize(
    "record",
    [
        _record(status="deleted"),
        _record(error_stage="publish", status="failed"),
        _record(title="other"),
        _record(metadata={"a": "b"}),
        _record(content_sha256="0" * 64),
    ],
)
def test_what_counts_as_a_change(record: DocumentRecord) -> None:
    assert not is_unchanged(record, hashlib.sha256(b"hello").hexdigest(), "T", {})


async def test_blob_first_then_registry_then_event() -> None:
    service, ports = _service(None, Registration(1, "received"))
    await service.submit(_submission(b"longer than four bytes"), Caller("key:k"))
    names = [name for name, *_ in ports.mock_calls if not name.startswith("audit")]
    assert names == ["registry.get", "blobs.put", "registry.register", "sink.emit", "registry.mark_published"]
    emitted, _usage = ports.sink.emit.call_args.args[0]
    record = outgoing(GATEWAY_ROUTES, emitted)
    assert record.key == "t/d" and record.topic == "rag.documents.received.v1"
    assert record.message.source.uri == "blob://d/sha"  # type: ignore[attr-defined]  # a DocumentReceived


async def test_small_text_travels_inline_and_updates_name_their_previous_version() -> None:
    service, ports = _service(_record(title="old"), Registration(2, "received", previous_version=1))
    await service.submit(_submission(b"hi"), Caller("key:k"))
    ports.blobs.put.assert_not_called()
    message = ports.sink.emit.call_args.args[0][0].message
    assert isinstance(message, documents_pb2.DocumentUpdated)
    assert (message.source.text, message.version, message.previous_version) == ("hi", 2, 1)


async def test_failed_publish_marks_the_version_and_raises() -> None:
    service, ports = _service(None, Registration(3, "received"))
    ports.sink.emit.side_effect = ConnectionError("broker gone")
    with pytest.raises(PublishFailed):
        await service.submit(_submission(), Caller("key:k"))
    ports.registry.mark_publish_failed.assert_awaited_once()
    assert ports.registry.mark_publish_failed.call_args.args[:3] == ("t", "d", 3)
    assert ports.audit.record.call_args.args[0].action == "document.publish_failed"


async def test_delete_publishes_before_marking() -> None:
    service, ports = _service(_record(version=4), Registration(0, ""))
    ports.sink.emit.side_effect = TimeoutError()
    with pytest.raises(PublishFailed):
        await service.delete("t", "d", Caller("key:k"))
    ports.registry.mark_deleted.assert_not_called()
    ports.sink.emit.side_effect = None
    await service.delete("t", "d", Caller("key:k"))
    assert ports.sink.emit.call_args.args[0][0].message.version == 4
    ports.registry.mark_deleted.assert_awaited_once_with("t", "d", 4)


def test_status_events_map_to_registry_changes() -> None:
    ids = {"tenant_id": "t", "document_id": "d", "version": 2}
    assert status_change(status_pb2.DocumentProcessing(**ids)) == StatusChange("t", "d", 2, "processing")
    assert status_change(status_pb2.DocumentIndexed(**ids, chunk_count=3)).chunk_count == 3  # type: ignore[union-attr]
    failed = status_change(status_pb2.DocumentFailed(**ids, stage="embed", reason="oom", error_class="MemoryError"))
    assert failed == StatusChange("t", "d", 2, "failed", error_stage="embed", error="MemoryError: oom")
    assert status_change(status_pb2.DocumentRemoved(**ids)).status == "deleted"  # type: ignore[union-attr]
    assert status_change(documents_pb2.DocumentDeleted(**ids)).status == "deleted"  # type: ignore[union-attr]
    assert status_change(documents_pb2.DocumentReceived(**ids)) is None


def test_external_events_describe_their_version() -> None:
    inline = documents_pb2.DocumentReceived(tenant_id="t", document_id="d", version=4, title="X")
    inline.source.text = "hello"
    version = external_version(inline)
    assert (version.content_sha256, version.size_bytes, version.source_uri) == (
        hashlib.sha256(b"hello").hexdigest(),
        5,
        "",
    )
    by_uri = documents_pb2.DocumentUpdated(tenant_id="t", document_id="d", version=5)
    by_uri.source.uri, by_uri.source.sha256, by_uri.source.size_bytes = "blob://k", "abc", 10
    assert (external_version(by_uri).source_uri, external_version(by_uri).content_sha256) == ("blob://k", "abc")
