"""Box connectors through the running system: the Box stand-in (tests/standins/box_server.py) signs and delivers
its webhooks to our gateway like Box, which verifies them and hands them to the connectors worker over Kafka; the
worker reads the files from the stand-in and the documents go through ingest -> embed -> retrieve like uploads.

Every test syncs its own folder with its own `box` connector; the folder's webhook is added in the stand-in as an
admin adds it in the developer console (the connector does not manage it). Afterwards the connector is removed
with its documents, and the webhook with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from rag.v1 import connectors_pb2
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.system import LocalServices
from standins.box_server import BoxStandin
from standins.box_webhooks import DeliveryAttempt
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
T = TypeVar("T")
Notified = connectors_pb2.ConnectorNotified
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TENANT = "default"
ADMIN_TOKEN = "admin-token-for-e2e-tests-32-chars-min"
# Box client ids are 32 lower-case letters and digits, the shape the connector API accepts.
BOX_CLIENT_ID = "e2eboxclient0000000000000000000a"
# The connectors worker polls every 10 s in the e2e system (conftest.py): a lost delivery heals within this.
POLL_REPAIR_S = 45

TIDES = "The Morrow Sound tide gauge at Ketter Point records a spring tide range of 6.2 metres."
TIDES_EDITED = "The Morrow Sound tide gauge at Ketter Point now records a spring tide range of 7.4 metres."
TIDES_QUESTION = "What spring tide range does the Morrow Sound tide gauge at Ketter Point record?"


@dataclass(frozen=True)
class BoxConnector:
    connector_id: str
    webhook_url: str
    folder_id: str

    def document_id(self, file_id: str) -> str:
        return f"{self.connector_id}:{file_id}"  # Box ids are digits: used as they are


@pytest.fixture(scope="module")
def box_app(box: BoxStandin) -> Iterator[BoxStandin]:
    """The stand-in as the Box app the connectors use: its default client id (with dashes) is not the shape of a
    real one, which the connector API refuses."""
    original, box.client_id = box.client_id, BOX_CLIENT_ID
    yield box
    box.client_id = original


@pytest.fixture
async def connector(gateway: httpx.AsyncClient, box_app: BoxStandin) -> AsyncIterator[BoxConnector]:
    box = box_app
    folder = box.create_folder(f"e2e-{uuid.uuid4().hex[:8]}")
    assert box.sender.primary_key and box.sender.secondary_key
    created = await create_connector(
        gateway,
        "box",
        config={"client_id": box.client_id, "subject_type": "enterprise", "subject_id": box.enterprise_id,
                "folder_id": folder},
        secrets={"client_secret": box.client_secret, "primary_signature_key": box.sender.primary_key,
                 "secondary_signature_key": box.sender.secondary_key},
    )  # fmt: skip
    hook = box.add_webhook(folder, created["webhook_url"])
    try:
        yield BoxConnector(created["connector_id"], created["webhook_url"], folder)
    finally:
        await gateway.delete(f"/v1/connectors/{created['connector_id']}", params={"purge": "true"})
        await wait_for_connector(gateway, created["connector_id"], lambda c: c["status"] == "removed", "removed")
        with box.tree.lock:
            box.webhooks.pop(hook, None)


async def sent(future: concurrent.futures.Future[T]) -> T:
    """What the stand-in's sender thread returns for one delivery it was asked for."""
    return await asyncio.wait_for(asyncio.wrap_future(future), 30)


async def delivered(box: BoxStandin) -> DeliveryAttempt:
    """The one automatic delivery since the last call, once our gateway answered it 2xx (Box retries until then)."""
    attempts = await box.settled()
    assert attempts and attempts[-1].ok and len({event_id(a) for a in attempts}) == 1, attempts
    return attempts[-1]


def event_id(attempt: DeliveryAttempt) -> str:
    return str(json.loads(attempt.body)["id"])


async def notified_ids(kafka: KafkaSettings, connector_id: str) -> list[str]:
    return [n.delivery_id for n in await published_notifications(kafka, TENANT, connector_id)]


async def test_uploads_edits_renames_trash_and_restore_follow_the_file(
    gateway: httpx.AsyncClient, box_app: BoxStandin, connector: BoxConnector
) -> None:
    box = box_app
    file_id = box.upload("tides.txt", TIDES.encode(), connector.folder_id)
    uploaded = await delivered(box)
    assert uploaded.headers["BOX-SIGNATURE-PRIMARY"] and uploaded.headers["BOX-SIGNATURE-SECONDARY"]
    document_id = connector.document_id(file_id)
    indexed = await wait_for_document(gateway, document_id, version=1, title="tides.txt")
    metadata = indexed["metadata"]
    assert (metadata["provider"], metadata["item_id"]) == ("box", file_id)
    assert metadata["source_uri"] == f"{box.api_url}/files/{file_id}" and metadata["path"].endswith("/tides.txt")
    assert metadata["author"] == box.user.login and f"user:{box.user.login}" in json.loads(metadata["permissions"])
    await wait_until_cited(gateway, TIDES_QUESTION, document_id)

    box.edit(file_id, TIDES_EDITED.encode())  # a new file version: FILE.UPLOADED again
    await delivered(box)
    await wait_for_document(gateway, document_id, version=2)
    box.rename(file_id, "tide-gauge.txt")
    await delivered(box)
    # The title comes with the registration, which may land after the pipeline's status for the version.
    await wait_for_document(gateway, document_id, version=3, title="tide-gauge.txt")

    box.trash(file_id)
    await delivered(box)
    await wait_for_document(gateway, document_id, {"deleted"})
    await wait_until_cited(gateway, TIDES_QUESTION, document_id, cited=False)
    box.restore(file_id)
    await delivered(box)
    await wait_for_document(gateway, document_id, version=4)  # a restore is a new version
    await wait_until_cited(gateway, TIDES_QUESTION, document_id)


