"""How the Drive stand-in sends push notifications, as https://developers.google.com/drive/api/guides/push says
Drive does: a POST with an empty body and the X-Goog-* headers to the channel's address, `sync` first, then one
message per change with an increasing X-Goog-Message-Number; 200/201/202/204/102 are success, 500/502/503/504
are retried with exponential backoff, anything else is a failed message.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from email.utils import format_datetime

import httpx
from standins.drive_model import Channel, Delivery

RETRIED = frozenset({500, 502, 503, 504})
PUSH_USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


@dataclass(frozen=True)
class Message:
    """One notification to send (a `dropped` one is recorded as lost, never sent)."""

    address: str
    headers: dict[str, str]
    channel_id: str
    number: int
    state: str
    dropped: bool


def notification_headers(channel: Channel, state: str) -> dict[str, str]:
    """The headers of the channel's current message (its message number already counted)."""
    headers = {
        "Content-Type": "application/json; utf-8",
        "User-Agent": PUSH_USER_AGENT,
        "X-Goog-Channel-ID": channel.id,
        "X-Goog-Channel-Expiration": format_datetime(channel.expiration, usegmt=True),
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-URI": channel.resource_uri,
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": str(channel.message_number),
    }
    if channel.token is not None:
        headers["X-Goog-Channel-Token"] = channel.token
    return headers


class Postman:
    """Sends notification messages in order from a background thread, as Drive does after answering the
    call that caused them; 500/502/503/504 (and an unreachable address) are retried with exponential backoff."""

    def __init__(self, deliveries: list[Delivery], backoff_s: float, attempts: int = 5) -> None:
        self._deliveries = deliveries
        self._backoff_s = backoff_s
        self._attempts = attempts
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="drive-standin-push", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def send(self, message: Message) -> None:
        self._queue.put(message)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while (message := self._queue.get()) is not None:
                try:
                    self._deliver(client, message)
                finally:
                    self._queue.task_done()
            self._queue.task_done()

    def _deliver(self, client: httpx.Client, message: Message) -> None:
        status: int | None = None
        attempt = 0
        while not message.dropped and attempt < self._attempts:
            attempt += 1
            try:
                status = client.post(message.address, headers=message.headers, content=b"").status_code
            except httpx.HTTPError:
                status = None
            if status is not None and status not in RETRIED:
                break
            time.sleep(self._backoff_s * 2 ** (attempt - 1))
        delivery = Delivery(
            message.channel_id, message.number, message.state, message.headers, status, attempt, message.dropped
        )
        self._deliveries.append(delivery)
