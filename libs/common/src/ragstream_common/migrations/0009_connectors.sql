-- Document management system connectors (docs/connectors.md): the registry, encrypted secrets, per-connector
-- sync state, the items each connector brought in, provider deliveries seen, and blobs stored in parts so a
-- large download never has to be held in memory.

-- The role ragstream_connectors is created by roles.sql (the administrator, before this runs).

-- Envelope encryption: one data key per tenant, stored only wrapped by the master key (a local key from the
-- settings, or KMS). `wrapping` names which key wrapped it ("local:<key id>", "kms:<key arn>").
CREATE TABLE tenant_data_keys (
    tenant_id   text PRIMARY KEY REFERENCES tenants (tenant_id),
    wrapped_key bytea NOT NULL,
    wrapping    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
SELECT ragstream_isolate_tenant('tenant_data_keys');

-- Connector ids are globally unique: the webhook URL carries only the id, the tenant comes from its row.
CREATE TABLE connectors (
    connector_id        text PRIMARY KEY CHECK (connector_id ~ '^con_[a-z0-9]{8,32}$'),
    tenant_id           text NOT NULL REFERENCES tenants (tenant_id),
    provider            text NOT NULL CHECK (provider IN ('sharepoint', 'onedrive', 'box', 'gdrive', 'webhook')),
    name                text NOT NULL,
    config              jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The secrets as JSON, AES-256-GCM under the tenant's data key (nonce || ciphertext || tag).
    secrets_ciphertext  bytea NOT NULL,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removing', 'removed')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    removed_at          timestamptz
);
SELECT ragstream_isolate_tenant('connectors');
CREATE INDEX connectors_by_tenant ON connectors (tenant_id, created_at);

-- Where each connector's sync stands: the provider cursor (delta link, page token, stream position), its
-- subscription or watch channel, what the status API shows, and when the periodic poll is next due.
CREATE TABLE connector_sync_state (
    connector_id            text PRIMARY KEY REFERENCES connectors (connector_id) ON DELETE CASCADE,
    tenant_id               text NOT NULL,
    cursor                  text,
    subscription_id         text,
    -- Drive's channel resourceId; Graph's subscription resource.
    subscription_resource   text,
    subscription_expires_at timestamptz,
    last_notification_at    timestamptz,
    last_sync_at            timestamptz,
    items_synced            bigint NOT NULL DEFAULT 0,
    error_count             bigint NOT NULL DEFAULT 0,
    last_error              text,
    next_poll_at            timestamptz NOT NULL DEFAULT now(),
    -- Set when a full enumeration starts (cursor NULL, a resync, a 410): items not seen since are deleted at
    -- its end, even if the worker restarted halfway through it.
    full_sync_started_at    timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
SELECT ragstream_isolate_tenant('connector_sync_state');
CREATE INDEX connector_sync_due ON connector_sync_state (next_poll_at);

-- One row per item a connector has seen: its document id and the last version published for it. Versions
-- only grow (a restore after a delete is a new version), so DocumentDeleted always covers what came before.
CREATE TABLE connector_items (
    connector_id    text NOT NULL REFERENCES connectors (connector_id) ON DELETE CASCADE,
    item_id         text NOT NULL,
    tenant_id       text NOT NULL,
    document_id     text NOT NULL,
    version         bigint NOT NULL CHECK (version >= 1),
    -- The provider's change marker (eTag/cTag, Box sha1 + version id, Drive version/md5): unchanged, no download.
    version_tag     text NOT NULL DEFAULT '',
    content_sha256  text NOT NULL DEFAULT '',
    title           text NOT NULL DEFAULT '',
    deleted         boolean NOT NULL DEFAULT false,
    -- Last time a change listing reported the item (see full_sync_started_at).
    seen_at         timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector_id, item_id)
);
SELECT ragstream_isolate_tenant('connector_items');

-- Provider deliveries (Box BOX-DELIVERY-ID, webhook-id, ...): the gateway refuses a replay, the worker processes
-- a delivery once. Kept a week (the worker deletes older rows), longer than any provider retries.
CREATE TABLE connector_deliveries (
    connector_id  text NOT NULL REFERENCES connectors (connector_id) ON DELETE CASCADE,
    delivery_id   text NOT NULL,
    tenant_id     text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    PRIMARY KEY (connector_id, delivery_id)
);
SELECT ragstream_isolate_tenant('connector_deliveries');
CREATE INDEX connector_deliveries_age ON connector_deliveries (received_at);

-- Blobs written in parts (streamed downloads): the `blobs` row carries the metadata and `parts` > 0 instead of
-- `content`; its parts are rows here, read back in order.
ALTER TABLE blobs ALTER COLUMN content DROP NOT NULL;
ALTER TABLE blobs ADD COLUMN parts integer NOT NULL DEFAULT 0 CHECK (parts >= 0);
ALTER TABLE blobs ADD CONSTRAINT blobs_content_or_parts CHECK ((content IS NULL) = (parts > 0));
CREATE TABLE blob_parts (
    tenant_id  text NOT NULL,
    blob_key   text NOT NULL,
    part_no    integer NOT NULL CHECK (part_no >= 0),
    content    bytea NOT NULL,
    PRIMARY KEY (tenant_id, blob_key, part_no)
);
SELECT ragstream_isolate_tenant('blob_parts');

-- The webhook path knows only the connector id: this returns its tenant, provider, status and encrypted secrets
-- (never decrypted here), for that id only.
CREATE POLICY connector_lookup ON connectors FOR SELECT TO ragstream_owner USING (true);
CREATE FUNCTION ragstream_find_connector(wanted text)
RETURNS TABLE (tenant_id text, provider text, status text, config jsonb, secrets_ciphertext bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.tenant_id, c.provider, c.status, c.config, c.secrets_ciphertext
    FROM public.connectors c WHERE c.connector_id = wanted
$$;
ALTER FUNCTION ragstream_find_connector(text) OWNER TO ragstream_owner;
REVOKE ALL ON FUNCTION ragstream_find_connector(text) FROM PUBLIC;

-- The connectors worker's scheduler, across tenants: active connectors whose poll is due or whose subscription
-- expires within `renew_within`. The worker then claims each in its tenant's transaction (next_poll_at moves).
CREATE POLICY connector_schedule ON connector_sync_state FOR SELECT TO ragstream_owner USING (true);
CREATE FUNCTION ragstream_due_connectors(renew_within interval, max_rows integer)
RETURNS TABLE (tenant_id text, connector_id text, provider text, next_poll_at timestamptz,
               subscription_expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.tenant_id, s.connector_id, c.provider, s.next_poll_at, s.subscription_expires_at
    FROM public.connector_sync_state s JOIN public.connectors c ON c.connector_id = s.connector_id
    WHERE c.status = 'active'
      AND (s.next_poll_at <= now() OR s.subscription_expires_at <= now() + renew_within)
    ORDER BY LEAST(s.next_poll_at, COALESCE(s.subscription_expires_at, s.next_poll_at))
    LIMIT max_rows
$$;
ALTER FUNCTION ragstream_due_connectors(interval, integer) OWNER TO ragstream_owner;
REVOKE ALL ON FUNCTION ragstream_due_connectors(interval, integer) FROM PUBLIC;

-- gateway: the connector API (create, list, status, remove), the webhook lookup and replay check.
GRANT SELECT, INSERT ON tenant_data_keys TO ragstream_gateway;
GRANT SELECT, INSERT, UPDATE ON connectors TO ragstream_gateway;
GRANT SELECT, INSERT ON connector_sync_state TO ragstream_gateway;
GRANT UPDATE (last_notification_at, next_poll_at, updated_at) ON connector_sync_state TO ragstream_gateway;
GRANT SELECT, INSERT ON connector_deliveries TO ragstream_gateway;
GRANT SELECT (tenant_id, blob_key, part_no), INSERT ON blob_parts TO ragstream_gateway;
GRANT EXECUTE ON FUNCTION ragstream_find_connector(text) TO ragstream_gateway;

-- connectors worker: reads connectors and their keys, keeps sync state, items and deliveries, stores content.
GRANT SELECT ON tenant_data_keys TO ragstream_connectors;
GRANT SELECT ON connectors TO ragstream_connectors;
GRANT UPDATE (status, removed_at, updated_at) ON connectors TO ragstream_connectors;
GRANT SELECT, UPDATE ON connector_sync_state TO ragstream_connectors;
GRANT SELECT, INSERT, UPDATE ON connector_items TO ragstream_connectors;
GRANT SELECT, INSERT, UPDATE, DELETE ON connector_deliveries TO ragstream_connectors;
GRANT SELECT (tenant_id, blob_key), INSERT ON blobs TO ragstream_connectors;
GRANT SELECT (tenant_id, blob_key, part_no), INSERT ON blob_parts TO ragstream_connectors;
GRANT EXECUTE ON FUNCTION ragstream_due_connectors(interval, integer) TO ragstream_connectors;

-- ingest: reads blobs stored in parts as it reads whole ones.
GRANT SELECT ON blob_parts TO ragstream_ingest;
