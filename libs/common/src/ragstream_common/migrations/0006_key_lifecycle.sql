-- Key lifecycle, admin principals and tenant updates (issue 11). Runs as ragstream_owner.
--
-- * api_keys: last use (written at most once a minute per key), rotation (the successor and when; the old
--   key's expires_at becomes the end of its grace period).
-- * tenants: a maximum key lifetime, a disabled mark, the time of the last change.
-- * Admin API keys are api_keys rows of the reserved tenant `_platform` with exactly the `admin` scope; no
--   other tenant's key may carry it (a constraint, not only the gateway's code).
-- * Every change to a key's validity or to a tenant is NOTIFYed on `ragstream_key_events` in the changing
--   transaction, so each gateway evicts its cached grants when the change commits.

ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
ALTER TABLE api_keys ADD COLUMN replaced_by text;
ALTER TABLE api_keys ADD COLUMN rotated_at timestamptz;

-- NULL: keys may live forever (or until the expires_at they were given).
ALTER TABLE tenants ADD COLUMN max_key_lifetime_s integer CHECK (max_key_lifetime_s > 0);
ALTER TABLE tenants ADD COLUMN disabled_at timestamptz;
ALTER TABLE tenants ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- The platform's own tenant row (forced row-level security binds the owner too: name the tenant first).
SELECT set_config('app.tenant_id', '_platform', true);
INSERT INTO tenants (tenant_id, name) VALUES ('_platform', 'Platform administrators') ON CONFLICT DO NOTHING;

ALTER TABLE api_keys ADD CONSTRAINT admin_scope_only_on_platform_keys CHECK (
    CASE WHEN tenant_id = '_platform' THEN scopes = ARRAY['admin']::text[] ELSE NOT 'admin' = ANY (scopes) END
);

-- The lookup also says whether the tenant is disabled and whether the key was rotated (to name the refusal).
-- Callers select columns by name, so gateways still running the previous code keep working.
DROP FUNCTION ragstream_find_api_key(text);
CREATE FUNCTION ragstream_find_api_key(digest text)
RETURNS TABLE (key_id text, tenant_id text, scopes text[], revoked boolean, expires_at timestamptz,
               rate_limit text, ip_allowlist cidr[], tenant_disabled boolean, replaced_by text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.key_id, k.tenant_id, k.scopes, k.revoked_at IS NOT NULL, k.expires_at, t.rate_limit, t.ip_allowlist,
           t.disabled_at IS NOT NULL, k.replaced_by
    FROM public.api_keys k JOIN public.tenants t ON t.tenant_id = k.tenant_id
    WHERE k.key_sha256 = digest
$$;
REVOKE ALL ON FUNCTION ragstream_find_api_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragstream_find_api_key(text) TO ragstream_gateway;

-- Last use, from the gateway's everyday login (which may not write api_keys): only last_used_at, only when
-- the stored one is over a minute old, so replicas reporting the same key write its row once a minute.
CREATE POLICY key_touch ON api_keys FOR UPDATE TO ragstream_owner USING (true) WITH CHECK (true);
CREATE FUNCTION ragstream_touch_api_keys(key_ids text[])
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH touched AS (
        UPDATE public.api_keys SET last_used_at = now()
        WHERE key_id = ANY (key_ids[1:1000])
          AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
        RETURNING 1
    )
    SELECT count(*)::integer FROM touched
$$;
REVOKE ALL ON FUNCTION ragstream_touch_api_keys(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragstream_touch_api_keys(text[]) TO ragstream_gateway;

-- Push: fired inside the changing transaction, delivered to listeners when it commits (never if it rolls back).
CREATE FUNCTION ragstream_notify_key_event() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed jsonb;
    event jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSE
        changed := to_jsonb(NEW);
    END IF;
    event := jsonb_build_object('kind', 'tenant', 'tenant_id', changed->>'tenant_id');
    IF TG_TABLE_NAME = 'api_keys' THEN
        event := event || jsonb_build_object('kind', 'key', 'key_id', changed->>'key_id');
    END IF;
    PERFORM pg_notify('ragstream_key_events', event::text);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ragstream_notify_key_event() FROM PUBLIC;

-- Not on last_used_at: last use is no reason to drop anyone's cached grant.
CREATE TRIGGER api_keys_key_event AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.scopes IS DISTINCT FROM NEW.scopes OR OLD.replaced_by IS DISTINCT FROM NEW.replaced_by
          OR OLD.key_sha256 IS DISTINCT FROM NEW.key_sha256)
    EXECUTE FUNCTION ragstream_notify_key_event();
CREATE TRIGGER api_keys_key_event_delete AFTER DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION ragstream_notify_key_event();
CREATE TRIGGER tenants_key_event AFTER UPDATE OR DELETE ON tenants FOR EACH ROW
    EXECUTE FUNCTION ragstream_notify_key_event();

-- gateway: whether a tenant is disabled (the Kafka intake bridge), without reading tenants itself.
CREATE FUNCTION ragstream_tenant_disabled(tenant text)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT t.disabled_at IS NOT NULL FROM public.tenants t WHERE t.tenant_id = tenant), false)
$$;
REVOKE ALL ON FUNCTION ragstream_tenant_disabled(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragstream_tenant_disabled(text) TO ragstream_gateway;

-- gateway admin path: tenant updates (PATCH), rotation, and the new columns in key listings.
GRANT UPDATE (name, rate_limit, ip_allowlist, disabled_at, max_key_lifetime_s, updated_at) ON tenants
    TO ragstream_gateway_admin;
GRANT SELECT (last_used_at, replaced_by, rotated_at), UPDATE (expires_at, replaced_by, rotated_at) ON api_keys
    TO ragstream_gateway_admin;
