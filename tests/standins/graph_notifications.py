"""Change notification subscriptions of the Microsoft Graph stand-in (graph_server.py serves their HTTP routes).

Behaviour followed:
- https://learn.microsoft.com/graph/api/subscription-post-subscriptions: for driveItems changeType `updated` only,
  an expiration at most 42,300 minutes ahead, clientState up to 128 characters.
- https://learn.microsoft.com/graph/change-notifications-delivery-webhooks: creating validates notificationUrl
  AND lifecycleNotificationUrl: POST `<url>?validationToken=<url-encoded token>` (Content-Type text/plain),
  the endpoint must answer 200, text/plain, the decoded token, within 10 s, else the create fails. Change
  notifications are `{"value": [{subscriptionId, subscriptionExpirationDateTime, changeType, resource,
  clientState, tenantId}]}` POSTed with a 3 s timeout; without a 2xx they are sent again (Graph keeps trying
  for up to 4 hours; here `delivery_attempts` times, `retry_delay_s` apart, doubling).
- https://learn.microsoft.com/graph/change-notifications-lifecycle-events: lifecycle notifications carry
  `lifecycleEvent` (reauthorizationRequired, subscriptionRemoved, missed) and go to lifecycleNotificationUrl;
  after reauthorizationRequired, change notifications pause until the app renews (PATCH) the subscription.
- https://learn.microsoft.com/graph/api/subscription-update, .../subscription-delete: a lapsed subscription is
  deleted by the service, so renewing or deleting it answers 404.
Notifications are sent from a thread of their own (like the real service, independent of the test's loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from standins.graph_drive import iso

MAX_SUBSCRIPTION_MINUTES = 42_300


@dataclass
class GraphSubscription:
    id: str
    resource: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    needs_reauthorization: bool = False

    def json(self, app_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": app_id,
            "changeType": "updated",
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": iso(self.expires),
            "creatorId": "5a1e5a1e-0000-4000-8000-000000000001",
            "latestSupportedTlsVersion": "v1_2",
            "includeResourceData": False,
        }


@dataclass(frozen=True)
class Validation:
    url: str
    token: str
    status: int | None
    accepted: bool


@dataclass(frozen=True)
class Delivery:
    url: str
    payload: dict[str, Any]
    status: int | None
    attempts: int


class Subscriptions:
    def __init__(self, tenant_id: str, drive_id: str) -> None:
        self.tenant_id, self.drive_id = tenant_id, drive_id
        self.by_id: dict[str, GraphSubscription] = {}
        # Every clientState ever subscribed with (secrets: tests look for them where they must not be).
        self.client_states: set[str] = set()
        self.validations: list[Validation] = []
        self.deliveries: list[Delivery] = []
        self.auto_notify = True  # False: changes notify nobody (a lost notification)
        self.delivery_attempts, self.retry_delay_s = 3, 0.2
        self._lock = threading.RLock()
        self._pending: list[concurrent.futures.Future[Delivery]] = []
        self._sender: _Sender | None = None

    def start(self) -> None:
        self._sender = _Sender()

    def stop(self) -> None:
        if self._sender:
            self._sender.stop()

    def live(self, subscription_id: str | None = None) -> list[GraphSubscription]:
        with self._lock:
            now = datetime.now(UTC)
            for lapsed in [sub_id for sub_id, sub in self.by_id.items() if sub.expires <= now]:
                del self.by_id[lapsed]
            return [sub for sub in self.by_id.values() if subscription_id in (None, sub.id)]

    # --- the API ---------------------------------------------------------------------------------------
    def problem(self, spec: dict[str, Any]) -> str | None:
        """Why a create request is refused (400), if it is."""
        required = ("changeType", "notificationUrl", "resource", "expirationDateTime")
        missing = [key for key in required if not spec.get(key)]
        if missing:
            return f"Missing required properties: {', '.join(missing)}."
        if str(spec["resource"]).lstrip("/") != f"drives/{self.drive_id}/root":
            return f"Resource '{spec['resource']}' is not supported or was not found."
        if spec["changeType"] != "updated":
            return f"ChangeType '{spec['changeType']}' is not supported for driveItem; only 'updated' is."
        if len(spec.get("clientState") or "") > 128:
            return "clientState must not exceed 128 characters."
        return expiration_problem(spec["expirationDateTime"])

    async def create(self, spec: dict[str, Any]) -> GraphSubscription | None:
        """The new subscription, or None when an endpoint failed validation."""
        lifecycle_url = spec.get("lifecycleNotificationUrl")
        for url in (spec["notificationUrl"], lifecycle_url):
            if url and not await self._validate(url):
                return None
        expires = parse_time(spec["expirationDateTime"])
        sub = GraphSubscription(
            str(uuid.uuid4()),
            spec["resource"],
            spec["notificationUrl"],
            lifecycle_url,
            spec.get("clientState"),
            expires,
        )
        with self._lock:
            self.by_id[sub.id] = sub
            if sub.client_state:
                self.client_states.add(sub.client_state)
        return sub

    def renew(self, sub: GraphSubscription, expiration: str) -> None:
        with self._lock:
            sub.expires, sub.needs_reauthorization = parse_time(expiration), False

    def delete(self, sub: GraphSubscription) -> None:
        with self._lock:
            self.by_id.pop(sub.id, None)

    # --- notifications -------------------------------------------------------------------------------------
    def changed(self) -> None:
        """Something in the drive changed: notify every live subscription that is not paused."""
        if not self.auto_notify or self._sender is None:
            return
        with self._lock:
            for sub in self.live():
                if not sub.needs_reauthorization:
                    self._pending.append(self._send(sub.notification_url, self._notification(sub, None)))

    async def notify(self, subscription_id: str | None = None, *, client_state: str | None = None) -> list[Delivery]:
        subs = self.live(subscription_id)
        sends = [self._send(sub.notification_url, self._notification(sub, client_state)) for sub in subs]
        return [await asyncio.wrap_future(send) for send in sends]

    async def lifecycle(
        self, event: str, subscription_id: str | None = None, *, client_state: str | None = None
    ) -> list[Delivery]:
        sends = []
        with self._lock:
            for sub in self.live(subscription_id):
                sub.needs_reauthorization = sub.needs_reauthorization or event == "reauthorizationRequired"
                if event == "subscriptionRemoved":
                    del self.by_id[sub.id]
                if sub.lifecycle_url:
                    sends.append(self._send(sub.lifecycle_url, self._notification(sub, client_state, event)))
        return [await asyncio.wrap_future(send) for send in sends]

    async def settled(self, timeout_s: float = 15.0) -> list[Delivery]:
        with self._lock:
            pending, self._pending = self._pending, []
        return list(await asyncio.wait_for(asyncio.gather(*map(asyncio.wrap_future, pending)), timeout_s))

    def expire(self, subscription_id: str | None = None) -> None:
        with self._lock:
            for sub in self.live(subscription_id):
                sub.expires = datetime.now(UTC) - timedelta(seconds=1)

    def _notification(self, sub: GraphSubscription, client_state: str | None, event: str = "") -> dict[str, Any]:
        entry: dict[str, Any] = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": iso(sub.expires),
            "tenantId": self.tenant_id,
            "clientState": sub.client_state if client_state is None else client_state,
        }
        if event:
            entry["lifecycleEvent"] = event
        else:
            entry.update(changeType="updated", resource=sub.resource)
        return {"value": [entry]}

    def _send(self, url: str, payload: dict[str, Any]) -> concurrent.futures.Future[Delivery]:
        assert self._sender is not None, "start the stand-in first"
        return self._sender.submit(self._deliver(url, payload))

    async def _deliver(self, url: str, payload: dict[str, Any]) -> Delivery:
        status: int | None = None
        async with httpx.AsyncClient(timeout=3.0) as client:
            for attempt in range(1, self.delivery_attempts + 1):
                try:
                    status = (await client.post(url, json=payload)).status_code
                except httpx.HTTPError:
                    status = None
                if status is not None and 200 <= status < 300:
                    break
                if attempt < self.delivery_attempts:
                    await asyncio.sleep(self.retry_delay_s * 2 ** (attempt - 1))
        delivery = Delivery(url, payload, status, attempt)
        self.deliveries.append(delivery)
        return delivery

    async def _validate(self, url: str) -> bool:
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        target = f"{url}{'&' if '?' in url else '?'}{urlencode({'validationToken': token})}"
        status, accepted = None, False
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.post(target, headers={"content-type": "text/plain; charset=utf-8"})
            status = response.status_code
            plain = response.headers.get("content-type", "").startswith("text/plain")
            accepted = status == 200 and plain and response.text == token
        except httpx.HTTPError:
            pass
        self.validations.append(Validation(url, token, status, accepted))
        return accepted


class _Sender:
    """The part of the service that calls notification URLs: an event loop in a thread of its own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="graph-standin-sender", daemon=True)
        self._thread.start()

    def submit(self, work: Coroutine[Any, Any, Delivery]) -> concurrent.futures.Future[Delivery]:
        return asyncio.run_coroutine_threadsafe(work, self._loop)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def expiration_problem(value: Any) -> str | None:
    try:
        moment = parse_time(str(value))
    except ValueError:
        return f"Invalid expirationDateTime '{value}'."
    now = datetime.now(UTC)
    if moment <= now:
        return "Subscription expiration must be in the future."
    if moment > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
        return f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in the future."
    return None
