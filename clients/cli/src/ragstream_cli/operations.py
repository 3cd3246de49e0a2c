"""`ragstream connectors|dlq|usage|audit`: operating a tenant and the platform over the API.

Connectors take the tenant's own key (scope `connectors:admin`), or with `--tenant` the admin routes for any
tenant; the DLQ and the audit chain need the admin token; usage is the tenant's own (API key) or, with
`--tenant`, any tenant's (admin)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ragstream_cli.client import Auth
from ragstream_cli.render import console, fields, print_json, shorten, table
from ragstream_cli.session import EXIT_FAILED, api

connectors_app = typer.Typer(help="Connectors (SharePoint, OneDrive, Box, Drive, webhooks).", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-letter queues (admin).", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log (admin).", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", "-t", help="Any tenant's, with the admin token")]
Topic = Annotated[str, typer.Argument(help="DLQ topic, e.g. rag.documents.received.v1.dlq")]
Offset = Annotated[int, typer.Argument(help="Offset of the dead letter")]


def connectors_base(tenant: str | None) -> tuple[str, Auth]:
    return (f"/v1/admin/tenants/{tenant}/connectors", "admin") if tenant else ("/v1/connectors", "key")


@connectors_app.command("ls")
def list_connectors(
    ctx: typer.Context,
    tenant: TenantOpt = None,
    removed: Annotated[bool, typer.Option("--removed", help="Include removed ones")] = False,
    as_json: JsonFlag = False,
) -> None:
    base, auth = connectors_base(tenant)
    items = api(ctx).json("GET", base, auth=auth, params={"include_removed": removed or None})["items"]
    columns = ["connector_id", "provider", "name", "status", "items_synced", "error_count", "last_sync_at"]
    print_json(items) if as_json else table(items, columns)


@connectors_app.command("show")
def show_connector(ctx: typer.Context, connector_id: str, tenant: TenantOpt = None, as_json: JsonFlag = False) -> None:
    base, auth = connectors_base(tenant)
    connector = api(ctx).json("GET", f"{base}/{connector_id}", auth=auth)
    print_json(connector) if as_json else fields(connector, title=connector_id)


@connectors_app.command("sync")
def sync_connector(ctx: typer.Context, connector_id: str, tenant: TenantOpt = None) -> None:
    """Ask for a full resync (the connectors worker does it)."""
    base, auth = connectors_base(tenant)
    answer = api(ctx).json("POST", f"{base}/{connector_id}/sync", auth=auth)
    console.print(f"resync of {answer['connector_id']} requested ({answer['status']})")


@connectors_app.command("rm")
def remove_connector(
    ctx: typer.Context,
    connector_id: str,
    tenant: TenantOpt = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the documents it brought in")] = False,
) -> None:
    base, auth = connectors_base(tenant)
    answer = api(ctx).json("DELETE", f"{base}/{connector_id}", auth=auth, params={"purge": purge or None})
    console.print(f"removal of {answer['connector_id']} requested ({answer['status']})")


def letter_filter(tenant: str | None, reason: str | None, since: str | None, until: str | None) -> dict[str, Any]:
    return {"tenant": tenant, "reason": reason, "since": since, "until": until}


DlqTenant = Annotated[str | None, typer.Option("--tenant", help="Only this tenant's")]
Reason = Annotated[str | None, typer.Option("--reason", help="Only this error class")]
Since = Annotated[str | None, typer.Option("--since", help="RFC 3339")]
Until = Annotated[str | None, typer.Option("--until", help="RFC 3339")]


@dlq_app.command("ls")
def list_dead_letters(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument(help="A DLQ topic: list its dead letters")] = None,
    tenant: DlqTenant = None,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Without a topic, every DLQ's depth; with one, its dead letters, oldest first."""
    client = api(ctx)
    if topic is None:
        topics = client.json("GET", "/v1/admin/dlq", auth="admin")["topics"]
        columns = ["dlq_topic", "depth", "redriven", "first_offset", "end_offset"]
        print_json(topics) if as_json else table(topics, columns)
        return
    params = {**letter_filter(tenant, reason, since, until), "offset": offset, "limit": limit}
    page = client.json("GET", f"/v1/admin/dlq/{topic}/events", auth="admin", params=params)
    if as_json:
        print_json(page)
        return
    rows = [
        {**item, "redriven": "yes" if item.get("redriven") else "", "reason": shorten(item["reason_message"], 80)}
        for item in page["items"]
    ]
    table(rows, ["dlq_offset", "tenant_id", "event_type", "reason_class", "reason", "failed_at", "redriven"])
    if page.get("next_offset") is not None:
        console.print(f"[dim]more: --offset {page['next_offset']}[/dim]")


