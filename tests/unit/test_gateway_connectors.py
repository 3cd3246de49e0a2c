"""The connector API's logic over an in-memory directory: request validation per provider, generated secrets, the
order of writes and publishes (and what a failed publish leaves), rotation, and the HTTP layer's answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import AsyncMock

import httpx
import pytest
from fakes import RecordingSink
from pydantic import TypeAdapter, ValidationError
from rag.v1 import connectors_pb2
from ragstream_common.events import Emitted
from ragstream_common.kafka.routing import outgoing
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.connector_models import ConnectorIn
from ragstream_gateway.connector_ports import (
    ConnectorDirectory,
    ConnectorRecord,
    ConnectorStatus,
    ConnectorSyncStatus,
    NewConnector,
)
from ragstream_gateway.connectors import (
    PREVIOUS_SECRET_GRACE,
    ConnectorConflict,
    ConnectorNotFound,
    ConnectorService,
    ConnectorSpec,
    NotPublished,
    rotated_secrets,
    webhook_url,
)
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.documents import Caller
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.security import ALL_SCOPES, SCOPE_CONNECTORS_ADMIN
from unit.gateway_deps import gateway_deps, grant

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 1, tzinfo=UTC)
CALLER = Caller("key:key_1", "203.0.113.7")
GUID = "8d1f3a52-6c1e-4b1a-9a55-2f0c3e4d5b6a"
# A valid request per provider (config and secrets complete); tests take keys away or add some.
VALID: dict[str, dict[str, Any]] = {
    "sharepoint": {
        "config": {"tenant": "contoso.onmicrosoft.com", "client_id": GUID, "drive_id": "b!AbC-12_x"},
        "secrets": {"client_secret": "graph-client-secret"},
    },
    "onedrive": {
        "config": {"tenant": GUID, "client_id": GUID, "drive_id": "0123abcd"},
        "secrets": {"client_secret": "graph-client-secret"},
    },
    "box": {
        "config": {"client_id": "abc123", "subject_type": "enterprise", "subject_id": "42"},
        "secrets": {
            "client_secret": "box-client-secret",
            "primary_signature_key": "box-primary",
            "secondary_signature_key": "box-secondary",
        },
    },
    "gdrive": {
        "config": {"client_id": "123-abc.apps.googleusercontent.com"},
        "secrets": {"client_secret": "google-client-secret", "refresh_token": "google-refresh-token"},
    },
    "webhook": {"config": {}, "secrets": {}},
}
REQUIRED = [
    (provider, part, key) for provider, body in VALID.items() for part in ("config", "secrets") for key in body[part]
]
PARSE = TypeAdapter(ConnectorIn)


class MemoryConnectors:
    """ConnectorDirectory in memory: one tenant's rows are invisible to another, as under row-level security."""

    def __init__(self) -> None:
        self.rows: dict[str, ConnectorRecord] = {}
        self.sync: dict[str, ConnectorSyncStatus] = {}
        self.deliveries: set[tuple[str, str]] = set()

    async def create(self, connector: NewConnector) -> ConnectorRecord:
        record = ConnectorRecord(
            connector.connector_id,
            connector.tenant_id,
            connector.provider,
            connector.name,
            "active",
            dict(connector.config),
            dict(connector.secrets),
            NOW,
        )
        self.rows[record.connector_id] = record
        self.sync[record.connector_id] = ConnectorSyncStatus(next_poll_at=NOW)
        return replace(record, secrets={})

    async def find(self, connector_id: str) -> ConnectorRecord | None:
        return self.rows.get(connector_id)

    async def get(self, tenant_id: str, connector_id: str) -> tuple[ConnectorRecord, ConnectorSyncStatus] | None:
        record = self.rows.get(connector_id)
        if record is None or record.tenant_id != tenant_id:
            return None
        return replace(record, secrets={}), self.sync[connector_id]

    async def list(self, tenant_id: str) -> Sequence[tuple[ConnectorRecord, ConnectorSyncStatus]]:
        return [
            (replace(r, secrets={}), self.sync[r.connector_id]) for r in self.rows.values() if r.tenant_id == tenant_id
        ]

    async def set_status(
        self,
        tenant_id: str,
        connector_id: str,
        status: ConnectorStatus,
        *,
        expected: Collection[ConnectorStatus] | None = None,
    ) -> bool:
        record = self.rows.get(connector_id)
        if record is None or record.tenant_id != tenant_id or (expected is not None and record.status not in expected):
            return False
        self.rows[connector_id] = replace(record, status=status)
        return True

    async def replace_secrets(self, tenant_id: str, connector_id: str, secrets: Mapping[str, str]) -> None:
        await self.update_secrets(tenant_id, connector_id, lambda _current: secrets)

    async def update_secrets(
        self, tenant_id: str, connector_id: str, change: Callable[[Mapping[str, str]], Mapping[str, str]]
    ) -> bool:
        record = self.rows.get(connector_id)
        if record is None or record.tenant_id != tenant_id:
            return False
        self.rows[connector_id] = replace(record, secrets=dict(change(record.secrets)))
        return True

    async def delivery_seen(self, tenant_id: str, connector_id: str, delivery_id: str) -> bool:
        return (connector_id, delivery_id) in self.deliveries

    async def record_delivery(self, tenant_id: str, connector_id: str, delivery_id: str) -> None:
        self.deliveries.add((connector_id, delivery_id))


