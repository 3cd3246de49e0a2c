-- Per-tenant quota overrides (the gateway's quotas.py): a NULL column means the gateway's default
-- (GATEWAY_QUOTA_*). Question counts live in the limits store (Redis), not here; documents and stored bytes are
-- counted from the registry itself.
CREATE TABLE tenant_quotas (
    tenant_id text PRIMARY KEY REFERENCES tenants (tenant_id),
    max_documents bigint CHECK (max_documents >= 0),
    max_stored_bytes bigint CHECK (max_stored_bytes >= 0),
    max_questions_per_day bigint CHECK (max_questions_per_day >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT ragstream_isolate_tenant('tenant_quotas');

-- An upload's quota check counts the tenant's live documents and sums their sizes: an index-only scan.
CREATE INDEX documents_live_usage ON documents (tenant_id) INCLUDE (size_bytes) WHERE status <> 'deleted';

-- gateway: reads the quotas it enforces. gateway admin: sets them (PATCH /v1/admin/tenants/{id}).
GRANT SELECT ON tenant_quotas TO ragstream_gateway;
GRANT SELECT, INSERT, UPDATE ON tenant_quotas TO ragstream_gateway_admin;
