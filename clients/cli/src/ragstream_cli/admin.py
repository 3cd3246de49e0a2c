"""`ragstream tenants ...` and `ragstream keys ...`: the admin API (admin token or admin key)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ragstream_cli.client import ApiError
from ragstream_cli.render import console, errors, fields, print_json, table
from ragstream_cli.session import EXIT_FAILED, api

tenants_app = typer.Typer(help="Tenants (admin).", no_args_is_help=True)
keys_app = typer.Typer(help="A tenant's API keys, or the admin keys (admin).", no_args_is_help=True)
KEY_COLUMNS = ["key_id", "name", "key_prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at"]
Tenant = Annotated[str, typer.Argument(help="Tenant id")]
JsonFlag = Annotated[bool, typer.Option("--json")]


def show_secret(created: dict[str, Any], as_json: bool) -> None:
    """A new key is shown once, by the gateway's design: print it plainly so it can be stored."""
    if as_json:
        print_json(created)
        return
    fields({k: v for k, v in created.items() if k not in {"api_key", "replaces"}})
    console.print("[yellow]the key is shown only now; store it safely:[/yellow]")
    print(created["api_key"])


@tenants_app.command("ls")
def list_tenants(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every tenant, where the gateway offers a listing."""
    try:
        listing = api(ctx).json("GET", "/v1/admin/tenants", auth="admin")
    except ApiError as exc:
        if exc.status not in (404, 405):
            raise
        errors.print("error: this gateway has no tenant listing (GET /v1/admin/tenants); use `tenants show ID`")
        raise typer.Exit(EXIT_FAILED) from None
    items = listing.get("items", listing) if isinstance(listing, dict) else listing
    if as_json:
        print_json(items)
    else:
        table(items, ["tenant_id", "name", "disabled", "created_at"])


@tenants_app.command("create")
def create_tenant(
    ctx: typer.Context,
    tenant_id: Tenant,
    name: Annotated[str | None, typer.Option("--name", help="Display name (default: the id)")] = None,
    rate_limit: Annotated[str | None, typer.Option("--rate-limit", help="e.g. '100/minute;10/second'")] = None,
    allow: Annotated[list[str] | None, typer.Option("--allow", help="CIDR the tenant's keys may come from")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a tenant (and its Kafka access when the gateway provisions it; the password is shown once)."""
    body: dict[str, Any] = {"tenant_id": tenant_id, "name": name or tenant_id}
    if rate_limit:
        body["rate_limit"] = rate_limit
    if allow:
        body["ip_allowlist"] = allow
    created = api(ctx).json("POST", "/v1/admin/tenants", auth="admin", json_body=body)
    if as_json:
        print_json(created)
        return
    fields({k: v for k, v in created.items() if k != "kafka"}, title="tenant created")
    if created.get("kafka"):
        console.print("[yellow]Kafka credentials (the password is shown only now):[/yellow]")
        print_json(created["kafka"])


@tenants_app.command("show")
def show_tenant(ctx: typer.Context, tenant_id: Tenant, as_json: JsonFlag = False) -> None:
    tenant = api(ctx).json("GET", f"/v1/admin/tenants/{tenant_id}", auth="admin")
    print_json(tenant) if as_json else fields(tenant, title=tenant_id)


@tenants_app.command("disable")
def disable_tenant(
    ctx: typer.Context,
    tenant_id: Tenant,
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead")] = False,
) -> None:
    """Refuse every key of the tenant (403 tenant-disabled) until enabled again."""
    tenant = api(ctx).json("PATCH", f"/v1/admin/tenants/{tenant_id}", auth="admin", json_body={"disabled": not enable})
    console.print(f"tenant {tenant['tenant_id']}: {'disabled' if tenant['disabled'] else 'enabled'}")


@tenants_app.command("delete")
def delete_tenant(
    ctx: typer.Context, tenant_id: Tenant, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False
) -> None:
    """Offboard a tenant: revoke its keys and Kafka access; its data is purged later. Not reversible."""
    if not yes:
        typer.confirm(f"offboard tenant {tenant_id!r}? its keys stop working at once", abort=True)
    api(ctx).send("DELETE", f"/v1/admin/tenants/{tenant_id}", auth="admin")
    console.print(f"tenant {tenant_id} offboarded")


def keys_path(tenant: str | None, admin_keys: bool) -> str:
    if admin_keys:
        return "/v1/admin/admin-keys"
    if not tenant:
        raise typer.BadParameter("name the tenant (--tenant) or pass --admin-keys", param_hint="--tenant")
    return f"/v1/admin/tenants/{tenant}/api-keys"


TenantOpt = Annotated[str | None, typer.Option("--tenant", "-t", help="Whose keys")]
AdminKeysOpt = Annotated[bool, typer.Option("--admin-keys", help="The platform's admin keys instead")]
KeyId = Annotated[str, typer.Argument(help="Key id (from `keys ls`)")]


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    tenant: TenantOpt = None,
    admin_keys: AdminKeysOpt = False,
    name: Annotated[str | None, typer.Option("--name")] = None,
    scopes: Annotated[list[str] | None, typer.Option("--scope", help="Repeat for each; default: the gateway's")] = None,
    expires_at: Annotated[str | None, typer.Option("--expires-at", help="RFC 3339")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key; its secret is printed once."""
    body: dict[str, Any] = {k: v for k, v in {"name": name, "expires_at": expires_at}.items() if v}
    if scopes and not admin_keys:
        body["scopes"] = scopes
    show_secret(api(ctx).json("POST", keys_path(tenant, admin_keys), auth="admin", json_body=body), as_json)


@keys_app.command("ls")
def list_keys(
    ctx: typer.Context, tenant: TenantOpt = None, admin_keys: AdminKeysOpt = False, as_json: JsonFlag = False
) -> None:
    """Keys, newest first (never their secrets)."""
    client, path, items, cursor = api(ctx), keys_path(tenant, admin_keys), [], None
    while True:
        page = client.json("GET", path, auth="admin", params={"limit": 100, "cursor": cursor})
        items.extend(page["items"])
        if not (cursor := page.get("next_cursor")):
            break
    print_json(items) if as_json else table(items, KEY_COLUMNS)


@keys_app.command("rotate")
def rotate_key(
    ctx: typer.Context,
    key_id: KeyId,
    tenant: TenantOpt = None,
    admin_keys: AdminKeysOpt = False,
    grace: Annotated[int, typer.Option("--grace", min=0, max=604800, help="Seconds the old key keeps working")] = 3600,
    expires_at: Annotated[str | None, typer.Option("--expires-at", help="RFC 3339")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace a key; the old one works for --grace seconds more. The new secret is printed once."""
    body: dict[str, Any] = {"grace_seconds": grace, **({"expires_at": expires_at} if expires_at else {})}
    path = f"{keys_path(tenant, admin_keys)}/{key_id}/rotate"
    show_secret(api(ctx).json("POST", path, auth="admin", json_body=body), as_json)


@keys_app.command("revoke")
def revoke_key(ctx: typer.Context, key_id: KeyId, tenant: TenantOpt = None, admin_keys: AdminKeysOpt = False) -> None:
    """Revoke a key: every gateway refuses it within a second."""
    api(ctx).send("DELETE", f"{keys_path(tenant, admin_keys)}/{key_id}", auth="admin")
    console.print(f"key {key_id} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(tenants_app, name="tenants")
    app.add_typer(keys_app, name="keys")
