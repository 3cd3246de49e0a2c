"""The gateway's HTTP API against real Postgres and Kafka: uploads, versions, limits, tenancy, admin."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import Message
from rag.v1 import documents_pb2
from ragstream_common.blobs import PostgresBlobStore, blob_key_of
from ragstream_common.db import create_pool
from ragstream_common.kafka import EventPublisher, cloudevents
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from support.kafka_clients import client_kwargs
from support.samples import docx_file, pdf_file

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
TENANT = f"gw-{RUN}"
KEY = f"gw-key-{RUN}"
ADMIN = {"Authorization": "Bearer admin-secret-for-tests-32-chars-min"}
MAX_UPLOAD = 300_000


class TopicTail:
    """Reads rag.documents.received.v1 from the offsets it had when opened, keeping one document's events."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)

    async def __aenter__(self) -> TopicTail:
        await self._consumer.start()
        partitions = [TopicPartition(DOCUMENTS_RECEIVED.name, p) for p in range(DOCUMENTS_RECEIVED.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve now, so records produced from here on are all seen
            await self._consumer.position(partition)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._consumer.stop()

    async def events(self, key: str, count: int, timeout_s: float = 15) -> list[tuple[Message, dict[str, str]]]:
        found: list[tuple[Message, dict[str, str]]] = []
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                batches = await self._consumer.getmany(timeout_ms=200)
                for record in (r for batch in batches.values() for r in batch):
                    if record.key == key.encode():
                        headers = cloudevents.headers_to_dict(list(record.headers))
                        message, _ = cloudevents.decode(record.value, headers, DOCUMENTS_RECEIVED.event_types)
                        found.append((message, headers))
        return found

    async def quiet(self, key: str, wait_s: float = 1.5) -> bool:
        """True when no event for `key` arrives within `wait_s`."""
        try:
            await self.events(key, 1, timeout_s=wait_s)
        except TimeoutError:
            return True
        return False


def settings_for(database_url: str, kafka: KafkaSettings, **changes: Any) -> GatewaySettings:
    return GatewaySettings(
        DATABASE_URL=database_url,
        kafka=kafka,
        dev_tenant=TENANT,
        dev_api_key=KEY,
        admin_token="admin-secret-for-tests-32-chars-min",
        max_upload_bytes=MAX_UPLOAD,
        inline_text_max_bytes=1024,
        db_pool_size=4,
        **changes,
    )


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings]
) -> AsyncIterator[tuple[GatewaySettings, GatewayDeps]]:
    # The gateway's two logins, as deployed: its own, and the admin API's (tenants, keys, audit reads).
    urls = service_database_urls
    settings = settings_for(urls["gateway"], kafka_principals["gateway"], admin_database_url=urls["gateway-admin"])
    async with AsyncExitStack() as stack:
        yield settings, await open_deps(settings, stack)


def client_for(
    gateway: tuple[GatewaySettings, GatewayDeps], key: str | None = KEY, ip: str = "127.0.0.1"
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(*gateway), client=(ip, 50000))
    headers = {"X-API-Key": key} if key else {}
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)


@pytest.fixture(scope="module")
async def ingest_blobs(service_database_urls: dict[str, str]) -> AsyncIterator[PostgresBlobStore]:
    """Uploads as the ingest worker reads them, under its own login (the gateway may only write them)."""
    pool = create_pool(service_database_urls["ingest"], max_size=1, name="test-ingest-blobs")
    await pool.open(wait=True)
    yield PostgresBlobStore(pool)
    await pool.close()


@pytest.fixture
async def client(gateway: tuple[GatewaySettings, GatewayDeps]) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gateway) as c:
        yield c


@pytest.fixture
async def tail(kafka_admin: KafkaSettings) -> AsyncIterator[TopicTail]:
    async with TopicTail(kafka_admin) as t:
        yield t


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status and body["title"] and body["instance"] == response.request.url.path
    return body


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_json_upload_is_registered_and_published(client: httpx.AsyncClient, tail: TopicTail) -> None:
    doc = new_id("json")
    body = {"id": doc, "title": "T", "text": "hello", "metadata": {"a": "b"}}
    response = await client.post("/v1/documents", json=body)
    assert response.status_code == 202
    assert response.json() == {"document_id": doc, "version": 1, "status": "received", "unchanged": False}
    [(event, headers)] = await tail.events(f"{TENANT}/{doc}", 1)
    assert isinstance(event, documents_pb2.DocumentReceived)
    assert headers["ce_type"] == "rag.v1.DocumentReceived"
    assert (event.tenant_id, event.document_id, event.version, event.title) == (TENANT, doc, 1, "T")
    assert event.source.text == "hello" and dict(event.metadata) == {"a": "b"}
    status = (await client.get(f"/v1/documents/{doc}")).json()
    assert (status["status"], status["version"], status["chunk_count"]) == ("received", 1, 0)


