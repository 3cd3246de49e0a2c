"""Verifying a provider's webhook request, per provider's published scheme; pure functions, no I/O.

- Microsoft Graph (sharepoint, onedrive), https://learn.microsoft.com/graph/change-notifications-delivery-webhooks:
  a `validationToken` query parameter is the subscription handshake (echo it, URL-decoded, as text/plain);
  otherwise every notification in `{"value": [...]}` must carry the connector's `clientState` (403).
- Box, https://developer.box.com/guides/webhooks/v2/signatures-v2/: `BOX-SIGNATURE-PRIMARY`/`-SECONDARY` are
  base64 HMAC-SHA256 over the raw body followed by `BOX-DELIVERY-TIMESTAMP`, under the primary/secondary key;
  either may match (key rotation); a timestamp over 10 minutes old (or too far ahead) is refused (401).
- Google Drive, https://developers.google.com/drive/api/guides/push: headers only; `X-Goog-Channel-Token` must
  equal the channel's secret (403); the `sync` message is acknowledged and not published.
- Standard Webhooks (`webhook`), https://www.standardwebhooks.com/: the `standardwebhooks` library checks
  `webhook-signature` (any `v1,` signature matching) within its 5-minute tolerance, under the current secret or
  the previous one until it expires (401); then the body must be a document event (422).

Every secret comparison is constant-time (`hmac.compare_digest`, and the library's own).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import parse_qs

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from ragstream_gateway.connector_ports import Provider
from ragstream_gateway.models import Metadata, Title

MIB = 1024 * 1024
# Notifications name what changed, the worker fetches it: small. Generic webhooks may carry the content itself.
BODY_LIMITS: Mapping[Provider, int] = {
    "sharepoint": MIB,
    "onedrive": MIB,
    "box": MIB,
    "gdrive": MIB,
    "webhook": 10 * MIB,
}
GRAPH_PROVIDERS: frozenset[Provider] = frozenset({"sharepoint", "onedrive"})
# Graph's tokens are a sentence and a request id (~150 characters); anything far longer is not Graph's.
MAX_VALIDATION_TOKEN_CHARS = 1024
BOX_MAX_AGE = timedelta(minutes=10)
# Clocks drift: a Box timestamp a little ahead of ours is Box's, far ahead is a replay prepared in advance.
BOX_MAX_AHEAD = timedelta(minutes=5)
WEBHOOK_ITEM_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,96}$"
_BOX_HEADERS = ("box-delivery-id", "box-delivery-timestamp")
_DRIVE_HEADERS = (
    "x-goog-channel-id",
    "x-goog-message-number",
    "x-goog-resource-state",
    "x-goog-resource-id",
    "x-goog-resource-uri",
    "x-goog-channel-expiration",
    "x-goog-changed",
)


class VerificationFailed(Exception):
    """The request is not the provider's (401/403), or not well-formed (400), or verified but not a valid event
    (422). `reason` is a short code for audit and logs; `detail` is what the caller is told (no secret in it)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VerifiedDelivery:
    """A request that came from the provider: what to publish about it."""

    delivery_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    # False: acknowledge only (Drive's initial `sync` message).
    publish: bool = True


def _unauthorized(reason: str, detail: str) -> VerificationFailed:
    return VerificationFailed(401, reason, detail)


def _forbidden(reason: str, detail: str) -> VerificationFailed:
    return VerificationFailed(403, reason, detail)


