"""The webhook intake's order and answers (webhook_intake.py) over in-memory ports: lookup, handshake, body cap,
verification, the per-connector limit (the limits library's memory storage), duplicates, publishing with a
timeout, delivery records, audit rows and metrics."""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from fakes import RecordingSink, metric
from rag.v1 import connectors_pb2
from ragstream_common.events import Emitted
from ragstream_gateway.connector_ports import ConnectorRecord
from ragstream_gateway.ports import AuditEntry, AuditRecord
from ragstream_gateway.ratelimit import RateDecision, TenantRateLimiter
from ragstream_gateway.webhook_intake import (
    REJECTION_AUDIT_LIMIT,
    NotificationNotPublished,
    WebhookIntake,
    WebhookRefused,
    WebhookRequest,
)
from ragstream_gateway.webhook_verification import box_signature

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLIENT_STATE = "cs-" + "c" * 40
BOX_KEYS = {"primary_signature_key": "pk", "secondary_signature_key": "sk"}
COUNTER = "ragstream_gateway_connector_notifications_total"


@dataclass
class InMemoryConnectors:
    """The webhook path's part of ConnectorDirectory (find, delivery_seen, record_delivery) over a dict."""

    records: dict[str, ConnectorRecord] = field(default_factory=dict)
    deliveries: set[tuple[str, str, str]] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    fail_record: bool = False

    async def find(self, connector_id: str) -> ConnectorRecord | None:
        self.calls.append("find")
        return self.records.get(connector_id)

    async def delivery_seen(self, tenant_id: str, connector_id: str, delivery_id: str) -> bool:
        self.calls.append("delivery_seen")
        return (tenant_id, connector_id, delivery_id) in self.deliveries

    async def record_delivery(self, tenant_id: str, connector_id: str, delivery_id: str) -> None:
        self.calls.append("record_delivery")
        if self.fail_record:
            raise ConnectionError("database gone")
        self.deliveries.add((tenant_id, connector_id, delivery_id))


@dataclass
class RecordingAudit:
    entries: list[AuditEntry] = field(default_factory=list)

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    def actions(self) -> list[str]:
        return [entry.action for entry in self.entries]

    async def list(self, tenant_id: str, *, limit: int, before: int | None) -> builtins.list[AuditRecord]:
        return []


class HangingSink:
    async def emit(self, events: Sequence[Emitted]) -> None:
        await asyncio.sleep(60)


class StoreDown:
    async def check(self, tenant_id: str, limit: str | None = None) -> RateDecision:
        return RateDecision(False, retry_after_s=2, limit=limit or "", unavailable=True)


def _connector(
    provider: str = "sharepoint", connector_id: str = "con_0123456789abcdef", **changes: object
) -> ConnectorRecord:
    secrets = {"client_state": CLIENT_STATE} if provider == "sharepoint" else BOX_KEYS
    record = ConnectorRecord(connector_id, "acme", provider, "Docs", "active", {}, secrets)  # type: ignore[arg-type]
    return replace(record, **changes)  # type: ignore[arg-type]


@dataclass
class Rig:
    connectors: InMemoryConnectors
    sink: RecordingSink
    audit: RecordingAudit
    intake: WebhookIntake


def _rig(*records: ConnectorRecord, per_minute: int = 600, sink: object = None, limiter: object = None) -> Rig:
    connectors = InMemoryConnectors({r.connector_id: r for r in records or (_connector(),)})
    recording, audit = RecordingSink(), RecordingAudit()
    intake = WebhookIntake(
        connectors,
        sink or recording,  # type: ignore[arg-type]
        audit,
        limiter or TenantRateLimiter("async+memory://", "1000/minute"),  # type: ignore[arg-type]
        notifications_per_minute=per_minute,
        publish_timeout_s=0.2,
        clock=lambda: NOW,
    )
    return Rig(connectors, recording, audit, intake)


