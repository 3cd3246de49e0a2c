"""Where raw uploads live: one unprefixed set of BLOB_* variables shared by every service.

The gateway writes blobs and ingest reads them, so both must resolve `blob://<key>` against the same store;
a single settings block read from the same variables makes a mismatch (say, a MinIO endpoint or a
non-default region set for one service only) impossible. Services nest it as a field, e.g.
`blobs: BlobStoreSettings = Field(default_factory=BlobStoreSettings)`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BlobStoreSettings(BaseSettings):
    """BLOB_STORE, BLOB_S3_BUCKET, BLOB_S3_PREFIX, BLOB_S3_ENDPOINT_URL, BLOB_S3_REGION.

    S3 credentials come from the usual AWS environment (AWS_ACCESS_KEY_ID, a web identity token, ...).
    """

    model_config = SettingsConfigDict(env_prefix="BLOB_", extra="ignore", validate_default=True)

    store: Literal["postgres", "s3"] = "postgres"
    # Declared after `store`: the bucket check reads the already validated store.
    s3_bucket: str | None = None
    # Prepended to `<tenant_id>/<key>`, e.g. "raw/".
    s3_prefix: str = ""
    # An S3-compatible server (MinIO, a local test server); None means AWS itself.
    s3_endpoint_url: str | None = None
    # None falls back to AWS_REGION / AWS_DEFAULT_REGION / the AWS config file.
    s3_region: str | None = None

    @field_validator("s3_bucket")
    @classmethod
    def _s3_needs_bucket(cls, bucket: str | None, info: ValidationInfo) -> str | None:
        # A field (not model) validator, so the error's location names BLOB_S3_BUCKET.
        if info.data.get("store") == "s3" and not bucket:
            raise ValueError("BLOB_STORE=s3 needs the bucket name in BLOB_S3_BUCKET")
        return bucket or None
