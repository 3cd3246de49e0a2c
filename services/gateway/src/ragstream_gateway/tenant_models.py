"""HTTP bodies of the admin API's tenants: the Kafka credentials shown once, a created tenant, the tenant listing."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ragstream_gateway.models import TenantView
from ragstream_gateway.tenant_kafka import KafkaCredentials


class KafkaTopicsView(BaseModel):
    documents: str = Field(description="Write DocumentReceived, DocumentUpdated, DocumentDeleted here")
    queries: str = Field(description="Write QueryRequested here (reply_to is ignored)")
    answers: str = Field(description="Read AnswerProduced for your Kafka queries here, keyed by query id")


class KafkaCredentialsView(BaseModel):
    username: str = Field(description="SCRAM user, `tenant-<tenant_id>`")
    password: str = Field(description="The SCRAM password; shown only in this response")
    bootstrap_servers: str
    security_protocol: str
    sasl_mechanism: str
    topics: KafkaTopicsView
    group_prefix: str = Field(description="Consumer group ids must start with this")


class TenantCreated(TenantView):
    kafka: KafkaCredentialsView | None = Field(
        default=None, description="The tenant's Kafka credentials, shown once; null while Kafka provisioning is off"
    )


def credentials_view(credentials: KafkaCredentials) -> KafkaCredentialsView:
    """The one place a tenant's Kafka password leaves its SecretStr: the response that creates it."""
    return KafkaCredentialsView(
        username=credentials.username,
        password=credentials.password.get_secret_value(),
        bootstrap_servers=credentials.bootstrap_servers,
        security_protocol=credentials.security_protocol,
        sasl_mechanism=credentials.sasl_mechanism,
        topics=KafkaTopicsView(
            documents=credentials.documents_topic,
            queries=credentials.queries_topic,
            answers=credentials.answers_topic,
        ),
        group_prefix=credentials.group_prefix,
    )


class TenantListItem(TenantView):
    deleted: bool = Field(default=False, description="Offboarded (listed only with include_deleted=true)")


class TenantPage(BaseModel):
    items: list[TenantListItem] = Field(description="By tenant_id; the reserved `_platform` tenant is never listed")
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page; null at the end")
