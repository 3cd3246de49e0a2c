"""Kafka conventions: topics, CloudEvents binding, publisher and consumer."""

from ragstream_common.kafka.consumer import ConsumerOptions, Envelope, EventConsumer, PermanentError
from ragstream_common.kafka.producer import EventPublisher, OutgoingEvent

__all__ = ["ConsumerOptions", "Envelope", "EventConsumer", "EventPublisher", "OutgoingEvent", "PermanentError"]