def _request(
    body: bytes = b"",
    *,
    connector_id: str = "con_0123456789abcdef",
    query: str = "",
    headers: Mapping[str, str] | None = None,
) -> tuple[WebhookRequest, list[int]]:
    reads: list[int] = []

    async def read(limit: int) -> bytes | None:
        reads.append(limit)
        return None if len(body) > limit else body

    return WebhookRequest(connector_id, query, dict(headers or {}), "198.51.100.7", read), reads


def _graph_body(state: str = CLIENT_STATE, resource: str = "drives/d1/root") -> bytes:
    return json.dumps({"value": [{"subscriptionId": "s1", "clientState": state, "resource": resource}]}).encode()


async def _refused(rig: Rig, request: WebhookRequest) -> WebhookRefused:
    with pytest.raises(WebhookRefused) as caught:
        await rig.intake.receive(request)
    return caught.value


async def test_an_unknown_connector_is_not_found_and_unaudited() -> None:
    rig = _rig()
    refused = await _refused(rig, _request(_graph_body(), connector_id="con_ffffffffffffffff")[0])
    assert (refused.status, refused.slug, refused.audit_done) == (404, "connector-not-found", False)
    assert rig.audit.entries == [] and rig.sink.calls == 0


async def test_an_id_that_cannot_be_a_connector_is_not_looked_up() -> None:
    rig = _rig()
    assert (await _refused(rig, _request(connector_id="../admin")[0])).status == 404
    assert rig.connectors.calls == []


@pytest.mark.parametrize("status", ["removing", "removed"])
async def test_a_removed_connector_is_not_found_and_audited(status: str) -> None:
    rig = _rig(_connector(status=status))
    assert (await _refused(rig, _request(_graph_body())[0])).status == 404
    [entry] = rig.audit.entries
    assert (entry.tenant_id, entry.action, entry.details["reason"]) == (
        "acme",
        "connector.notification.rejected",
        "connector_removed",
    )


async def test_the_graph_handshake_echoes_the_decoded_token_and_publishes_nothing() -> None:
    rig = _rig()
    before = metric(COUNTER, provider="sharepoint", outcome="handshake")
    request, reads = _request(query="validationToken=Validation%3A+Testing%20reachability%2B1")
    reply = await rig.intake.receive(request)
    assert (reply.status, reply.outcome, reply.text) == (200, "handshake", "Validation: Testing reachability+1")
    assert reads == [] and rig.sink.calls == 0 and rig.audit.entries == []
    assert metric(COUNTER, provider="sharepoint", outcome="handshake") == before + 1


async def test_an_overlong_validation_token_is_refused_and_audited() -> None:
    rig = _rig()
    refused = await _refused(rig, _request(query="validationToken=" + "a" * 5000)[0])
    assert (refused.status, refused.slug) == (400, "webhook-malformed")
    assert rig.audit.entries[0].details["reason"] == "validation_token_too_long"


async def test_a_validation_token_means_nothing_to_other_providers() -> None:
    rig = _rig(_connector("box"))
    refused = await _refused(rig, _request(b"{}", query="validationToken=x")[0])
    assert refused.status == 401  # verified as a Box delivery, which it is not


async def test_a_verified_graph_notification_is_published_once_then_recorded() -> None:
    rig = _rig()
    before = metric(COUNTER, provider="sharepoint", outcome="accepted")
    body = _graph_body()
    reply = await rig.intake.receive(_request(body)[0])
    assert (reply.status, reply.outcome) == (202, "accepted")
    [event] = rig.sink.messages(connectors_pb2.ConnectorNotified)
    assert (event.tenant_id, event.connector_id, event.provider) == ("acme", "con_0123456789abcdef", "sharepoint")
    assert event.kind == connectors_pb2.ConnectorNotified.NOTIFICATION and event.payload == body
    assert event.delivery_id.startswith("graph-") and event.received_at.seconds > 0
    assert rig.connectors.calls == ["find", "delivery_seen", "record_delivery"]
    [entry] = rig.audit.entries
    assert (entry.action, entry.actor, entry.resource) == (
        "connector.notification.accepted",
        "provider:sharepoint",
        "con_0123456789abcdef",
    )
    assert entry.client_ip == "198.51.100.7" and entry.details["delivery_id"] == event.delivery_id
    assert metric(COUNTER, provider="sharepoint", outcome="accepted") == before + 1