def test_the_memory_directory_is_a_connector_directory() -> None:
    directory: ConnectorDirectory = MemoryConnectors()
    assert directory is not None


def request_body(provider: str, **changes: Any) -> dict[str, Any]:
    body = {"type": provider, "name": f"{provider} docs", **json.loads(json.dumps(VALID[provider]))}
    body.update(changes)
    return body


# Request validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", VALID)
def test_a_complete_request_is_accepted_and_splits_config_from_secrets(provider: str) -> None:
    parsed = PARSE.validate_python(request_body(provider))
    assert parsed.type == provider
    secrets = VALID[provider]["secrets"]
    assert parsed.secret_values() == secrets
    assert all(value not in json.dumps(parsed.config_values()) for value in secrets.values())
    assert all(value not in repr(parsed) for value in secrets.values())


@pytest.mark.parametrize(("provider", "part", "key"), REQUIRED)
def test_every_required_key_is_named_when_missing(provider: str, part: str, key: str) -> None:
    body = request_body(provider)
    del body[part][key]
    with pytest.raises(ValidationError) as failure:
        PARSE.validate_python(body)
    assert [error["loc"] for error in failure.value.errors()] == [(provider, part, key)]


@pytest.mark.parametrize("provider", VALID)
def test_unknown_secret_and_config_keys_are_refused(provider: str) -> None:
    for part in ("secrets", "config"):
        body = request_body(provider)
        body[part]["clientsecret"] = "typo"
        with pytest.raises(ValidationError) as failure:
            PARSE.validate_python(body)
        [error] = failure.value.errors()
        assert (error["loc"], error["type"]) == ((provider, part, "clientsecret"), "extra_forbidden")


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValidationError) as failure:
        PARSE.validate_python(request_body("webhook", type="dropbox"))
    assert failure.value.errors()[0]["type"] == "union_tag_invalid"


@pytest.mark.parametrize(
    ("provider", "key", "value"),
    [
        ("sharepoint", "drive_id", "../../users"),
        ("sharepoint", "drive_id", "b!x?select=*"),
        ("sharepoint", "tenant", "common"),
        ("sharepoint", "client_id", "not-a-guid"),
        ("box", "folder_id", "0/../1"),
        ("box", "subject_type", "admin"),
        ("gdrive", "drive_id", "a/b"),
    ],
)
def test_ids_that_reach_provider_urls_are_held_to_their_shapes(provider: str, key: str, value: str) -> None:
    body = request_body(provider)
    body["config"][key] = value
    with pytest.raises(ValidationError):
        PARSE.validate_python(body)


def test_optional_config_gets_its_default() -> None:
    assert PARSE.validate_python(request_body("box")).config_values()["folder_id"] == "0"
    assert "drive_id" not in PARSE.validate_python(request_body("gdrive")).config_values()
    assert PARSE.validate_python({"type": "webhook", "name": "n"}).secret_values() == {}


def test_an_empty_secret_or_name_is_refused() -> None:
    with pytest.raises(ValidationError):
        PARSE.validate_python(request_body("gdrive", secrets={"client_secret": "", "refresh_token": "r"}))
    with pytest.raises(ValidationError):
        PARSE.validate_python(request_body("webhook", name=""))


