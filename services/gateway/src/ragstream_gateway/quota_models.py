"""HTTP bodies of tenant quotas: the overrides an admin sets, and usage against the quotas in force."""

from __future__ import annotations

import dataclasses
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from ragstream_gateway.ports import TenantQuotas
from ragstream_gateway.quotas import QuotaUsage, UsageReport

# Far past any real tenant, and within Postgres' bigint.
MAX_QUOTA = 2**62


class QuotasIn(BaseModel):
    """A tenant's own quotas; null (or absent) uses the gateway's default (GATEWAY_QUOTA_*)."""

    model_config = ConfigDict(extra="forbid")

    max_documents: int | None = Field(default=None, ge=0, le=MAX_QUOTA, description="Live documents")
    max_stored_bytes: int | None = Field(
        default=None, ge=0, le=MAX_QUOTA, description="Bytes of the live documents' current versions"
    )
    max_questions_per_day: int | None = Field(
        default=None, ge=0, le=MAX_QUOTA, description="Questions (POST /v1/query and /v1/search) per UTC day"
    )

    def quotas(self) -> TenantQuotas:
        return TenantQuotas(self.max_documents, self.max_stored_bytes, self.max_questions_per_day)

    def merged_into(self, current: TenantQuotas) -> TenantQuotas:
        """PATCH semantics (JSON merge patch): fields sent replace the current overrides (null: back to the
        default), fields left out keep theirs."""
        return dataclasses.replace(current, **{name: getattr(self, name) for name in self.model_fields_set})


class QuotasView(BaseModel):
    max_documents: int | None
    max_stored_bytes: int | None
    max_questions_per_day: int | None


class QuotaUsageView(BaseModel):
    limit: int | None = Field(description="The quota in force; null: no limit")
    used: int
    source: str = Field(description="`tenant` (the tenant's own quota) or `default` (GATEWAY_QUOTA_*)")


class TenantUsageView(BaseModel):
    tenant_id: str
    day: date = Field(description="The UTC day `questions_per_day` counts")
    documents: QuotaUsageView
    stored_bytes: QuotaUsageView
    questions_per_day: QuotaUsageView


def quotas_view(quotas: TenantQuotas) -> QuotasView:
    return QuotasView(
        max_documents=quotas.max_documents,
        max_stored_bytes=quotas.max_stored_bytes,
        max_questions_per_day=quotas.max_questions_per_day,
    )


def usage_view(report: UsageReport) -> TenantUsageView:
    def view(usage: QuotaUsage) -> QuotaUsageView:
        return QuotaUsageView(limit=usage.limit, used=usage.used, source="tenant" if usage.overridden else "default")

    by_name = {usage.quota: view(usage) for usage in report.quotas}
    return TenantUsageView(
        tenant_id=report.tenant_id,
        day=report.day,
        documents=by_name["documents"],
        stored_bytes=by_name["stored_bytes"],
        questions_per_day=by_name["questions_per_day"],
    )