async def test_forged_stale_replayed_and_retried_deliveries_publish_nothing_new(
    gateway: httpx.AsyncClient,
    kafka_admin: KafkaSettings,
    system: LocalServices,
    box_app: BoxStandin,
    connector: BoxConnector,
) -> None:
    box = box_app
    file_id = box.upload("pier.txt", b"The Ketter Point pier is 312 metres long.", connector.folder_id)
    original = await delivered(box)
    document_id = connector.document_id(file_id)
    await wait_for_document(gateway, document_id, version=1)

    replayed = await sent(box.replay(original))  # byte for byte: same BOX-DELIVERY-ID and signatures
    (retried,) = await sent(box.redeliver(original))  # Box's retry: new BOX-DELIVERY-ID, the same event id
    assert (replayed.status, retried.status) == (200, 200)  # answered so Box stops, but not handed on
    assert retried.delivery_id != original.delivery_id and event_id(retried) == event_id(original)
    (forged,) = await sent(box.deliver("FILE.UPLOADED", file_id, forged=True))
    (stale,) = await sent(box.deliver("FILE.UPLOADED", file_id, stale_by=timedelta(minutes=11)))
    assert (forged.status, stale.status) == (401, 401)

    keys = box.sender.primary_key, box.sender.secondary_key
    box.set_signature_keys(None, keys[1])  # mid-rotation: only the secondary key signs
    try:
        box.edit(file_id, b"The Ketter Point pier was extended to 340 metres.")
        rotated = await delivered(box)
    finally:
        box.set_signature_keys(*keys)
    assert "BOX-SIGNATURE-PRIMARY" not in rotated.headers
    # Version 2, not 3: the edit came after the replay and the retry on the connector's partition.
    await wait_for_document(gateway, document_id, version=2)

    notified = await notified_ids(kafka_admin, connector.connector_id)
    assert notified.count(f"box-event-{event_id(original)}") == 1
    assert not {f"box-event-{event_id(forged)}", f"box-event-{event_id(stale)}"} & set(notified)
    rejected = await audited(system, "connector.notification.rejected", connector.connector_id)
    assert sorted(entry["details"]["reason"] for entry in rejected) == ["bad_signature", "stale_timestamp"]
    duplicates = await audited(system, "connector.notification.duplicate", connector.connector_id)
    assert len(duplicates) == 2


async def test_a_lost_delivery_is_repaired_from_the_event_stream(
    gateway: httpx.AsyncClient, kafka_admin: KafkaSettings, box_app: BoxStandin, connector: BoxConnector
) -> None:
    box = box_app
    # Once the first scheduled poll and a delivery after it are handled, only a later poll can find the lost file.
    await wait_until(lambda: polls_since(kafka_admin, connector.connector_id, EPOCH), "the first poll")
    heard_at = datetime.now(UTC)
    heard = box.upload("harbour.txt", b"The Ketter Point harbour master is Edda Lunde.", connector.folder_id)
    await delivered(box)
    await wait_for_document(gateway, connector.document_id(heard), version=1)

    box.drop_deliveries(1)
    file_id = box.upload("buoys.txt", b"Ketter Point has nine yellow buoys marking the channel.", connector.folder_id)
    assert await box.settled() == []  # Box never sent it

    await wait_for_document(gateway, connector.document_id(file_id), version=1, timeout_s=POLL_REPAIR_S)
    assert not [a for a in box.attempts if json.loads(a.body)["source"]["id"] == file_id]
    # What read the event stream: a poll published after the heard file's delivery (not necessarily after the
    # lost upload: one published just before it may be consumed after it). Polls and deliveries share the
    # connector's partition, so a poll published before that delivery was consumed before it, too early to help.
    assert await polls_since(kafka_admin, connector.connector_id, heard_at)


async def polls_since(kafka: KafkaSettings, connector_id: str, since: datetime) -> list[Notified] | None:
    """The scheduler's POLL events for the connector published since `since` (None: none yet)."""
    polls = await published_notifications(kafka, TENANT, connector_id, kind=Notified.POLL)
    return [poll for poll in polls if poll.received_at.ToDatetime(tzinfo=UTC) >= since] or None


async def audited(system: LocalServices, action: str, connector_id: str) -> list[dict[str, Any]]:
    """The connector's audit entries of `action` in the tenant's log, read with the admin credential."""
    return await audit_entries(system.gateway_url, ADMIN_TOKEN, TENANT, action=action, resource=connector_id)


async def test_no_credential_reached_a_service_log(box_app: BoxStandin, system: LocalServices) -> None:
    """Last in the module: the service logs (one file per service under system.log_dir) hold none of the
    credentials the tests above put in play: client secret, both signature keys, access tokens and the tokens of
    pre-signed download links."""
    known = box_app.known_secrets()
    assert any(name.startswith("issued token") for name in known), "run with the tests above: they sync files"
    logs = {path.name: path.read_text(errors="replace") for path in sorted(system.log_dir.glob("*.log"))}
    assert logs, f"no service logs under {system.log_dir}"
    assert [f"{name} in {log}" for name, secret in known.items() for log, text in logs.items() if secret in text] == []
