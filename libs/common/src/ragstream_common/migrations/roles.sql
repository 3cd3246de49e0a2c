-- Service roles added after migration 0005, created by the administrator before pending migrations run (every
-- run; idempotent). Roles are cluster-wide and the owner role that runs migrations from 0006 on cannot create
-- them (no CREATEROLE, by design). Each is NOLOGIN here: pg_identities.py / db_logins.py or RDS IAM give logins.
-- The owner grants each role exactly what it needs, in the numbered migration that adds its tables.
DO $$
DECLARE
    roles text[] := ARRAY['ragstream_connectors', 'ragstream_metering'];
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY roles
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            -- Defaults: NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS.
            EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', role_name);
        END IF;
    END LOOP;
    IF EXISTS (
        SELECT 1 FROM pg_roles
        WHERE rolname = ANY(roles) AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication)
    ) THEN
        RAISE EXCEPTION 'a ragstream_* role is superuser, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION';
    END IF;
END
$$;
