"""Least-privilege Postgres (migration 0005): the catalog, and what each service's own login can and cannot do."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from ragstream_devstack.pg_identities import LOGIN_ROLES

pytestmark = pytest.mark.integration
EXPECTED_GRANTS = json.loads((Path(__file__).parent / "pg_grants.json").read_text())
IDENTITIES = sorted(LOGIN_ROLES)
# A table each identity may read: a cross-tenant read of it must find nothing.
READABLE = {
    "gateway": "documents",
    "gateway-admin": "audit_log",
    "ingest": "blobs",
    "embed": "embedding_cache",
    "retrieve": "document_index_state",
    "connectors": "connector_items",
    "metering": "usage_minutes",
}
# Every privilege a role holds directly, on any object of this database, its default ACLs and the database.
_PRIVILEGES = """
WITH r AS (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
SELECT 'table ' || c.relname, a.privilege_type
FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN r ON a.grantee = r.oid
UNION ALL
SELECT 'column ' || c.relname || '.' || att.attname, a.privilege_type
FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid CROSS JOIN LATERAL aclexplode(att.attacl) a
JOIN r ON a.grantee = r.oid
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, a.privilege_type
FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a JOIN r ON a.grantee = r.oid
UNION ALL
SELECT 'schema ' || n.nspname, a.privilege_type
FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN r ON a.grantee = r.oid
UNION ALL
SELECT 'type ' || t.typname, a.privilege_type
FROM pg_type t CROSS JOIN LATERAL aclexplode(t.typacl) a JOIN r ON a.grantee = r.oid
UNION ALL
SELECT 'database ' || d.datname, a.privilege_type
FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN r ON a.grantee = r.oid
UNION ALL
SELECT 'default ' || d.defaclobjtype::text, a.privilege_type
FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a JOIN r ON a.grantee = r.oid
"""
_TENANT_TABLES = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
"""


@pytest.fixture(scope="module")
def tenant(migrated_database: str) -> str:
    """A tenant with a row in every table, written by the administrator (whom row-level security does not bind)."""
    name = f"lp-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated_database) as connection:
        connection.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)", (name, name))
        connection.execute(
            "INSERT INTO api_keys (key_id, tenant_id, key_sha256) VALUES (%s, %s, %s)", (name, name, f"hash-{name}")
        )
        connection.execute(
            "INSERT INTO documents (tenant_id, document_id, version, status) VALUES (%s, 'd', 1, 'received')", (name,)
        )
        connection.execute(
            "INSERT INTO blobs (tenant_id, blob_key, content, size_bytes, sha256) VALUES (%s, 'b', 'x', 1, '')", (name,)
        )
        connection.execute(
            "INSERT INTO embedding_cache (tenant_id, model, content_sha256, embedding) VALUES (%s, 'm', 'h', '[1]')",
            (name,),
        )
        connection.execute("INSERT INTO document_index_state (tenant_id, document_id) VALUES (%s, 'd')", (name,))
        connection.execute("INSERT INTO audit_log (tenant_id, actor, action) VALUES (%s, 'test', 'seed')", (name,))
        connector = f"con_{uuid.uuid4().hex[:16]}"
        connection.execute(
            "INSERT INTO connectors (connector_id, tenant_id, provider, name, secrets_ciphertext)"
            " VALUES (%s, %s, 'webhook', 'c', 'x')",
            (connector, name),
        )
        connection.execute(
            "INSERT INTO connector_items (connector_id, item_id, tenant_id, document_id, version)"
            " VALUES (%s, 'i', %s, 'd', 1)",
            (connector, name),
        )
        connection.execute(
            "INSERT INTO usage_minutes (tenant_id, window_start, metric, value)"
            " VALUES (%s, date_trunc('minute', now()), 'questions', 1)",
            (name,),
        )
    return name


@pytest.fixture
def login(service_database_urls: dict[str, str]) -> Iterator[Any]:
    """Connects as an identity's own login role (autocommit: each statement stands alone)."""
    connections: list[psycopg.Connection[Any]] = []

    def connect(identity: str) -> psycopg.Connection[Any]:
        connections.append(psycopg.connect(service_database_urls[identity], autocommit=True))
        return connections[-1]

    yield connect
    for connection in connections:
        connection.close()


def privileges_of(connection: psycopg.Connection[Any], role: str) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {}
    for target, privilege in connection.execute(_PRIVILEGES, {"role": role}):
        found.setdefault(target, set()).add(privilege)
    return {target: sorted(privileges) for target, privileges in found.items()}


def refused(connection: psycopg.Connection[Any], statement: str, params: tuple[Any, ...] = ()) -> bool:
    try:
        connection.execute(statement, params)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_every_tenant_table_forces_row_level_security(migrated_database: str) -> None:
    with psycopg.connect(migrated_database) as connection:
        tables = connection.execute(_TENANT_TABLES).fetchall()
    assert {row[0] for row in tables} >= {"tenants", "api_keys", "documents", "audit_log", "chunks"}
    assert [row[0] for row in tables if not (row[1] and row[2] and row[3] >= 1)] == []


