-- Usage per tenant, minute and metric (services/metering). The metering service writes each window's total as
-- counted from distinct usage ids, so writing it again (a restart, a replayed changelog) changes nothing, and a
-- total never goes down (GREATEST on conflict) even if a window is recounted from less state.
CREATE TABLE usage_minutes (
    tenant_id     text NOT NULL,
    window_start  timestamptz NOT NULL CHECK (date_trunc('minute', window_start) = window_start),
    metric        text NOT NULL CHECK (metric IN ('questions', 'searches', 'documents_ingested', 'bytes_ingested',
                                                  'chunks_embedded', 'tokens_in', 'tokens_out',
                                                  'connector_items_synced')),
    value         bigint NOT NULL CHECK (value >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, window_start, metric)
);
SELECT ragstream_isolate_tenant('usage_minutes');

-- Per-tenant budgets (GET /v1/usage/cost compares spend with them; an alert fires when one is crossed).
CREATE TABLE tenant_budgets (
    tenant_id     text PRIMARY KEY REFERENCES tenants (tenant_id),
    monthly_budget numeric(14, 4) NOT NULL CHECK (monthly_budget >= 0),
    currency      text NOT NULL DEFAULT 'USD',
    updated_at    timestamptz NOT NULL DEFAULT now()
);
SELECT ragstream_isolate_tenant('tenant_budgets');

-- metering: writes window totals of any tenant it reads from the usage topic (in that tenant's transaction).
GRANT SELECT, INSERT, UPDATE ON usage_minutes TO ragstream_metering;
-- gateway: GET /v1/usage and /v1/usage/cost read them; budgets are read by the tenant path, set by admins.
GRANT SELECT ON usage_minutes, tenant_budgets TO ragstream_gateway;
GRANT SELECT, INSERT, UPDATE ON tenant_budgets TO ragstream_gateway_admin;

-- The gateway's budget gauge (ragstream_usage_budget_ratio) lists every tenant's budget: only through this
-- function, which returns the budget rows and nothing else.
CREATE POLICY budget_listing ON tenant_budgets FOR SELECT TO ragstream_owner USING (true);
CREATE FUNCTION ragstream_tenant_budgets()
RETURNS TABLE (tenant_id text, monthly_budget numeric, currency text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT b.tenant_id, b.monthly_budget, b.currency FROM public.tenant_budgets b $$;
ALTER FUNCTION ragstream_tenant_budgets() OWNER TO ragstream_owner;
REVOKE ALL ON FUNCTION ragstream_tenant_budgets() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragstream_tenant_budgets() TO ragstream_gateway;
