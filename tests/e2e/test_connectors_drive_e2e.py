"""Google Drive connectors through the running system: the Drive stand-in (tests/standins/drive_server.py) really
POSTs its push messages to our gateway, which hands them to the connectors worker over Kafka; the worker reads the
changes feed from the stand-in and the documents go through ingest -> embed -> retrieve like uploads.

Every test has its own `gdrive` connector on the stand-in's My Drive; afterwards the connector is removed (its
channel stopped, its documents purged) and the test's files are deleted, so the next connector starts empty.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from rag.v1 import connectors_pb2
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.system import LocalServices
from standins.drive_server import Channel, Delivery, DriveStandin
from support.connectors import (
    audit_entries,
    create_connector,
    published_notifications,
    wait_for_connector,
    wait_for_document,
    wait_until,
    wait_until_cited,
)

pytestmark = pytest.mark.e2e
Notified = connectors_pb2.ConnectorNotified
TENANT = "default"
ADMIN_TOKEN = "admin-token-for-e2e-tests-32-chars-min"
# The connectors worker polls every 10 s in the e2e system (conftest.py): a lost message heals within this.
POLL_REPAIR_S = 45

KILN = "The Orvieto glassworks fires its annealing kiln at 540 degrees Celsius every Thursday night."
KILN_EDITED = "The Orvieto glassworks now fires its annealing kiln at 610 degrees Celsius every Monday night."
KILN_QUESTION = "At what temperature does the Orvieto glassworks fire its annealing kiln?"
BAKERY_DOC = "# Tessaly harbour bakery\n\nThe Tessaly harbour bakery bakes its rye loaves with caraway seeds at 4 am."
BAKERY_QUESTION = "Which seeds does the Tessaly harbour bakery put in its rye loaves?"


@dataclass(frozen=True)
class DriveConnector:
    connector_id: str
    webhook_url: str

    def document_id(self, file_id: str) -> str:
        return f"{self.connector_id}:{file_id}"  # Drive's ids are letters and digits: used as they are


@asynccontextmanager
async def drive_connector(gateway: httpx.AsyncClient, drive: DriveStandin) -> AsyncIterator[DriveConnector]:
    """A `gdrive` connector on the stand-in's My Drive, signed in with the stand-in's OAuth client."""
    with drive.lock:
        before = set(drive.files)
    created = await create_connector(
        gateway,
        "gdrive",
        config={"client_id": drive.client_id},
        secrets={"client_secret": drive.client_secret, "refresh_token": drive.refresh_token},
    )
    connector = DriveConnector(created["connector_id"], created["webhook_url"])
    try:
        yield connector
    finally:
        await gateway.delete(f"/v1/connectors/{connector.connector_id}", params={"purge": "true"})
        await wait_for_connector(gateway, connector.connector_id, lambda c: c["status"] == "removed", "removed")
        with drive.lock:  # the channel is stopped by now: nobody hears of these deletes
            for file_id in set(drive.files) - before:
                if file_id in drive.files:
                    drive.delete(file_id)


@pytest.fixture
async def connector(gateway: httpx.AsyncClient, drive: DriveStandin) -> AsyncIterator[DriveConnector]:
    async with drive_connector(gateway, drive) as made:
        yield made


async def watch_channel(drive: DriveStandin, address: str, besides: frozenset[str] = frozenset()) -> Channel:
    """The watch channel the worker opened for `address` (other than `besides`)."""

    async def probe() -> Channel | None:
        found = [c for c in drive.channels() if c.address == address and c.id not in besides and not c.stopped]
        return found[-1] if found else None

    return await wait_until(probe, f"a watch channel for {address}", timeout_s=30)


async def message(drive: DriveStandin, channel_id: str, number: int) -> Delivery:
    """Message `number` of the channel once Drive is done with it (delivered, failed or dropped)."""

    async def probe() -> Delivery | None:
        return next((d for d in drive.deliveries if (d.channel_id, d.message_number) == (channel_id, number)), None)

    return await wait_until(probe, f"message {number} of channel {channel_id}", timeout_s=30)


async def opened(drive: DriveStandin, connector: DriveConnector) -> Channel:
    """The connector's channel once its `sync` message was answered."""
    channel = await watch_channel(drive, connector.webhook_url)
    sync = await message(drive, channel.id, 1)
    assert (sync.state, sync.status) == ("sync", 200), sync
    return channel


