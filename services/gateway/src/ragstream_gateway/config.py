"""Gateway settings (env prefix GATEWAY_; KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, OTEL_* and BLOB_* are unprefixed)."""

from __future__ import annotations

from typing import Annotated

from limits import parse_many
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from ragstream_common.blob_settings import BlobStoreSettings
from ragstream_common.config import ServiceSettings, bind_host
from ragstream_common.grpc_server import GrpcTlsSettings
from ragstream_common.kafka.tenant_topics import check_tenant_id
from ragstream_common.registry import GATEWAY_HTTP_PORT, SERVICES
from ragstream_common.secret_settings import SecretsSettings
from ragstream_common.service_tokens import TokenSettings

from ragstream_gateway.admission import AdmissionSettings
from ragstream_gateway.allowlists import AllowlistSettings
from ragstream_gateway.document_metrics import OTHER_TENANTS
from ragstream_gateway.quotas import QuotaSettings
from ragstream_gateway.security import ADMIN_TOKEN_MIN_LENGTH
from ragstream_gateway.service_health import ServiceHealthSettings
from ragstream_gateway.usage import UsageSettings

MIB = 1024 * 1024


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    host: str = Field(default_factory=bind_host)
    port: int = Field(default=GATEWAY_HTTP_PORT, ge=0, le=65535)
    # ReplyService (query answers delivered by the workers) listens here.
    grpc_port: int = Field(default=SERVICES["gateway"].grpc_port, ge=0, le=65535)
    # Prometheus /metrics listens here, never on the API port (0: off).
    metrics_port: int = Field(default=SERVICES["gateway"].metrics_port, ge=0, le=65535)
    # Tenants with their own series in tenant-labelled gauges (ragstream_documents, document_metrics.py), comma
    # separated; every other tenant is summed under tenant_id="_other", which bounds the series.
    metrics_tenant_labels: Annotated[list[str], NoDecode] = Field(default_factory=list, max_length=1_000)
    # How often ragstream_documents is recounted (0: never; the gauge then stays empty).
    metrics_documents_refresh_s: float = Field(default=60.0, ge=0)
    # Proxies in front of the gateway that append to X-Forwarded-For (client_address.py): 0 = the socket peer is
    # the client; 2 behind the AWS load balancer and the Istio ingress (its numTrustedProxies must match).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=16)
    # /docs, /redoc and /openapi.json; off in production (the API reference ships with the docs instead).
    docs_enabled: bool = True
    # GATEWAY_ALLOWLIST_MIN_PREFIX_V4 / _V6: the widest allowlist range accepted without `force_allowlist`.
    allowlist: AllowlistSettings = Field(default_factory=AllowlistSettings)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How providers reach this API from outside (the load balancer's address): connectors' webhook URLs are
    # `<this>/v1/webhooks/<connector id>`.
    public_base_url: str = Field(default="http://localhost:8080", pattern=r"^https?://[^\s?#]+$", max_length=512)
    # Unprefixed SECRETS_*: the master key sealing connectors' secrets (ragstream_common.secret_envelope), shared
    # with the connectors worker. Without one (local provider, no SECRETS_MASTER_KEY) the connector API answers 503.
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)

    # Bootstrap admin credential (actor `admin`, at least 32 characters): full admin rights while set and enabled.
    # Production creates admin API keys with it, then sets GATEWAY_ADMIN_TOKEN_ENABLED=false (or unsets it).
    admin_token: SecretStr | None = None
    admin_token_enabled: bool = True
    # Requests per admin actor (the bootstrap token, each admin key), limits notation.
    admin_rate_limit: str = "300/minute"
    # Local development: this tenant and key are provisioned at startup when both are set.
    dev_tenant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    dev_api_key: SecretStr | None = None

    # limits notation; a tenant's own `rate_limit` replaces it.
    default_rate_limit: str = "600/minute"
    # Where rate limits and quota counters live (ratelimit.py): `async+memory://` (this process only) or
    # `redis://:<password>@host:6379/0` (`rediss://` for TLS), shared by every replica. A secret: it holds a password.
    rate_limit_storage: SecretStr = SecretStr("async+memory://")
    # Each API key's own limit, counted beside its tenant's: both must admit a request.
    key_rate_limit: str = "600/minute"
    # Requests with a missing or unknown API key, per client address; over it they are refused before any lookup.
    unknown_key_rate_limit: str = "60/minute"
    # When the store cannot be reached: false refuses with 503 + Retry-After (fail closed), true admits.
    rate_limit_fail_open: bool = False
    # How long one call to the store may take before it counts as down.
    rate_limit_timeout_s: float = Field(default=0.5, gt=0, le=10)
    # Verified webhook deliveries per connector per minute (webhook_intake.py); over it: 429 + Retry-After.
    connector_notifications_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    # GATEWAY_QUOTA_*: documents, stored bytes and questions per UTC day per tenant (quotas.py).
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    # GATEWAY_USAGE_*: unit prices (GATEWAY_USAGE_PRICE_<METRIC>), currency, range limits, budget gauge (usage.py).
    usage: UsageSettings = Field(default_factory=UsageSettings)

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
    # GATEWAY_SERVICE_HEALTH_*: where GET /v1/admin/health checks each worker's gRPC health (service_health.py).
    service_health: ServiceHealthSettings = Field(default_factory=ServiceHealthSettings)
    # Default deadline of a query when the request sets none.
    query_timeout_ms: int = Field(default=30_000, ge=1, le=120_000)

    db_pool_size: int = Field(default=8, ge=1, le=256)
    # The admin API's own login (ragstream_gateway_admin: tenants, API keys, audit reads) for a small second
    # pool; unset, admin routes use DATABASE_URL's login (which then needs those grants).
    admin_database_url: SecretStr | None = None
    # How long an API key's grant is reused without asking Postgres (0: ask on every request). Changes are pushed
    # (LISTEN/NOTIFY, adapters/key_events_pg.py); while that listener is disconnected grants live at most
    # key_cache_fallback_ttl_s instead. GATEWAY_KEY_EVENTS_ENABLED=false: no listener, grants live the full TTL.
    key_cache_ttl_s: float = Field(default=5.0, ge=0, le=300)
    key_events_enabled: bool = True
    key_cache_fallback_ttl_s: float = Field(default=1.0, ge=0, le=300)
    status_group_id: str = "ragstream-gateway-status"
    registry_group_id: str = "ragstream-gateway-registry"
    # The intake bridge (intake.py): tenants' intake topics onto the internal ones. It sees a new tenant's topics
    # within one metadata refresh.
    intake_group_id: str = "ragstream-gateway-intake"
    intake_metadata_max_age_ms: int = Field(default=3000, ge=100)

    # How long the audit trail's rows gather into one transaction. They are written after their response went
    # out, so no caller waits for this; rows a route writes before it answers are committed at once.
    audit_trail_commit_window_ms: int = Field(default=50, ge=0, le=1000)

    # The audit log's export to rag.security.events.v1 (audit_export.py): a relay on the admin login polls for
    # unpublished rows every interval; false: rows stay in Postgres only (another replica may still export them).
    audit_export_enabled: bool = True
    audit_export_interval_s: float = Field(default=1.0, gt=0, le=300)
    audit_export_batch: int = Field(default=500, ge=1, le=10_000)

    # Tenant provisioning (admin API) creates tenants' topics, SCRAM users and ACLs as `ragstream-provisioner`;
    # while unset, tenants get no Kafka access (their Kafka routes answer 503).
    kafka_provisioner_username: str | None = None
    kafka_provisioner_password: SecretStr | None = None
    # What tenants are told to connect to, when their listener differs from the services' (KAFKA_BOOTSTRAP_SERVERS).
    kafka_tenant_bootstrap_servers: str = ""
    # Tenant topics are replicated like the internal ones (the topic bootstrap's variable).
    kafka_replication_factor: int = Field(default=1, ge=1, validation_alias=AliasChoices("KAFKA_REPLICATION_FACTOR"))

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_admin_token_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("admin_token")
    @classmethod
    def _long_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < ADMIN_TOKEN_MIN_LENGTH:
            raise ValueError(f"must be at least {ADMIN_TOKEN_MIN_LENGTH} characters (e.g. `openssl rand -base64 32`)")
        return value

    @field_validator("admin_rate_limit")
    @classmethod
    def _valid_admin_limit(cls, value: str) -> str:
        parse_many(value)
        return value

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("metrics_tenant_labels", mode="before")
    @classmethod
    def _split_tenant_labels(cls, value: object) -> object:
        if isinstance(value, str):
            return [tenant.strip() for tenant in value.split(",") if tenant.strip()]
        return value

    @field_validator("metrics_tenant_labels")
    @classmethod
    def _tenant_ids_only(cls, value: list[str]) -> list[str]:
        for tenant_id in value:
            check_tenant_id(tenant_id)
            if tenant_id == OTHER_TENANTS:
                raise ValueError(f"{OTHER_TENANTS!r} is the label of the unlisted tenants' sum")
        return value

    @field_validator("default_rate_limit", "key_rate_limit", "unknown_key_rate_limit")
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        parse_many(value)
        return value