def _same_secret(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def _picked(headers: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: headers[name] for name in names if name in headers}


# --- Microsoft Graph -----------------------------------------------------------------------------------------


def graph_validation_token(query_string: str) -> str | None:
    """The URL-decoded `validationToken` of a Graph handshake (`+` and `%20` are spaces), or None without one."""
    values = parse_qs(query_string, keep_blank_values=True).get("validationToken")
    if not values:
        return None
    token = values[0]
    if len(token) > MAX_VALIDATION_TOKEN_CHARS:
        raise VerificationFailed(400, "validation_token_too_long", "the validationToken is too long")
    return token


def verify_graph(body: bytes, secrets: Mapping[str, str]) -> VerifiedDelivery:
    """Every notification of the batch, lifecycle ones included, must carry the subscription's clientState."""
    expected = secrets.get("client_state", "")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise VerificationFailed(400, "malformed_body", "the body is not a JSON change notification") from None
    notifications = parsed.get("value") if isinstance(parsed, dict) else None
    if not isinstance(notifications, list) or not notifications:
        raise VerificationFailed(400, "malformed_body", "the body has no notifications in 'value'")
    for notification in notifications:
        state = notification.get("clientState") if isinstance(notification, dict) else None
        if not expected or not isinstance(state, str) or not _same_secret(state, expected):
            raise _forbidden("client_state_mismatch", "a notification's clientState does not match the subscription")
    # Graph sends no delivery id, and a subscription's change notifications all have the same body, so nothing
    # tells a redelivery from the next change: every request is its own delivery. That is safe because a Graph
    # notification carries no change, only "sync from your saved delta link", which is idempotent.
    return VerifiedDelivery(f"graph-{uuid.uuid4().hex}")


# --- Box -----------------------------------------------------------------------------------------------------


def box_signature(body: bytes, timestamp: str, key: str) -> str:
    """Box's signature: base64 of HMAC-SHA256 over the body bytes followed by the timestamp header's bytes."""
    digest = hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _box_timestamp(headers: Mapping[str, str], now: datetime) -> str:
    """BOX-DELIVERY-TIMESTAMP, once it is an RFC 3339 time within the accepted window."""
    value = headers.get("box-delivery-timestamp")
    if not value:
        raise _unauthorized("missing_timestamp", "BOX-DELIVERY-TIMESTAMP is missing")
    try:
        sent = datetime.fromisoformat(value)
    except ValueError:
        raise _unauthorized("invalid_timestamp", "BOX-DELIVERY-TIMESTAMP is not an RFC 3339 time") from None
    if sent.tzinfo is None:
        raise _unauthorized("invalid_timestamp", "BOX-DELIVERY-TIMESTAMP has no time zone")
    if sent < now - BOX_MAX_AGE or sent > now + BOX_MAX_AHEAD:
        raise _unauthorized("stale_timestamp", "BOX-DELIVERY-TIMESTAMP is outside the accepted window")
    return value


def verify_box(body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: datetime) -> VerifiedDelivery:
    # Box's SDKs compute no signature for another version or algorithm; absent, they are Box's only ones.
    version = headers.get("box-signature-version", "1")
    algorithm = headers.get("box-signature-algorithm", "HmacSHA256")
    if (version, algorithm) != ("1", "HmacSHA256"):
        raise _unauthorized("unsupported_signature", "only BOX-SIGNATURE-VERSION 1 with HmacSHA256 is supported")
    timestamp = _box_timestamp(headers, now)
    pairs = (
        (headers.get("box-signature-primary"), secrets.get("primary_signature_key")),
        (headers.get("box-signature-secondary"), secrets.get("secondary_signature_key")),
    )
    matched = False
    for presented, key in pairs:
        # Every configured pair is computed (no early exit) so timing says nothing about which one matched.
        if presented and key:
            matched |= _same_secret(presented, box_signature(body, timestamp, key))
    if not matched:
        raise _unauthorized("bad_signature", "no Box signature matches the connector's signature keys")
    attributes = _picked(headers, _BOX_HEADERS)
    trigger = _json_field(body, "trigger")
    if trigger:
        attributes["trigger"] = trigger
    # Box retries a delivery under a new BOX-DELIVERY-ID but the same event `id` in the body
    # (https://developer.box.com/guides/webhooks/v2/payload-v2/), so the event id is what makes a retry a duplicate.
    event_id = _json_field(body, "id")
    delivery_id = (
        f"box-event-{event_id}"
        if event_id
        else headers.get("box-delivery-id") or f"box-{hashlib.sha256(body).hexdigest()}"
    )
    return VerifiedDelivery(delivery_id, attributes)


def _json_field(body: bytes, name: str) -> str | None:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = parsed.get(name) if isinstance(parsed, dict) else None
    return value[:128] if isinstance(value, str) else None


# --- Google Drive --------------------------------------------------------------------------------------------


def verify_drive(headers: Mapping[str, str], secrets: Mapping[str, str]) -> VerifiedDelivery:
    expected = secrets.get("channel_token", "")
    presented = headers.get("x-goog-channel-token", "")
    if not expected or not _same_secret(presented, expected):
        raise _forbidden("channel_token_mismatch", "X-Goog-Channel-Token does not match the watch channel")
    channel, number = headers.get("x-goog-channel-id"), headers.get("x-goog-message-number")
    state = headers.get("x-goog-resource-state")
    if not channel or not number or not state:
        raise VerificationFailed(
            400, "missing_header", "X-Goog-Channel-ID, X-Goog-Message-Number and X-Goog-Resource-State are required"
        )
    # The channel token is a secret: it is never among the attributes.
    return VerifiedDelivery(f"{channel}:{number}", _picked(headers, _DRIVE_HEADERS), publish=state != "sync")


# --- Standard Webhooks ---------------------------------------------------------------------------------------


ItemId = Annotated[str, StringConstraints(pattern=WEBHOOK_ITEM_ID_PATTERN)]
ContentType = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]