async def test_a_wrong_client_state_is_forbidden_audited_and_not_published() -> None:
    rig = _rig()
    before = metric(COUNTER, provider="sharepoint", outcome="rejected")
    refused = await _refused(rig, _request(_graph_body("guessed"))[0])
    assert (refused.status, refused.slug) == (403, "webhook-forbidden")
    assert rig.sink.calls == 0 and "record_delivery" not in rig.connectors.calls
    [entry] = rig.audit.entries
    assert entry.action == "connector.notification.rejected" and entry.outcome == "denied"
    assert entry.details == {"provider": "sharepoint", "reason": "client_state_mismatch", "status": 403}
    assert CLIENT_STATE not in repr(entry) and "guessed" not in repr(entry)
    assert metric(COUNTER, provider="sharepoint", outcome="rejected") == before + 1


async def test_a_body_over_the_provider_cap_is_refused_before_verification() -> None:
    rig = _rig()
    request, reads = _request(b"x" * (1024 * 1024 + 1))
    assert (await _refused(rig, request)).status == 413
    assert reads == [1024 * 1024]
    assert rig.audit.entries[0].details["reason"] == "body_too_large"


async def test_generic_webhooks_may_carry_ten_mebibytes() -> None:
    rig = _rig(_connector("webhook", secrets={"signing_secret": "whsec_" + "A" * 43}))
    request, reads = _request(b"{}", headers={})
    assert (await _refused(rig, request)).status == 401
    assert reads == [10 * 1024 * 1024]


async def test_a_duplicate_delivery_is_answered_200_audited_and_not_published() -> None:
    rig = _rig(_connector("gdrive", secrets={"channel_token": "tok"}))
    headers = {
        "x-goog-channel-id": "ch",
        "x-goog-channel-token": "tok",
        "x-goog-message-number": "7",
        "x-goog-resource-state": "change",
    }
    await rig.intake.receive(_request(headers=headers)[0])
    reply = await rig.intake.receive(_request(headers=headers)[0])
    assert (reply.status, reply.outcome) == (200, "duplicate")
    assert rig.sink.calls == 1
    assert rig.audit.actions() == ["connector.notification.accepted", "connector.notification.duplicate"]


async def test_graph_notifications_are_never_taken_for_duplicates() -> None:
    """Every change notification of a subscription has the same body: the second change must go out too."""
    rig = _rig()
    for _ in range(2):
        assert (await rig.intake.receive(_request(_graph_body())[0])).outcome == "accepted"
    assert rig.sink.calls == 2


async def test_a_failed_publish_is_not_recorded_so_the_redelivery_goes_out() -> None:
    rig = _rig()
    rig.sink.fail_with = RuntimeError("broker down")
    with pytest.raises(NotificationNotPublished):
        await rig.intake.receive(_request(_graph_body())[0])
    assert "record_delivery" not in rig.connectors.calls
    assert rig.audit.entries[0].action == "connector.notification.publish_failed"
    assert rig.audit.entries[0].outcome == "error"
    assert (await rig.intake.receive(_request(_graph_body())[0])).outcome == "accepted"
    assert len(rig.sink.emitted) == 1


async def test_a_publish_that_hangs_gives_up_within_the_timeout() -> None:
    rig = _rig(sink=HangingSink())
    async with asyncio.timeout(2):
        with pytest.raises(NotificationNotPublished):
            await rig.intake.receive(_request(_graph_body())[0])


async def test_a_delivery_that_could_not_be_recorded_is_still_accepted() -> None:
    rig = _rig()
    rig.connectors.fail_record = True
    assert (await rig.intake.receive(_request(_graph_body())[0])).outcome == "accepted"


