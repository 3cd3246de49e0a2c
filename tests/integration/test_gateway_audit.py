"""The tamper-evident audit log against real Postgres and Kafka: the hash chain and its verification (route and
offline command), append-only, concurrent appends, what gets recorded (refusals, questions, admin calls), key
creation atomic with its audit row, and the security event stream."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from opentelemetry.sdk.trace import TracerProvider
from rag.v1 import queries_pb2, security_pb2
from ragstream_common.db import create_pool
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import SECURITY_EVENTS
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_gateway.adapters.audit_pg import PostgresAuditLog, PostgresAuditOutbox
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.audit_chain import ChainRow, row_hash
from ragstream_gateway.audit_export import SecurityEventRelay
from ragstream_gateway.audit_writer import AuditWriteFailed, GroupCommitAuditLog
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.ports import AuditEntry
from ragstream_gateway.query.replies import DoneEvent, PendingQueries, ReplyEvent, SourcesEvent
from ragstream_gateway.query.service import QueryDispatcher
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
ADMIN_TOKEN = secrets.token_urlsafe(32)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PLATFORM = "_platform"
Gateway = tuple[GatewaySettings, GatewayDeps]


class WorkersAnswer(PendingQueries):
    """Stands in for retrieve and generate answering at once (no sources, an empty answer)."""

    def open(self, query_id: str, tenant_id: str = "") -> asyncio.Queue[ReplyEvent]:
        queue = super().open(query_id, tenant_id)
        queue.put_nowait(SourcesEvent([]))
        queue.put_nowait(DoneEvent(queries_pb2.AnswerProduced(query_id=query_id, no_answer=True)))
        return queue


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings]
) -> AsyncIterator[Gateway]:
    urls = service_database_urls
    settings = GatewaySettings(
        DATABASE_URL=urls["gateway"],
        admin_database_url=urls["gateway-admin"],
        kafka=kafka_principals["gateway"],
        admin_token=ADMIN_TOKEN,
        db_pool_size=4,
    )
    await signed_in(settings.kafka)
    async with AsyncExitStack() as stack:
        yield settings, await open_deps(settings, stack)


async def signed_in(kafka: KafkaSettings, timeout_s: float = 15) -> None:
    """Wait until the broker accepts the principal's SCRAM login: a user created a moment ago may not be known
    to the broker yet (the credential reaches it through the metadata log)."""
    async with asyncio.timeout(timeout_s):
        while True:
            admin = AIOKafkaAdminClient(**client_kwargs(kafka))
            try:
                await admin.start()
                return
            except KafkaConnectionError:
                await asyncio.sleep(0.2)
            finally:
                await admin.close()


def client_for(gateway: Gateway, headers: dict[str, str], ip: str = "198.51.100.20") -> httpx.AsyncClient:
    settings, deps = gateway
    queries = QueryDispatcher(RoutedEventSink(deps.publisher, GATEWAY_ROUTES), WorkersAnswer(), "127.0.0.1:1")
    app = create_app(settings, deps, queries=queries)
    transport = httpx.ASGITransport(app=app, client=(ip, 40000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)


@pytest.fixture
def database(migrated_database: str) -> Iterator[psycopg.Connection[Any]]:
    """The administrator (a superuser, as whoever tampers with the log would need to be)."""
    with psycopg.connect(migrated_database, autocommit=True) as connection:
        yield connection


async def tenant_with_key(gateway: Gateway, **key: Any) -> tuple[str, str]:
    tenant_id = f"audit-{RUN}-{uuid.uuid4().hex[:6]}"
    async with client_for(gateway, ADMIN) as admin:
        created = await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": "Audited"})
        assert created.status_code == 201, created.text
        issued = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"name": "k", **key})
        assert issued.status_code == 201, issued.text
    return tenant_id, issued.json()["api_key"]


def chain(database: psycopg.Connection[Any], tenant_id: str) -> list[ChainRow]:
    columns = (
        "audit_id, tenant_id, seq, at, actor, action, resource, client_ip, outcome, trace_id, details::text,"
        " prev_hash, row_hash"
    )
    rows = database.execute(f"SELECT {columns} FROM audit_log WHERE tenant_id = %s ORDER BY seq", (tenant_id,))
    return [ChainRow(*row) for row in rows.fetchall()]


def tampered(database: psycopg.Connection[Any], statement: str, params: tuple[Any, ...]) -> None:
    """What it takes to change the log: a superuser switching off its triggers for the session."""
    with database.transaction():
        database.execute("SET LOCAL session_replication_role = replica")
        database.execute(statement, params)


async def verify(gateway: Gateway, tenant_id: str) -> dict[str, Any]:
    async with client_for(gateway, ADMIN) as admin:
        response = await admin.get(f"/v1/admin/tenants/{tenant_id}/audit/verify")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_chain_verifies_and_postgres_hashes_what_python_hashes(
    gateway: Gateway, database: psycopg.Connection[Any]
) -> None:
    tenant_id, key = await tenant_with_key(gateway)
    async with client_for(gateway, {"X-API-Key": key}) as tenant:
        body = {"id": "d1", "text": "x", "title": "ünïcode \n tab\t", "metadata": {"b": "2", "a": '\\ " é'}}
        assert (await tenant.post("/v1/documents", json=body)).status_code == 202
    rows = chain(database, tenant_id)
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 3
    assert rows[0].prev_hash == "0" * 64
    assert all(row.prev_hash == before.row_hash for before, row in itertools.pairwise(rows))
    assert all(row_hash(row) == row.row_hash for row in rows)
    assert await verify(gateway, tenant_id) == {
        "valid": True,
        "entries": len(rows),
        "first_bad_id": None,
        "first_bad_seq": None,
        "problem": None,
    }


async def test_the_log_is_append_only_even_for_the_owner_and_a_superuser(
    gateway: Gateway, database: psycopg.Connection[Any]
) -> None:
    tenant_id, _ = await tenant_with_key(gateway)
    for statement in (
        "UPDATE audit_log SET actor = 'x' WHERE tenant_id = %s",
        "DELETE FROM audit_log WHERE tenant_id = %s",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            database.execute(statement, (tenant_id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), database.transaction():
        database.execute("SET LOCAL ROLE ragstream_owner")
        database.execute("TRUNCATE audit_log")
    # Chain fields named in an INSERT are overwritten: nobody forges a link.
    with database.transaction():
        database.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))
        database.execute(
            "INSERT INTO audit_log (tenant_id, actor, action, seq, prev_hash, row_hash)"
            " VALUES (%s, 'x', 'y', 99, 'a', 'b')",
            (tenant_id,),
        )
    assert (await verify(gateway, tenant_id))["valid"] is True


async def test_a_row_changed_in_postgres_is_named(gateway: Gateway, database: psycopg.Connection[Any]) -> None:
    tenant_id, _ = await tenant_with_key(gateway)
    victim = chain(database, tenant_id)[0]
    tampered(database, "UPDATE audit_log SET actor = 'someone-else' WHERE audit_id = %s", (victim.audit_id,))
    result = await verify(gateway, tenant_id)
    assert (result["valid"], result["first_bad_id"], result["first_bad_seq"]) == (False, victim.audit_id, 1)
    assert "changed" in result["problem"]


async def test_a_deleted_row_and_a_removed_tail_are_detected(
    gateway: Gateway, database: psycopg.Connection[Any]
) -> None:
    tenant_id, key = await tenant_with_key(gateway)
    async with client_for(gateway, {"X-API-Key": key}) as tenant:
        for n in range(3):
            assert (await tenant.post("/v1/documents", json={"id": f"d{n}", "text": "x"})).status_code == 202
    rows = chain(database, tenant_id)
    tampered(database, "DELETE FROM audit_log WHERE audit_id = %s", (rows[1].audit_id,))
    result = await verify(gateway, tenant_id)
    assert (result["valid"], result["first_bad_id"], result["first_bad_seq"]) == (False, rows[2].audit_id, 3)
    assert "missing" in result["problem"]

    other, _ = await tenant_with_key(gateway)
    last = chain(database, other)[-1]
    tampered(database, "DELETE FROM audit_log WHERE audit_id = %s", (last.audit_id,))
    result = await verify(gateway, other)
    assert (result["valid"], result["first_bad_id"]) == (False, None)
    assert "tail" in result["problem"]


async def test_the_offline_command_verifies_and_names_the_bad_row(
    gateway: Gateway, database: psycopg.Connection[Any], service_database_urls: dict[str, str]
) -> None:
    good, _ = await tenant_with_key(gateway)
    bad, _ = await tenant_with_key(gateway)
    victim = chain(database, bad)[-1]
    tampered(database, "UPDATE audit_log SET details = '{\"forged\": true}' WHERE audit_id = %s", (victim.audit_id,))
    command = [sys.executable, "-m", "ragstream_gateway.audit_verify", "--tenant", good, "--tenant", bad]
    # As the admin login, as an operator would (no gateway running).
    env = {"DATABASE_URL": service_database_urls["gateway-admin"], "PATH": ""}
    result = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["tenant_id"], r["valid"], r["first_bad_id"]) for r in lines] == [
        (good, True, None),
        (bad, False, victim.audit_id),
    ]


async def test_concurrent_appends_from_two_replicas_keep_one_gapless_chain(
    service_database_urls: dict[str, str], gateway: Gateway, database: psycopg.Connection[Any]
) -> None:
    tenant_id, _ = await tenant_with_key(gateway)
    before = len(chain(database, tenant_id))
    pools = [create_pool(service_database_urls["gateway"], max_size=6, name=f"replica-{n}") for n in range(2)]
    for pool in pools:
        await pool.open(wait=True)
    try:
        logs = [PostgresAuditLog(pool) for pool in pools]
        entries = [AuditEntry(tenant_id, f"key:{n}", "test.append", str(n)) for n in range(200)]
        await asyncio.gather(*(logs[n % 2].record(entry) for n, entry in enumerate(entries)))
    finally:
        for pool in pools:
            await pool.close()
    rows = chain(database, tenant_id)
    assert [row.seq for row in rows] == list(range(1, before + 201))
    assert (await verify(gateway, tenant_id))["valid"] is True


async def test_trail_rows_of_calls_close_together_share_one_transaction(
    service_database_urls: dict[str, str],
    kafka_principals: dict[str, KafkaSettings],
    gateway: Gateway,
    database: psycopg.Connection[Any],
) -> None:
    """With a commit window the audit trail's rows (written after their response) gather: the rows of questions
    asked together commit in one transaction (one xmin), and each is in the tenant's verified chain."""
    settings, _ = gateway
    windowed = settings.model_copy(update={"audit_trail_commit_window_ms": 300})
    tenant_id, key = await tenant_with_key(gateway)
    async with AsyncExitStack() as stack:
        deps = await open_deps(windowed, stack)
        queries = QueryDispatcher(RoutedEventSink(deps.publisher, GATEWAY_ROUTES), WorkersAnswer(), "127.0.0.1:1")
        transport = httpx.ASGITransport(app=create_app(windowed, deps, queries=queries), client=("198.51.100.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers={"X-API-Key": key}) as c:
            asked = await asyncio.gather(*(c.post("/v1/query", json={"question": f"q{n}"}) for n in range(4)))
    assert [r.status_code for r in asked] == [200] * 4
    rows = database.execute(
        "SELECT xmin::text FROM audit_log WHERE tenant_id = %s AND action = 'POST /v1/query'", (tenant_id,)
    ).fetchall()
    assert len(rows) == 4 and len({row[0] for row in rows}) == 1, rows
    assert (await verify(gateway, tenant_id))["valid"] is True


async def test_an_entry_postgres_refuses_fails_alone_and_its_batch_neighbours_commit(
    service_database_urls: dict[str, str], gateway: Gateway, database: psycopg.Connection[Any]
) -> None:
    """The appends are pipelined (BEGIN, inserts and COMMIT in one round trip): an entry the server refuses
    mid-batch rolls the whole batch back, and the group commit then writes its neighbours one by one."""
    tenant_id, _ = await tenant_with_key(gateway)
    before = len(chain(database, tenant_id))
    poison = AuditEntry(tenant_id, "key:x", "test.poison", "x", details={"score": float("nan")})  # NaN: no JSON
    good = [AuditEntry(tenant_id, "key:x", "test.append", str(n)) for n in range(4)]
    pool = create_pool(service_database_urls["gateway"], max_size=2, name="audit-poison")
    await pool.open(wait=True)
    try:
        store = PostgresAuditLog(pool)
        with pytest.raises(psycopg.Error):
            await store.record_many([good[0], poison, good[1]])
        assert len(chain(database, tenant_id)) == before, "a refused batch left rows behind"
        writer = GroupCommitAuditLog(store)
        results = await asyncio.gather(*(writer.record(e) for e in [good[2], poison, good[3]]), return_exceptions=True)
        await writer.aclose()
    finally:
        await pool.close()
    assert isinstance(results[1], AuditWriteFailed) and results[0] is None and results[2] is None
    assert [row.resource for row in chain(database, tenant_id)[before:]] == ["2", "3"]
    assert (await verify(gateway, tenant_id))["valid"] is True


async def test_refused_authentication_is_audited_with_the_client_address(
    gateway: Gateway, database: psycopg.Connection[Any]
) -> None:
    tenant_id, key = await tenant_with_key(gateway)
    attacker = f"203.0.113.{secrets.randbelow(250) + 1}"
    unknown = f"nope-{uuid.uuid4().hex}"
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("probe") as span:
        async with client_for(gateway, {"X-API-Key": unknown}, ip=attacker) as stranger:
            assert (await stranger.post("/v1/documents", json={"text": "x"})).status_code == 401
    trace_id = format(span.get_span_context().trace_id, "032x")
    async with client_for(gateway, {"Authorization": "Bearer wrong-admin-token"}, ip=attacker) as intruder:
        assert (await intruder.get(f"/v1/admin/tenants/{tenant_id}")).status_code == 401
    async with client_for(gateway, ADMIN) as admin:
        key_id = (await admin.get(f"/v1/admin/tenants/{tenant_id}/api-keys")).json()["items"][0]["key_id"]
        assert (await admin.delete(f"/v1/admin/tenants/{tenant_id}/api-keys/{key_id}")).status_code == 204
    async with client_for(gateway, {"X-API-Key": key}, ip=attacker) as revoked:
        assert (await revoked.get("/v1/documents")).status_code == 401

    platform = [row for row in chain(database, PLATFORM) if row.client_ip == attacker]
    by_action = {row.action: row for row in platform}
    unknown_row = by_action["POST /v1/documents"]
    assert (unknown_row.actor, unknown_row.outcome, unknown_row.trace_id) == ("anonymous", "denied", trace_id)
    assert json.loads(unknown_row.details_json)["reason"] == "unknown_credential"
    assert unknown not in unknown_row.details_json
    assert by_action["auth.refused"].outcome == "denied"  # the admin token
    [refused] = [row for row in chain(database, tenant_id) if row.action == "auth.refused"]
    assert (refused.actor, refused.client_ip, refused.outcome) == (f"key:{key_id}", attacker, "denied")
    assert json.loads(refused.details_json)["reason"] == "revoked"
    async with client_for(gateway, ADMIN) as admin:
        listed = (await admin.get(f"/v1/admin/tenants/{tenant_id}/audit")).json()["items"]
    [shown] = [item for item in listed if item["action"] == "auth.refused"]
    assert (shown["outcome"], shown["seq"], shown["client_ip"]) == ("denied", refused.seq, attacker)


async def test_questions_are_hashed_unless_the_tenant_opts_in(
    gateway: Gateway, database: psycopg.Connection[Any]
) -> None:
    tenant_id, key = await tenant_with_key(gateway)
    question = f"what is the secret plan {uuid.uuid4().hex}?"
    async with client_for(gateway, {"X-API-Key": key}) as tenant:
        assert (await tenant.post("/v1/query", json={"question": question})).status_code == 200
        assert (await tenant.post("/v1/search", json={"query": question})).status_code == 200
        async with client_for(gateway, ADMIN) as admin:
            settings = f"/v1/admin/tenants/{tenant_id}/audit/settings"
            assert (await admin.get(settings)).json() == {"question_text": False}
            assert (await admin.put(settings, json={"question_text": True})).json() == {"question_text": True}
        assert (await tenant.post("/v1/query", json={"question": question})).status_code == 200
    rows = [row for row in chain(database, tenant_id) if row.action in ("POST /v1/query", "POST /v1/search")]
    assert [(row.action, row.outcome) for row in rows] == [
        ("POST /v1/query", "success"),
        ("POST /v1/search", "success"),
        ("POST /v1/query", "success"),
    ]
    details = [json.loads(row.details_json) for row in rows]
    digest = hashlib.sha256(question.encode()).hexdigest()
    assert [d["question_sha256"] for d in details] == [digest] * 3
    assert question not in rows[0].details_json and question not in rows[1].details_json
    assert details[2]["question"] == question
    assert any(row.action == "tenant.audit_settings" for row in chain(database, tenant_id))


async def test_a_key_is_never_issued_without_its_audit_row(gateway: Gateway, database: psycopg.Connection[Any]) -> None:
    tenant_id, _ = await tenant_with_key(gateway)
    name = f"no-audit-{uuid.uuid4().hex[:6]}"
    # The audit insert fails (its privilege is gone for a moment): the key's insert must go with it.
    database.execute("REVOKE INSERT (action) ON audit_log FROM ragstream_gateway_admin")
    try:
        async with client_for(gateway, ADMIN) as admin:
            response = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"name": name})
            revoke_all = await admin.delete(f"/v1/admin/tenants/{tenant_id}")
    finally:
        database.execute("GRANT INSERT (action) ON audit_log TO ragstream_gateway_admin")
    assert response.status_code >= 500 and "api_key" not in response.text
    keys = database.execute("SELECT count(*) FROM api_keys WHERE tenant_id = %s AND name = %s", (tenant_id, name))
    assert keys.fetchone() == (0,)
    assert revoke_all.status_code >= 500
    active = database.execute("SELECT count(*) FROM api_keys WHERE tenant_id = %s AND revoked_at IS NULL", (tenant_id,))
    assert active.fetchone() == (1,)  # the offboarding's revocation rolled back with its audit row


