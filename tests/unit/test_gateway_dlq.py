"""The DLQ admin routes over an in-memory dead-letter service: auth, problems, audit of every redrive."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from unittest.mock import AsyncMock

import httpx
import pytest
from fakes.dlq import DLQ, SOURCE, FakeLedger, FakePublisher, FakeStore, dead_letter
from ragstream_common.dlq_service import DeadLetterService, DeadLetterUnavailable
from ragstream_gateway.app import create_app
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.dead_letters import DLQ_AUDIT_TENANT, REDRIVE_ACTION
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from unit.gateway_deps import gateway_deps

pytestmark = pytest.mark.unit
ADMIN = {"Authorization": "Bearer admin-secret-for-tests-32-chars-min"}


def _deps(service: DeadLetterService | None) -> GatewayDeps:
    return gateway_deps(dead_letters=service)


def _client(deps: GatewayDeps) -> httpx.AsyncClient:
    app = create_app(GatewaySettings(admin_token="admin-secret-for-tests-32-chars-min"), deps)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.9", 1)), base_url="http://gw")


@pytest.fixture
async def setup() -> AsyncIterator[tuple[httpx.AsyncClient, GatewayDeps, FakePublisher]]:
    garbage = dead_letter(2, value=b"\x00not protobuf", reason="InvalidEvent")
    store = FakeStore({DLQ: [dead_letter(0), dead_letter(1, tenant="beta"), garbage]})
    publisher = FakePublisher()
    deps = _deps(DeadLetterService(store, FakeLedger(), publisher))
    async with _client(deps) as client:
        yield client, deps, publisher


def _problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == f"urn:ragstream:problem:{slug}"


async def test_admin_token_is_required(setup: tuple[httpx.AsyncClient, GatewayDeps, FakePublisher]) -> None:
    client, _, _ = setup
    _problem(await client.get("/v1/admin/dlq"), 401, "unauthorized")
    _problem(await client.post(f"/v1/admin/dlq/{DLQ}/events/0/redrive"), 401, "unauthorized")


async def test_depth_list_and_inspect(setup: tuple[httpx.AsyncClient, GatewayDeps, FakePublisher]) -> None:
    client, _, _ = setup
    depths = (await client.get("/v1/admin/dlq", headers=ADMIN)).json()["topics"]
    assert depths == [{"dlq_topic": DLQ, "depth": 3, "redriven": 0, "first_offset": 0, "end_offset": 3}]

    page = (await client.get(f"/v1/admin/dlq/{SOURCE}/events?limit=1", headers=ADMIN)).json()
    assert [i["dlq_offset"] for i in page["items"]] == [0] and page["next_offset"] == 1
    acme = (await client.get(f"/v1/admin/dlq/{DLQ}/events?tenant=acme&offset=1", headers=ADMIN)).json()
    assert acme == {"items": [], "next_offset": None}
    reason = (await client.get(f"/v1/admin/dlq/{DLQ}/events?reason=InvalidEvent", headers=ADMIN)).json()
    assert [(i["dlq_offset"], i["tenant_id"]) for i in reason["items"]] == [(2, None)]

    detail = (await client.get(f"/v1/admin/dlq/{DLQ}/events/2", headers=ADMIN)).json()
    assert detail["payload"]["encoding"] == "base64" and detail["reason_class"] == "InvalidEvent"
    assert detail["redriven"] is None and "ce_type" in detail["headers"]


async def test_unknown_topic_offset_and_bad_input_are_problems(
    setup: tuple[httpx.AsyncClient, GatewayDeps, FakePublisher],
) -> None:
    client, _, _ = setup
    _problem(await client.get("/v1/admin/dlq/rag.nope.v1/events", headers=ADMIN), 404, "dlq-topic-not-found")
    _problem(await client.get(f"/v1/admin/dlq/{DLQ}/events/99", headers=ADMIN), 404, "dead-letter-not-found")
    _problem(await client.post(f"/v1/admin/dlq/{DLQ}/events/99/redrive", headers=ADMIN), 404, "dead-letter-not-found")
    _problem(await client.get(f"/v1/admin/dlq/{DLQ}/events?since=yesterday", headers=ADMIN), 422, "validation")


async def test_every_redrive_is_audited_and_repeats_publish_nothing(
    setup: tuple[httpx.AsyncClient, GatewayDeps, FakePublisher],
) -> None:
    client, deps, publisher = setup
    first = (await client.post(f"/v1/admin/dlq/{DLQ}/events/0/redrive", headers=ADMIN)).json()
    again = (await client.post(f"/v1/admin/dlq/{DLQ}/events/0/redrive", headers=ADMIN)).json()
    assert (first["status"], again["status"], first["target_topic"]) == ("redriven", "already_redriven", SOURCE)

    bulk = await client.post(f"/v1/admin/dlq/{DLQ}/redrive", headers=ADMIN)
    assert bulk.json() == {"redriven": 2, "already_redriven": 1}
    assert len(publisher.sent) == 3

    recorded = [call.args[0] for call in deps.audit.record.await_args_list]  # type: ignore[attr-defined]
    # Besides the redrives, the audit trail records each of the three admin calls (audit_trail.py).
    assert [e.details["status"] for e in recorded if e.action.startswith("POST /v1/admin/dlq/")] == [200, 200, 200]
    entries = [e for e in recorded if e.action == REDRIVE_ACTION]
    assert len(entries) == 5
    assert [(e.tenant_id, e.resource, e.details["status"]) for e in entries[:2]] == [
        ("acme", f"{DLQ}:0", "redriven"),
        ("acme", f"{DLQ}:0", "already_redriven"),
    ]
    assert {e.tenant_id for e in entries[2:]} == {"acme", "beta", DLQ_AUDIT_TENANT}
    assert all(e.actor == "admin" and e.client_ip == "10.0.0.9" for e in entries)


async def test_unreachable_kafka_and_no_service_are_503() -> None:
    failing = AsyncMock()
    failing.depths.side_effect = DeadLetterUnavailable("broker down")
    async with _client(_deps(failing)) as client:
        response = await client.get("/v1/admin/dlq", headers=ADMIN)
    _problem(response, 503, "dlq-unavailable")
    assert response.headers["retry-after"] == "5"
    async with _client(_deps(None)) as client:
        _problem(await client.get("/v1/admin/dlq", headers=ADMIN), 503, "dlq-unavailable")


def test_the_gateway_imports_without_the_commands_dependencies() -> None:
    """typer and rich are the command's (dev environment), not the gateway image's."""
    code = "import sys\nsys.modules['typer'] = sys.modules['rich'] = None\nimport ragstream_gateway.app\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