async def test_verified_deliveries_past_the_connector_limit_are_throttled_not_audited() -> None:
    rig = _rig(per_minute=2)
    replies = [await rig.intake.receive(_request(_graph_body(resource=f"r{i}"))[0]) for i in range(2)]
    assert [reply.outcome for reply in replies] == ["accepted", "accepted"]
    before = metric(COUNTER, provider="sharepoint", outcome="throttled")
    refused = await _refused(rig, _request(_graph_body(resource="r3"))[0])
    assert (refused.status, refused.slug) == (429, "rate-limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(rig.audit.entries) == 2 and rig.sink.calls == 2
    assert metric(COUNTER, provider="sharepoint", outcome="throttled") == before + 1


async def test_forged_requests_do_not_spend_the_connector_limit() -> None:
    rig = _rig(per_minute=1)
    for _ in range(5):
        assert (await _refused(rig, _request(_graph_body("forged"))[0])).status == 403
    assert (await rig.intake.receive(_request(_graph_body())[0])).outcome == "accepted"


async def test_connectors_are_limited_separately() -> None:
    other = _connector(connector_id="con_aaaaaaaaaaaaaaaa")
    rig = _rig(_connector(), other, per_minute=1)
    await rig.intake.receive(_request(_graph_body())[0])
    reply = await rig.intake.receive(_request(_graph_body(), connector_id="con_aaaaaaaaaaaaaaaa")[0])
    assert reply.outcome == "accepted"


async def test_with_the_limits_store_down_and_failing_closed_the_provider_retries() -> None:
    rig = _rig(limiter=StoreDown())
    refused = await _refused(rig, _request(_graph_body())[0])
    assert (refused.status, refused.headers["Retry-After"]) == (503, "2")
    assert rig.sink.calls == 0 and rig.audit.entries[0].details["reason"] == "rate_limit_unavailable"


async def test_a_forged_flood_writes_a_bounded_number_of_audit_rows() -> None:
    rig = _rig()
    budget = int(REJECTION_AUDIT_LIMIT.split("/")[0])
    for _ in range(budget + 5):
        await _refused(rig, _request(_graph_body("forged"))[0])
    assert len(rig.audit.entries) == budget


async def test_box_deliveries_are_answered_200_with_their_trigger() -> None:
    rig = _rig(_connector("box"))
    body = b'{"type":"webhook_event","id":"ev1","trigger":"FILE.TRASHED","source":{"id":"f1","type":"file"}}'
    stamp = NOW.isoformat()
    headers = {
        "box-delivery-id": "bd-1",
        "box-delivery-timestamp": stamp,
        "box-signature-primary": box_signature(body, stamp, "pk"),
    }
    reply = await rig.intake.receive(_request(body, headers=headers)[0])
    assert (reply.status, reply.outcome) == (200, "accepted")
    [event] = rig.sink.messages()
    assert event.delivery_id == "box-event-ev1" and event.attributes["trigger"] == "FILE.TRASHED"
    stale = {**headers, "box-delivery-id": "bd-2", "box-delivery-timestamp": "2026-03-01T11:49:00+00:00"}
    assert (await _refused(rig, _request(body, headers=stale)[0])).status == 401


async def test_the_drive_sync_message_is_acknowledged_without_publishing() -> None:
    rig = _rig(_connector("gdrive", secrets={"channel_token": "tok"}))
    headers = {
        "x-goog-channel-id": "ch",
        "x-goog-channel-token": "tok",
        "x-goog-message-number": "1",
        "x-goog-resource-state": "sync",
    }
    reply = await rig.intake.receive(_request(headers=headers)[0])
    assert (reply.status, reply.outcome) == (200, "handshake")
    assert rig.sink.calls == 0 and "delivery_seen" not in rig.connectors.calls
    change = {**headers, "x-goog-message-number": "2", "x-goog-resource-state": "change"}
    assert (await rig.intake.receive(_request(headers=change)[0])).status == 200
    [event] = rig.sink.messages()
    assert event.delivery_id == "ch:2" and event.payload == b"" and "x-goog-channel-token" not in event.attributes
