"""`ragstream docs ls|show|rm`: the tenant's documents."""

from __future__ import annotations

from typing import Annotated

import typer

from ragstream_cli.render import console, fields, print_json, table
from ragstream_cli.session import api

docs_app = typer.Typer(help="The tenant's documents.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json")]
DOC_COLUMNS = ["document_id", "title", "status", "version", "chunk_count", "updated_at"]


@docs_app.command("ls")
def list_documents(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="received|processing|indexed|failed|deleted")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Per page")] = 50,
    every: Annotated[bool, typer.Option("--all", help="Follow next_cursor to the end")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Documents, newest first."""
    client, items, cursor = api(ctx), [], None
    while True:
        page = client.json("GET", "/v1/documents", params={"limit": limit, "cursor": cursor, "status": status})
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not (every and cursor):
            break
    if as_json:
        print_json(items)
        return
    table(items, DOC_COLUMNS)
    if cursor:
        console.print("[dim]more: use --all[/dim]")


@docs_app.command("show")
def show_document(ctx: typer.Context, document_id: Annotated[str, typer.Argument()], as_json: JsonFlag = False) -> None:
    """One document's status, version, chunks and error."""
    document = api(ctx).json("GET", f"/v1/documents/{document_id}")
    if as_json:
        print_json(document)
    else:
        fields(document, title=document_id)


@docs_app.command("rm")
def remove_document(ctx: typer.Context, document_id: Annotated[str, typer.Argument()]) -> None:
    """Delete every version of a document from the index (repeating it is harmless)."""
    answer = api(ctx).json("DELETE", f"/v1/documents/{document_id}")
    console.print(f"deleted {answer['document_id']} (version {answer['version']})")


def register(app: typer.Typer) -> None:
    app.add_typer(docs_app, name="docs")
