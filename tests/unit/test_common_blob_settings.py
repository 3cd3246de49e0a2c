"""BlobStoreSettings: one unprefixed BLOB_* block that every service reads the same way."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ragstream_common.blob_settings import BlobStoreSettings
from ragstream_common.blobs import PostgresBlobStore, build_blob_store
from ragstream_common.config import load_settings
from ragstream_gateway.config import GatewaySettings
from ragstream_ingest.config import IngestSettings

pytestmark = pytest.mark.unit

BLOB_VARIABLES = ("BLOB_STORE", "BLOB_S3_BUCKET", "BLOB_S3_PREFIX", "BLOB_S3_ENDPOINT_URL", "BLOB_S3_REGION")


@pytest.fixture(autouse=True)
def no_blob_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BLOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_postgres_is_the_default() -> None:
    settings = BlobStoreSettings()
    assert (settings.store, settings.s3_bucket, settings.s3_prefix) == ("postgres", None, "")
    assert (settings.s3_endpoint_url, settings.s3_region) == (None, None)


def test_gateway_and_ingest_read_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "BLOB_STORE": "s3",
        "BLOB_S3_BUCKET": "blobs",
        "BLOB_S3_PREFIX": "raw/",
        "BLOB_S3_ENDPOINT_URL": "http://minio:9000",
        "BLOB_S3_REGION": "eu-west-3",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # The old per-service names are no longer read.
    monkeypatch.setenv("GATEWAY_S3_BUCKET", "stale")
    monkeypatch.setenv("INGEST_S3_BUCKET", "stale")
    expected = BlobStoreSettings(
        store="s3", s3_bucket="blobs", s3_prefix="raw/", s3_endpoint_url="http://minio:9000", s3_region="eu-west-3"
    )
    assert GatewaySettings().blobs == expected
    assert IngestSettings().blobs == expected


def test_s3_without_bucket_is_an_error_on_the_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOB_STORE", "s3")
    with pytest.raises(ValidationError) as raised:
        BlobStoreSettings()
    [error] = raised.value.errors()
    assert error["loc"] == ("s3_bucket",)
    assert "BLOB_S3_BUCKET" in error["msg"]


@pytest.mark.parametrize("settings_cls", [GatewaySettings, IngestSettings])
def test_load_settings_names_the_blob_variable(
    settings_cls: type[GatewaySettings | IngestSettings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BLOB_STORE", "s3")
    monkeypatch.setenv("BLOB_S3_BUCKET", "")
    with pytest.raises(SystemExit) as exited:
        load_settings(settings_cls)
    assert exited.value.code == 2
    assert "  BLOB_S3_BUCKET: Value error, BLOB_STORE=s3 needs" in capsys.readouterr().err


def test_load_settings_names_an_unknown_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BLOB_STORE", "gcs")
    with pytest.raises(SystemExit):
        load_settings(GatewaySettings)
    assert "  BLOB_STORE: Input should be 'postgres' or 's3' (got 'gcs')" in capsys.readouterr().err


def test_factory_builds_postgres_over_the_pool_and_refuses_without_one() -> None:
    pool = object()
    store = build_blob_store(BlobStoreSettings(), pool)  # type: ignore[arg-type]  # never touched at build time
    assert isinstance(store, PostgresBlobStore)
    with pytest.raises(ValueError, match="needs a database pool"):
        build_blob_store(BlobStoreSettings(), None)