class WebhookDocument(BaseModel):
    """`data` of a generic webhook event: the source's id, and for an upsert exactly one of the content fields."""

    model_config = ConfigDict(extra="forbid")

    id: ItemId
    title: Title | None = None
    content_type: ContentType | None = None
    text: Annotated[str, StringConstraints(min_length=1)] | None = None
    content_base64: Annotated[str, StringConstraints(min_length=1)] | None = None
    url: AnyHttpUrl | None = None
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _decodable_content(self) -> WebhookDocument:
        if self.content_base64 is not None:
            try:
                base64.b64decode(self.content_base64, validate=True)
            except binascii.Error:
                raise ValueError("content_base64 is not valid base64") from None
        return self


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="allow")  # senders may add their own fields (timestamp, ...)

    type: Literal["document.upserted", "document.deleted"]
    data: WebhookDocument

    @model_validator(mode="after")
    def _content_of_an_upsert(self) -> WebhookEvent:
        given = [name for name in ("text", "content_base64", "url") if getattr(self.data, name) is not None]
        if self.type == "document.upserted" and len(given) != 1:
            raise ValueError("document.upserted needs exactly one of data.text, data.content_base64, data.url")
        return self


def webhook_signers(secrets: Mapping[str, str], now: datetime) -> list[str]:
    """The signing secrets a request may be signed with: the current one, and the previous one until it expires."""
    signers = [secrets["signing_secret"]] if secrets.get("signing_secret") else []
    previous, expires = secrets.get("previous_signing_secret"), secrets.get("previous_signing_secret_expires_at")
    if previous and expires:
        try:
            until = datetime.fromisoformat(expires)
        except ValueError:
            return signers
        if until.tzinfo is not None and until > now:
            signers.append(previous)
    return signers


def _signed_by(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError:
        return False
    # The library assumes well-formed input: a signature without a comma, bad base64 (of a signature or of a
    # stored secret) or a non-UTF-8 body raise ValueError (binascii.Error, UnicodeDecodeError are ones).
    except (ValueError, EmptyWebhookSecretError):
        return False
    return True


def verify_standard_webhook(
    body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: datetime
) -> VerifiedDelivery:
    names = ("webhook-id", "webhook-timestamp", "webhook-signature")
    signed = {name: headers[name] for name in names if name in headers}
    if len(signed) != len(names):
        raise _unauthorized("missing_header", "webhook-id, webhook-timestamp and webhook-signature are required")
    if not any(_signed_by(secret, body, signed) for secret in webhook_signers(secrets, now)):
        raise _unauthorized("bad_signature", "no webhook-signature matches, or webhook-timestamp is out of tolerance")
    event = parse_webhook_event(body)
    attributes = {"webhook-id": signed["webhook-id"], "webhook-timestamp": signed["webhook-timestamp"]}
    return VerifiedDelivery(signed["webhook-id"], {**attributes, "type": event.type})


def parse_webhook_event(body: bytes) -> WebhookEvent:
    try:
        return WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        raise VerificationFailed(422, "invalid_event", _validation_summary(exc)) from None


def _validation_summary(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        location = ".".join(str(part) for part in item.get("loc", ()))
        parts.append(f"{location}: {item.get('msg', '')}" if location else str(item.get("msg", "")))
    return "; ".join(parts) or "the body is not a document event"


# --- Dispatch ------------------------------------------------------------------------------------------------


def verify_delivery(
    provider: Provider,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    now: datetime | None = None,
) -> VerifiedDelivery:
    """Verify a (non-handshake) request for a connector of `provider`; `headers` with lower-case names."""
    moment = now or datetime.now(UTC)
    if provider in GRAPH_PROVIDERS:
        return verify_graph(body, secrets)
    if provider == "box":
        return verify_box(body, headers, secrets, moment)
    if provider == "gdrive":
        return verify_drive(headers, secrets)
    return verify_standard_webhook(body, headers, secrets, moment)
