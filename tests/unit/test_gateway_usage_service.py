"""The usage API's rules (usage.py) over an in-memory store: ranges, their defaults and limits, bucketing and
totals, prices and cost, budgets and the budget gauge. The same over Postgres and the HTTP routes:
tests/integration/test_gateway_usage_api.py."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fakes import metric
from prometheus_client import REGISTRY
from prometheus_client.samples import Sample
from ragstream_gateway.usage import (
    USAGE_METRICS,
    Budget,
    BudgetStatus,
    Granularity,
    TenantBudget,
    UsageBucket,
    UsageRangeError,
    UsageService,
    UsageSettings,
    UsageSpan,
    budget_ratio,
    month_start,
    price_usage,
    refresh_budget_ratios,
    truncate,
    usage_span,
)
from ragstream_gateway.usage_models import budget_status_view, cost_view, usage_view

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 15, 12, 34, 56, tzinfo=UTC)
DAY = timedelta(days=1)


class MinuteRows:
    """usage_minutes as a dict, bucketed as the Postgres adapter's date_trunc does (a unit-test stand-in of the
    port; the adapter itself runs against Postgres in the integration test)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, datetime, str], int] = {}
        self.budget_rows: dict[str, Budget] = {}

    def add(self, tenant_id: str, window_start: datetime, **values: int) -> None:
        for name, value in values.items():
            self.rows[(tenant_id, window_start, name)] = value

    async def buckets(self, tenant_id: str, span: UsageSpan) -> list[UsageBucket]:
        buckets: dict[datetime, dict[str, int]] = {}
        for (tenant, start, name), value in sorted(self.rows.items()):
            if tenant == tenant_id and span.start <= start < span.end:
                bucket = buckets.setdefault(truncate(start, span.granularity), {})
                bucket[name] = bucket.get(name, 0) + value
        return [UsageBucket(start, quantities) for start, quantities in sorted(buckets.items())]

    async def totals(self, tenant_id: str, start: datetime, end: datetime) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (tenant, window, name), value in self.rows.items():
            if tenant == tenant_id and start <= window < end:
                totals[name] = totals.get(name, 0) + value
        return totals

    async def budget(self, tenant_id: str) -> Budget | None:
        return self.budget_rows.get(tenant_id)

    async def set_budget(self, tenant_id: str, budget: Budget) -> Budget:
        self.budget_rows[tenant_id] = budget
        return budget

    async def budgets(self) -> list[TenantBudget]:
        return [TenantBudget(tenant, budget) for tenant, budget in self.budget_rows.items()]


def _span(
    start: datetime | None, end: datetime | None, granularity: Granularity = "hour", limit: int = 1440
) -> UsageSpan:
    return usage_span(start, end, granularity, now=NOW, default_span=DAY, max_buckets=limit)


def test_the_default_range_is_the_last_day_with_its_first_hour_whole() -> None:
    span = _span(None, None)
    assert (span.start, span.end) == (datetime(2026, 3, 14, 12, tzinfo=UTC), NOW)


def test_from_is_rounded_down_to_the_granularity_and_naive_times_are_utc() -> None:
    start = datetime(2026, 3, 1, 7, 45, 30)
    assert _span(start, NOW, "minute", limit=100_000).start == datetime(2026, 3, 1, 7, 45, tzinfo=UTC)
    assert _span(start, NOW, "hour").start == datetime(2026, 3, 1, 7, tzinfo=UTC)
    assert _span(start, NOW, "day").start == datetime(2026, 3, 1, tzinfo=UTC)
    offset = datetime.fromisoformat("2026-03-01T09:00:00+02:00")
    assert _span(offset, NOW).start == datetime(2026, 3, 1, 7, tzinfo=UTC)


def test_reversed_or_empty_ranges_are_refused() -> None:
    with pytest.raises(UsageRangeError, match="must be after"):
        _span(NOW, NOW - DAY)
    with pytest.raises(UsageRangeError, match="must be after"):
        _span(truncate(NOW, "hour"), truncate(NOW, "hour"))


def test_more_buckets_than_the_limit_are_refused() -> None:
    day_start = truncate(NOW, "day")
    assert _span(day_start, day_start + DAY, "minute").granularity == "minute"  # exactly 1,440
    with pytest.raises(UsageRangeError, match="1441 minute buckets, more than 1440"):
        _span(day_start, day_start + DAY + timedelta(seconds=1), "minute")
    assert _span(day_start - 59 * DAY, day_start + DAY, "hour").start == day_start - 59 * DAY
    with pytest.raises(UsageRangeError, match="hour buckets"):
        _span(day_start - 60 * DAY, day_start + DAY, "hour")


def test_times_at_the_ends_of_the_calendar_are_range_errors_not_crashes() -> None:
    with pytest.raises(UsageRangeError, match="end of the calendar"):
        _span(None, datetime(1, 1, 1, 12, tzinfo=UTC))
    with pytest.raises(UsageRangeError, match="out of range"):
        _span(datetime.fromisoformat("0001-01-01T00:00:00+05:00"), NOW)