async def test_every_row_reaches_the_security_event_stream(
    gateway: Gateway,
    database: psycopg.Connection[Any],
    service_database_urls: dict[str, str],
    kafka_admin: KafkaSettings,
) -> None:
    _, deps = gateway
    tenant_id, _ = await tenant_with_key(gateway)
    rows = chain(database, tenant_id)
    pool = create_pool(service_database_urls["gateway-admin"], max_size=1, name="test-audit-export")
    await pool.open(wait=True)
    try:
        outbox = PostgresAuditOutbox(pool)
        # Kafka "down" (no acknowledgement in time): nothing counts as published, the next round sends it all.
        stalled = SecurityEventRelay(outbox, deps.publisher, GATEWAY_ROUTES, publish_timeout_s=1e-6)
        with pytest.raises(TimeoutError):
            await stalled.run_once()
        published = database.execute("SELECT published_seq FROM audit_export WHERE tenant_id = %s", (tenant_id,))
        assert published.fetchone() == (0,)
        await SecurityEventRelay(outbox, deps.publisher, GATEWAY_ROUTES).run_once()
    finally:
        await pool.close()
    published = database.execute("SELECT published_seq FROM audit_export WHERE tenant_id = %s", (tenant_id,))
    assert published.fetchone() == (rows[-1].seq,)
    events = await read_security_events(kafka_admin, tenant_id, len(rows))
    assert [event.seq for event in events] == [row.seq for row in rows]
    assert [event.row_hash for event in events] == [row.row_hash for row in rows]
    assert events[0].details_json == rows[0].details_json and events[0].action == "tenant.create"


async def read_security_events(kafka: KafkaSettings, tenant_id: str, count: int) -> list[security_pb2.SecurityEvent]:
    """The tenant's events from the start of the topic, one per seq (duplicates of a retried round dropped)."""
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(SECURITY_EVENTS.name, p) for p in range(SECURITY_EVENTS.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: dict[int, security_pb2.SecurityEvent] = {}
        async with asyncio.timeout(20):
            while len(found) < count:
                for record in (r for batch in (await consumer.getmany(timeout_ms=500)).values() for r in batch):
                    if record.key != tenant_id.encode():
                        continue
                    headers = cloudevents.headers_to_dict(list(record.headers))
                    assert headers["content-type"] == cloudevents.JSON
                    event, _ = cloudevents.decode(record.value, headers, SECURITY_EVENTS.event_types)
                    assert isinstance(event, security_pb2.SecurityEvent)
                    found[event.seq] = event
        return [found[seq] for seq in sorted(found)]
    finally:
        await consumer.stop()
