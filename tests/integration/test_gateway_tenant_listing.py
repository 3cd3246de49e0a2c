"""The tenant listing (GET /v1/admin/tenants) against real Postgres, as the gateway's admin login: row-level security
keeps that login to one tenant per transaction, so the listing goes through migration 0015's definer function;
keyset pages by tenant_id, `_platform` never listed, deleted tenants only when asked for."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from ragstream_common.db import create_pool
from ragstream_gateway.adapters.tenant_admin_pg import encode_tenant_cursor
from ragstream_gateway.adapters.tenants_pg import PostgresTenantDirectory
from ragstream_gateway.ports import TenantRecord, TenantUpdate

pytestmark = pytest.mark.integration
PREFIX = f"tl-{uuid.uuid4().hex[:8]}-"


@pytest.fixture(scope="module")
async def directory(service_database_urls: dict[str, str]) -> AsyncIterator[PostgresTenantDirectory]:
    """Three tenants of this run (`c` deleted), made through the admin login as the admin API makes them."""
    gateway = create_pool(service_database_urls["gateway"], max_size=2, name="tenant-listing-gateway")
    admin = create_pool(service_database_urls["gateway-admin"], max_size=2, name="tenant-listing-admin")
    await gateway.open(wait=True)
    await admin.open(wait=True)
    tenants = PostgresTenantDirectory(gateway, admin)
    for suffix in ("a", "b", "c"):
        await tenants.create_tenant(PREFIX + suffix, f"Tenant {suffix}", "5/second" if suffix == "a" else None, ())
    await tenants.update_tenant(PREFIX + "c", TenantUpdate(disabled=True, deleted=True))
    yield tenants
    await admin.close()
    await gateway.close()


async def ours(directory: PostgresTenantDirectory, limit: int, include_deleted: bool) -> list[list[TenantRecord]]:
    """This run's tenants, page by page, from just before them (other tests' tenants share the database)."""
    pages, cursor = [], encode_tenant_cursor(PREFIX)
    while cursor is not None:
        listing = await directory.list_tenants(limit=limit, cursor=cursor, include_deleted=include_deleted)
        pages.append([t for t in listing.items if t.tenant_id.startswith(PREFIX)])
        if len(pages[-1]) < len(listing.items):  # past this run's tenants
            break
        cursor = listing.next_cursor
    return [page for page in pages if page]


async def test_the_admin_login_pages_through_tenants_by_id_without_deleted_ones(
    directory: PostgresTenantDirectory,
) -> None:
    pages = await ours(directory, limit=1, include_deleted=False)
    assert [[t.tenant_id for t in page] for page in pages] == [[PREFIX + "a"], [PREFIX + "b"]]
    first = pages[0][0]
    assert (first.name, first.rate_limit, first.disabled, first.deleted) == ("Tenant a", "5/second", False, False)
    assert first.created_at.tzinfo is not None


async def test_deleted_tenants_are_listed_when_asked_for(directory: PostgresTenantDirectory) -> None:
    pages = await ours(directory, limit=2, include_deleted=True)
    listed = [(t.tenant_id, t.disabled, t.deleted) for page in pages for t in page]
    assert listed == [(PREFIX + "a", False, False), (PREFIX + "b", False, False), (PREFIX + "c", True, True)]


async def test_every_page_is_ordered_and_the_platform_tenant_is_never_listed(
    directory: PostgresTenantDirectory,
) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        listing = await directory.list_tenants(limit=200, cursor=cursor, include_deleted=True)
        seen += [t.tenant_id for t in listing.items]
        if (cursor := listing.next_cursor) is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert "_platform" not in seen and {PREFIX + s for s in "abc"} <= set(seen)


async def test_a_foreign_cursor_is_refused(directory: PostgresTenantDirectory) -> None:
    with pytest.raises(ValueError):
        await directory.list_tenants(limit=10, cursor="bm90IGEgY3Vyc29y", include_deleted=False)


def test_the_admin_login_still_cannot_read_other_tenants_rows_itself(service_database_urls: dict[str, str]) -> None:
    """The definer function is the only way across tenants: a plain SELECT sees only the transaction's tenant."""
    with psycopg.connect(service_database_urls["gateway-admin"]) as connection:
        connection.execute("SELECT set_config('app.tenant_id', %s, true)", (PREFIX + "a",))
        rows = connection.execute("SELECT tenant_id FROM tenants WHERE tenant_id LIKE %s", (PREFIX + "%",)).fetchall()
    assert rows == [(PREFIX + "a",)]