# The service -----------------------------------------------------------------------------------------------------


def _service(sink: RecordingSink | None = None) -> tuple[ConnectorService, MemoryConnectors, RecordingSink, AsyncMock]:
    directory, audit = MemoryConnectors(), AsyncMock()
    sink = sink or RecordingSink()
    service = ConnectorService(directory, sink, audit, publish_timeout_s=1, clock=lambda: NOW)
    return service, directory, sink, audit


def _spec(provider: str) -> ConnectorSpec:
    parsed = PARSE.validate_python(request_body(provider))
    return ConnectorSpec(parsed.type, parsed.name, parsed.config_values(), parsed.secret_values())


def _notified(sink: RecordingSink) -> list[connectors_pb2.ConnectorNotified]:
    return sink.messages(connectors_pb2.ConnectorNotified)


def _audited(audit: AsyncMock) -> list[Any]:
    return [call.args[0] for call in audit.record.call_args_list]


@pytest.mark.parametrize(
    ("provider", "generated"),
    [
        ("sharepoint", {"client_state"}),
        ("onedrive", {"client_state"}),
        ("box", set()),
        ("gdrive", {"channel_token"}),
        ("webhook", {"signing_secret"}),
    ],
)
async def test_create_stores_the_callers_and_generated_secrets_then_asks_for_a_first_sync(
    provider: str, generated: set[str]
) -> None:
    service, directory, sink, audit = _service()
    created = await service.create("acme", _spec(provider), CALLER)
    record = created.record
    assert record.connector_id.startswith("con_") and len(record.connector_id) == 20
    stored = directory.rows[record.connector_id].secrets
    assert set(stored) == set(VALID[provider]["secrets"]) | generated
    assert all(len(stored[name]) >= 32 for name in generated)
    assert created.signing_secret == stored.get("signing_secret")
    if provider == "webhook":
        assert created.signing_secret is not None and created.signing_secret.startswith("whsec_")
    [event] = _notified(sink)
    assert (event.tenant_id, event.connector_id, event.provider) == ("acme", record.connector_id, provider)
    assert event.kind == connectors_pb2.ConnectorNotified.RESYNC
    [entry] = _audited(audit)
    assert (entry.tenant_id, entry.actor, entry.action, entry.resource) == (
        "acme",
        "key:key_1",
        "connector.create",
        record.connector_id,
    )
    assert all(value not in json.dumps(dict(entry.details)) for value in stored.values())


def test_connector_events_go_to_the_connectors_topic_keyed_by_connector() -> None:
    event = connectors_pb2.ConnectorNotified(tenant_id="acme", connector_id="con_0123456789abcdef")
    record = outgoing(GATEWAY_ROUTES, Emitted(event))
    assert (record.topic, record.key) == ("rag.connectors.notified.v1", "acme/con_0123456789abcdef")


async def test_create_survives_a_failed_publish_the_scheduler_starts_it() -> None:
    service, directory, sink, audit = _service(RecordingSink(fail_with=ConnectionError("broker down")))
    created = await service.create("acme", _spec("box"), CALLER)
    assert directory.rows[created.record.connector_id].status == "active"
    assert _notified(sink) == [] and [e.action for e in _audited(audit)] == ["connector.create"]


async def test_list_leaves_removed_connectors_out_unless_asked() -> None:
    service, directory, _, _ = _service()
    kept = (await service.create("acme", _spec("box"), CALLER)).record.connector_id
    gone = (await service.create("acme", _spec("webhook"), CALLER)).record.connector_id
    await service.create("other", _spec("box"), CALLER)
    await directory.set_status("acme", gone, "removed")
    assert [r.connector_id for r, _ in await service.list("acme")] == [kept]
    assert [r.connector_id for r, _ in await service.list("acme", include_removed=True)] == [kept, gone]


async def test_another_tenants_connector_is_not_found() -> None:
    service, _, sink, _ = _service()
    connector_id = (await service.create("acme", _spec("webhook"), CALLER)).record.connector_id
    sink.emitted.clear()
    for operation in (
        service.status("other", connector_id),
        service.remove("other", connector_id, purge=True, caller=CALLER),
        service.resync("other", connector_id, CALLER),
        service.rotate_secret("other", connector_id, CALLER),
    ):
        with pytest.raises(ConnectorNotFound):
            await operation
    assert sink.emitted == []