async def test_buckets_sum_the_minutes_of_their_hour_and_totals_sum_the_buckets() -> None:
    store = MinuteRows()
    hour = datetime(2026, 3, 15, 10, tzinfo=UTC)
    store.add("acme", hour, questions=3, tokens_in=100)
    store.add("acme", hour + timedelta(minutes=59), questions=2)
    store.add("acme", hour + timedelta(hours=1, minutes=5), documents_ingested=1, bytes_ingested=2048)
    store.add("other", hour, questions=50)
    service = UsageService(store, UsageSettings())
    view = usage_view(await service.report("acme", hour, NOW, "hour", NOW)).model_dump(by_alias=True)
    assert [bucket["start"] for bucket in view["buckets"]] == [hour, hour + timedelta(hours=1)]
    assert (view["buckets"][0]["questions"], view["buckets"][0]["tokens_in"]) == (5, 100)
    assert view["buckets"][1]["bytes_ingested"] == 2048 and view["buckets"][1]["questions"] == 0
    assert view["totals"] == dict.fromkeys(USAGE_METRICS, 0) | {
        "questions": 5,
        "tokens_in": 100,
        "documents_ingested": 1,
        "bytes_ingested": 2048,
    }
    assert (view["tenant_id"], view["granularity"], view["from"], view["to"]) == ("acme", "hour", hour, NOW)


def test_prices_are_per_thousand_and_bytes_per_gigabyte() -> None:
    prices = UsageSettings().prices() | {"questions": Decimal("0.50"), "bytes_ingested": Decimal("0.10")}
    costs = price_usage({"questions": 10, "bytes_ingested": 3_000_000_000}, prices)
    assert costs["questions"].cost == Decimal("0.005") and costs["questions"].unit == 1000
    assert costs["bytes_ingested"].cost == Decimal("0.3") and costs["bytes_ingested"].unit == 10**9
    assert costs["tokens_out"].quantity == 0 and costs["tokens_out"].cost == 0


def test_unit_prices_and_currency_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_USAGE_PRICE_QUESTIONS", "2.25")
    monkeypatch.setenv("GATEWAY_USAGE_CURRENCY", "EUR")
    settings = UsageSettings()
    assert (settings.prices()["questions"], settings.currency) == (Decimal("2.25"), "EUR")
    monkeypatch.setenv("GATEWAY_USAGE_PRICE_TOKENS_IN", "-1")
    with pytest.raises(ValueError, match="price_tokens_in"):
        UsageSettings()


def test_budget_ratio_and_month_start() -> None:
    assert budget_ratio(Decimal("25"), Decimal("100")) == 0.25
    assert budget_ratio(Decimal("0"), Decimal("0")) == 0.0
    assert budget_ratio(Decimal("0.01"), Decimal("0")) == math.inf
    assert month_start(NOW) == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_zero_budget_crossed_shows_a_null_ratio_in_json() -> None:
    status = BudgetStatus(Budget(Decimal(0), "USD"), month_start(NOW), Decimal("0.5"), math.inf)
    assert budget_status_view(status).model_dump(mode="json")["ratio"] is None


async def test_cost_defaults_to_the_month_so_far_and_shows_the_budget() -> None:
    store = MinuteRows()
    store.add("acme", datetime(2026, 2, 28, 23, 59, tzinfo=UTC), questions=1000)  # last month: not counted
    store.add("acme", datetime(2026, 3, 2, tzinfo=UTC), questions=4000, tokens_out=2000)
    store.add("acme", truncate(NOW, "minute"), questions=1000)  # the current minute counts
    settings = UsageSettings(price_questions=Decimal("1"), price_tokens_out=Decimal("0.5"))
    service = UsageService(store, settings)
    assert (await service.cost("acme", None, None, NOW)).budget is None
    await service.set_budget("acme", Decimal("12"), None)
    view = cost_view(await service.cost("acme", None, None, NOW)).model_dump(by_alias=True)
    assert (view["from"], view["to"], view["currency"]) == (datetime(2026, 3, 1, tzinfo=UTC), NOW, "USD")
    assert (view["metrics"]["questions"]["quantity"], view["metrics"]["questions"]["cost"]) == (5000, Decimal("5"))
    assert (view["metrics"]["tokens_out"]["cost"], view["total"]) == (Decimal("1"), Decimal("6"))
    assert view["budget"]["spent"] == Decimal("6") and view["budget"]["ratio"] == 0.5
    with pytest.raises(UsageRangeError, match="budgets are in USD"):
        await service.set_budget("acme", Decimal("1"), "EUR")


async def test_the_budget_gauge_follows_the_budgets() -> None:
    store = MinuteRows()
    store.add("gauge-a", truncate(datetime.now(UTC), "minute"), questions=3000)
    service = UsageService(store, UsageSettings(price_questions=Decimal("1")))
    await service.set_budget("gauge-a", Decimal("2"), "USD")
    await service.set_budget("gauge-b", Decimal("10"), None)
    stop = asyncio.Event()
    refresher = asyncio.create_task(refresh_budget_ratios(service, stop, interval_s=0.01))
    await asyncio.sleep(0.05)
    assert metric("ragstream_usage_budget_ratio", tenant_id="gauge-a") == 1.5
    assert metric("ragstream_usage_budget_ratio", tenant_id="gauge-b") == 0.0
    del store.budget_rows["gauge-a"]
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(refresher, 1)
    shown = {sample.labels.get("tenant_id") for sample in _gauge_samples()}
    assert "gauge-a" not in shown and "gauge-b" in shown


def _gauge_samples() -> list[Sample]:
    return [s for family in REGISTRY.collect() if family.name == "ragstream_usage_budget_ratio" for s in family.samples]


def test_a_default_range_fits_the_bucket_limit_of_any_granularity() -> None:
    now = datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)
    for granularity in ("minute", "hour", "day"):
        span = usage_span(None, None, granularity, now=now, default_span=timedelta(days=1), max_buckets=1_440)
        assert span.end == now and span.start < now
