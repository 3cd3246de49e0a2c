"""Header names of dead-lettered and redriven records, declared once for the consumer, the DLQ tools and tests.

A dead-lettered record keeps the original key, value and headers (CloudEvents `ce_*`, trace context) and gains
the `dlq_*` reason headers below; a redriven record drops every `dlq_*` header again and gains `REDRIVE_OF`.
"""

from __future__ import annotations

DLQ_PREFIX = "dlq_"

ORIGINAL_TOPIC = "dlq_original_topic"
ORIGINAL_PARTITION = "dlq_original_partition"
ORIGINAL_OFFSET = "dlq_original_offset"
ERROR_CLASS = "dlq_error_class"
# At most 2000 characters of the exception's text.
ERROR_MESSAGE = "dlq_error_message"
CONSUMER_GROUP = "dlq_consumer_group"
# ISO 8601 with offset, UTC.
FAILED_AT = "dlq_failed_at"
# How many times the handler ran before the record was dead-lettered (decimal).
ATTEMPTS = "dlq_attempts"
# `permanent` or `unclassified` (ragstream_common.failures): whether a redrive can help without a fix.
FAILURE_KIND = "dlq_failure_kind"

REASON_HEADERS = (
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ERROR_CLASS,
    ERROR_MESSAGE,
    CONSUMER_GROUP,
    FAILED_AT,
    ATTEMPTS,
    FAILURE_KIND,
)

# `<dlq topic>:<dlq offset>` of the dead letter a redriven record was republished from.
REDRIVE_OF = "ragstream_redrive_of"