async def test_remove_marks_removing_then_publishes_remove_with_purge() -> None:
    service, directory, sink, audit = _service()
    connector_id = (await service.create("acme", _spec("gdrive"), CALLER)).record.connector_id
    assert await service.remove("acme", connector_id, purge=True, caller=CALLER) == "removing"
    assert directory.rows[connector_id].status == "removing"
    event = _notified(sink)[-1]
    assert (event.kind, event.purge) == (connectors_pb2.ConnectorNotified.REMOVE, True)
    assert _audited(audit)[-1].action == "connector.remove" and _audited(audit)[-1].details["purge"] is True


async def test_a_remove_kafka_did_not_take_leaves_the_connector_active() -> None:
    service, directory, sink, audit = _service()
    connector_id = (await service.create("acme", _spec("box"), CALLER)).record.connector_id
    sink.fail_with = TimeoutError()
    with pytest.raises(NotPublished):
        await service.remove("acme", connector_id, purge=False, caller=CALLER)
    assert directory.rows[connector_id].status == "active"
    assert [e.action for e in _audited(audit)] == ["connector.create"]


async def test_remove_again_republishes_while_removing_and_only_purges_once_removed() -> None:
    service, directory, sink, _ = _service()
    connector_id = (await service.create("acme", _spec("box"), CALLER)).record.connector_id
    await service.remove("acme", connector_id, purge=False, caller=CALLER)
    assert await service.remove("acme", connector_id, purge=False, caller=CALLER) == "removing"
    assert len(_notified(sink)) == 3  # RESYNC, REMOVE, REMOVE
    await directory.set_status("acme", connector_id, "removed")  # the worker finished
    assert await service.remove("acme", connector_id, purge=False, caller=CALLER) == "removed"
    assert len(_notified(sink)) == 3
    assert await service.remove("acme", connector_id, purge=True, caller=CALLER) == "removed"
    assert _notified(sink)[-1].purge and directory.rows[connector_id].status == "removed"


async def test_resync_publishes_and_refuses_a_connector_being_removed() -> None:
    service, _, sink, audit = _service()
    connector_id = (await service.create("acme", _spec("sharepoint"), CALLER)).record.connector_id
    await service.resync("acme", connector_id, CALLER)
    assert _notified(sink)[-1].kind == connectors_pb2.ConnectorNotified.RESYNC
    assert _audited(audit)[-1].action == "connector.resync"
    sink.fail_with = ConnectionError()
    with pytest.raises(NotPublished):
        await service.resync("acme", connector_id, CALLER)
    await service.remove("acme", connector_id, purge=False, caller=CALLER)
    with pytest.raises(ConnectorConflict):
        await service.resync("acme", connector_id, CALLER)


async def test_rotation_keeps_the_previous_webhook_secret_for_a_day() -> None:
    service, directory, _, audit = _service()
    created = await service.create("acme", _spec("webhook"), CALLER)
    connector_id, first = created.record.connector_id, created.signing_secret
    second, expires_at = await service.rotate_secret("acme", connector_id, CALLER)
    assert second != first and second.startswith("whsec_") and expires_at == NOW + timedelta(hours=24)
    assert directory.rows[connector_id].secrets == {
        "signing_secret": second,
        "previous_signing_secret": first,
        "previous_signing_secret_expires_at": (NOW + timedelta(hours=24)).isoformat(),
    }
    entry = _audited(audit)[-1]
    assert entry.action == "connector.rotate_secret" and second not in json.dumps(dict(entry.details))


async def test_only_active_webhook_connectors_rotate() -> None:
    service, _, _, _ = _service()
    box = (await service.create("acme", _spec("box"), CALLER)).record.connector_id
    with pytest.raises(ConnectorConflict, match="only webhook connectors"):
        await service.rotate_secret("acme", box, CALLER)
    hook = (await service.create("acme", _spec("webhook"), CALLER)).record.connector_id
    await service.remove("acme", hook, purge=False, caller=CALLER)
    with pytest.raises(ConnectorConflict):
        await service.rotate_secret("acme", hook, CALLER)


def test_rotated_secrets_without_a_previous_one_add_no_grace() -> None:
    assert rotated_secrets({}, "whsec_new", NOW) == {"signing_secret": "whsec_new"}
    assert PREVIOUS_SECRET_GRACE == timedelta(hours=24)


