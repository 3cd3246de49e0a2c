"""The Kafka side of `EventSink`: each message type goes to the topic a service routes it to, keyed by that
topic's partition key. Handlers emit domain messages; only this adapter knows topics and keys.

A route is a fixed topic, or a function of the message for topics that depend on it (a tenant's answers go to
that tenant's own topic, kafka/tenant_topics.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from google.protobuf.message import Message

from ragstream_common.events import Emitted, OutgoingEvent, RecordPublisher
from ragstream_common.kafka.topics import TopicSpec
from ragstream_common.messages import document_key

Route = TopicSpec | Callable[[Message], TopicSpec]
Routes = Mapping[type[Message], Route]


def partition_key(topic: TopicSpec, message: Message) -> str:
    """`<tenant>/<document>` on document topics, the query id on query topics, the tenant on tenant topics,
    `<tenant>/<connector>` on connector topics."""
    fields = message.DESCRIPTOR.fields_by_name
    if topic.partition_key == "tenant":
        return str(getattr(message, "tenant_id"))  # noqa: B009
    if topic.partition_key == "connector":
        return document_key(getattr(message, "tenant_id"), getattr(message, "connector_id"))  # noqa: B009
    if topic.partition_key == "document":
        return document_key(getattr(message, "tenant_id"), getattr(message, "document_id"))  # noqa: B009
    if "query_id" in fields:
        return str(getattr(message, "query_id"))  # noqa: B009
    # QueryEmbedded and QueryRetrieved wrap the QueryRequested they continue.
    return str(getattr(message, "query").query_id)  # noqa: B009


def outgoing(routes: Routes, event: Emitted) -> OutgoingEvent:
    """The record for `event`; TypeError for a message type the service does not route (a programming error)."""
    route = routes.get(type(event.message))
    if route is None:
        raise TypeError(f"no route for {event.message.DESCRIPTOR.full_name}")
    topic = route if isinstance(route, TopicSpec) else route(event.message)
    if event.message.DESCRIPTOR.full_name not in topic.event_types:
        raise TypeError(f"{event.message.DESCRIPTOR.full_name} is not declared on {topic.name}")
    return OutgoingEvent(topic.name, partition_key(topic, event.message), event.message, event.context)


class RoutedEventSink:
    """Implements `EventSink` over a publisher: all events of one call go out together, acknowledged."""

    def __init__(self, publisher: RecordPublisher, routes: Routes) -> None:
        self._publisher = publisher
        self._routes = dict(routes)

    async def emit(self, events: Sequence[Emitted]) -> None:
        records = [outgoing(self._routes, event) for event in events]
        if records:
            await self._publisher.publish_many(records)