@dlq_app.command("show")
def show_dead_letter(ctx: typer.Context, topic: Topic, offset: Offset, as_json: JsonFlag = False) -> None:
    letter = api(ctx).json("GET", f"/v1/admin/dlq/{topic}/events/{offset}", auth="admin")
    print_json(letter) if as_json else fields(letter, title=f"{topic}@{offset}")


@dlq_app.command("redrive")
def redrive(
    ctx: typer.Context,
    topic: Topic,
    offset: Annotated[int | None, typer.Argument(help="One dead letter; without it, every match")] = None,
    tenant: DlqTenant = None,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, max=100000)] = None,
) -> None:
    """Republish dead letters to their topic, each at most once."""
    client = api(ctx)
    if offset is not None:
        result = client.json("POST", f"/v1/admin/dlq/{topic}/events/{offset}/redrive", auth="admin")
        console.print(f"{topic}@{offset}: {result['status']} → {result['target_topic']}")
        return
    params = {**letter_filter(tenant, reason, since, until), "limit": limit}
    result = client.json("POST", f"/v1/admin/dlq/{topic}/redrive", auth="admin", params=params)
    console.print(f"redriven {result['redriven']}, already redriven {result['already_redriven']}")


def usage(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option("--from", help="RFC 3339; default: a day before --to")] = None,
    end: Annotated[str | None, typer.Option("--to", help="RFC 3339, exclusive; default: now")] = None,
    tenant: TenantOpt = None,
    granularity: Annotated[str, typer.Option("--granularity", help="hour or day")] = "hour",
    cost: Annotated[bool, typer.Option("--cost", help="What the usage costs instead")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Metered usage (or its cost): your tenant's, or any tenant's with --tenant and the admin token."""
    auth: Auth = "admin" if tenant else "key"
    base = f"/v1/admin/tenants/{tenant}/usage" if tenant else "/v1/usage"
    if cost:
        path, params = f"{base}/cost", {"from": start, "to": end}
    else:
        path = f"{base}/metered" if tenant else base
        params = {"from": start, "to": end, "granularity": granularity}
    report = api(ctx).json("GET", path, auth=auth, params=params)
    if as_json:
        print_json(report)
        return
    console.print(f"tenant {report['tenant_id']}: {report['from']} → {report['to']}")
    if cost:
        rows = [{"metric": name, **metric} for name, metric in report["metrics"].items()]
        table(rows, ["metric", "quantity", "unit", "unit_price", "cost"])
        console.print(f"total {report['total']} {report['currency']}")
    else:
        fields(report["totals"], title="totals")


@audit_app.command("verify")
def verify_audit(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Whose audit chain")] = "default",
    as_json: JsonFlag = False,
) -> None:
    """Recompute a tenant's audit hash chain; exits 1 when a row was changed, removed or inserted."""
    result = api(ctx).json("GET", f"/v1/admin/tenants/{tenant}/audit/verify", auth="admin")
    if as_json:
        print_json(result)
    elif result["valid"]:
        console.print(f"[green]audit chain of {tenant} is intact[/green] ({result['entries']} entries)")
    else:
        where = f"id {result['first_bad_id']}: {result['problem']}"
        console.print(f"[red]audit chain of {tenant} is broken[/red] at {where}")
    if not result["valid"]:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(connectors_app, name="connectors")
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(audit_app, name="audit")
    app.command("usage")(usage)
