"""GraphProvider paths the honest stand-in never takes: a delta link to another host, an empty page with a next
link, a page with no link at all, and a connector missing its settings. Responses are scripted with
httpx.MockTransport (in memory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from ragstream_connectors.providers.base import ConnectorContext, ProviderError
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.graph import GraphProvider, build
from ragstream_connectors.providers.http import RetryPolicy

pytestmark = pytest.mark.unit

API = "https://graph.test/v1.0"
ENDPOINTS = ProviderEndpoints(graph_api_url=API, microsoft_login_url="https://login.test")
CONFIG = {"tenant": "t", "client_id": "c", "drive_id": "b!d"}
SECRETS = {"client_secret": "s", "client_state": "state"}


def _context(config: dict[str, str] = CONFIG, secrets: dict[str, str] = SECRETS) -> ConnectorContext:
    return ConnectorContext("t1", "con_0123456789abcdef", "onedrive", config, secrets, "https://hooks.test/x")


def _provider(pages: list[dict[str, Any]]) -> tuple[GraphProvider, list[str]]:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "login.test":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        return httpx.Response(200, json=pages.pop(0))

    transport = httpx.MockTransport(answer)
    return GraphProvider(_context(), ENDPOINTS, policy=RetryPolicy(max_attempts=1), transport=transport), seen


async def _drain(provider: GraphProvider) -> list[Any]:
    try:
        return [page async for page in provider.changes(None)]
    finally:
        await provider.aclose()


async def test_a_next_link_to_another_host_is_refused_before_it_is_followed() -> None:
    provider, seen = _provider([{"value": [], "@odata.nextLink": "https://evil.test/v1.0/drives/x/root/delta?t=1"}])
    with pytest.raises(ProviderError) as refused:
        await _drain(provider)
    assert not refused.value.transient and not any("evil.test" in url for url in seen)


async def test_an_empty_page_with_a_next_link_ends_the_sync_there() -> None:
    link = f"{API}/drives/b!d/root/delta?token=later"
    provider, _ = _provider([{"value": [], "@odata.nextLink": link}])
    (page,) = await _drain(provider)
    assert page.final and page.cursor == link and page.changes == []


async def test_a_page_without_any_link_is_an_error() -> None:
    provider, _ = _provider([{"value": []}])
    with pytest.raises(ProviderError):
        await _drain(provider)


async def test_a_failing_permission_lookup_raises_the_provider_error_itself() -> None:
    files = [{"id": f"f{n}", "name": f"{n}.txt", "file": {}, "parentReference": {"id": "root"}} for n in range(3)]
    page = {"value": [{"id": "root", "root": {}, "folder": {}}, *files], "@odata.deltaLink": f"{API}/d?token=1"}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "login.test":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        if request.url.path.endswith("/permissions"):
            return httpx.Response(503, json={"error": {"code": "serviceNotAvailable"}})
        return httpx.Response(200, json=page)

    transport = httpx.MockTransport(answer)
    provider = GraphProvider(_context(), ENDPOINTS, policy=RetryPolicy(max_attempts=1), transport=transport)
    with pytest.raises(ProviderError) as failed:
        await _drain(provider)
    assert failed.value.transient


@pytest.mark.parametrize(
    "make",
    [
        lambda: _context(config={"tenant": "t", "client_id": "c"}),
        lambda: _context(secrets={"client_secret": "s"}),
    ],
)
def test_a_connector_without_its_settings_cannot_be_built(make: Callable[[], ConnectorContext]) -> None:
    with pytest.raises(ProviderError) as refused:
        build(make(), ENDPOINTS)
    assert not refused.value.transient
