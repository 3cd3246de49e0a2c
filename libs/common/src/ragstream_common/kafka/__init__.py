"""Kafka adapters: topics, CloudEvents binding, publisher, consumer and the routing event sink."""

from ragstream_common.events import Envelope, OutgoingEvent, PermanentError
from ragstream_common.kafka.consumer import ConsumerOptions, EventConsumer
from ragstream_common.kafka.producer import EventPublisher

__all__ = ["ConsumerOptions", "Envelope", "EventConsumer", "EventPublisher", "OutgoingEvent", "PermanentError"]