async def test_upload_without_id_gets_a_uuid(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/documents", json={"text": "anonymous"})
    assert response.status_code == 202
    assert len(response.json()["document_id"]) == 32
    assert response.headers["location"] == f"/v1/documents/{response.json()['document_id']}"


async def test_large_json_text_goes_through_the_blob_store(
    client: httpx.AsyncClient, tail: TopicTail, ingest_blobs: PostgresBlobStore
) -> None:
    doc, text = new_id("big"), "word " * 1000  # over inline_text_max_bytes
    assert (await client.post("/v1/documents", json={"id": doc, "text": text})).status_code == 202
    [(event, _)] = await tail.events(f"{TENANT}/{doc}", 1)
    blob = await ingest_blobs.get(TENANT, blob_key_of(event.source.uri))
    assert blob is not None and blob.data == text.encode() and blob.sha256 == event.source.sha256


@pytest.mark.parametrize(
    ("filename", "data", "declared", "expected"),
    [
        ("notes.txt", b"plain text upload", "text/plain", "text/plain"),
        ("report.pdf", pdf_file(), "application/pdf", "application/pdf"),
        (
            "letter.docx",
            docx_file(),
            "application/octet-stream",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    ],
)
async def test_multipart_upload_is_claim_checked(
    client: httpx.AsyncClient,
    tail: TopicTail,
    ingest_blobs: PostgresBlobStore,
    filename: str,
    data: bytes,
    declared: str,
    expected: str,
) -> None:
    doc = new_id("file")
    response = await client.post(
        "/v1/documents",
        files={"file": (filename, data, declared)},
        data={"id": doc, "title": "File", "metadata": '{"team": "ops"}'},
    )
    assert response.status_code == 202, response.text
    [(event, _)] = await tail.events(f"{TENANT}/{doc}", 1)
    assert event.source.uri.startswith("blob://")
    source = event.source
    assert (source.content_type, source.filename, source.size_bytes) == (expected, filename, len(data))
    assert dict(event.metadata) == {"team": "ops"}
    blob = await ingest_blobs.get(TENANT, blob_key_of(event.source.uri))
    assert blob is not None and blob.data == data


async def test_identical_repost_is_a_no_op(client: httpx.AsyncClient, tail: TopicTail) -> None:
    doc = new_id("same")
    body = {"id": doc, "title": "Same", "text": "unchanging", "metadata": {"k": "v"}}
    assert (await client.post("/v1/documents", json=body)).status_code == 202
    again = await client.post("/v1/documents", json=body)
    assert again.status_code == 200
    assert again.json() == {"document_id": doc, "version": 1, "status": "received", "unchanged": True}
    assert len(await tail.events(f"{TENANT}/{doc}", 1)) == 1
    assert await tail.quiet(f"{TENANT}/{doc}")


async def test_new_content_or_title_makes_the_next_version(client: httpx.AsyncClient, tail: TopicTail) -> None:
    doc = new_id("versions")
    await client.post("/v1/documents", json={"id": doc, "title": "A", "text": "first"})
    second = await client.post("/v1/documents", json={"id": doc, "title": "A", "text": "second"})
    third = await client.post("/v1/documents", json={"id": doc, "title": "B", "text": "second"})
    assert (second.status_code, second.json()["version"]) == (202, 2)
    assert (third.status_code, third.json()["version"]) == (202, 3)
    events = [event for event, _ in await tail.events(f"{TENANT}/{doc}", 3)]
    assert isinstance(events[0], documents_pb2.DocumentReceived)
    assert [type(e).__name__ for e in events[1:]] == ["DocumentUpdated", "DocumentUpdated"]
    assert [(e.version, e.previous_version) for e in events[1:]] == [(2, 1), (3, 2)]


async def test_delete_publishes_document_deleted(client: httpx.AsyncClient, tail: TopicTail) -> None:
    doc = new_id("gone")
    await client.post("/v1/documents", json={"id": doc, "text": "v1"})
    await client.post("/v1/documents", json={"id": doc, "text": "v2"})
    response = await client.delete(f"/v1/documents/{doc}")
    assert response.status_code == 202 and response.json()["version"] == 2
    deleted = (await tail.events(f"{TENANT}/{doc}", 3))[-1][0]
    assert isinstance(deleted, documents_pb2.DocumentDeleted) and deleted.version == 2
    status = (await client.get(f"/v1/documents/{doc}")).json()
    assert status["status"] == "deleted" and status["deleted_at"]
    assert (await client.delete(f"/v1/documents/{doc}")).status_code == 202  # idempotent, nothing re-sent
    assert await tail.quiet(f"{TENANT}/{doc}")
    listed = (await client.get("/v1/documents", params={"limit": 500})).json()["items"]
    assert doc not in {item["document_id"] for item in listed}
    problem(await client.delete(f"/v1/documents/{new_id('never')}"), 404)


async def test_list_pages_with_a_cursor(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.post("/v1/documents", json={"text": f"page {uuid.uuid4()}"})
    first = (await client.get("/v1/documents", params={"limit": 2})).json()
    second = (await client.get("/v1/documents", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    assert not {i["document_id"] for i in first["items"]} & {i["document_id"] for i in second["items"]}
    problem(await client.get("/v1/documents", params={"cursor": "garbage!"}), 422)


async def test_upload_limits_are_problems(client: httpx.AsyncClient) -> None:
    problem(await client.post("/v1/documents", json={"text": "x" * (MAX_UPLOAD + 1)}), 413)
    problem(await client.post("/v1/documents", files={"file": ("a.txt", b"x" * (MAX_UPLOAD + 1), "text/plain")}), 413)
    problem(await client.post("/v1/documents", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")}), 415)
    problem(await client.post("/v1/documents", files={"file": ("a.pdf", b"just text", "application/pdf")}), 415)
    problem(await client.post("/v1/documents", content=b"a,b", headers={"Content-Type": "text/csv"}), 415)
    problem(await client.post("/v1/documents", content=b"{oops", headers={"Content-Type": "application/json"}), 422)
    problem(await client.post("/v1/documents", json={"id": "bad id!", "text": "x"}), 422)
    problem(await client.post("/v1/documents", json={"title": "no text"}), 422)
    bad_metadata = await client.post(
        "/v1/documents", files={"file": ("a.txt", b"x", "text/plain")}, data={"metadata": "[1, 2]"}
    )
    assert problem(bad_metadata, 422)["errors"]
    problem(await client.get("/v1/documents/bad%20id"), 422)


async def test_requests_without_a_key_are_401(gateway: tuple[GatewaySettings, GatewayDeps]) -> None:
    async with client_for(gateway, key=None) as anonymous:
        problem(await anonymous.post("/v1/documents", json={"text": "x"}), 401)
    async with client_for(gateway, key="not-a-key") as wrong:
        problem(await wrong.get("/v1/documents"), 401)


async def _tenant_with_key(admin: httpx.AsyncClient, **tenant: Any) -> tuple[str, str]:
    tenant_id = new_id("t")
    created = await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": "Test", **tenant})
    assert created.status_code == 201, created.text
    key = await admin.post(f"/v1/admin/tenants/{tenant_id}/api-keys", json={"name": "test"})
    assert key.status_code == 201, key.text
    return tenant_id, key.json()["api_key"]


@pytest.fixture
async def admin(gateway: tuple[GatewaySettings, GatewayDeps]) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gateway, key=None) as c:
        c.headers.update(ADMIN)
        yield c


async def test_rate_limit_is_429_with_retry_after(
    gateway: tuple[GatewaySettings, GatewayDeps], admin: httpx.AsyncClient
) -> None:
    _, key = await _tenant_with_key(admin, rate_limit="3/minute")
    async with client_for(gateway, key=key) as limited:
        responses = [await limited.get("/v1/documents") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert problem(responses[-1], 429)["type"] == "urn:ragstream:problem:rate-limited"
    assert int(responses[-1].headers["retry-after"]) >= 1


async def test_ip_allowlist_is_403_outside_and_audited(
    gateway: tuple[GatewaySettings, GatewayDeps], admin: httpx.AsyncClient
) -> None:
    tenant_id, key = await _tenant_with_key(admin, ip_allowlist=["10.0.0.0/8"])
    async with client_for(gateway, key=key, ip="192.0.2.7") as outside:
        problem(await outside.get("/v1/documents"), 403)
    async with client_for(gateway, key=key, ip="10.20.30.40") as inside:
        assert (await inside.get("/v1/documents")).status_code == 200
    audit = (await admin.get(f"/v1/admin/tenants/{tenant_id}/audit")).json()["items"]
    refused = [e for e in audit if e["action"] == "auth.refused"]
    assert refused and refused[0]["client_ip"] == "192.0.2.7"
    assert refused[0]["details"]["reason"] == "address_not_allowed"


async def test_tenants_cannot_see_each_others_documents(
    gateway: tuple[GatewaySettings, GatewayDeps], admin: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    doc = new_id("private")
    assert (await client.post("/v1/documents", json={"id": doc, "text": "tenant A only"})).status_code == 202
    _, other_key = await _tenant_with_key(admin)
    async with client_for(gateway, key=other_key) as other:
        problem(await other.get(f"/v1/documents/{doc}"), 404)
        problem(await other.delete(f"/v1/documents/{doc}"), 404)
        assert (await other.get("/v1/documents")).json()["items"] == []
        # The same id in another tenant is another document.
        mine = await other.post("/v1/documents", json={"id": doc, "text": "tenant B"})
        assert mine.status_code == 202 and mine.json()["version"] == 1
    assert (await client.get(f"/v1/documents/{doc}")).json()["version"] == 1


async def test_admin_keys_audit_and_revocation(
    gateway: tuple[GatewaySettings, GatewayDeps], admin: httpx.AsyncClient
) -> None:
    tenant_id, key = await _tenant_with_key(admin)
    problem(await admin.post("/v1/admin/tenants", json={"tenant_id": tenant_id, "name": "again"}), 409)
    async with client_for(gateway, key=key) as tenant:
        assert (await tenant.post("/v1/documents", json={"id": "d1", "text": "audited"})).status_code == 202
        assert (await tenant.delete("/v1/documents/d1")).status_code == 202
        created = (await admin.get(f"/v1/admin/tenants/{tenant_id}/audit")).json()["items"]
        key_id = next(e["resource"] for e in created if e["action"] == "api_key.create")
        assert (await admin.delete(f"/v1/admin/tenants/{tenant_id}/api-keys/{key_id}")).status_code == 204
        problem(await tenant.get("/v1/documents"), 401)
    items = (await admin.get(f"/v1/admin/tenants/{tenant_id}/audit")).json()["items"]
    actions = [e["action"] for e in items if e["action"] != "admin.read"]  # admin reads are audited too
    assert actions == [
        "auth.refused",
        "api_key.revoke",
        "document.delete",
        "document.create",
        "api_key.create",
        "tenant.create",
    ]
    async with client_for(gateway, key=None) as anonymous:
        problem(await anonymous.get(f"/v1/admin/tenants/{tenant_id}/audit"), 401)
    problem(await admin.get("/v1/admin/tenants/nobody-here/audit"), 404)


async def test_failed_publish_is_503_and_marks_the_version_failed(
    gateway: tuple[GatewaySettings, GatewayDeps], client: httpx.AsyncClient
) -> None:
    stopped = EventPublisher(gateway[0].kafka, source="ragstream/gateway")
    await stopped.start()
    await stopped.stop()  # a producer that can no longer deliver: every publish fails
    settings, deps = gateway
    broken = GatewayDeps(**{**deps.__dict__, "publisher": stopped})
    transport = httpx.ASGITransport(app=create_app(settings.model_copy(update={"publish_timeout_s": 2}), broken))
    doc = new_id("unpublished")
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers={"X-API-Key": KEY}) as c:
        body = problem(await c.post("/v1/documents", json={"id": doc, "text": "lost?"}), 503)
        assert body["type"] == "urn:ragstream:problem:publish-failed"
    status = (await client.get(f"/v1/documents/{doc}")).json()
    assert status["status"] == "failed" and status["error"]["stage"] == "publish"
    retry = await client.post("/v1/documents", json={"id": doc, "text": "lost?"})
    assert (retry.status_code, retry.json()["version"]) == (202, 2)
