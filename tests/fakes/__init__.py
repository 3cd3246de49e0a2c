"""In-memory stand-ins for handler ports, shared by every service's handler tests.

Only ports of a handler are faked here (what a unit test needs to call a pure handler); integration and e2e tests
use the real Kafka, Postgres, gRPC and model. Service-specific fakes live beside this module
(`fakes.ingest`, `fakes.embed`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import Message
from opentelemetry import context as otel_context
from prometheus_client import REGISTRY
from ragstream_common.events import Emitted, Envelope

M = TypeVar("M", bound=Message)


def envelope(message: M, key: str = "t1/d1", *, topic: str = "topic", offset: int = 0) -> Envelope[M]:
    """An envelope as the consumer adapter would build it, in the current trace context."""
    return Envelope(
        message,
        key,
        f"id-{offset}",
        message.DESCRIPTOR.full_name,
        "test",
        None,
        topic,
        0,
        offset,
        otel_context.get_current(),
    )


@dataclass
class RecordingSink:
    """`EventSink` that keeps every emitted event; `fail_with` makes the next emit raise (once)."""

    emitted: list[Emitted] = field(default_factory=list)
    calls: int = 0
    fail_with: BaseException | None = None

    async def emit(self, events: Sequence[Emitted]) -> None:
        self.calls += 1
        if self.fail_with is not None:
            failure, self.fail_with = self.fail_with, None
            raise failure
        self.emitted.extend(events)

    def messages(self, kind: type[M] | None = None) -> list[Any]:
        return [e.message for e in self.emitted if kind is None or isinstance(e.message, kind)]


def metric(name: str, **labels: str) -> float:
    """A Prometheus sample's current value (0 when never incremented)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
