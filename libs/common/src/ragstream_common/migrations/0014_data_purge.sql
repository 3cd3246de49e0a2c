-- Data lifecycle (docs/data-governance.md): what deleted documents and deleted tenants leave behind is purged by
-- the retention job (ragstream_gateway/purge.py, `python -m ragstream_gateway.purge`) once a grace period has
-- passed, so no event still in flight needs it. The job logs in as the gateway's admin role; it reads what to
-- purge through column grants and the listing below, and deletes index rows only through the functions below,
-- which re-check under row locks that what they delete is deleted and old enough. Runs as ragstream_owner.

-- DELETE /v1/admin/tenants/{id} sets it (with disabled_at); the row itself stays, scrubbed, so the id is never
-- reused and the tenant's audit chain keeps its owner. purged_at: when the job last emptied the tenant.
ALTER TABLE tenants ADD COLUMN deleted_at timestamptz;
ALTER TABLE tenants ADD COLUMN purged_at timestamptz;
GRANT UPDATE (deleted_at) ON tenants TO ragstream_gateway_admin;

-- A purged document stays as a tombstone: its row, status `deleted`, scrubbed of everything that could carry
-- content, with `purged_at` set; its index state row stays too. They hold the version bookkeeping that every
-- version-aware write depends on: a late or redriven event of an old version stays refused, and a re-upload under
-- the same id gets the next version. A row that comes back to life (a re-upload, a newer version from Kafka) is no
-- longer a tombstone: the trigger clears the mark, so deleting it again gets it purged again.
ALTER TABLE documents ADD COLUMN purged_at timestamptz;
CREATE FUNCTION ragstream_documents_revived() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.purged_at := NULL;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ragstream_documents_revived() FROM PUBLIC;
CREATE TRIGGER documents_revived BEFORE UPDATE ON documents
    FOR EACH ROW WHEN (OLD.purged_at IS NOT NULL AND NEW.status <> 'deleted')
    EXECUTE FUNCTION ragstream_documents_revived();

-- Blobs: `created_at` is the last write. A content-addressed re-put of the same key (a document restored to an
-- earlier content) touches it, so a blob the job is about to drop as superseded is kept when it is wanted again.
GRANT UPDATE (created_at) ON blobs TO ragstream_gateway, ragstream_connectors;
-- The job: the registry columns that say what is live, and the blobs (the Postgres blob store) to drop.
GRANT SELECT (tenant_id, document_id, status, source_uri, deleted_at, purged_at) ON documents
    TO ragstream_gateway_admin;
GRANT SELECT (tenant_id, blob_key, created_at), DELETE ON blobs TO ragstream_gateway_admin;
GRANT SELECT (tenant_id, blob_key), DELETE ON blob_parts TO ragstream_gateway_admin;

