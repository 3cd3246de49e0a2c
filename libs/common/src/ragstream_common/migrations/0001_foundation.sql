-- Foundation: pgvector, the application role, tenants, API keys, document registry, blob store,
-- embedding cache and audit log. Every tenant-owned table carries tenant_id and row-level security.

CREATE EXTENSION IF NOT EXISTS vector;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ragstream_app') THEN
        CREATE ROLE ragstream_app NOLOGIN;
    END IF;
END
$$;

-- Services `SET ROLE ragstream_app`; the login user must be a member (superusers always are).
DO $$
BEGIN
    EXECUTE format('GRANT ragstream_app TO %I', current_user);
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;

CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY CHECK (tenant_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Looked up by hash before the tenant is known, so no row-level security here; keys are stored hashed.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    key_sha256  text NOT NULL UNIQUE,
    name        text NOT NULL DEFAULT '',
    scopes      text[] NOT NULL DEFAULT ARRAY['documents:write', 'documents:read', 'query'],
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE documents (
    tenant_id       text NOT NULL,
    document_id     text NOT NULL,
    version         bigint NOT NULL CHECK (version >= 1),
    status          text NOT NULL CHECK (status IN ('received', 'processing', 'indexed', 'failed', 'deleted')),
    title           text NOT NULL DEFAULT '',
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    content_type    text NOT NULL DEFAULT '',
    content_sha256  text NOT NULL DEFAULT '',
    size_bytes      bigint NOT NULL DEFAULT 0,
    source_uri      text NOT NULL DEFAULT '',
    chunk_count     integer NOT NULL DEFAULT 0,
    error_stage     text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    indexed_at      timestamptz,
    deleted_at      timestamptz,
    PRIMARY KEY (tenant_id, document_id)
);
CREATE INDEX documents_tenant_created ON documents (tenant_id, created_at DESC, document_id);

-- Claim-check store for raw uploads (an S3 adapter replaces it in production).
CREATE TABLE blobs (
    tenant_id     text NOT NULL,
    blob_key      text NOT NULL,
    content       bytea NOT NULL,
    content_type  text NOT NULL DEFAULT '',
    size_bytes    bigint NOT NULL,
    sha256        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, blob_key)
);

-- Vectors by chunk content hash, so unchanged chunks are never embedded twice.
CREATE TABLE embedding_cache (
    tenant_id       text NOT NULL,
    model           text NOT NULL,
    content_sha256  text NOT NULL,
    embedding       vector NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, model, content_sha256)
);

CREATE TABLE audit_log (
    audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    resource    text NOT NULL DEFAULT '',
    client_ip   text NOT NULL DEFAULT '',
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at DESC);

-- Tenant isolation for one table: row-level security (forced, so table owners obey it too) admitting the
-- tenant named by `app.tenant_id`, and the application role's grants. Later migrations use it as well.
CREATE FUNCTION ragstream_isolate_tenant(table_name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', table_name);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''app.tenant_id'', true)) '
        'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', table_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO ragstream_app', table_name);
END
$$;

SELECT ragstream_isolate_tenant(t) FROM unnest(ARRAY['documents', 'blobs', 'embedding_cache', 'audit_log']) AS t;

GRANT SELECT, INSERT, UPDATE ON tenants TO ragstream_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO ragstream_app;
