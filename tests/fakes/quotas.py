"""In-memory stand-in for the gateway's QuotaStore port: overrides per tenant and a usage the test sets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragstream_gateway.ports import StoredUsage, TenantQuotas


@dataclass
class MemoryQuotaStore:
    tenants: set[str] = field(default_factory=lambda: {"acme"})
    quotas: dict[str, TenantQuotas] = field(default_factory=dict)
    stored: dict[str, StoredUsage] = field(default_factory=dict)
    reads: int = 0

    async def overrides(self, tenant_id: str) -> TenantQuotas:
        self.reads += 1
        return self.quotas.get(tenant_id, TenantQuotas())

    async def set_overrides(self, tenant_id: str, quotas: TenantQuotas) -> TenantQuotas:
        if tenant_id not in self.tenants:
            raise LookupError(tenant_id)
        self.quotas[tenant_id] = quotas
        return quotas

    async def usage(self, tenant_id: str) -> StoredUsage:
        return self.stored.get(tenant_id, StoredUsage(0, 0))
