"""One `Provider` per connector type: SharePoint and OneDrive speak Microsoft Graph, then Box, Google Drive and
generic webhooks. Provider modules are imported when first needed, so a worker that only serves some types never
loads the others."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragstream_common.events import PermanentError

from ragstream_connectors.providers.base import ConnectorContext, Provider
from ragstream_connectors.providers.endpoints import ProviderEndpoints

if TYPE_CHECKING:
    import httpx

    from ragstream_connectors.providers.http import RetryPolicy

PROVIDERS = ("sharepoint", "onedrive", "box", "gdrive", "webhook")


def build_provider(
    context: ConnectorContext,
    endpoints: ProviderEndpoints,
    *,
    policy: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    """The provider for `context.provider`; PermanentError for a type this worker does not know."""
    kind = context.provider
    if kind in ("sharepoint", "onedrive"):
        from ragstream_connectors.providers import graph

        return graph.build(context, endpoints, policy=policy, transport=transport)
    if kind == "box":
        from ragstream_connectors.providers import box

        return box.build(context, endpoints, policy=policy, transport=transport)
    if kind == "gdrive":
        from ragstream_connectors.providers import drive

        return drive.build(context, endpoints, policy=policy, transport=transport)
    if kind == "webhook":
        from ragstream_connectors.providers import webhook

        return webhook.build(context, endpoints, policy=policy, transport=transport)
    raise PermanentError(f"unknown connector type {kind!r}")
