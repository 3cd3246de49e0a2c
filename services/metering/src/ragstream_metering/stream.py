"""The faust app: rag.usage.recorded.v1 into a tumbling one-minute table per tenant, flushed to Postgres by a timer.

Correctness never rests on faust's window-close callback. faust-streaming's open issues show it unreliable
exactly where metering cannot be: windows lost with no callback when a worker dies or is rebalanced
(faust-streaming/faust#193), the callback firing only after a later event (faust-streaming/faust#250, PR #251),
late events dropping a window's callback (PR #137), and keys recovered from the changelog never expiring
(robinhood/faust#44). Instead every window keeps its facts by usage id (windows.py), and `flush` writes the
absolute totals of every window it holds whose totals differ from what it last wrote, so a window recovered
from the changelog after a restart is written again, harmlessly (GREATEST upsert), and a replay adds nothing.
Offsets are committed only after the producer flushed the changelog (faust's at-least-once commit), so every
counted fact is either in the changelog or read again.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import faust
from aiokafka.helpers import create_ssl_context
from faust.streams import Stream
from faust.tables.wrappers import WindowWrapper
from faust.types import EventT
from faust.types.auth import CredentialsT
from rag.v1 import usage_pb2
from ragstream_common.events import PermanentError
from ragstream_common.failures import FailureKind
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.connection import MskIamTokenProvider
from ragstream_common.kafka.dead_letters import reason_headers
from ragstream_common.kafka.dlq_headers import DLQ_PREFIX
from ragstream_common.kafka.topics import USAGE
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.logs import get_logger

from ragstream_metering import metrics
from ragstream_metering.config import MeteringSettings
from ragstream_metering.kafka_metrics import AgentPositions
from ragstream_metering.windows import (
    WINDOW_S,
    Totals,
    Window,
    as_datetime,
    known_quantities,
    shard_key,
    summed,
    tenant_of,
    totals,
    window_start,
    with_usage,
)

log = get_logger(__name__)
TABLE_NAME = "usage_windows"
_USAGE_TYPE = (usage_pb2.UsageRecorded.DESCRIPTOR.full_name,)
WindowKey = tuple[str, float]


# The partition of the record a batched write counts (see UsageTable); None outside a batch's writes.
_SOURCE_PARTITION: ContextVar[int | None] = ContextVar("usage_source_partition", default=None)


class UsageTable(faust.Table):  # type: ignore[type-arg]
    """faust's table, with a write's changelog partition named by the batch that makes it. faust sends a key's
    changelog record to the partition of the record being processed (the partition whose changelog this worker
    recovers when it is assigned that partition); a batch writes its parts after faust's per-record context has
    moved on, so each part goes to the partition of the record that changed it, as a per-record write would."""

    def partition_for_key(self, key: Any) -> int | None:
        partition = _SOURCE_PARTITION.get()
        return super().partition_for_key(key) if partition is None else partition


class UsageWriter(Protocol):
    async def write_window(self, tenant_id: str, window_start: datetime, totals: Mapping[str, int]) -> None: ...


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Our KAFKA_* settings as faust credentials: SCRAM locally, IAM (OAUTHBEARER) over TLS on MSK."""
    protocol = kafka.security_protocol
    ssl_context = create_ssl_context() if protocol in ("SSL", "SASL_SSL") else None
    if not protocol.startswith("SASL"):
        return faust.SSLCredentials(ssl_context) if ssl_context is not None else None
    if kafka.sasl_mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(oauth_cb=MskIamTokenProvider(kafka.aws_region), ssl_context=ssl_context)
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password is not None else None
    return faust.SASLCredentials(
        username=kafka.sasl_username, password=password, mechanism=kafka.sasl_mechanism, ssl_context=ssl_context
    )


