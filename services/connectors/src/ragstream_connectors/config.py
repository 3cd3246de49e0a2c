"""Connectors worker settings (env prefix CONNECTORS_; the blob store reads the shared BLOB_*, the secret envelope
the shared SECRETS_*, and provider endpoints nest as CONNECTORS_ENDPOINTS__<NAME>)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict
from ragstream_common.blob_settings import BlobStoreSettings
from ragstream_common.config import ServiceSettings
from ragstream_common.registry import GATEWAY_HTTP_PORT, SERVICES
from ragstream_common.secret_settings import SecretsSettings

from ragstream_connectors.providers.endpoints import ProviderEndpoints


class ConnectorsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONNECTORS_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "connectors"
    grpc_port: int = Field(default=SERVICES["connectors"].grpc_port, ge=0, le=65535)
    metrics_port: int = Field(default=SERVICES["connectors"].metrics_port, ge=0, le=65535)
    group_id: str = "ragstream-connectors"
    max_batch: int = Field(default=64, ge=1, le=1024)
    # How long a batch waits to fill once one event is in: notifications of one burst share one sync.
    batch_wait_ms: int = Field(default=200, ge=0, le=10_000)
    # A full enumeration or a large download can hold a batch for long; the group must not evict us meanwhile.
    max_poll_interval_s: float = Field(default=1800.0, ge=60)
    # The periodic delta/changes poll that repairs missed notifications.
    poll_interval_s: float = Field(default=900.0, ge=10)
    # A provider still unavailable after its retries (network, 5xx, throttling) is polled again this soon; the
    # event is not retried in place, so one provider's outage never holds other connectors' work.
    provider_retry_s: float = Field(default=60.0, ge=1)
    # How often due polls and renewals are looked for; 0 turns this replica's scheduler off (another one runs it).
    scheduler_interval_s: float = Field(default=30.0, ge=0)
    # Renew subscriptions and watch channels this long before they expire.
    renew_before_s: float = Field(default=86400.0, ge=60)
    max_file_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    # Where downloads are streamed before they go to the blob store; empty: the system's temporary directory.
    download_dir: Path | None = None
    # The gateway's public address; a connector's webhook URL is `<base>/v1/webhooks/<connector id>`. The
    # gateway's own GATEWAY_PUBLIC_BASE_URL is read too, so one variable can serve both.
    webhook_base_url: str = Field(
        default=f"http://localhost:{GATEWAY_HTTP_PORT}",
        validation_alias=AliasChoices("CONNECTORS_WEBHOOK_BASE_URL", "GATEWAY_PUBLIC_BASE_URL"),
    )
    # Provider API addresses (CONNECTORS_ENDPOINTS__GRAPH_API_URL, ...): tests point them at stand-ins.
    endpoints: ProviderEndpoints = Field(default_factory=ProviderEndpoints)
    # Shared with the gateway (unprefixed BLOB_*): ingest reads what this worker writes.
    blobs: BlobStoreSettings = Field(default_factory=BlobStoreSettings)
    # Shared with the gateway (unprefixed SECRETS_*): the worker opens what the gateway sealed.
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
