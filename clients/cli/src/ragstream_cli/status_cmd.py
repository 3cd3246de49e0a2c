"""`ragstream status`: the gateway's liveness and readiness, check by check, and with the admin token every
worker's gRPC health as the gateway sees it (GET /v1/admin/health). Exits 1 when anything is not ready or not
SERVING, so scripts and CI can wait on it."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragstream_cli.client import Api, ApiError
from ragstream_cli.render import cell, console, print_json, problem_line, table
from ragstream_cli.session import EXIT_FAILED, api

SERVING = "SERVING"
NO_ADMIN_TOKEN = "needs the admin token (--admin-token, RAGSTREAM_ADMIN_TOKEN or a profile)"


def gateway_readiness(client: Api) -> dict[str, Any]:
    """/healthz and /readyz; a 503 from /readyz is an answer (not ready), anything else unexpected is raised."""
    report: dict[str, Any] = {"url": client.settings.url}
    try:
        report["healthz"] = client.json("GET", "/healthz", auth="none").get("status", "ok")
    except ApiError as exc:
        if exc.status == 0:
            raise
        report["healthz"] = f"{exc.status} {exc.detail}"
    try:
        ready = client.json("GET", "/readyz", auth="none")
        report.update(ready=True, checks=ready.get("checks", {}))
    except ApiError as exc:
        if exc.status != 503:
            raise
        report.update(ready=False, checks=exc.extensions.get("checks", {}), detail=exc.detail)
    return report


def service_health(client: Api) -> dict[str, Any]:
    """`services` (each worker's health) when the admin API answered; else `services_error`, why not."""
    if not client.settings.admin_token:
        return {"services": None, "services_error": NO_ADMIN_TOKEN}
    try:
        health = client.json("GET", "/v1/admin/health", auth="admin")
    except ApiError as exc:
        if exc.status == 0:
            raise
        return {"services": None, "services_error": problem_line(exc).removeprefix("error: ")}
    return {"services": health["services"]}


def healthy(report: dict[str, Any]) -> bool:
    """Ready, and every service SERVING; unknown worker health (no admin token) does not fail the command."""
    services = report.get("services") or []
    admin_failed = report.get("services") is None and report.get("services_error") != NO_ADMIN_TOKEN
    return bool(report["ready"]) and not admin_failed and all(s["status"] == SERVING for s in services)


def services_table(services: list[dict[str, Any]]) -> None:
    grid = Table(title="services")
    for column in ("service", "status", "latency (ms)", "address", "detail"):
        grid.add_column(column)
    for service in services:
        style = "green" if service["status"] == SERVING else "red"
        grid.add_row(
            escape(service["name"]),
            f"[{style}]{escape(service['status'])}[/{style}]",
            escape(cell(service.get("latency_ms"))),
            escape(cell(service.get("address"))),
            escape(cell(service.get("detail"))),
        )
    console.print(grid)


def render(report: dict[str, Any]) -> None:
    readiness = "ready" if report["ready"] else "NOT READY"
    console.print(f"gateway {escape(report['url'])}: healthz {escape(str(report['healthz']))}, {readiness}")
    rows = [{"check": name, "ok": "ok" if ok else "FAILING"} for name, ok in sorted(report["checks"].items())]
    table(rows, ["check", "ok"])
    if report["services"] is None:
        style = "dim" if report["services_error"] == NO_ADMIN_TOKEN else "red"
        console.print(f"[{style}]worker health: {escape(report['services_error'])}[/{style}]")
        return
    services_table(report["services"])
    down = [f"{s['name']} {s['status']}" for s in report["services"] if s["status"] != SERVING]
    verdict = f"[red]not serving: {escape(', '.join(down))}[/red]" if down else "[green]every service SERVING[/green]"
    console.print(verdict)


def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The gateway's readiness and, with the admin token, every service's health; exits 1 when any is down."""
    client = api(ctx)
    report = gateway_readiness(client)
    report.update(service_health(client))
    report["healthy"] = healthy(report)
    if as_json:
        print_json(report)
    else:
        render(report)
    if not report["healthy"]:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