def build_app(settings: MeteringSettings) -> faust.App:
    servers = ";".join(f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(","))
    return faust.App(
        settings.group_id,
        broker=servers,
        broker_credentials=faust_credentials(settings.kafka),
        # Windows live two hours and are rebuilt from the changelog on start: memory is enough, no RocksDB.
        store="memory://",
        datadir=str(settings.data_dir),
        # Our /metrics and gRPC health serve the platform's probes; faust's own web server would be a third port.
        web_enabled=False,
        Table=UsageTable,
        # A standby copy would only be flushed again (harmless, GREATEST) at twice the memory.
        table_standby_replicas=0,
        topic_replication_factor=settings.topic_replication_factor,
        topic_partitions=USAGE.partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        # 3 s at the default 30 s (faust's own default); Kafka asks for at most a third of the session timeout.
        broker_heartbeat_interval=settings.session_timeout_s / 10,
    )


# Where a record that is no usage fact goes: (key, value, headers) onto rag.usage.recorded.v1.dlq.
DeadLetterSink = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]


class UsageMeter:
    """The agent counting usage facts into windows (keyed by tenant and part, windows.SHARDS) and the flush
    writing each tenant's window totals."""

    def __init__(
        self,
        app: faust.App,
        writer: UsageWriter,
        window_expires_s: float,
        dead_letters: DeadLetterSink | None = None,
        *,
        batch_max: int = 500,
        batch_window_s: float = 0.5,
    ) -> None:
        self.app = app
        self._batch_max = batch_max
        self._batch_window_s = batch_window_s
        self._writer = writer
        self._flushed: dict[WindowKey, Totals] = {}
        # Each part's totals with the number of facts they were summed from: a part only ever gains facts
        # (windows.with_usage), so an unchanged count means unchanged totals and the flush need not sum again
        # the hours of facts it holds.
        self._part_totals: dict[tuple[str, tuple[float, float]], tuple[int, Totals]] = {}
        topic = app.topic(USAGE.name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        table = app.Table(TABLE_NAME, default=dict, partitions=USAGE.partitions, key_type=str)
        # The declared WindowWrapperT lacks relative_to(), which the concrete wrapper has.
        self.windows = cast(WindowWrapper, table.tumbling(WINDOW_S, expires=timedelta(seconds=window_expires_s)))
        dlq = app.topic(USAGE.dlq, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

        async def to_dlq(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
            await dlq.send(key=key, value=value, headers=headers)

        self._dead_letters: DeadLetterSink = dead_letters or to_dlq
        self.positions = AgentPositions(lambda: app.consumer, USAGE.name, app.conf.id)
        app.on_partitions_revoked.connect(self.positions.on_partitions_revoked)
        self.agent = app.agent(topic, name="count_usage")(self._count)

    async def _count(self, stream: faust.StreamT[bytes]) -> AsyncIterator[bool]:
        """Yields whether each record was counted (the agent's test context reads it); a record that is no usage
        fact goes to rag.usage.recorded.v1.dlq with the reason, like every consumer's poison records. Records
        come in batches (take_events acks them after the batch is counted, so a crash mid-batch re-reads it)."""
        # StreamT does not declare take_events; the concrete Stream has it.
        batches = cast(Stream[bytes], stream).take_events(self._batch_max, within=self._batch_window_s)
        async for events in batches:
            for event in events:
                self.positions.received(event.message.tp)
            for event, outcome in zip(events, self.count_batch(events), strict=True):
                tp, offset = event.message.tp, event.message.offset
                if isinstance(outcome, InvalidUsageRecord):
                    await self._dead_letter(event, outcome)
                    self.positions.handled(tp, offset, dead_lettered=True)
                    yield False
                else:
                    self.positions.handled(tp, offset)
                    yield outcome

    async def _dead_letter(self, event: EventT[bytes], exc: InvalidUsageRecord) -> None:
        metrics.INVALID.inc()
        log.warning("usage record dead-lettered", reason=str(exc), partition=event.message.partition)
        headers = [(k, v) for k, v in _header_items(event) if not k.startswith(DLQ_PREFIX)]
        reason = reason_headers(event.message, exc, kind=FailureKind.PERMANENT, attempts=1, group=self.app.conf.id)
        await self._dead_letters(event.key, event.value, headers + reason)

    def count_batch(self, events: Sequence[EventT[bytes]]) -> list[bool | InvalidUsageRecord]:
        """Count each record's usage: True when counted, False for a usage id already counted, the reason for a
        record that is no usage fact. faust writes a key's whole value to the changelog at every set, so each
        table part the batch changed is set once, at the end."""
        staged: dict[tuple[float, str], tuple[WindowWrapper, str, Window, int]] = {}
        outcomes: list[bool | InvalidUsageRecord] = []
        for event in events:
            try:
                fact = _decode(event)
            except InvalidUsageRecord as exc:
                outcomes.append(exc)
                continue
            quantities = known_quantities(fact.quantities)
            occurred_s = fact.occurred_at.ToMicroseconds() / 1e6 if fact.HasField("occurred_at") else time.time()
            key = shard_key(fact.tenant_id, fact.usage_id)
            part = (window_start(occurred_s), key)
            window, _, current, _ = staged.get(part) or (self._window_at(occurred_s), key, None, 0)
            updated = with_usage(window[key].value() if current is None else current, fact.usage_id, quantities)
            if updated is None:
                metrics.DUPLICATES.inc()
                outcomes.append(False)
                continue
            staged[part] = (window, key, updated, event.message.partition)
            for metric, quantity in quantities.items():
                metrics.EVENTS.labels(metric=metric).inc()
                metrics.QUANTITY.labels(metric=metric).inc(quantity)
            outcomes.append(True)
        for window, key, value, partition in staged.values():
            token = _SOURCE_PARTITION.set(partition)
            try:
                window[key] = value
            finally:
                _SOURCE_PARTITION.reset(token)
        return outcomes

    def _window_at(self, occurred_s: float) -> WindowWrapper:
        return cast(WindowWrapper, self.windows.relative_to(occurred_s))

    def held_windows(self) -> dict[WindowKey, Totals]:
        """The totals of every window this worker holds, by (tenant, window start)."""
        parts: dict[WindowKey, list[Totals]] = defaultdict(list)
        part_totals: dict[tuple[str, tuple[float, float]], tuple[int, Totals]] = {}
        for (shard, span), window in list(self.windows.table.data.items()):
            known = self._part_totals.get((shard, span))
            if known is None or known[0] != len(window):
                known = (len(window), totals(window))
            part_totals[(shard, span)] = known
            parts[(tenant_of(shard), float(span[0]))].append(known[1])
        self._part_totals = part_totals  # expired parts are forgotten with their windows
        return {key: summed(window_parts) for key, window_parts in parts.items()}

    async def flush(self) -> int:
        """Write every window whose totals changed since they were last written; how many were written."""
        held = self.held_windows()
        # Expired windows are gone from the table: forget them here too.
        self._flushed = {key: value for key, value in self._flushed.items() if key in held}
        written = 0
        with metrics.FLUSH_SECONDS.time():
            for (tenant, start), window_totals in held.items():
                if self._flushed.get((tenant, start)) == window_totals:
                    continue
                await self._writer.write_window(tenant, as_datetime(start), window_totals)
                self._flushed[(tenant, start)] = window_totals
                metrics.WINDOWS_FLUSHED.inc()
                written += 1
        return written


class InvalidUsageRecord(PermanentError):
    """A record on the usage topic that is no UsageRecorded with a tenant and a usage id: dead-lettered."""


def _header_items(event: EventT[bytes]) -> list[tuple[str, bytes]]:
    headers = event.headers
    return list(headers.items() if isinstance(headers, Mapping) else headers or ())


def _decode(event: EventT[bytes]) -> usage_pb2.UsageRecorded:
    """The usage fact of a record; InvalidUsageRecord (with the reason) for anything else."""
    try:
        message, _ = cloudevents.decode(event.value, cloudevents.headers_to_dict(_header_items(event)), _USAGE_TYPE)
    except cloudevents.InvalidEvent as exc:
        raise InvalidUsageRecord(str(exc)) from exc
    if not isinstance(message, usage_pb2.UsageRecorded) or not message.tenant_id or not message.usage_id:
        raise InvalidUsageRecord("a UsageRecorded needs a tenant_id and a usage_id")
    return message
