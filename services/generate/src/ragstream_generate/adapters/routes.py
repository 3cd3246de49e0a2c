"""Where the generate service's events go on Kafka (the handler only emits messages)."""

from __future__ import annotations

from rag.v1 import queries_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.topics import ANSWERS_PRODUCED

# Keyed by the query id, like the query's earlier events, so Kafka callers find their answer in order.
GENERATE_ROUTES: Routes = {queries_pb2.AnswerProduced: ANSWERS_PRODUCED}
