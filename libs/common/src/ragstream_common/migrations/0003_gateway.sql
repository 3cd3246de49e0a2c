-- Gateway: per-tenant rate limits and IP allowlists, API key expiry and preview, and the origin of each
-- document registry row (so the Kafka projections can tell their placeholders from registered versions).

-- limits notation, e.g. '100/minute;10/second'; NULL means the gateway's default limit.
ALTER TABLE tenants ADD COLUMN rate_limit text;
-- Client networks admitted for this tenant's keys; empty admits any address.
ALTER TABLE tenants ADD COLUMN ip_allowlist cidr[] NOT NULL DEFAULT '{}';

-- The first characters of the key (never enough to use it), to tell keys apart in listings and logs.
ALTER TABLE api_keys ADD COLUMN key_prefix text NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- gateway: registered by an upload; kafka: by an event another producer published;
-- status: a placeholder the status projector created for a version it saw before its registration.
ALTER TABLE documents ADD COLUMN origin text NOT NULL DEFAULT 'gateway'
    CHECK (origin IN ('gateway', 'kafka', 'status'));
