-- Tamper-evident audit log (issue 11). Runs as ragstream_owner.
--
-- * Every audit_log row is chained to its tenant's previous one: `seq` (1, 2, 3... per tenant, no gaps),
--   `prev_hash` (the previous row's row_hash; 64 zeros for the first) and `row_hash`, SHA-256 over the canonical
--   encoding of ragstream_audit_row_hash below (recomputed independently by ragstream_gateway/audit_chain.py).
-- * Nobody writes those fields: a BEFORE INSERT trigger (SECURITY DEFINER, as the owner) takes the tenant's
--   chain head row FOR UPDATE, so appends of one tenant are serialised across every gateway replica until
--   their transaction ends, and sets seq, prev_hash, `at` (clock_timestamp, after the lock) and row_hash. The
--   services' logins may INSERT only the content columns. A rolled-back append rolls its head back: no gaps.
-- * Append-only: no service login holds UPDATE, DELETE or TRUNCATE, and a statement trigger refuses them for
--   every role, the owner included. Only someone who can disable triggers (the owner, a superuser) gets
--   past it, and that is what verification and the exported copy on rag.security.events.v1 show.
-- * The export cursor (audit_export) for the relay that publishes every row to rag.security.events.v1.
-- * tenants.audit_question_text: the tenant's opt-in to question text in the audit log (default: its hash).

ALTER TABLE audit_log ADD COLUMN seq bigint;
ALTER TABLE audit_log ADD COLUMN outcome text NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN trace_id text NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN prev_hash text;
ALTER TABLE audit_log ADD COLUMN row_hash text;

ALTER TABLE tenants ADD COLUMN audit_question_text boolean NOT NULL DEFAULT false;

-- Each field as `<UTF-8 length>:<value>` on its own line after a version tag; `at` in UTC with microseconds,
-- details as jsonb's text (keys sorted and deduplicated: one text per value).
CREATE FUNCTION ragstream_audit_row_hash(
    tenant_id text, seq bigint, at timestamptz, actor text, action text, resource text, client_ip text,
    outcome text, trace_id text, details jsonb, prev_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(convert_to(
        'ragstream.audit.v1' || chr(10)
        || string_agg(octet_length(convert_to(field, 'UTF8'))::text || ':' || field, chr(10) ORDER BY n),
        'UTF8')), 'hex')
    FROM unnest(ARRAY[
        tenant_id, seq::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor, action,
        resource, client_ip, outcome, trace_id, details::text, prev_hash
    ]) WITH ORDINALITY AS fields(field, n)
$$;

-- The last row of each tenant's chain, and how far the relay has published it. Kept apart from each other so
-- that a relay holding its cursor row while Kafka answers never delays an append.
CREATE TABLE audit_chain_heads (
    tenant_id   text PRIMARY KEY,
    seq         bigint NOT NULL,
    row_hash    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE audit_export (
    tenant_id      text PRIMARY KEY,
    published_seq  bigint NOT NULL DEFAULT 0,
    published_at   timestamptz
);
SELECT ragstream_isolate_tenant(t) FROM unnest(ARRAY['audit_chain_heads', 'audit_export']) AS t;
-- The owner's functions below (append trigger, export relay) work across tenants.
CREATE POLICY audit_chain ON audit_chain_heads TO ragstream_owner USING (true) WITH CHECK (true);
CREATE POLICY audit_chain ON audit_export TO ragstream_owner USING (true) WITH CHECK (true);
CREATE POLICY audit_relay ON audit_log FOR SELECT TO ragstream_owner USING (true);

-- Existing rows, chained in audit_id order per tenant (row-level security relaxed for this transaction only).
ALTER TABLE audit_log NO FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_chain_heads NO FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_export NO FORCE ROW LEVEL SECURITY;
DO $$
DECLARE
    item record;
    chain_tenant text := NULL;
    chain_seq bigint := 0;
    chain_hash text := repeat('0', 64);
    next_hash text;
BEGIN
    FOR item IN SELECT * FROM audit_log ORDER BY tenant_id, audit_id LOOP
        IF chain_tenant IS DISTINCT FROM item.tenant_id THEN
            IF chain_tenant IS NOT NULL THEN
                INSERT INTO audit_chain_heads (tenant_id, seq, row_hash) VALUES (chain_tenant, chain_seq, chain_hash);
            END IF;
            chain_tenant := item.tenant_id;
            chain_seq := 0;
            chain_hash := repeat('0', 64);
        END IF;
        chain_seq := chain_seq + 1;
        next_hash := ragstream_audit_row_hash(item.tenant_id, chain_seq, item.at, item.actor, item.action,
            item.resource, item.client_ip, item.outcome, item.trace_id, item.details, chain_hash);
        UPDATE audit_log SET seq = chain_seq, prev_hash = chain_hash, row_hash = next_hash
        WHERE audit_id = item.audit_id;
        chain_hash := next_hash;
    END LOOP;
    IF chain_tenant IS NOT NULL THEN
        INSERT INTO audit_chain_heads (tenant_id, seq, row_hash) VALUES (chain_tenant, chain_seq, chain_hash);
    END IF;
    INSERT INTO audit_export (tenant_id) SELECT tenant_id FROM audit_chain_heads;
END
$$;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_chain_heads FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_export FORCE ROW LEVEL SECURITY;

ALTER TABLE audit_log ALTER COLUMN seq SET NOT NULL;
ALTER TABLE audit_log ALTER COLUMN prev_hash SET NOT NULL;
ALTER TABLE audit_log ALTER COLUMN row_hash SET NOT NULL;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_tenant_seq UNIQUE (tenant_id, seq);

-- Appends: the chain fields are computed here, whatever the INSERT said.
CREATE FUNCTION ragstream_audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head record;
BEGIN
    SELECT h.seq, h.row_hash INTO head FROM public.audit_chain_heads h WHERE h.tenant_id = NEW.tenant_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO public.audit_chain_heads (tenant_id, seq, row_hash) VALUES (NEW.tenant_id, 0, repeat('0', 64))
        ON CONFLICT (tenant_id) DO NOTHING;
        INSERT INTO public.audit_export (tenant_id) VALUES (NEW.tenant_id) ON CONFLICT (tenant_id) DO NOTHING;
        SELECT h.seq, h.row_hash INTO head FROM public.audit_chain_heads h
        WHERE h.tenant_id = NEW.tenant_id FOR UPDATE;
    END IF;
    NEW.seq := head.seq + 1;
    NEW.prev_hash := head.row_hash;
    NEW.at := clock_timestamp();
    NEW.row_hash := public.ragstream_audit_row_hash(NEW.tenant_id, NEW.seq, NEW.at, NEW.actor, NEW.action,
        NEW.resource, NEW.client_ip, NEW.outcome, NEW.trace_id, NEW.details, NEW.prev_hash);
    UPDATE public.audit_chain_heads SET seq = NEW.seq, row_hash = NEW.row_hash, updated_at = NEW.at
    WHERE tenant_id = NEW.tenant_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION ragstream_audit_chain();

CREATE FUNCTION ragstream_audit_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ragstream_audit_append_only();

-- The relay (ragstream_gateway/audit_export.py): rows not yet published, oldest first per tenant, for the
-- tenants whose cursor this transaction could lock (SKIP LOCKED: replicas share tenants, never the same one).
-- The caller publishes them, acknowledges the last seq per tenant and commits; a crash in between publishes
-- them again (at least once: consumers drop duplicates by tenant and seq).
CREATE FUNCTION ragstream_audit_export_claim(max_rows integer)
RETURNS TABLE (audit_id bigint, tenant_id text, seq bigint, at timestamptz, actor text, action text,
               resource text, client_ip text, outcome text, trace_id text, details text, prev_hash text,
               row_hash text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    pending record;
    left_rows integer := least(greatest(max_rows, 1), 10000);
    taken integer;
BEGIN
    FOR pending IN
        SELECT e.tenant_id, e.published_seq FROM public.audit_export e
        JOIN public.audit_chain_heads h ON h.tenant_id = e.tenant_id
        WHERE h.seq > e.published_seq ORDER BY e.tenant_id
        FOR UPDATE OF e SKIP LOCKED
    LOOP
        RETURN QUERY
            SELECT a.audit_id, a.tenant_id, a.seq, a.at, a.actor, a.action, a.resource, a.client_ip, a.outcome,
                   a.trace_id, a.details::text, a.prev_hash, a.row_hash
            FROM public.audit_log a
            WHERE a.tenant_id = pending.tenant_id AND a.seq > pending.published_seq
            ORDER BY a.seq LIMIT left_rows;
        GET DIAGNOSTICS taken = ROW_COUNT;
        left_rows := left_rows - taken;
        EXIT WHEN left_rows <= 0;
    END LOOP;
END
$$;

CREATE FUNCTION ragstream_audit_export_ack(tenant text, through_seq bigint) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.audit_export SET published_seq = greatest(published_seq, through_seq), published_at = now()
    WHERE tenant_id = tenant
$$;

-- Service logins append content only; the admin login also in the transaction of the change it records.
REVOKE INSERT ON audit_log FROM ragstream_gateway;
GRANT INSERT (tenant_id, actor, action, resource, client_ip, details, outcome, trace_id) ON audit_log
    TO ragstream_gateway, ragstream_gateway_admin;
-- Verification reads the head beside the rows; the relay runs on the admin login.
GRANT SELECT ON audit_chain_heads TO ragstream_gateway_admin;
GRANT EXECUTE ON FUNCTION ragstream_audit_export_claim(integer), ragstream_audit_export_ack(text, bigint)
    TO ragstream_gateway_admin;
-- The opt-in: read on the query path without reading tenants itself, set by the admin API.
CREATE FUNCTION ragstream_audit_question_text(tenant text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT t.audit_question_text FROM public.tenants t WHERE t.tenant_id = tenant), false)
$$;
GRANT EXECUTE ON FUNCTION ragstream_audit_question_text(text) TO ragstream_gateway;
GRANT UPDATE (audit_question_text) ON tenants TO ragstream_gateway_admin;
