"""Metered usage and its cost (issue 13): the service behind GET /v1/usage and /v1/usage/cost, over a port.

The metering service (services/metering) writes one row per tenant, minute and metric into `usage_minutes`;
this module only reads them: buckets of a minute, an hour or a day (aggregated by the store, in SQL), totals,
and their cost at the unit prices of `UsageSettings` (GATEWAY_USAGE_PRICE_<METRIC>). A tenant's monthly budget
(`tenant_budgets`) is compared with its spend since the first of the month (UTC); `refresh_budget_ratios`
exports that ratio as `ragstream_usage_budget_ratio{tenant_id}` for the "budget crossed" alert.

Ranges are half-open, [from, to): `from` is rounded down to the granularity so every bucket is whole. Buckets
without usage are left out (a sparse series: a client plots missing buckets as zero).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

from prometheus_client import Gauge
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger
from ragstream_common.usage_records import USAGE_METRICS

log = get_logger(__name__)

Granularity = Literal["minute", "hour", "day"]
GRANULARITY_STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
# Prices are per 1,000 of a metric, bytes per GB (10^9 bytes).
PRICE_UNITS = {metric: 1_000 for metric in USAGE_METRICS} | {"bytes_ingested": 1_000_000_000}

BUDGET_RATIO = Gauge(
    "ragstream_usage_budget_ratio",
    "Spend this month (UTC) over the monthly budget, per tenant with a budget",
    ["tenant_id"],
)


class UsageSettings(BaseSettings):
    """GATEWAY_USAGE_PRICE_<METRIC> (per 1,000; bytes per GB) in GATEWAY_USAGE_CURRENCY, the most buckets one
    request may ask for, the default span, and how often the budget gauge is refreshed (0: never).

    The default prices are placeholders of the right order; set them from the cost model (docs/capacity.md)."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_USAGE_", extra="ignore")

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    price_questions: Decimal = Field(default=Decimal("0.50"), ge=0)
    price_searches: Decimal = Field(default=Decimal("0.10"), ge=0)
    price_documents_ingested: Decimal = Field(default=Decimal("0.20"), ge=0)
    price_bytes_ingested: Decimal = Field(default=Decimal("0.10"), ge=0)
    price_chunks_embedded: Decimal = Field(default=Decimal("0.02"), ge=0)
    price_tokens_in: Decimal = Field(default=Decimal("0.0005"), ge=0)
    price_tokens_out: Decimal = Field(default=Decimal("0.0015"), ge=0)
    price_connector_items_synced: Decimal = Field(default=Decimal("0.05"), ge=0)
    max_buckets: int = Field(default=1_440, ge=1, le=100_000)
    default_span_s: int = Field(default=86_400, ge=60)
    budget_refresh_s: float = Field(default=60.0, ge=0)

    def prices(self) -> dict[str, Decimal]:
        return {metric: getattr(self, f"price_{metric}") for metric in USAGE_METRICS}


@dataclass(frozen=True)
class UsageSpan:
    start: datetime
    end: datetime
    granularity: Granularity


@dataclass(frozen=True)
class UsageBucket:
    start: datetime
    quantities: Mapping[str, int]


@dataclass(frozen=True)
class Budget:
    monthly_budget: Decimal
    currency: str


@dataclass(frozen=True)
class TenantBudget:
    tenant_id: str
    budget: Budget


class UsageStore(Protocol):
    """Where metered usage and budgets live (adapters/usage_pg.py)."""

    async def buckets(self, tenant_id: str, span: UsageSpan) -> list[UsageBucket]:
        """Usage per bucket of `span.granularity` starting in [start, end), in time order, empty ones left out."""
        ...

    async def totals(self, tenant_id: str, start: datetime, end: datetime) -> dict[str, int]: ...

    async def budget(self, tenant_id: str) -> Budget | None: ...

    async def set_budget(self, tenant_id: str, budget: Budget) -> Budget:
        """Raises LookupError when there is no such tenant."""
        ...

    async def budgets(self) -> list[TenantBudget]:
        """Every tenant's budget (bounded by the number of budgets set)."""
        ...


class UsageRangeError(ValueError):
    """A range the API refuses (422): reversed, empty, or more buckets than GATEWAY_USAGE_MAX_BUCKETS."""


@dataclass(frozen=True)
class UsageReport:
    tenant_id: str
    span: UsageSpan
    buckets: list[UsageBucket]
    totals: dict[str, int]


@dataclass(frozen=True)
class MetricCost:
    quantity: int
    unit: int
    unit_price: Decimal
    cost: Decimal


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    month_start: datetime
    spent: Decimal
    ratio: float


@dataclass(frozen=True)
class CostReport:
    tenant_id: str
    start: datetime
    end: datetime
    currency: str
    metrics: dict[str, MetricCost]
    total: Decimal
    budget: BudgetStatus | None


def as_utc(moment: datetime) -> datetime:
    """Timestamps without an offset are read as UTC."""
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise UsageRangeError(f"{moment.isoformat()} is out of range") from None