async def notified_ids(kafka: KafkaSettings, connector_id: str) -> set[str]:
    return {n.delivery_id for n in await published_notifications(kafka, TENANT, connector_id)}


async def test_files_and_docs_are_indexed_versioned_trashed_restored_and_deleted(
    gateway: httpx.AsyncClient, kafka_admin: KafkaSettings, drive: DriveStandin, connector: DriveConnector
) -> None:
    channel = await opened(drive, connector)
    assert f"{channel.id}:1" not in await notified_ids(kafka_admin, connector.connector_id)  # sync: nothing to do

    file_id = drive.create_file("kiln.txt", KILN.encode(), readers=("mara@example.com",))
    doc_id = drive.create_google_doc("Bakery", BAKERY_DOC)
    kiln = await wait_for_document(gateway, connector.document_id(file_id), version=1, title="kiln.txt")
    metadata = kiln["metadata"]
    assert (metadata["connector_id"], metadata["provider"], metadata["item_id"]) == (
        connector.connector_id, "gdrive", file_id
    )  # fmt: skip
    assert metadata["source_uri"] == f"{drive.api_url}/files/{file_id}" and metadata["path"] == "/kiln.txt"
    assert metadata["author"] == drive.user.display_name and metadata["web_url"].endswith("view?usp=drivesdk")
    assert set(json.loads(metadata["permissions"])) == {"user:mara@example.com", f"user:{drive.user.email}"}
    bakery = await wait_for_document(gateway, connector.document_id(doc_id), version=1, title="Bakery")
    assert bakery["content_type"] == "text/markdown" and bakery["chunk_count"] >= 1  # the Doc, exported
    await wait_until_cited(gateway, KILN_QUESTION, connector.document_id(file_id))
    await wait_until_cited(gateway, BAKERY_QUESTION, connector.document_id(doc_id))

    drive.edit(file_id, KILN_EDITED.encode())
    await wait_for_document(gateway, connector.document_id(file_id), version=2)
    drive.rename(file_id, "kiln-schedule.txt")
    # The title comes with the registration, which may land after the pipeline's status for the version.
    renamed = await wait_for_document(gateway, connector.document_id(file_id), version=3, title="kiln-schedule.txt")
    assert renamed["metadata"]["path"] == "/kiln-schedule.txt"

    drive.trash(file_id)
    await wait_for_document(gateway, connector.document_id(file_id), {"deleted"})
    await wait_until_cited(gateway, KILN_QUESTION, connector.document_id(file_id), cited=False)
    drive.untrash(file_id)
    await wait_for_document(gateway, connector.document_id(file_id), version=4)  # a restore is a new version
    await wait_until_cited(gateway, KILN_QUESTION, connector.document_id(file_id))

    drive.delete(doc_id)  # for good, not via the trash: the change says `removed`
    await wait_for_document(gateway, connector.document_id(doc_id), {"deleted"})
    await wait_until_cited(gateway, BAKERY_QUESTION, connector.document_id(doc_id), cited=False)


async def test_a_wrong_channel_token_is_refused_and_nothing_is_published(
    gateway: httpx.AsyncClient,
    kafka_admin: KafkaSettings,
    system: LocalServices,
    drive: DriveStandin,
    connector: DriveConnector,
) -> None:
    channel = await opened(drive, connector)
    genuine = (await message(drive, channel.id, 1)).headers
    forged = {**genuine, "X-Goog-Resource-State": "change", "X-Goog-Message-Number": "9001"}
    async with httpx.AsyncClient(timeout=30) as google:
        wrong = await google.post(connector.webhook_url, headers={**forged, "X-Goog-Channel-Token": "guessed"})
        missing = await google.post(
            connector.webhook_url, headers={k: v for k, v in forged.items() if "Token" not in k}
        )
    assert (wrong.status_code, missing.status_code) == (403, 403), (wrong.text, missing.text)

    assert f"{channel.id}:9001" not in await notified_ids(kafka_admin, connector.connector_id)
    rejected = await audited(system, "connector.notification.rejected", connector.connector_id)
    assert [entry["details"]["reason"] for entry in rejected] == ["channel_token_mismatch"] * 2
    assert genuine["X-Goog-Channel-Token"] not in json.dumps(rejected)  # the secret is never audited


