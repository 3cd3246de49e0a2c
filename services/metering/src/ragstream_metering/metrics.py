"""The metering worker's Prometheus metrics (`ragstream_metering_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# metric: questions, searches, documents_ingested, ... (windows.METRICS): facts counted that carry it.
EVENTS = Counter("ragstream_metering_events_total", "Usage facts counted, by the metric they carry", ["metric"])
# The quantities those facts carry (tokens, bytes, chunks, ...): what usage_minutes sums and the cost panels price.
QUANTITY = Counter(
    "ragstream_metering_quantity_total", "Usage counted, in the metric's own unit (tokens, bytes, ...)", ["metric"]
)
# A usage id already counted in its window: a redelivery or a replay, which adds nothing.
DUPLICATES = Counter("ragstream_metering_duplicates_total", "Usage facts seen again and not counted")
# Records that are not a decodable rag.v1.UsageRecorded (or carry no tenant or usage id); they are skipped.
INVALID = Counter("ragstream_metering_invalid_events_total", "Usage records that could not be counted")
WINDOWS_FLUSHED = Counter("ragstream_metering_windows_flushed_total", "Window totals written to Postgres")
FLUSH_FAILURES = Counter("ragstream_metering_flush_failures_total", "Flushes that failed (retried at the next)")
FLUSH_SECONDS = Histogram(
    "ragstream_metering_flush_duration_seconds",
    "Duration of one flush of changed windows",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
