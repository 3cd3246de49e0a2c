"""The connectors worker's Prometheus metrics (`ragstream_connectors_*`; provider throttling is counted where it
happens, `ragstream_connectors_provider_throttled_total` in providers/http.py)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# kind: notification, resync, poll, renew, remove (ConnectorNotified.Kind, lower case).
NOTIFICATIONS = Counter(
    "ragstream_connectors_notifications_processed_total", "Connector events processed", ["provider", "kind"]
)
# reason: "duplicate" (a delivery already processed), "inactive" (the connector is removed or being removed).
DROPPED = Counter(
    "ragstream_connectors_notifications_dropped_total", "Connector events dropped", ["provider", "reason"]
)
# action: created, updated, deleted, unchanged, skipped (too large or unreadable).
ITEMS = Counter("ragstream_connectors_items_total", "Items synced, by what became of them", ["provider", "action"])
ITEMS_PER_SYNC = Histogram(
    "ragstream_connectors_items_per_sync",
    "Items a sync listed",
    ["provider"],
    buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
)
# mode: "delta" (from the saved cursor) or "full" (an enumeration: first sync, resync, expired cursor).
SYNC_SECONDS = Histogram(
    "ragstream_connectors_sync_duration_seconds",
    "Duration of one sync",
    ["provider", "mode"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
SYNC_LAG = Histogram(
    "ragstream_connectors_sync_lag_seconds",
    "From the gateway receiving a notification to the end of the sync that covered it",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
CURSOR_RESTARTS = Counter(
    "ragstream_connectors_cursor_restarts_total", "Expired cursors (410 Gone) that restarted enumeration", ["provider"]
)
# Provider responses that asked us to slow down (429, 503, Drive's 403 rate limits), declared here so the worker
# exposes it from the start (the provider modules are imported with the first connector).
THROTTLED = Counter(
    "ragstream_connectors_provider_throttled_total", "Provider responses that asked us to slow down", ["provider"]
)
# kind: transient (retried), permanent (dead-lettered), item (one item skipped).
ERRORS = Counter("ragstream_connectors_errors_total", "Provider failures", ["provider", "kind"])
# kind: poll, renew.
SCHEDULED = Counter("ragstream_connectors_scheduled_total", "Work the scheduler published", ["kind"])
