"""Metered usage (`usage_minutes`, written by services/metering) and tenant budgets (`tenant_budgets`), migration
0012.

Reads run on the gateway's own pool (`ragstream_gateway` may read both tables), budgets are written on the admin
pool (`ragstream_gateway_admin`), like every other tenant setting. Both tables are tenant-scoped by row-level
security, so each statement runs in its tenant's transaction. Listing every tenant's budget (the budget gauge)
crosses tenants, which RLS forbids to the gateway: it goes through `ragstream_tenant_budgets()`, a SECURITY
DEFINER function of the migrations; while that function does not exist the gauge is simply empty.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from psycopg.errors import ForeignKeyViolation, UndefinedFunction
from psycopg_pool import AsyncConnectionPool
from ragstream_common.db import tenant_transaction
from ragstream_common.logs import get_logger

from ragstream_gateway.usage import Budget, TenantBudget, UsageBucket, UsageSpan

log = get_logger(__name__)

# Buckets in UTC whatever the session's time zone; the primary key (tenant_id, window_start, metric) serves the
# range scan.
_BUCKETS = """
SELECT date_trunc(%(granularity)s, window_start, 'UTC') AS bucket, metric, sum(value)::bigint
FROM usage_minutes
WHERE tenant_id = %(tenant_id)s AND window_start >= %(start)s AND window_start < %(end)s
GROUP BY bucket, metric
ORDER BY bucket
"""
_TOTALS = """
SELECT metric, sum(value)::bigint FROM usage_minutes
WHERE tenant_id = %s AND window_start >= %s AND window_start < %s
GROUP BY metric
"""
_BUDGET = "SELECT monthly_budget, currency FROM tenant_budgets WHERE tenant_id = %s"
_SET_BUDGET = """
INSERT INTO tenant_budgets (tenant_id, monthly_budget, currency) VALUES (%s, %s, %s)
ON CONFLICT (tenant_id) DO UPDATE SET monthly_budget = EXCLUDED.monthly_budget, currency = EXCLUDED.currency,
    updated_at = now()
RETURNING monthly_budget, currency
"""
_ALL_BUDGETS = "SELECT tenant_id, monthly_budget, currency FROM ragstream_tenant_budgets()"


class PostgresUsageStore:
    def __init__(self, pool: AsyncConnectionPool, admin_pool: AsyncConnectionPool | None = None) -> None:
        self._pool = pool
        self._admin = admin_pool or pool
        self._listing_missing_logged = False

    async def buckets(self, tenant_id: str, span: UsageSpan) -> list[UsageBucket]:
        params = {"granularity": span.granularity, "tenant_id": tenant_id, "start": span.start, "end": span.end}
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(_BUCKETS, params)
            rows = await cursor.fetchall()
        buckets: dict[datetime, dict[str, int]] = {}
        for start, metric, value in rows:
            buckets.setdefault(start, {})[metric] = int(value)
        return [UsageBucket(start, quantities) for start, quantities in buckets.items()]

    async def totals(self, tenant_id: str, start: datetime, end: datetime) -> dict[str, int]:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(_TOTALS, (tenant_id, start, end))
            rows = await cursor.fetchall()
        return {metric: int(value) for metric, value in rows}

    async def budget(self, tenant_id: str) -> Budget | None:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            cursor = await connection.execute(_BUDGET, (tenant_id,))
            row = await cursor.fetchone()
        return Budget(Decimal(row[0]), row[1]) if row else None

    async def set_budget(self, tenant_id: str, budget: Budget) -> Budget:
        try:
            async with tenant_transaction(self._admin, tenant_id) as connection:
                cursor = await connection.execute(_SET_BUDGET, (tenant_id, budget.monthly_budget, budget.currency))
                row = await cursor.fetchone()
        except ForeignKeyViolation:
            raise LookupError(f"no tenant {tenant_id!r}") from None
        assert row is not None
        return Budget(Decimal(row[0]), row[1])

    async def budgets(self) -> list[TenantBudget]:
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(_ALL_BUDGETS)
                rows = await cursor.fetchall()
        except UndefinedFunction:
            if not self._listing_missing_logged:
                log.warning("ragstream_tenant_budgets() is missing (migrations); the budget gauge stays empty")
                self._listing_missing_logged = True
            return []
        return [TenantBudget(tenant_id, Budget(Decimal(amount), currency)) for tenant_id, amount, currency in rows]
