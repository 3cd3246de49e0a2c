-- GET /v1/admin/tenants: the admin API's tenant listing. Row-level security confines the gateway's admin role to
-- one tenant per transaction, so it cannot list tenants itself; this function (run as ragstream_owner, whose
-- key_lookup policy reads every tenant row) returns one keyset page of them, ordered by tenant_id, the reserved
-- `_platform` tenant never included, and offboarded tenants only when asked for. Same columns as the single
-- tenant's admin read (tenant_admin_pg.TENANT_COLUMNS); no key, quota or audit data.
CREATE FUNCTION ragstream_list_tenants(after_tenant text, max_rows integer, include_deleted boolean)
RETURNS TABLE (tenant_id text, name text, rate_limit text, ip_allowlist cidr[], created_at timestamptz,
               disabled_at timestamptz, max_key_lifetime_s integer, deleted_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tenant_id, t.name, t.rate_limit, t.ip_allowlist, t.created_at, t.disabled_at, t.max_key_lifetime_s,
           t.deleted_at
    FROM public.tenants t
    WHERE t.tenant_id <> '_platform'
      AND (after_tenant IS NULL OR t.tenant_id > after_tenant)
      AND (include_deleted OR t.deleted_at IS NULL)
    ORDER BY t.tenant_id
    LIMIT least(greatest(max_rows, 0), 1000)
$$;
REVOKE ALL ON FUNCTION ragstream_list_tenants(text, integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragstream_list_tenants(text, integer, boolean) TO ragstream_gateway_admin;
