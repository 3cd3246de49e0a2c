"""Webhook verification per provider (webhook_verification.py): Box signatures under both keys, timestamps,
Graph's handshake token and clientState, Drive's channel token and sync message, and Standard Webhooks signed by
the `standardwebhooks` library's own `sign`, with several signatures and the previous secret's window."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from ragstream_gateway.webhook_verification import (
    MAX_VALIDATION_TOKEN_CHARS,
    VerificationFailed,
    box_signature,
    graph_validation_token,
    verify_box,
    verify_delivery,
    verify_drive,
    verify_graph,
    verify_standard_webhook,
    webhook_signers,
)
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _refusal(call: object, *args: object) -> VerificationFailed:
    assert callable(call)
    with pytest.raises(VerificationFailed) as caught:
        call(*args)
    return caught.value


# --- Box -----------------------------------------------------------------------------------------------------

BOX_KEYS = {"client_secret": "cs", "primary_signature_key": "primary-key", "secondary_signature_key": "second-key"}
BOX_BODY = json.dumps({"type": "webhook_event", "id": "e1", "trigger": "FILE.UPLOADED", "source": {"id": "f1"}})


def _box_headers(
    body: str = BOX_BODY, sent: datetime = NOW, *, primary: str | None = None, secondary: str | None = None
) -> dict[str, str]:
    stamp = sent.isoformat()
    return {
        "box-delivery-id": "d-1",
        "box-delivery-timestamp": stamp,
        "box-signature-version": "1",
        "box-signature-algorithm": "HmacSHA256",
        "box-signature-primary": primary or box_signature(body.encode(), stamp, "primary-key"),
        "box-signature-secondary": secondary or box_signature(body.encode(), stamp, "second-key"),
    }


def test_box_signature_is_base64_hmac_over_body_then_timestamp() -> None:
    import hmac

    expected = base64.b64encode(hmac.new(b"k", b"{}2026-01-01T00:00:00Z", hashlib.sha256).digest()).decode()
    assert box_signature(b"{}", "2026-01-01T00:00:00Z", "k") == expected


def test_a_box_delivery_signed_with_both_keys_is_verified() -> None:
    delivery = verify_box(BOX_BODY.encode(), _box_headers(), BOX_KEYS, NOW)
    assert delivery.delivery_id == "box-event-e1" and delivery.publish
    assert delivery.attributes == {
        "box-delivery-id": "d-1",
        "box-delivery-timestamp": NOW.isoformat(),
        "trigger": "FILE.UPLOADED",
    }


@pytest.mark.parametrize("wrong", ["primary", "secondary"])
def test_either_box_key_may_match_during_rotation(wrong: str) -> None:
    forged = base64.b64encode(b"x" * 32).decode()
    headers = _box_headers(primary=forged) if wrong == "primary" else _box_headers(secondary=forged)
    assert verify_box(BOX_BODY.encode(), headers, BOX_KEYS, NOW).delivery_id == "box-event-e1"


def test_only_the_configured_key_counts() -> None:
    """A rotated-out secondary key is gone from the secrets: its signature no longer admits a request."""
    headers = _box_headers(primary=base64.b64encode(b"x" * 32).decode())
    keys = {"primary_signature_key": "new-primary"}
    assert _refusal(verify_box, BOX_BODY.encode(), headers, keys, NOW).reason == "bad_signature"


def test_a_forged_or_tampered_box_delivery_is_refused() -> None:
    forged = _box_headers(primary="Zm9yZ2Vk", secondary="Zm9yZ2Vk")
    assert _refusal(verify_box, BOX_BODY.encode(), forged, BOX_KEYS, NOW).status == 401
    tampered = BOX_BODY.replace("f1", "f2").encode()
    failed = _refusal(verify_box, tampered, _box_headers(), BOX_KEYS, NOW)
    assert (failed.status, failed.reason) == (401, "bad_signature")


@pytest.mark.parametrize(
    ("sent", "accepted"),
    [
        (NOW - timedelta(minutes=9, seconds=59), True),
        (NOW - timedelta(minutes=10, seconds=1), False),
        (NOW + timedelta(minutes=4), True),
        (NOW + timedelta(minutes=6), False),
    ],
)
def test_box_timestamps_older_than_ten_minutes_or_far_ahead_are_refused(sent: datetime, accepted: bool) -> None:
    headers = _box_headers(sent=sent)  # validly signed: only the time decides
    if accepted:
        verify_box(BOX_BODY.encode(), headers, BOX_KEYS, NOW)
    else:
        assert _refusal(verify_box, BOX_BODY.encode(), headers, BOX_KEYS, NOW).reason == "stale_timestamp"


@pytest.mark.parametrize(("value", "reason"), [(None, "missing_timestamp"), ("yesterday", "invalid_timestamp")])
def test_a_missing_or_unreadable_box_timestamp_is_refused(value: str | None, reason: str) -> None:
    headers = _box_headers()
    headers.pop("box-delivery-timestamp")
    if value is not None:
        headers["box-delivery-timestamp"] = value
    failed = _refusal(verify_box, BOX_BODY.encode(), headers, BOX_KEYS, NOW)
    assert (failed.status, failed.reason) == (401, reason)


def test_box_rfc3339_offsets_are_understood() -> None:
    stamp = "2026-03-01T04:00:00-08:00"  # NOW, in Box's Pacific-time style
    headers = {**_box_headers(), "box-delivery-timestamp": stamp}
    headers["box-signature-primary"] = box_signature(BOX_BODY.encode(), stamp, "primary-key")
    verify_box(BOX_BODY.encode(), headers, BOX_KEYS, NOW)


def test_another_box_signature_version_is_refused() -> None:
    headers = {**_box_headers(), "box-signature-version": "2"}
    assert _refusal(verify_box, BOX_BODY.encode(), headers, BOX_KEYS, NOW).reason == "unsupported_signature"


def test_box_retries_share_the_event_id_whatever_their_delivery_id() -> None:
    """Box retries under a new BOX-DELIVERY-ID with the same event id: both are one delivery."""
    first = verify_box(BOX_BODY.encode(), _box_headers(), BOX_KEYS, NOW)
    retry_headers = _box_headers()
    retry_headers["box-delivery-id"] = "d-2"
    assert verify_box(BOX_BODY.encode(), retry_headers, BOX_KEYS, NOW).delivery_id == first.delivery_id


def test_without_an_event_id_box_deliveries_are_told_apart_by_their_body() -> None:
    body = json.dumps({"type": "webhook_event", "trigger": "FILE.UPLOADED", "source": {"id": "f1"}})
    headers = _box_headers(body)
    headers.pop("box-delivery-id")
    delivery = verify_box(body.encode(), headers, BOX_KEYS, NOW)
    assert delivery.delivery_id == "box-" + hashlib.sha256(body.encode()).hexdigest()


# --- Microsoft Graph -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "token"),
    [
        ("validationToken=Validation%3A+Testing+client+application", "Validation: Testing client application"),
        ("validationToken=a%20b%2Bc%26d", "a b+c&d"),
        ("other=1&validationToken=%3Cscript%3E", "<script>"),  # plain text back, escaped nowhere
        ("validationToken=", ""),
    ],
)
def test_the_graph_validation_token_is_url_decoded(query: str, token: str) -> None:
    assert graph_validation_token(query) == token


def test_no_validation_token_is_no_handshake() -> None:
    assert graph_validation_token("") is None
    assert graph_validation_token("validationtoken=x") is None  # Graph spells it validationToken


def test_an_overlong_validation_token_is_refused() -> None:
    failed = _refusal(graph_validation_token, "validationToken=" + "a" * (MAX_VALIDATION_TOKEN_CHARS + 1))
    assert failed.status == 400


def _graph_body(*states: str, lifecycle: str | None = None) -> bytes:
    value = []
    for state in states:
        item = {"subscriptionId": "s1", "clientState": state, "resource": "drives/d/root", "changeType": "updated"}
        if lifecycle:
            item["lifecycleEvent"] = lifecycle
        value.append(item)
    return json.dumps({"value": value}).encode()


GRAPH_SECRETS = {"client_secret": "x", "client_state": "state-" + "s" * 32}


def test_graph_notifications_with_the_client_state_are_verified() -> None:
    body = _graph_body(GRAPH_SECRETS["client_state"], GRAPH_SECRETS["client_state"])
    delivery = verify_graph(body, GRAPH_SECRETS)
    assert delivery.delivery_id.startswith("graph-") and delivery.publish
    # Every change notification of a subscription has the same body: each request must count as a new one.
    assert verify_graph(body, GRAPH_SECRETS).delivery_id != delivery.delivery_id


@pytest.mark.parametrize("lifecycle", ["reauthorizationRequired", "missed", "subscriptionRemoved"])
def test_lifecycle_notifications_are_verified_like_the_others(lifecycle: str) -> None:
    assert verify_graph(_graph_body(GRAPH_SECRETS["client_state"], lifecycle=lifecycle), GRAPH_SECRETS).publish


@pytest.mark.parametrize(
    "body",
    [
        _graph_body("wrong"),
        _graph_body(GRAPH_SECRETS["client_state"], "wrong"),  # one bad notification spoils the batch
        json.dumps({"value": [{"subscriptionId": "s1"}]}).encode(),
        json.dumps({"value": [{"clientState": 7}]}).encode(),
    ],
)
def test_a_wrong_or_missing_client_state_is_forbidden(body: bytes) -> None:
    failed = _refusal(verify_graph, body, GRAPH_SECRETS)
    assert (failed.status, failed.reason) == (403, "client_state_mismatch")


def test_no_client_state_on_record_admits_nothing() -> None:
    assert _refusal(verify_graph, _graph_body(""), {"client_secret": "x"}).status == 403


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"value": []}', b'{"value": {}}', b"\xff"])
def test_a_body_that_is_no_notification_batch_is_malformed(body: bytes) -> None:
    assert _refusal(verify_graph, body, GRAPH_SECRETS).status == 400


# --- Google Drive --------------------------------------------------------------------------------------------

DRIVE_SECRETS = {"client_secret": "x", "refresh_token": "r", "channel_token": "tok-" + "t" * 32}


def _drive_headers(state: str = "change", token: str = DRIVE_SECRETS["channel_token"]) -> dict[str, str]:
    return {
        "x-goog-channel-id": "ch-1",
        "x-goog-channel-token": token,
        "x-goog-message-number": "1" if state == "sync" else "42",
        "x-goog-resource-state": state,
        "x-goog-resource-id": "res-1",
        "x-goog-resource-uri": "https://www.googleapis.com/drive/v3/changes?pageToken=9",
        "x-goog-channel-expiration": "Tue, 10 Mar 2026 12:00:00 GMT",
    }


def test_the_drive_sync_message_is_acknowledged_not_published() -> None:
    delivery = verify_drive(_drive_headers("sync"), DRIVE_SECRETS)
    assert not delivery.publish and delivery.delivery_id == "ch-1:1"


def test_a_drive_change_is_published_with_its_headers_but_never_the_token() -> None:
    delivery = verify_drive(_drive_headers(), DRIVE_SECRETS)
    assert delivery.publish and delivery.delivery_id == "ch-1:42"
    assert delivery.attributes["x-goog-resource-state"] == "change"
    assert delivery.attributes["x-goog-channel-expiration"] == "Tue, 10 Mar 2026 12:00:00 GMT"
    assert "x-goog-channel-token" not in delivery.attributes
    assert DRIVE_SECRETS["channel_token"] not in json.dumps(dict(delivery.attributes))


@pytest.mark.parametrize("state", ["sync", "change"])
def test_a_wrong_channel_token_is_forbidden_even_for_sync(state: str) -> None:
    failed = _refusal(verify_drive, _drive_headers(state, token="guess"), DRIVE_SECRETS)
    assert (failed.status, failed.reason) == (403, "channel_token_mismatch")
    headers = _drive_headers(state)
    headers.pop("x-goog-channel-token")
    assert _refusal(verify_drive, headers, DRIVE_SECRETS).status == 403


def test_a_drive_message_without_its_channel_id_is_malformed() -> None:
    headers = _drive_headers()
    headers.pop("x-goog-channel-id")
    assert _refusal(verify_drive, headers, DRIVE_SECRETS).status == 400


# --- Standard Webhooks ---------------------------------------------------------------------------------------


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET = new_secret()
UPSERT = json.dumps({"type": "document.upserted", "data": {"id": "doc-1", "title": "T", "text": "hello"}})


def signed_headers(
    body: str, *secrets: str, msg_id: str = "msg_1", sent: datetime | None = None, extra: str = ""
) -> dict[str, str]:
    moment = sent or datetime.now(UTC)
    signatures = [Webhook(secret).sign(msg_id, moment, body) for secret in secrets]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": " ".join(filter(None, [extra, *signatures])),
    }


def _verify(body: str, headers: dict[str, str], secrets: dict[str, str] | None = None) -> object:
    return verify_standard_webhook(body.encode(), headers, secrets or {"signing_secret": SECRET}, datetime.now(UTC))


def test_a_request_signed_by_the_library_is_verified() -> None:
    delivery = verify_standard_webhook(
        UPSERT.encode(), signed_headers(UPSERT, SECRET), {"signing_secret": SECRET}, datetime.now(UTC)
    )
    assert delivery.delivery_id == "msg_1"
    assert delivery.attributes["type"] == "document.upserted" and "webhook-signature" not in delivery.attributes


def test_any_of_several_signatures_may_match() -> None:
    headers = signed_headers(UPSERT, new_secret(), SECRET, extra="v1a,ignored")
    _verify(UPSERT, headers)


# Factories, not values: the headers are signed when the test runs, so a timestamp
# six minutes ahead is still ahead however long after collection that is.
@pytest.mark.parametrize(
    "make_headers",
    [
        lambda: signed_headers(UPSERT, new_secret()),
        lambda: signed_headers(UPSERT, SECRET, sent=datetime.now(UTC) - timedelta(minutes=6)),
        lambda: signed_headers(UPSERT, SECRET, sent=datetime.now(UTC) + timedelta(minutes=6)),
        lambda: {**signed_headers(UPSERT, SECRET), "webhook-id": "msg_2"},  # the id is signed too
        lambda: {**signed_headers(UPSERT, SECRET), "webhook-signature": "garbage"},
        lambda: {**signed_headers(UPSERT, SECRET), "webhook-signature": "v1,!!notbase64!!"},
        lambda: {**signed_headers(UPSERT, SECRET), "webhook-timestamp": "soon"},
    ],
    ids=["wrong_secret", "stale", "future", "id_changed", "garbage", "not_base64", "bad_timestamp"],
)
def test_wrong_secret_stale_time_or_malformed_signature_is_unauthorized(
    make_headers: Callable[[], dict[str, str]],
) -> None:
    with pytest.raises(VerificationFailed) as caught:
        _verify(UPSERT, make_headers())
    assert (caught.value.status, caught.value.reason) == (401, "bad_signature")


def test_missing_headers_and_non_utf8_bodies_are_unauthorized() -> None:
    headers = signed_headers(UPSERT, SECRET)
    headers.pop("webhook-id")
    assert _refusal(_verify, UPSERT, headers).reason == "missing_header"
    raw = b"\xff\xfe"
    failed = _refusal(verify_standard_webhook, raw, signed_headers("x", SECRET), {"signing_secret": SECRET}, NOW)
    assert failed.status == 401


def test_the_previous_secret_works_until_it_expires() -> None:
    old = new_secret()
    now = datetime.now(UTC)
    rotated = {
        "signing_secret": SECRET,
        "previous_signing_secret": old,
        "previous_signing_secret_expires_at": (now + timedelta(hours=23)).isoformat(),
    }
    _verify(UPSERT, signed_headers(UPSERT, old), rotated)
    expired = {**rotated, "previous_signing_secret_expires_at": (now - timedelta(seconds=1)).isoformat()}
    assert webhook_signers(expired, now) == [SECRET]
    assert _refusal(_verify, UPSERT, signed_headers(UPSERT, old), expired).status == 401


def test_an_unreadable_previous_expiry_keeps_only_the_current_secret() -> None:
    secrets = {
        "signing_secret": SECRET,
        "previous_signing_secret": "whsec_x",
        "previous_signing_secret_expires_at": "?",
    }
    assert webhook_signers(secrets, NOW) == [SECRET]
    assert webhook_signers({}, NOW) == []


@pytest.mark.parametrize(
    "event",
    [
        {"type": "document.created", "data": {"id": "d", "text": "x"}},
        {"type": "document.upserted", "data": {"id": "a/b", "text": "x"}},
        {"type": "document.upserted", "data": {"id": "x" * 97, "text": "x"}},
        {"type": "document.upserted", "data": {"id": "d"}},
        {"type": "document.upserted", "data": {"id": "d", "text": "x", "url": "https://example.com/a"}},
        {"type": "document.upserted", "data": {"id": "d", "content_base64": "not base64!"}},
        {"type": "document.upserted", "data": {"id": "d", "url": "ftp://example.com/a"}},
        {"type": "document.upserted", "data": {"id": "d", "text": "x", "metadata": {"k": 1}}},
        {"type": "document.deleted", "data": {}},
        {"type": "document.deleted"},
    ],
)
def test_a_verified_body_that_is_no_document_event_is_unprocessable(event: dict[str, object]) -> None:
    body = json.dumps(event)
    failed = _refusal(_verify, body, signed_headers(body, SECRET))
    assert (failed.status, failed.reason) == (422, "invalid_event") and failed.detail


def test_a_bad_shape_under_a_bad_signature_is_unauthorized_first() -> None:
    body = json.dumps({"type": "nope"})
    assert _refusal(_verify, body, signed_headers(body, new_secret())).status == 401


@pytest.mark.parametrize(
    "data",
    [
        {
            "id": "doc.1:a-b_c",
            "content_base64": base64.b64encode(b"%PDF-1.7").decode(),
            "content_type": "application/pdf",
        },
        {"id": "d", "url": "https://files.example.com/d.pdf", "metadata": {"team": "ops"}},
    ],
)
def test_upserts_carry_exactly_one_kind_of_content(data: dict[str, object]) -> None:
    body = json.dumps({"type": "document.upserted", "data": data})
    _verify(body, signed_headers(body, SECRET))


def test_a_delete_needs_only_the_id() -> None:
    body = json.dumps({"type": "document.deleted", "data": {"id": "doc-1"}})
    _verify(body, signed_headers(body, SECRET))


# --- Dispatch ------------------------------------------------------------------------------------------------


def test_each_provider_gets_its_own_scheme() -> None:
    state = GRAPH_SECRETS["client_state"]
    for provider in ("sharepoint", "onedrive"):
        assert verify_delivery(provider, _graph_body(state), {}, GRAPH_SECRETS).delivery_id.startswith("graph-")
    assert verify_delivery("box", BOX_BODY.encode(), _box_headers(), BOX_KEYS, NOW).delivery_id == "box-event-e1"
    assert verify_delivery("gdrive", b"", _drive_headers(), DRIVE_SECRETS).delivery_id == "ch-1:42"
    headers = signed_headers(UPSERT, SECRET)
    assert verify_delivery("webhook", UPSERT.encode(), headers, {"signing_secret": SECRET}).delivery_id == "msg_1"
