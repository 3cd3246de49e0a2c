"""Blob URIs, and the S3 adapter against botocore's Stubber (S3 itself is production-only)."""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from ragstream_common.blobs import S3BlobStore, blob_key_of, blob_uri

pytestmark = pytest.mark.unit


def test_blob_uris_round_trip() -> None:
    assert blob_uri("doc/abc") == "blob://doc/abc"
    assert blob_key_of("blob://doc/abc") == "doc/abc"
    for bad in ("s3://x", "blob://", "https://example.com"):
        with pytest.raises(ValueError):
            blob_key_of(bad)


async def test_s3_store_keys_objects_per_tenant() -> None:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    store = S3BlobStore("bucket", prefix="raw/", client=client)
    with Stubber(client) as stub:
        stub.add_response(
            "put_object",
            {},
            {
                "Bucket": "bucket",
                "Key": "raw/acme/doc/abc",
                "Body": b"data",
                "ContentType": "text/plain",
                "Metadata": {"sha256": "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"},
            },
        )
        body = StreamingBody(io.BytesIO(b"data"), 4)
        stub.add_response(
            "get_object",
            {"Body": body, "ContentType": "text/plain", "Metadata": {"sha256": "h"}},
            {"Bucket": "bucket", "Key": "raw/acme/doc/abc"},
        )
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        stub.add_response("delete_object", {}, {"Bucket": "bucket", "Key": "raw/acme/doc/abc"})
        assert await store.put("acme", "doc/abc", b"data", "text/plain") == "blob://doc/abc"
        blob = await store.get("acme", "doc/abc")
        assert blob is not None and (blob.data, blob.content_type, blob.sha256) == (b"data", "text/plain", "h")
        assert await store.get("acme", "doc/missing") is None
        await store.delete("acme", "doc/abc")
        stub.assert_no_pending_responses()
