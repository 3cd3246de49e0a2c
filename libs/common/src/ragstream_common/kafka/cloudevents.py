"""CloudEvents Kafka protocol binding, binary mode, with protobuf or proto3-JSON data.

Headers: ce_id, ce_type (the proto full name), ce_source, ce_specversion, ce_time, content-type;
the record key is the partition key and the value is the encoded message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import json_format, symbol_database
from google.protobuf.message import DecodeError, Message

# Importing the generated modules registers every rag.v1 type in the default symbol database.
from rag.v1 import (  # noqa: F401
    chunks_pb2,
    connectors_pb2,
    documents_pb2,
    queries_pb2,
    security_pb2,
    services_pb2,
    status_pb2,
    usage_pb2,
)

from ragstream_common.events import PROTOBUF

SPEC_VERSION = "1.0"
JSON = "application/json"
_PROTOBUF_ALIASES = {PROTOBUF, "application/x-protobuf", "application/vnd.google.protobuf"}


class InvalidEvent(ValueError):
    """A record that can never be decoded: it belongs in the dead-letter topic."""


@dataclass(frozen=True)
class EventAttributes:
    event_id: str
    event_type: str
    source: str
    time: datetime | None
    content_type: str


def event_type_of(message: Message) -> str:
    return message.DESCRIPTOR.full_name


def encode(
    message: Message, *, source: str, content_type: str = PROTOBUF, event_id: str | None = None
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The record value and CloudEvents headers for `message`."""
    if content_type == JSON:
        value = json_format.MessageToJson(message, indent=None).encode()
    else:
        value = message.SerializeToString()
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_type", event_type_of(message).encode()),
        ("ce_source", source.encode()),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("content-type", content_type.encode()),
    ]
    return value, headers


def read_attributes(headers: dict[str, str]) -> EventAttributes:
    missing = [name for name in ("ce_id", "ce_type", "ce_source", "ce_specversion") if not headers.get(name)]
    if missing:
        raise InvalidEvent(f"missing CloudEvents headers: {', '.join(missing)}")
    if headers["ce_specversion"] != SPEC_VERSION:
        raise InvalidEvent(f"unsupported ce_specversion {headers['ce_specversion']!r}")
    time = None
    if headers.get("ce_time"):
        try:
            time = datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidEvent(f"ce_time is not RFC 3339: {headers['ce_time']!r}") from exc
    content_type = headers.get("content-type", PROTOBUF).split(";")[0].strip().lower()
    return EventAttributes(headers["ce_id"], headers["ce_type"], headers["ce_source"], time, content_type)


def decode(
    value: bytes | None, headers: dict[str, str], accepted_types: tuple[str, ...]
) -> tuple[Message, EventAttributes]:
    """Decode one record; raise InvalidEvent with a readable reason when it cannot be."""
    attributes = read_attributes(headers)
    if accepted_types and attributes.event_type not in accepted_types:
        raise InvalidEvent(
            f"ce_type {attributes.event_type!r} not accepted here (expected one of {', '.join(accepted_types)})"
        )
    try:
        message_cls = symbol_database.Default().GetSymbol(attributes.event_type)
    except KeyError as exc:
        raise InvalidEvent(f"unknown ce_type {attributes.event_type!r}") from exc
    if value is None:
        raise InvalidEvent("record has no value")
    message = message_cls()
    try:
        if attributes.content_type in _PROTOBUF_ALIASES:
            message.ParseFromString(value)
        elif attributes.content_type in (JSON, "text/json"):
            text = value.decode("utf-8")
            # json_format.Parse reads `[...]`, `"..."` or `1` as an empty message; proto3 JSON of a message is
            # an object, anything else is not this event.
            if not text.lstrip().startswith("{"):
                raise InvalidEvent(f"{attributes.event_type} as JSON must be an object, got {text[:40]!r}")
            json_format.Parse(text, message, ignore_unknown_fields=True)
        else:
            raise InvalidEvent(f"unsupported content-type {attributes.content_type!r}")
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"cannot decode {attributes.event_type} as {attributes.content_type}: {exc}") from exc
    return message, attributes


def headers_to_dict(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {name.lower(): (value or b"").decode("utf-8", "replace") for name, value in headers}