def test_service_roles_hold_no_power_and_exactly_their_grants(migrated_database: str) -> None:
    roles = sorted(LOGIN_ROLES.values())
    with psycopg.connect(migrated_database) as connection:
        powers = connection.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)"
            " AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication)",
            (roles,),
        ).fetchall()
        memberships = connection.execute(
            "SELECT m.member::regrole::text, m.roleid::regrole::text FROM pg_auth_members m"
            " WHERE m.member::regrole::text = ANY(%s)",
            (roles,),
        ).fetchall()
        owned = connection.execute(
            "SELECT refobjid::regrole::text, classid::regclass::text, objid FROM pg_shdepend"
            " WHERE deptype = 'o' AND refobjid::regrole::text = ANY(%s)",
            (roles,),
        ).fetchall()
        grants = {role: privileges_of(connection, role) for role in roles}
        generate = connection.execute("SELECT 1 FROM pg_roles WHERE rolname LIKE 'ragstream_generate%'").fetchall()
        public = connection.execute(
            "SELECT c.relname FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a"
            " WHERE c.relnamespace = 'public'::regnamespace AND a.grantee = 0"
            " UNION ALL SELECT p.proname FROM pg_proc p CROSS JOIN LATERAL aclexplode(coalesce(p.proacl,"
            " acldefault('f', p.proowner))) a WHERE p.pronamespace = 'public'::regnamespace AND a.grantee = 0"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"
        ).fetchall()
    assert (powers, memberships, owned, generate, public) == ([], [], [], [], [])
    assert grants == EXPECTED_GRANTS


@pytest.mark.parametrize("identity", IDENTITIES)
def test_reset_role_returns_to_the_same_powerless_login(login: Any, identity: str, tenant: str) -> None:
    connection = login(identity)
    role = LOGIN_ROLES[identity]
    connection.execute("RESET ROLE")
    assert connection.execute("SELECT current_user, session_user").fetchone() == (role, role)
    for target in ("postgres", "ragstream_owner", "ragstream_gateway_admin", "pg_read_all_data"):
        if target != role:
            assert refused(connection, sql.SQL("SET ROLE {}").format(sql.Identifier(target)).as_string()), target
    assert refused(connection, "SET SESSION AUTHORIZATION postgres")
    table = READABLE[identity]
    with connection.transaction():
        connection.execute("RESET ROLE")
        connection.execute("SELECT set_config('app.tenant_id', %s, true)", (f"{tenant}-other",))
        assert connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    # Without a tenant nothing at all; with its own tenant the row is there (so the zeros above mean something).
    assert connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    with connection.transaction():
        connection.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        assert connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_no_login_can_loosen_isolation_or_rewrite_history(login: Any, identity: str, tenant: str) -> None:
    connection = login(identity)
    for table in ("documents", "api_keys", "audit_log", "chunks", "blobs", "embedding_cache"):
        assert refused(connection, f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"), table
        assert refused(connection, f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"), table
        assert refused(connection, f"DROP POLICY tenant_isolation ON {table}"), table
    assert refused(connection, "CREATE POLICY open_door ON documents USING (true)")
    assert refused(connection, "CREATE TABLE scratch (tenant_id text)")
    assert refused(connection, "CREATE ROLE intruder")
    assert refused(connection, sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(LOGIN_ROLES[identity])))
    assert refused(connection, "SELECT key_sha256 FROM api_keys")
    assert refused(connection, "UPDATE api_keys SET tenant_id = tenant_id")
    with connection.transaction():
        connection.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        for statement in ("DELETE FROM audit_log", "UPDATE audit_log SET action = 'forged'", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), connection.transaction():
                connection.execute(statement)
    if identity != "gateway":
        assert refused(connection, "SELECT * FROM ragstream_find_api_key('x')")


@pytest.mark.parametrize("identity", IDENTITIES)
def test_only_the_admin_login_writes_api_keys(login: Any, identity: str, tenant: str) -> None:
    connection = login(identity)
    key_id = f"k-{uuid.uuid4().hex[:8]}"
    insert = "INSERT INTO api_keys (key_id, tenant_id, key_sha256) VALUES (%s, %s, %s)"
    with connection.transaction():
        connection.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        if identity != "gateway-admin":
            with pytest.raises(psycopg.errors.InsufficientPrivilege), connection.transaction():
                connection.execute(insert, (key_id, tenant, key_id))
            with pytest.raises(psycopg.errors.InsufficientPrivilege), connection.transaction():
                connection.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (tenant,))
            return
        connection.execute(insert, (key_id, tenant, key_id))
        # Its tenant's keys only: another tenant's key is refused by row-level security.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), connection.transaction():
            connection.execute(insert, (f"{key_id}-b", "another-tenant", f"{key_id}-b"))
        revoked = connection.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key_id,))
        assert revoked.rowcount == 1


def test_key_lookup_is_a_narrow_definer_function(login: Any, tenant: str, migrated_database: str) -> None:
    connection = login("gateway")
    columns = "key_id, tenant_id, scopes, revoked, expires_at, rate_limit, ip_allowlist"
    row = connection.execute(f"SELECT {columns} FROM ragstream_find_api_key(%s)", (f"hash-{tenant}",)).fetchall()
    assert row == [(tenant, tenant, ["documents:write", "documents:read", "query"], False, None, None, [])]
    assert connection.execute("SELECT * FROM ragstream_find_api_key('no such hash')").fetchall() == []
    assert refused(connection, "SELECT count(*) FROM api_keys")
    assert refused(connection, "SELECT count(*) FROM tenants")
    with psycopg.connect(migrated_database) as admin:
        definer = admin.execute(
            "SELECT prosecdef, proconfig, proowner::regrole::text, provolatile FROM pg_proc"
            " WHERE oid = 'ragstream_find_api_key(text)'::regprocedure"
        ).fetchone()
    assert definer == (True, ["search_path=pg_catalog, pg_temp"], "ragstream_owner", "s")


@pytest.mark.parametrize("identity", IDENTITIES)
def test_a_wrong_password_is_refused(service_database_urls: dict[str, str], identity: str) -> None:
    url = service_database_urls[identity]
    wrong = url.replace(f"{LOGIN_ROLES[identity]}:", f"{LOGIN_ROLES[identity]}:x", 1)
    assert wrong != url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()
