import pytest
from google.protobuf import json_format
from rag.v1 import documents_pb2, queries_pb2
from ragstream_common.kafka import cloudevents

pytestmark = pytest.mark.unit


def _received() -> documents_pb2.DocumentReceived:
    message = documents_pb2.DocumentReceived(tenant_id="acme", document_id="doc-1", version=3, title="Title")
    message.metadata["team"] = "search"
    message.source.text = "hello world"
    return message


def test_protobuf_round_trip_keeps_message_and_headers() -> None:
    value, headers = cloudevents.encode(_received(), source="test/producer")
    names = {name for name, _ in headers}
    assert {"ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "content-type"} <= names
    decoded, attributes = cloudevents.decode(value, cloudevents.headers_to_dict(headers), ())
    assert decoded == _received()
    assert attributes.event_type == "rag.v1.DocumentReceived"
    assert attributes.source == "test/producer"
    assert attributes.content_type == cloudevents.PROTOBUF


def test_json_event_decodes_to_its_protobuf_twin() -> None:
    """An external producer publishing the proto3 JSON mapping gets the same message as a protobuf producer."""
    json_value = json_format.MessageToJson(_received()).encode()
    headers = {
        "ce_id": "ext-1",
        "ce_type": "rag.v1.DocumentReceived",
        "ce_source": "crm/exporter",
        "ce_specversion": "1.0",
        "content-type": "application/json; charset=utf-8",
    }
    from_json, _ = cloudevents.decode(json_value, headers, ())
    proto_value, proto_headers = cloudevents.encode(_received(), source="x")
    from_proto, _ = cloudevents.decode(proto_value, cloudevents.headers_to_dict(proto_headers), ())
    assert from_json == from_proto


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"ce_type": "rag.v1.DocumentReceived", "ce_source": "s", "ce_specversion": "1.0"}, "ce_id"),
        ({"ce_id": "1", "ce_type": "rag.v1.Nope", "ce_source": "s", "ce_specversion": "1.0"}, "unknown ce_type"),
        (
            {"ce_id": "1", "ce_type": "rag.v1.DocumentReceived", "ce_source": "s", "ce_specversion": "0.3"},
            "specversion",
        ),
        (
            {
                "ce_id": "1",
                "ce_type": "rag.v1.DocumentReceived",
                "ce_source": "s",
                "ce_specversion": "1.0",
                "content-type": "text/csv",
            },
            "content-type",
        ),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(cloudevents.InvalidEvent, match=reason):
        cloudevents.decode(b"", headers, ())


def test_type_not_accepted_on_topic() -> None:
    value, headers = cloudevents.encode(queries_pb2.QueryRequested(query_id="q"), source="s")
    with pytest.raises(cloudevents.InvalidEvent, match="not accepted"):
        cloudevents.decode(value, cloudevents.headers_to_dict(headers), ("rag.v1.DocumentReceived",))


def test_garbage_protobuf_is_invalid() -> None:
    headers = {"ce_id": "1", "ce_type": "rag.v1.DocumentReceived", "ce_source": "s", "ce_specversion": "1.0"}
    with pytest.raises(cloudevents.InvalidEvent, match="cannot decode"):
        cloudevents.decode(b"\xff\xff\xff\xff", headers, ())
    with pytest.raises(cloudevents.InvalidEvent, match="cannot decode"):
        cloudevents.decode(b"{not json", {**headers, "content-type": "application/json"}, ())


@pytest.mark.parametrize("value", [b'["a"]', b'"text"', b"1", b"null", b"  []"])
def test_json_that_is_not_an_object_is_invalid_not_an_empty_message(value: bytes) -> None:
    headers = {"ce_id": "1", "ce_type": "rag.v1.DocumentReceived", "ce_source": "s", "ce_specversion": "1.0",
               "content-type": "application/json"}  # fmt: skip
    with pytest.raises(cloudevents.InvalidEvent, match="must be an object"):
        cloudevents.decode(value, headers, ())


def test_every_declared_event_type_decodes_without_importing_its_module() -> None:
    """A consumer (or the chaos suite's poison check) that only imports cloudevents must still resolve every type
    a topic declares: the module imports every generated contract."""
    import subprocess
    import sys

    from ragstream_common.kafka.topics import ALL_TOPICS

    names = sorted({name for topic in ALL_TOPICS for name in topic.event_types})
    script = (
        "import sys; from google.protobuf import symbol_database; import ragstream_common.kafka.cloudevents; "
        "[symbol_database.Default().GetSymbol(n) for n in sys.argv[1:]]"
    )
    subprocess.run([sys.executable, "-c", script, *names], check=True)
