"""HTTP bodies of the usage API: usage buckets and totals, their cost, a tenant's budget.

Money is a decimal string in JSON (`"12.5000"`), never a float.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field
from ragstream_common.usage_records import USAGE_METRICS

from ragstream_gateway.usage import (
    Budget,
    BudgetStatus,
    CostReport,
    Granularity,
    MetricCost,
    UsageReport,
)

# numeric(14, 4) in tenant_budgets.
MAX_BUDGET = Decimal("9999999999.9999")


class UsageTotals(BaseModel):
    questions: int = 0
    searches: int = 0
    documents_ingested: int = 0
    bytes_ingested: int = 0
    chunks_embedded: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    connector_items_synced: int = 0


class UsageBucketView(UsageTotals):
    start: datetime = Field(description="Start of the bucket (UTC); the bucket spans one `granularity`")


class UsageView(BaseModel):
    tenant_id: str
    granularity: Granularity
    from_: datetime = Field(serialization_alias="from", description="Start of the range, rounded down to a bucket")
    to: datetime = Field(description="End of the range (exclusive)")
    buckets: list[UsageBucketView] = Field(description="Buckets with usage, in time order; empty buckets are omitted")
    totals: UsageTotals


class MetricCostView(BaseModel):
    quantity: int
    unit: int = Field(description="The price is per this many (1,000; bytes: per 10^9)")
    unit_price: Decimal
    cost: Decimal


class BudgetView(BaseModel):
    monthly_budget: Decimal
    currency: str
    month_start: datetime | None = Field(default=None, description="Start of the month spend is counted from (UTC)")
    spent: Decimal | None = Field(default=None, description="Spend from month_start to now")
    ratio: float | None = Field(
        default=None, description="spent / monthly_budget; 1 or more: crossed (null: a zero budget with spend)"
    )


class CostView(BaseModel):
    tenant_id: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    currency: str
    metrics: dict[str, MetricCostView]
    total: Decimal
    budget: BudgetView | None = Field(description="The tenant's monthly budget with its spend; null without one")


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    monthly_budget: Decimal = Field(ge=0, le=MAX_BUDGET, decimal_places=4)
    currency: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$", description="Must be the unit prices' currency (default: it)"
    )


def usage_view(report: UsageReport) -> UsageView:
    span = report.span
    return UsageView(
        tenant_id=report.tenant_id,
        granularity=span.granularity,
        from_=span.start,
        to=span.end,
        buckets=[UsageBucketView(start=bucket.start, **_known(bucket.quantities)) for bucket in report.buckets],
        totals=UsageTotals(**_known(report.totals)),
    )


def cost_view(report: CostReport) -> CostView:
    return CostView(
        tenant_id=report.tenant_id,
        from_=report.start,
        to=report.end,
        currency=report.currency,
        metrics={metric: _metric_cost(cost) for metric, cost in report.metrics.items()},
        total=report.total,
        budget=None if report.budget is None else budget_status_view(report.budget),
    )


def budget_view(budget: Budget) -> BudgetView:
    return BudgetView(monthly_budget=budget.monthly_budget, currency=budget.currency)


def budget_status_view(status: BudgetStatus) -> BudgetView:
    return BudgetView(
        monthly_budget=status.budget.monthly_budget,
        currency=status.budget.currency,
        month_start=status.month_start,
        spent=status.spent,
        ratio=status.ratio if math.isfinite(status.ratio) else None,  # JSON has no Infinity
    )


def _metric_cost(cost: MetricCost) -> MetricCostView:
    return MetricCostView(quantity=cost.quantity, unit=cost.unit, unit_price=cost.unit_price, cost=cost.cost)


def _known(quantities: Mapping[str, int]) -> dict[str, int]:
    """Only the metrics of the API: a metric the metering service adds later does not break old clients."""
    return {metric: int(quantities[metric]) for metric in USAGE_METRICS if metric in quantities}