def test_webhook_url() -> None:
    assert webhook_url("https://rag.example.com/", "con_ab") == "https://rag.example.com/v1/webhooks/con_ab"


# The HTTP layer --------------------------------------------------------------------------------------------------

KEY = "connector-test-key"


def _deps(directory: MemoryConnectors | None, scopes: tuple[str, ...] = ALL_SCOPES) -> GatewayDeps:
    return gateway_deps(grants={KEY: grant(scopes=scopes)}, connectors=directory)


def _client(deps: GatewayDeps) -> httpx.AsyncClient:
    settings = GatewaySettings(admin_token=None, public_base_url="https://rag.example.com")
    transport = httpx.ASGITransport(app=create_app(settings, deps), client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers={"X-API-Key": KEY})


async def test_http_create_then_read_never_shows_a_secret() -> None:
    directory = MemoryConnectors()
    async with _client(_deps(directory)) as client:
        created = await client.post("/v1/connectors", json=request_body("box"))
        assert created.status_code == 201, created.text
        body = created.json()
        connector_id = body["connector_id"]
        assert body == {
            "connector_id": connector_id,
            "webhook_url": f"https://rag.example.com/v1/webhooks/{connector_id}",
            "status": "active",
        }
        assert created.headers["location"] == f"/v1/connectors/{connector_id}"
        shown = (await client.get(f"/v1/connectors/{connector_id}")).text + (await client.get("/v1/connectors")).text
    assert connector_id in shown and "abc123" in shown
    assert all(secret not in shown for secret in directory.rows[connector_id].secrets.values())


async def test_http_webhook_connector_returns_its_signing_secret_once() -> None:
    directory = MemoryConnectors()
    async with _client(_deps(directory)) as client:
        created = (await client.post("/v1/connectors", json={"type": "webhook", "name": "cms"})).json()
        secret = directory.rows[created["connector_id"]].secrets["signing_secret"]
        assert created["signing_secret"] == secret
        assert secret not in (await client.get(f"/v1/connectors/{created['connector_id']}")).text


async def test_http_validation_names_the_missing_field() -> None:
    body = request_body("gdrive")
    del body["secrets"]["refresh_token"]
    async with _client(_deps(MemoryConnectors())) as client:
        response = await client.post("/v1/connectors", json=body)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["errors"][0]["loc"] == ["body", "gdrive", "secrets", "refresh_token"]
    assert "google-client-secret" not in response.text


async def test_http_a_key_without_the_scope_is_refused() -> None:
    scopes = tuple(s for s in ALL_SCOPES if s != SCOPE_CONNECTORS_ADMIN)
    async with _client(_deps(MemoryConnectors(), scopes)) as client:
        response = await client.get("/v1/connectors")
    assert response.status_code == 403 and response.json()["type"].endswith("missing-scope")


async def test_http_without_a_directory_the_api_answers_503_after_authentication() -> None:
    async with _client(_deps(None)) as client:
        unavailable = await client.get("/v1/connectors")
        anonymous = await client.get("/v1/connectors", headers={"X-API-Key": "wrong"})
    assert unavailable.status_code == 503 and unavailable.json()["type"].endswith("connectors-unavailable")
    assert anonymous.status_code == 401


async def test_http_rotate_and_conflicts() -> None:
    async with _client(_deps(MemoryConnectors())) as client:
        hook = (await client.post("/v1/connectors", json={"type": "webhook", "name": "cms"})).json()["connector_id"]
        box = (await client.post("/v1/connectors", json=request_body("box"))).json()["connector_id"]
        rotated = await client.post(f"/v1/connectors/{hook}/rotate-secret")
        refused = await client.post(f"/v1/connectors/{box}/rotate-secret")
        removed = await client.delete(f"/v1/connectors/{box}", params={"purge": "true"})
        resync = await client.post(f"/v1/connectors/{box}/sync")
        missing = await client.get("/v1/connectors/con_0000000000000000")
    assert rotated.status_code == 200 and rotated.json()["signing_secret"].startswith("whsec_")
    assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM_JSON
    assert removed.status_code == 202 and removed.json() == {"connector_id": box, "status": "removing"}
    assert resync.status_code == 409 and missing.status_code == 404
