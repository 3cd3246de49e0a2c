-- Least privilege: an owner role that owns the schema, and one role per service with only the grants its
-- adapters need. The roles are created NOLOGIN here (roles are cluster-wide, so idempotently); whoever
-- deploys gives each one LOGIN and its password (devstack pg_identities.py) or IAM authentication (RDS).
-- Services log in as their own role: there is no shared role left to `SET ROLE` into, so `RESET ROLE` only
-- ever returns to that same role. Later migrations run as ragstream_owner (migrate.py).

DO $$
DECLARE
    roles text[] := ARRAY['ragstream_owner', 'ragstream_gateway', 'ragstream_gateway_admin', 'ragstream_ingest',
                          'ragstream_embed', 'ragstream_retrieve'];
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY roles
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            -- Defaults: NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS.
            EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', role_name);
        END IF;
    END LOOP;
    -- Created by an earlier run (another database of the cluster) or by hand: refuse anything stronger.
    IF EXISTS (
        SELECT 1 FROM pg_roles
        WHERE rolname = ANY(roles) AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication)
    ) THEN
        RAISE EXCEPTION 'a ragstream_* role is superuser, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION';
    END IF;
    -- The administrator running migrations becomes the owner (SET ROLE) for ALTER ... OWNER and later
    -- migrations; superusers can already, and RDS' master user needs the membership.
    IF NOT pg_has_role(current_user, 'ragstream_owner', 'SET') THEN
        EXECUTE format('GRANT ragstream_owner TO %I', current_user);
    END IF;
END
$$;

-- The owner creates what later migrations add; nobody else creates anything in the schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO ragstream_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE ragstream_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- RLS on a table admitting the tenant named by `app.tenant_id` (transaction-local, set by tenant_transaction).
-- Forced, so the owner obeys it too. Grants are now explicit per role, below and in later migrations.
CREATE OR REPLACE FUNCTION ragstream_isolate_tenant(table_name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', table_name);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', table_name);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''app.tenant_id'', true)) '
        'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', table_name);
END
$$;

-- tenants and api_keys had no RLS (keys are looked up before the tenant is known); that lookup now goes
-- through ragstream_find_api_key below, so both are tenant-scoped like every other table.
SELECT ragstream_isolate_tenant(t) FROM unnest(ARRAY['tenants', 'api_keys']) AS t;

-- Every table and function of the schema (the extension's excepted) belongs to the owner role.
DO $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT c.oid::regclass AS name FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO ragstream_owner', item.name);
    END LOOP;
    FOR item IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO ragstream_owner', item.name);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', item.name);
    END LOOP;
END
$$;

-- The API-key lookup of the auth path, before any tenant is known: the owner (whom the forced RLS binds too)
-- may read every key and tenant row, and only this function runs as the owner for a service. It returns
-- the grant, never the hash, and only for the hash it is given.
CREATE POLICY key_lookup ON api_keys FOR SELECT TO ragstream_owner USING (true);
CREATE POLICY key_lookup ON tenants FOR SELECT TO ragstream_owner USING (true);

CREATE FUNCTION ragstream_find_api_key(digest text)
RETURNS TABLE (key_id text, tenant_id text, scopes text[], revoked boolean, expires_at timestamptz,
               rate_limit text, ip_allowlist cidr[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.key_id, k.tenant_id, k.scopes, k.revoked_at IS NOT NULL, k.expires_at, t.rate_limit, t.ip_allowlist
    FROM public.api_keys k JOIN public.tenants t ON t.tenant_id = k.tenant_id
    WHERE k.key_sha256 = digest
$$;
ALTER FUNCTION ragstream_find_api_key(text) OWNER TO ragstream_owner;
REVOKE ALL ON FUNCTION ragstream_find_api_key(text) FROM PUBLIC;

-- gateway: the document registry and its projections, blob uploads (BLOB_STORE=postgres), audit appends,
-- key lookups. No reads of the audit log, no writes to tenants or keys.
GRANT SELECT, INSERT, UPDATE ON documents TO ragstream_gateway;
-- Reading the ON CONFLICT arbiter's columns needs SELECT on them; the content stays unreadable.
GRANT SELECT (tenant_id, blob_key), INSERT ON blobs TO ragstream_gateway;
GRANT INSERT ON audit_log TO ragstream_gateway;
GRANT EXECUTE ON FUNCTION ragstream_find_api_key(text) TO ragstream_gateway;

-- gateway admin path (its own login and pool): tenants, API keys (never their hashes), audit reads.
GRANT SELECT, INSERT ON tenants TO ragstream_gateway_admin;
GRANT SELECT (key_id, tenant_id, key_prefix, name, scopes, created_at, expires_at, revoked_at),
      INSERT (key_id, tenant_id, key_sha256, key_prefix, name, scopes, expires_at),
      UPDATE (revoked_at) ON api_keys TO ragstream_gateway_admin;
GRANT SELECT ON audit_log TO ragstream_gateway_admin;

-- ingest: reads the uploads the gateway stored.
GRANT SELECT ON blobs TO ragstream_ingest;

-- embed: the embedding cache.
GRANT SELECT, INSERT ON embedding_cache TO ragstream_embed;

-- retrieve: the index (writes replace a document's chunks and postings) and search.
GRANT SELECT, INSERT, UPDATE ON document_index_state, lexical_stats TO ragstream_retrieve;
GRANT SELECT, INSERT, DELETE ON chunks, chunk_terms TO ragstream_retrieve;

-- The shared role every service used to `SET ROLE` into: its grants go, and so does the role unless another
-- database of the cluster still grants it something.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ragstream_app') THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ragstream_app;
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM ragstream_app;
        REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM ragstream_app;
        BEGIN
            DROP ROLE ragstream_app;
        EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
            RAISE NOTICE 'role ragstream_app kept (%): it has no privileges in this database', SQLERRM;
        END;
    END IF;
END
$$;
