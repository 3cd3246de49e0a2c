"""Where the generate service's events go on Kafka (the handler only emits messages)."""

from __future__ import annotations

from google.protobuf.message import Message
from rag.v1 import queries_pb2, usage_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.tenant_topics import answers_spec
from ragstream_common.kafka.topics import USAGE, TopicSpec


def tenant_answers(message: Message) -> TopicSpec:
    """The answers topic of the answer's own tenant: only that tenant's principal can read it."""
    assert isinstance(message, queries_pb2.AnswerProduced)
    return answers_spec(message.tenant_id)


# Keyed by the query id, like the query's earlier events, so Kafka callers find their answer in order. Only
# answers to Kafka callers are emitted (the handler keeps HTTP callers' answers off Kafka).
GENERATE_ROUTES: Routes = {
    queries_pb2.AnswerProduced: tenant_answers,
    # The tokens of every answer, HTTP callers' included (metering).
    usage_pb2.UsageRecorded: USAGE,
}