-- Every tenant with its deletion marks (the job walks them; the admin role may not list tenants itself).
CREATE FUNCTION ragstream_purge_tenants()
RETURNS TABLE (tenant_id text, deleted_at timestamptz, purged_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tenant_id, t.deleted_at, t.purged_at FROM public.tenants t
    WHERE t.tenant_id <> '_platform' ORDER BY t.tenant_id
$$;

-- One deleted document, in the tenant's transaction: only if it is still deleted since before `cutoff` (a
-- restore in between wins) and not purged yet. Chunks the indexer has not removed yet go, with their postings and
-- their share of the BM25 statistics; the index state is kept (ids and version numbers only) and marks every
-- version up to the document's as deleted, so the indexer refuses them whatever it consumed; a deleted connector
-- item keeps its ids and version (its next version continues from it) and loses its title and hashes; the
-- registry row becomes the tombstone. Rows deleted per table, `documents` counting the tombstone.
CREATE FUNCTION ragstream_purge_document(tenant text, document text, cutoff timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    purged_version bigint;
    removed_chunks bigint;
    removed_length bigint;
BEGIN
    PERFORM set_config('app.tenant_id', tenant, true);
    SELECT d.version INTO purged_version FROM public.documents d
    WHERE d.tenant_id = tenant AND d.document_id = document AND d.status = 'deleted' AND d.deleted_at < cutoff
      AND d.purged_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The indexer locks the state row before every write to the document's chunks.
    INSERT INTO public.document_index_state (tenant_id, document_id) VALUES (tenant, document) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM public.document_index_state s WHERE s.tenant_id = tenant AND s.document_id = document FOR UPDATE;
    WITH removed AS (
        DELETE FROM public.chunks c WHERE c.tenant_id = tenant AND c.document_id = document
        RETURNING c.chunk_key, c.lexical_length
    ), postings AS (
        DELETE FROM public.chunk_terms p USING removed r WHERE p.tenant_id = tenant AND p.chunk_key = r.chunk_key
    )
    SELECT count(*), coalesce(sum(r.lexical_length), 0) INTO removed_chunks, removed_length FROM removed r;
    IF removed_chunks > 0 THEN
        -- Readers sum the shards, so any shard may carry the correction.
        INSERT INTO public.lexical_stats AS l (tenant_id, shard, chunk_count, total_length)
        VALUES (tenant, abs(hashtext(document)) % 16, -removed_chunks, -removed_length)
        ON CONFLICT (tenant_id, shard) DO UPDATE
        SET chunk_count = l.chunk_count + EXCLUDED.chunk_count, total_length = l.total_length + EXCLUDED.total_length;
    END IF;
    UPDATE public.document_index_state s
    SET deleted_through_version = greatest(s.deleted_through_version, purged_version), chunk_count = 0,
        updated_at = now()
    WHERE s.tenant_id = tenant AND s.document_id = document;
    UPDATE public.connector_items i SET title = '', content_sha256 = '', version_tag = '', pending = false,
        updated_at = now()
    WHERE i.tenant_id = tenant AND i.document_id = document AND i.deleted;
    UPDATE public.documents d SET title = '', metadata = '{}'::jsonb, content_type = '', content_sha256 = '',
        size_bytes = 0, source_uri = '', chunk_count = 0, error_stage = NULL, error = NULL, purged_at = now(),
        updated_at = now()
    WHERE d.tenant_id = tenant AND d.document_id = document;
    RETURN jsonb_build_object('chunks', removed_chunks, 'documents', 1);
END
$$;

-- Cached embeddings of the tenant written before `cutoff` that no chunk of the tenant uses any more (at most
-- `max_rows`); how many. Newer ones may belong to a document still on its way to the index.
CREATE FUNCTION ragstream_purge_embedding_cache(tenant text, cutoff timestamptz, max_rows integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM set_config('app.tenant_id', tenant, true);
    DELETE FROM public.embedding_cache e
    WHERE e.tenant_id = tenant AND (e.model, e.content_sha256) IN (
        SELECT o.model, o.content_sha256 FROM public.embedding_cache o
        WHERE o.tenant_id = tenant AND o.created_at < cutoff
          AND NOT EXISTS (SELECT 1 FROM public.chunks c WHERE c.tenant_id = tenant AND c.model = o.model
                          AND c.content_sha256 = o.content_sha256)
        LIMIT greatest(max_rows, 1));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- A deleted tenant's rows in every table that has a tenant_id column, found from the catalogue so that a table a
-- later migration adds is purged too, except the tamper-evident audit chain (audit_log is append-only for every
-- role; its heads and export cursor belong to it) and the tenants row, which is scrubbed and kept. Only if the
-- tenant was deleted before `cutoff`; rows per table.
CREATE FUNCTION ragstream_purge_tenant(tenant text, cutoff timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item record;
    counts jsonb := '{}'::jsonb;
    n bigint;
BEGIN
    PERFORM set_config('app.tenant_id', tenant, true);
    PERFORM 1 FROM public.tenants t WHERE t.tenant_id = tenant AND t.deleted_at < cutoff FOR UPDATE;
    IF NOT FOUND OR tenant = '_platform' THEN
        RETURN NULL;
    END IF;
    FOR item IN
        SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND a.attname = 'tenant_id'
          AND NOT a.attisdropped
          AND c.relname NOT IN ('tenants', 'audit_log', 'audit_chain_heads', 'audit_export')
        ORDER BY c.relname
    LOOP
        EXECUTE format('DELETE FROM public.%I WHERE tenant_id = $1', item.relname) USING tenant;
        GET DIAGNOSTICS n = ROW_COUNT;
        counts := counts || jsonb_build_object(item.relname, n);
    END LOOP;
    UPDATE public.tenants SET name = '', rate_limit = NULL, ip_allowlist = '{}', max_key_lifetime_s = NULL,
        audit_question_text = false, disabled_at = coalesce(disabled_at, now()), purged_at = now(), updated_at = now()
    WHERE tenant_id = tenant;
    RETURN counts;
END
$$;

REVOKE ALL ON FUNCTION ragstream_purge_tenants(), ragstream_purge_document(text, text, timestamptz),
    ragstream_purge_embedding_cache(text, timestamptz, integer), ragstream_purge_tenant(text, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragstream_purge_tenants(), ragstream_purge_document(text, text, timestamptz),
    ragstream_purge_embedding_cache(text, timestamptz, integer), ragstream_purge_tenant(text, timestamptz)
    TO ragstream_gateway_admin;