def shifted(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        raise UsageRangeError(f"{moment.isoformat()} is too close to the end of the calendar") from None


def truncate(moment: datetime, granularity: Granularity) -> datetime:
    """`moment` (UTC) rounded down to its minute, hour or day, as Postgres' date_trunc(..., 'UTC') does."""
    moment = as_utc(moment).replace(second=0, microsecond=0)
    if granularity in ("hour", "day"):
        moment = moment.replace(minute=0)
    if granularity == "day":
        moment = moment.replace(hour=0)
    return moment


def month_start(now: datetime) -> datetime:
    return truncate(now, "day").replace(day=1)


def usage_span(
    start: datetime | None,
    end: datetime | None,
    granularity: Granularity,
    *,
    now: datetime,
    default_span: timedelta,
    max_buckets: int,
) -> UsageSpan:
    """The range a request asked for, with defaults (the last `default_span` up to now, shortened to what
    `max_buckets` of this granularity hold: `?granularity=minute` alone is the last day's last 1,440 minutes)
    and its limits."""
    end = as_utc(end) if end is not None else as_utc(now)
    if start is None:
        start = shifted(end, -min(default_span, GRANULARITY_STEP[granularity] * (max_buckets - 1)))
    start = truncate(start, granularity)
    if end <= start:
        raise UsageRangeError(f"`to` ({end.isoformat()}) must be after `from` ({start.isoformat()})")
    buckets = math.ceil((end - start) / GRANULARITY_STEP[granularity])
    if buckets > max_buckets:
        raise UsageRangeError(
            f"the range spans {buckets} {granularity} buckets, more than {max_buckets}: narrow it or use a coarser"
            " granularity"
        )
    return UsageSpan(start, end, granularity)


def price_usage(totals: Mapping[str, int], prices: Mapping[str, Decimal]) -> dict[str, MetricCost]:
    """Each metric's quantity at its unit price (exact: units are powers of ten)."""
    costs = {}
    for metric in USAGE_METRICS:
        quantity, unit, price = totals.get(metric, 0), PRICE_UNITS[metric], prices[metric]
        costs[metric] = MetricCost(quantity, unit, price, Decimal(quantity) * price / unit)
    return costs


def budget_ratio(spent: Decimal, budget: Decimal) -> float:
    """Spend over budget; a zero budget is crossed by any spend (+Inf), never by none."""
    if budget == 0:
        return math.inf if spent > 0 else 0.0
    return float(spent / budget)


def add_up(buckets: list[UsageBucket]) -> dict[str, int]:
    totals = dict.fromkeys(USAGE_METRICS, 0)
    for bucket in buckets:
        for metric, value in bucket.quantities.items():
            totals[metric] = totals.get(metric, 0) + value
    return totals


class UsageService:
    """The usage API's rules over a store: ranges and their limits, totals, prices, budgets."""

    def __init__(self, store: UsageStore, settings: UsageSettings) -> None:
        self._store = store
        self._settings = settings

    @property
    def currency(self) -> str:
        return self._settings.currency

    async def report(
        self, tenant_id: str, start: datetime | None, end: datetime | None, granularity: Granularity, now: datetime
    ) -> UsageReport:
        span = usage_span(
            start,
            end,
            granularity,
            now=now,
            default_span=timedelta(seconds=self._settings.default_span_s),
            max_buckets=self._settings.max_buckets,
        )
        buckets = await self._store.buckets(tenant_id, span)
        return UsageReport(tenant_id, span, buckets, add_up(buckets))

    async def cost(self, tenant_id: str, start: datetime | None, end: datetime | None, now: datetime) -> CostReport:
        """Cost of [from, to) (default: the month so far) and, with a budget, the month's spend against it."""
        end = as_utc(end) if end is not None else as_utc(now)
        start = as_utc(start) if start is not None else month_start(end)
        if end <= start:
            raise UsageRangeError(f"`to` ({end.isoformat()}) must be after `from` ({start.isoformat()})")
        metrics = price_usage(await self._store.totals(tenant_id, start, end), self._settings.prices())
        total = sum((cost.cost for cost in metrics.values()), Decimal(0))
        budget = await self._store.budget(tenant_id)
        status = await self._budget_status(tenant_id, budget, now) if budget is not None else None
        return CostReport(tenant_id, start, end, self.currency, metrics, total, status)

    async def set_budget(self, tenant_id: str, monthly_budget: Decimal, currency: str | None) -> Budget:
        """Budgets are in the prices' currency: spend is never converted."""
        if currency is not None and currency != self.currency:
            raise UsageRangeError(f"budgets are in {self.currency}, the currency of the unit prices, not {currency}")
        return await self._store.set_budget(tenant_id, Budget(monthly_budget, self.currency))

    async def budget_ratios(self, now: datetime) -> dict[str, float]:
        ratios = {}
        for entry in await self._store.budgets():
            status = await self._budget_status(entry.tenant_id, entry.budget, now)
            ratios[entry.tenant_id] = status.ratio
        return ratios

    async def _budget_status(self, tenant_id: str, budget: Budget, now: datetime) -> BudgetStatus:
        start, end = month_start(now), shifted(as_utc(now), GRANULARITY_STEP["minute"])  # this minute included
        prices = self._settings.prices()
        costs = price_usage(await self._store.totals(tenant_id, start, end), prices)
        spent = sum((cost.cost for cost in costs.values()), Decimal(0))
        return BudgetStatus(budget, start, spent, budget_ratio(spent, budget.monthly_budget))


async def refresh_budget_ratios(service: UsageService, stop: asyncio.Event, interval_s: float) -> None:
    """Keep `ragstream_usage_budget_ratio` current every `interval_s` until `stop`; a failed round is logged and
    retried at the next one. Tenants whose budget went away leave the gauge."""
    shown: set[str] = set()
    while not stop.is_set():
        try:
            ratios = await service.budget_ratios(datetime.now(UTC))
        except Exception as exc:
            log.error("budget ratios not refreshed", error=repr(exc))
        else:
            for tenant_id in shown - ratios.keys():
                BUDGET_RATIO.remove(tenant_id)
            for tenant_id, ratio in ratios.items():
                BUDGET_RATIO.labels(tenant_id).set(ratio)
            shown = set(ratios)
        await sleep_or_stop(stop, interval_s)
