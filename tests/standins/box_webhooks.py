"""How the Box stand-in delivers webhook v2 notifications: signed like Box, retried like Box.

- Headers (https://developer.box.com/guides/webhooks/v2/, "Payload headers"): BOX-DELIVERY-ID (new for every
  attempt), BOX-DELIVERY-TIMESTAMP (RFC 3339), BOX-SIGNATURE-PRIMARY / -SECONDARY, BOX-SIGNATURE-VERSION: 1,
  BOX-SIGNATURE-ALGORITHM: HmacSHA256, USER-AGENT: Box-WH-Client/0.1.
- Signatures (https://developer.box.com/guides/webhooks/v2/signatures-v2/): base64 of HMAC-SHA256 under each
  configured key over the raw body bytes followed by the timestamp bytes; a header is sent only for a key that
  is configured, so a key rotation can drop one.
- Retries (https://developer.box.com/guides/webhooks/handle/retries/): a delivery fails without a 2xx within
  30 seconds and is re-sent up to 10 times with exponential back-off; each retry has a new BOX-DELIVERY-ID and
  the same body (whose `id` does not change). Box waits 5 minutes before the first retry; the stand-in's first
  delay is a constructor argument so tests take milliseconds.

Deliveries run on the sender's own event loop thread, as Box sends them on its own schedule: a test awaits
their futures, and the receiving service may run on the test's loop without a deadlock.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import threading
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
USER_AGENT = "Box-WH-Client/0.1"


def box_signature(key: str, body: bytes, timestamp: str) -> str:
    digest = hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST to a webhook address and what came back (`status` None: no answer in time, or no connection)."""

    address: str
    headers: Mapping[str, str]
    body: bytes
    status: int | None
    error: str = ""

    @property
    def delivery_id(self) -> str:
        return self.headers["BOX-DELIVERY-ID"]

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    def __init__(
        self,
        primary_key: str | None,
        secondary_key: str | None,
        *,
        first_retry_s: float,
        max_retries: int,
        timeout_s: float,
    ) -> None:
        self.primary_key = primary_key
        self.secondary_key = secondary_key
        self.first_retry_s = first_retry_s
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.attempts: list[DeliveryAttempt] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="box-webhooks", daemon=True)
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Cancel deliveries still waiting to retry, then end the loop."""
        if self._thread.is_alive():
            self.submit(self._shutdown()).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    async def _shutdown(self) -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self._loop)

    def signed_headers(self, body: bytes, timestamp: datetime, *, forged: bool = False) -> dict[str, str]:
        stamp = timestamp.isoformat(timespec="seconds")
        headers = {
            "BOX-DELIVERY-ID": str(uuid.uuid4()),
            "BOX-DELIVERY-TIMESTAMP": stamp,
            "BOX-SIGNATURE-VERSION": "1",
            "BOX-SIGNATURE-ALGORITHM": "HmacSHA256",
            "USER-AGENT": USER_AGENT,
            "Content-Type": "application/json; charset=UTF-8",
        }
        for header, key in (
            ("BOX-SIGNATURE-PRIMARY", self.primary_key),
            ("BOX-SIGNATURE-SECONDARY", self.secondary_key),
        ):
            if key is not None:
                headers[header] = box_signature(f"forged-{key}" if forged else key, body, stamp)
        return headers

    async def deliver(
        self, address: str, body: bytes, *, stale_by: timedelta | None = None, forged: bool = False, retries: bool
    ) -> list[DeliveryAttempt]:
        """POST `body` until a 2xx answer, or until the retries run out; every attempt is signed afresh."""
        attempts = []
        delay = self.first_retry_s
        for attempt in range(self.max_retries + 1):
            timestamp = datetime.now(UTC) - (stale_by or timedelta())
            sent = await self.post(address, self.signed_headers(body, timestamp, forged=forged), body)
            attempts.append(sent)
            if sent.ok or not retries or attempt == self.max_retries:
                break
            await asyncio.sleep(delay)
            delay *= 2
        return attempts

    async def post(self, address: str, headers: Mapping[str, str], body: bytes) -> DeliveryAttempt:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        try:
            response = await self._client.post(address, headers=dict(headers), content=body)
            sent = DeliveryAttempt(address, dict(headers), body, response.status_code)
        except httpx.HTTPError as exc:
            sent = DeliveryAttempt(address, dict(headers), body, None, repr(exc))
        self.attempts.append(sent)
        return sent