async def test_a_message_delivered_twice_is_handed_on_once(
    gateway: httpx.AsyncClient,
    kafka_admin: KafkaSettings,
    system: LocalServices,
    drive: DriveStandin,
    connector: DriveConnector,
) -> None:
    channel = await opened(drive, connector)
    file_id = drive.create_file("twice.txt", b"The Ostra Holm ferry carries eleven cars and forty bicycles.")
    first = await message(drive, channel.id, 2)
    assert first.state == "change" and first.status is not None and 200 <= first.status < 300, first
    await wait_for_document(gateway, connector.document_id(file_id), version=1)

    drive.resend(first)  # Drive may deliver a message twice: same channel, same message number
    again = await wait_until(lambda: _second_copy(drive, channel.id, 2), "the message delivered again")
    assert again.status == 200, again  # answered, so Drive stops, but not handed on
    delivery_id = f"{channel.id}:2"
    notified = [n.delivery_id for n in await published_notifications(kafka_admin, TENANT, connector.connector_id)]
    assert notified.count(delivery_id) == 1, notified
    duplicates = await audited(system, "connector.notification.duplicate", connector.connector_id)
    assert [entry["details"]["delivery_id"] for entry in duplicates] == [delivery_id]
    assert (await wait_for_document(gateway, connector.document_id(file_id)))["version"] == 1


async def _second_copy(drive: DriveStandin, channel_id: str, number: int) -> Delivery | None:
    copies = [d for d in list(drive.deliveries) if (d.channel_id, d.message_number) == (channel_id, number)]
    return copies[1] if len(copies) > 1 else None


async def test_throttled_drive_calls_are_retried_and_the_change_still_arrives(
    gateway: httpx.AsyncClient, drive: DriveStandin, connector: DriveConnector
) -> None:
    await opened(drive, connector)
    # A sync may still be in flight here (recorded, not yet answered): count every API call from now on.
    calls_before = len(drive.requests)
    drive.throttle(1, status=429, retry_after=1)
    drive.throttle(1, status=429)  # no Retry-After: backoff with jitter
    drive.throttle(2, status=403, reason="rateLimitExceeded")  # Drive's other way of saying 429
    file_id = drive.create_file("quota.txt", b"The Brennmoor reservoir holds 41 million cubic metres of water.")

    await wait_for_document(gateway, connector.document_id(file_id), version=1)
    assert drive.throttles == []  # every throttled answer was served to the worker
    assert len(drive.requests) - calls_before >= 5  # four refusals, each followed by a call that went on


async def test_refused_page_tokens_restart_a_full_enumeration_that_loses_nothing(
    gateway: httpx.AsyncClient, drive: DriveStandin, connector: DriveConnector
) -> None:
    await opened(drive, connector)
    kept = drive.create_file("kept.txt", b"The Lindqvist ferry leaves the north pier at seven.")
    doomed = drive.create_file("doomed.txt", b"The Lindqvist ferry timetable of last winter.")
    for file_id in (kept, doomed):
        await wait_for_document(gateway, connector.document_id(file_id), version=1)
    listings = len(drive.requests_to("/files"))

    drive.invalidate_page_tokens()  # the worker's saved token is now refused: 400 invalid pageToken
    drive.delete(doomed)
    added = drive.create_file("added.txt", b"The Lindqvist ferry adds a Sunday crossing at noon.")

    await wait_for_document(gateway, connector.document_id(doomed), {"deleted"})
    await wait_for_document(gateway, connector.document_id(added), version=1)
    assert len(drive.requests_to("/files")) > listings  # everything was listed again
    unchanged = await wait_for_document(gateway, connector.document_id(kept))
    assert unchanged["version"] == 1  # listed again, not re-versioned


