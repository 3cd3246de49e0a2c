"""The Ragstream services, registered once: name, package, ports, gRPC services, Kafka groups, common extras.

Python reads ports and names from here (service settings defaults, devstack, the container healthcheck).
Files that cannot import Python (docker-compose.yml, infra/k8s, infra/istio, services/Dockerfile, docs) keep
their own copies, and tests/unit/test_infra_*.py check those copies against this registry.
docs/adding-a-service.md is the checklist for a new entry. Pure data: standard library only, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

# The gateway's public HTTP API: the one port outside the mesh (its /metrics has a listener of its own).
GATEWAY_HTTP_PORT = 8080
GATEWAY_METRICS_PORT = 9100

# Optional dependency groups of ragstream-common (libs/common/pyproject.toml) a service may need.
CommonExtra = Literal["postgres", "s3", "msk", "text", "kafka-admin"]


@dataclass(frozen=True)
class ConsumerGroup:
    """One Kafka consumer group of a service and the topics (kafka/topics.py names) it reads."""

    group_id: str
    topics: tuple[str, ...]
    # Topics read by pattern instead (each tenant's intake topics, kafka/tenant_topics.py INTAKE_PATTERN): they
    # appear and go with the tenants, so their ACLs are granted per tenant, not from this registry.
    topic_pattern: str = ""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    grpc_port: int
    # Where Prometheus scrapes /metrics: every service's own listener (`<NAME>_METRICS_PORT`).
    metrics_port: int
    # The public HTTP API (the gateway only); it never serves /metrics.
    http_port: int | None = None
    # Fully-qualified gRPC services besides grpc.health.v1.Health, which every service serves.
    grpc_services: tuple[str, ...] = ()
    consumer_groups: tuple[ConsumerGroup, ...] = ()
    # Extras of ragstream-common the service's pyproject depends on.
    common_extras: frozenset[CommonExtra] = field(default_factory=frozenset)

    @property
    def package(self) -> str:
        """The import package, `ragstream_<name>`."""
        return f"ragstream_{self.name}"

    @property
    def distribution(self) -> str:
        """The workspace member's project name, also its console script: `ragstream-<name>`."""
        return f"ragstream-{self.name}"

    @property
    def env_prefix(self) -> str:
        """The prefix of its settings: `<NAME>_GRPC_PORT`, ..."""
        return f"{self.name.upper()}_"

    @property
    def has_metrics_listener(self) -> bool:
        """True when /metrics has a port of its own (`<NAME>_METRICS_PORT`) rather than the HTTP API's."""
        return self.metrics_port != self.http_port

    @property
    def needs_postgres(self) -> bool:
        return "postgres" in self.common_extras

    @property
    def needs_s3(self) -> bool:
        return "s3" in self.common_extras


# Start order for local runs: the gateway last, once the workers it calls are up.
_SPECS = (
    ServiceSpec(
        "ingest",
        grpc_port=50051,
        metrics_port=9101,
        consumer_groups=(ConsumerGroup("ragstream-ingest", ("rag.documents.received.v1",)),),
        common_extras=frozenset({"postgres", "s3"}),
    ),
    ServiceSpec(
        "embed",
        grpc_port=50052,
        metrics_port=9102,
        grpc_services=("rag.v1.EmbedService",),
        consumer_groups=(
            ConsumerGroup("ragstream-embed-chunks", ("rag.chunks.ready.v1",)),
            ConsumerGroup("ragstream-embed-queries", ("rag.queries.requested.v1",)),
        ),
        common_extras=frozenset({"postgres"}),
    ),
    ServiceSpec(
        "retrieve",
        grpc_port=50053,
        metrics_port=9103,
        grpc_services=("rag.v1.RetrieveService",),
        consumer_groups=(
            ConsumerGroup("ragstream-retrieve-indexer", ("rag.chunks.embedded.v1",)),
            ConsumerGroup("ragstream-retrieve-queries", ("rag.queries.embedded.v1",)),
        ),
        common_extras=frozenset({"postgres", "text"}),
    ),
    ServiceSpec(
        "generate",
        grpc_port=50054,
        metrics_port=9104,
        grpc_services=("rag.v1.GenerateService",),
        consumer_groups=(ConsumerGroup("ragstream-generate", ("rag.queries.retrieved.v1",)),),
        common_extras=frozenset({"text"}),
    ),
    ServiceSpec(
        "connectors",
        grpc_port=50055,
        metrics_port=9105,
        # Document management systems (connectors.md): provider calls, content downloads, sync state.
        consumer_groups=(ConsumerGroup("ragstream-connectors", ("rag.connectors.notified.v1",)),),
        common_extras=frozenset({"postgres", "s3"}),
    ),
    ServiceSpec(
        "metering",
        grpc_port=50056,
        metrics_port=9106,
        # Usage per tenant and minute (faust-streaming windows) into Postgres; docs/observability.md.
        consumer_groups=(ConsumerGroup("ragstream-metering", ("rag.usage.recorded.v1",)),),
        common_extras=frozenset({"postgres"}),
    ),
    ServiceSpec(
        "gateway",
        grpc_port=50050,
        metrics_port=GATEWAY_METRICS_PORT,
        http_port=GATEWAY_HTTP_PORT,
        # Workers dial it back at the pod holding the query (QueryRequested.reply_to), not through a Service.
        grpc_services=("rag.v1.ReplyService",),
        consumer_groups=(
            ConsumerGroup("ragstream-gateway-status", ("rag.documents.status.v1",)),
            ConsumerGroup("ragstream-gateway-registry", ("rag.documents.received.v1",)),
            # The intake bridge: tenants' own topics onto the internal ones, the tenant taken from the topic name.
            ConsumerGroup(
                "ragstream-gateway-intake",
                (),
                topic_pattern=r"^rag\.tenant\.[A-Za-z0-9._-]{1,64}\.(documents|queries)\.v1$",
            ),
        ),
        common_extras=frozenset({"postgres", "s3", "kafka-admin"}),
    ),
)

SERVICES: Mapping[str, ServiceSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
SERVICE_NAMES: tuple[str, ...] = tuple(SERVICES)


def service_spec(name: str) -> ServiceSpec:
    """The registered service called `name`; ValueError naming the registered ones otherwise."""
    try:
        return SERVICES[name]
    except KeyError:
        raise ValueError(f"unknown service {name!r}; registered services: {', '.join(SERVICE_NAMES)}") from None
