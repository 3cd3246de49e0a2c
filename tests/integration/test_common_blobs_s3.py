"""The S3 blob store, built from the environment by the gateway and by ingest, against a real S3 API.

moto's server mode (`moto.server.ThreadedMotoServer`) is "a stand-alone server mode [that] allows you to use
Moto with any of the official AWS SDK's": it serves the S3 REST API over HTTP on 127.0.0.1, so boto3 signs,
sends and parses real requests (https://docs.getmoto.org/en/latest/docs/server_mode.html, source
getmoto/moto docs/docs/server_mode.rst). The bucket sits behind a custom endpoint in a non-default region
(eu-west-3), the setup where a service that ignores BLOB_S3_ENDPOINT_URL or BLOB_S3_REGION writes where the
other cannot read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import boto3
import pytest
from moto.server import ThreadedMotoServer
from ragstream_common.blobs import BlobStore, build_blob_store
from ragstream_gateway.config import GatewaySettings
from ragstream_ingest.adapters.content import BlobTooLargeError, UriContentSource
from ragstream_ingest.config import IngestSettings

pytestmark = pytest.mark.integration

REGION: Final = "eu-west-3"
BUCKET = "ragstream-blobs-test"
PREFIX = "raw/"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with BUCKET created in REGION."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    admin.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    assert admin.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == REGION
    yield endpoint
    server.stop()


@pytest.fixture
def s3_environment(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The variables a deployment sets for every service (one set, unprefixed), plus dummy credentials."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        **CREDENTIALS,
        "BLOB_STORE": "s3",
        "BLOB_S3_BUCKET": BUCKET,
        "BLOB_S3_PREFIX": PREFIX,
        "BLOB_S3_ENDPOINT_URL": s3_endpoint,
        "BLOB_S3_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


def gateway_store() -> BlobStore:
    """What the gateway's `open_deps` builds (S3 needs no pool)."""
    return build_blob_store(GatewaySettings().blobs, None)


def ingest_store() -> BlobStore:
    """What ingest's `start` builds."""
    return build_blob_store(IngestSettings().blobs, None)


@pytest.mark.usefixtures("s3_environment")
async def test_ingest_reads_what_the_gateway_wrote() -> None:
    data = b"# Runbook\n\nRestart the consumer group after a deploy.\n"
    uri = await gateway_store().put("acme", "doc-1/v1", data, "text/markdown")
    assert uri == "blob://doc-1/v1"

    blob = await ingest_store().get("acme", "doc-1/v1")
    assert blob is not None
    assert (blob.data, blob.content_type, blob.sha256) == (data, "text/markdown", hashlib.sha256(data).hexdigest())

    settings = IngestSettings()
    source = UriContentSource(
        ingest_store(),
        timeout_s=settings.fetch_timeout_s,
        max_bytes=settings.fetch_max_bytes,
        allow_private_networks=False,
    )
    content = await source.read("acme", uri)
    assert (content.data, content.content_type) == (data, "text/markdown")


async def test_objects_live_under_prefix_and_tenant_in_the_configured_bucket(s3_environment: str) -> None:
    await gateway_store().put("acme", "doc-2/v1", b"where am I", "text/plain")
    client = boto3.client("s3", endpoint_url=s3_environment, region_name=REGION)
    stored = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}acme/doc-2/v1")
    assert stored["Body"].read() == b"where am I"


@pytest.mark.usefixtures("s3_environment")
async def test_the_same_key_in_two_tenants_names_two_objects() -> None:
    store = gateway_store()
    await store.put("acme", "shared/key", b"acme's bytes", "text/plain")
    await store.put("globex", "shared/key", b"globex's bytes", "application/pdf")

    reader = ingest_store()
    acme, globex = await reader.get("acme", "shared/key"), await reader.get("globex", "shared/key")
    assert acme is not None and globex is not None
    assert (acme.data, acme.content_type) == (b"acme's bytes", "text/plain")
    assert (globex.data, globex.content_type) == (b"globex's bytes", "application/pdf")
    assert await reader.get("initech", "shared/key") is None


@pytest.mark.usefixtures("s3_environment")
async def test_delete_removes_only_that_tenants_object_and_missing_keys_read_as_none() -> None:
    store = gateway_store()
    await store.put("acme", "doc-3/v1", b"short-lived", "text/plain")
    await store.put("globex", "doc-3/v1", b"stays", "text/plain")

    await store.delete("acme", "doc-3/v1")

    reader = ingest_store()
    assert await reader.get("acme", "doc-3/v1") is None
    remaining = await reader.get("globex", "doc-3/v1")
    assert remaining is not None and remaining.data == b"stays"
    assert await reader.get("acme", "never-written") is None


async def test_put_file_uploads_a_large_file_in_parts(tmp_path: Path, s3_environment: str) -> None:
    """12 MiB is over boto3's 8 MiB multipart threshold: a managed multipart upload, read back whole by ingest."""
    data = os.urandom(12 * 1024 * 1024 + 7)
    path = tmp_path / "large.pdf"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    assert await gateway_store().put_file("acme", "large/v1", path, "application/pdf") == "blob://large/v1"

    client = boto3.client("s3", endpoint_url=s3_environment, region_name=REGION)
    head = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}acme/large/v1")
    assert head["Metadata"] == {"sha256": digest} and head["ContentType"] == "application/pdf"
    assert "-" in head["ETag"]  # a multipart upload's ETag: "<md5 of part md5s>-<parts>"

    reader = ingest_store()
    assert await reader.size("acme", "large/v1") == len(data)
    assert await reader.size("acme", "never-written") is None
    assert await reader.size("globex", "large/v1") is None
    blob = await reader.get("acme", "large/v1")
    assert blob is not None and blob.sha256 == digest and hashlib.sha256(blob.data).hexdigest() == digest


@pytest.mark.usefixtures("s3_environment")
async def test_ingest_refuses_an_s3_blob_over_the_limit() -> None:
    await gateway_store().put("acme", "doc-4/v1", b"x" * 2048, "text/plain")
    settings = IngestSettings()
    source = UriContentSource(
        ingest_store(),
        timeout_s=settings.fetch_timeout_s,
        max_bytes=settings.fetch_max_bytes,
        allow_private_networks=False,
        max_blob_bytes=1024,
    )
    with pytest.raises(BlobTooLargeError, match="2048 bytes"):
        await source.read("acme", "blob://doc-4/v1")
