"""Gateway settings (env prefix GATEWAY_; KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, OTEL_* and BLOB_* are unprefixed)."""

from __future__ import annotations

from typing import Annotated

from limits import parse_many
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from ragstream_common.blob_settings import BlobStoreSettings
from ragstream_common.config import ServiceSettings, bind_host
from ragstream_common.grpc_server import GrpcTlsSettings
from ragstream_common.registry import GATEWAY_HTTP_PORT, SERVICES
from ragstream_common.service_tokens import TokenSettings

from ragstream_gateway.admission import AdmissionSettings

MIB = 1024 * 1024


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    host: str = Field(default_factory=bind_host)
    port: int = Field(default=GATEWAY_HTTP_PORT, ge=0, le=65535)
    # ReplyService (query answers delivered by the workers) listens here.
    grpc_port: int = Field(default=SERVICES["gateway"].grpc_port, ge=0, le=65535)
    # Comma-separated proxy addresses whose X-Forwarded-For is trusted (uvicorn), e.g. the ingress.
    forwarded_allow_ips: str = "127.0.0.1"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Bootstrap credential for /v1/admin; the admin API is disabled while unset.
    admin_token: SecretStr | None = None
    # Local development: this tenant and key are provisioned at startup when both are set.
    dev_tenant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    dev_api_key: SecretStr | None = None

    # limits notation; a tenant's own `rate_limit` replaces it.
    default_rate_limit: str = "600/minute"
    rate_limit_storage: str = "async+memory://"

    max_upload_bytes: int = Field(default=25 * MIB, ge=1)
    # JSON text up to this size travels inside the event; larger content goes through the blob store.
    inline_text_max_bytes: int = Field(default=256 * 1024, ge=0)
    # How long a request waits for Kafka to acknowledge its event before answering 503.
    publish_timeout_s: float = Field(default=10.0, gt=0)
    # A question Kafka has not taken within this is answered 503 at once (broker down), not at its deadline.
    query_publish_timeout_s: float = Field(default=2.0, gt=0)

    # Shared with ingest (unprefixed BLOB_* variables): the gateway writes where ingest reads.
    blobs: BlobStoreSettings = Field(default_factory=BlobStoreSettings)
    # GATEWAY_ADMISSION_MAX_IN_FLIGHT / _RETRY_AFTER_S: questions in flight before 503 + Retry-After.
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)

    # host:port the workers use to reach this instance's ReplyService (its pod or container address).
    reply_advertise_address: str = ""
    # Unprefixed TOKEN_*: the gateway mints tokens for API-key holders (POST /v1/auth/token) and verifies the
    # workers' ReplyService tokens; GRPC_TLS_* for the ReplyService outside a mesh.
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    grpc_tls: GrpcTlsSettings = Field(default_factory=GrpcTlsSettings)
    # Default deadline of a query when the request sets none.
    query_timeout_ms: int = Field(default=30_000, ge=1, le=120_000)

    db_pool_size: int = Field(default=8, ge=1, le=256)
    # The admin API's own login (ragstream_gateway_admin: tenants, API keys, audit reads) for a small second
    # pool; unset, admin routes use DATABASE_URL's login (which then needs those grants).
    admin_database_url: SecretStr | None = None
    # How long an API key's grant is reused without asking Postgres (0: ask on every request).
    key_cache_ttl_s: float = Field(default=5.0, ge=0, le=300)
    status_group_id: str = "ragstream-gateway-status"
    registry_group_id: str = "ragstream-gateway-registry"
    # The intake bridge (intake.py): tenants' intake topics onto the internal ones. It sees a new tenant's topics
    # within one metadata refresh.
    intake_group_id: str = "ragstream-gateway-intake"
    intake_metadata_max_age_ms: int = Field(default=3000, ge=100)

    # Tenant provisioning (admin API) creates tenants' topics, SCRAM users and ACLs as `ragstream-provisioner`;
    # while unset, tenants get no Kafka access (their Kafka routes answer 503).
    kafka_provisioner_username: str | None = None
    kafka_provisioner_password: SecretStr | None = None
    # What tenants are told to connect to, when their listener differs from the services' (KAFKA_BOOTSTRAP_SERVERS).
    kafka_tenant_bootstrap_servers: str = ""
    # Tenant topics are replicated like the internal ones (the topic bootstrap's variable).
    kafka_replication_factor: int = Field(default=1, ge=1, validation_alias=AliasChoices("KAFKA_REPLICATION_FACTOR"))

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("default_rate_limit")
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        parse_many(value)
        return value