async def test_a_lost_notification_is_repaired_by_the_periodic_poll(
    gateway: httpx.AsyncClient, kafka_admin: KafkaSettings, drive: DriveStandin, connector: DriveConnector
) -> None:
    channel = await opened(drive, connector)
    # The first poll opened the channel; once a notification after it is handled, only a later poll can help.
    heard_at = datetime.now(UTC)
    heard = drive.create_file("heard.txt", b"The Quillon observatory stands on Mount Arden.")
    await wait_for_document(gateway, connector.document_id(heard), version=1)

    drive.drop_notifications(1)
    file_id = drive.create_file("lost.txt", b"The Quillon observatory opens its dome only on moonless nights.")
    lost = await message(drive, channel.id, 3)
    assert lost.dropped and lost.status is None

    await wait_for_document(gateway, connector.document_id(file_id), version=1, timeout_s=POLL_REPAIR_S)
    assert [d for d in drive.deliveries if d.channel_id == channel.id and d.message_number > 3] == []
    assert f"{channel.id}:3" not in await notified_ids(kafka_admin, connector.connector_id)
    polls = await published_notifications(kafka_admin, TENANT, connector.connector_id, kind=Notified.POLL)
    # What read the changes feed: a poll published after the heard file's message (not necessarily after the
    # lost one: a poll published just before it may be consumed after it). Polls and messages share the
    # connector's partition, so a poll published before that message was consumed before it, too early to help.
    assert [p for p in polls if p.received_at.ToDatetime(tzinfo=UTC) >= heard_at]


async def test_a_channel_near_its_expiry_is_watched_again(gateway: httpx.AsyncClient, drive: DriveStandin) -> None:
    drive.limit_next_channels(timedelta(hours=1))  # well inside the worker's renewal window (a day)
    async with drive_connector(gateway, drive) as connector:
        first = await watch_channel(drive, connector.webhook_url)
        assert first.expiration - datetime.now(UTC) <= timedelta(hours=1)
        second = await watch_channel(drive, connector.webhook_url, besides=frozenset({first.id}))
        await wait_until(lambda: _stopped(drive, first.id), "the old channel stopped", timeout_s=30)
        status = await wait_for_connector(
            gateway, connector.connector_id, lambda c: _expires_after(c, timedelta(days=6)), "the new channel's expiry"
        )
        assert status["subscription_expires_at"] is not None

        file_id = drive.create_file("renewed.txt", b"The Skarpa lighthouse keeper logs the tide at dawn.")
        await wait_for_document(gateway, connector.document_id(file_id), version=1)
        heard = [d for d in drive.deliveries if d.state == "change" and d.channel_id in (first.id, second.id)]
        assert heard and {d.channel_id for d in heard} == {second.id}


async def _stopped(drive: DriveStandin, channel_id: str) -> bool:
    return any(c.id == channel_id and c.stopped for c in drive.channels())


def _expires_after(status: dict[str, Any], margin: timedelta) -> bool:
    expires = status.get("subscription_expires_at")
    return expires is not None and datetime.fromisoformat(expires) > datetime.now(UTC) + margin


async def audited(system: LocalServices, action: str, connector_id: str) -> list[dict[str, Any]]:
    """The connector's audit entries of `action` in the tenant's log, read with the admin credential."""
    return await audit_entries(system.gateway_url, ADMIN_TOKEN, TENANT, action=action, resource=connector_id)


async def test_no_credential_reached_a_service_log(drive: DriveStandin, system: LocalServices) -> None:
    """Last in the module: the service logs (one file per service under system.log_dir) hold none of the
    credentials the tests above put in play: client secret, refresh token, channel tokens, access tokens."""
    known = drive.known_secrets()
    assert any(name.startswith("channel token") for name in known), "run with the tests above: they open channels"
    logs = {path.name: path.read_text(errors="replace") for path in sorted(system.log_dir.glob("*.log"))}
    assert logs, f"no service logs under {system.log_dir}"
    assert [f"{name} in {log}" for name, secret in known.items() for log, text in logs.items() if secret in text] == []
