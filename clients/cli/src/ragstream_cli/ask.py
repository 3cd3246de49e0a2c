"""`ragstream ask` (the answer streamed token by token, agent steps as they come, then numbered citations) and
`ragstream search` (ranked chunks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ragstream_cli.client import ApiError
from ragstream_cli.render import console, print_json, shorten, table
from ragstream_cli.session import EXIT_FAILED, api, pairs
from ragstream_cli.sse import Event, parse_events


class Mode(StrEnum):
    answer = "answer"
    search = "search"
    agent = "agent"


def query_body(
    question: str, mode: Mode, top_k: int | None, filters: dict[str, str], max_steps: int | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"question": question, "mode": mode.value}
    if top_k is not None:
        body["top_k"] = top_k
    if filters:
        body["filters"] = {"metadata": filters}
    if max_steps is not None:
        body["max_steps"] = max_steps
    return body


@dataclass
class StreamedAnswer:
    """What the stream told so far; `render_stream` fills it in as events arrive."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    done: dict[str, Any] | None = None


def render_stream(events: Iterable[Event], out: Console) -> StreamedAnswer:
    """Print each event as it comes; an `error` event raises its problem."""
    answer = StreamedAnswer()
    for event in events:
        data = event.payload()
        if event.name == "step":
            answer.steps.append(data)
            reason = f" ({data['reason']})" if data.get("reason") else ""
            out.print(
                f"[dim]step {data.get('step')}: {escape(str(data.get('query', '')))}{escape(reason)}"
                f" → {data.get('new_sources', 0)} new sources[/dim]"
            )
        elif event.name == "sources":
            answer.sources = list(data.get("results", []))
        elif event.name == "token":
            text = str(data.get("text", ""))
            answer.text += text
            out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
        elif event.name == "done":
            answer.done = data
        elif event.name == "error":
            raise ApiError(
                int(data.get("status", 502)),
                "Query failed",
                str(data.get("detail", "the query failed")),
                str(data.get("type", "urn:ragstream:problem:query-failed")),
                {k: v for k, v in data.items() if k not in {"status", "detail", "type"}},
            )
    if answer.text:
        out.print()
    return answer


def render_citations(answer: StreamedAnswer, out: Console) -> None:
    """The answer's numbered citations; without an answer (search mode), the sources instead."""
    citations = (answer.done or {}).get("citations") or []
    if answer.done and answer.done.get("no_answer"):
        out.print("[yellow]no answer found in the indexed documents[/yellow]")
    if citations:
        out.print("\n[bold]Sources[/bold]")
        for citation in citations:
            title, document = citation.get("title") or citation.get("document_id"), citation.get("document_id")
            out.print(f"[{citation.get('index')}] [bold]{escape(str(title))}[/bold] ({escape(str(document))})")
            out.print(f"    {escape(shorten(str(citation.get('snippet', ''))))}", style="dim")
    elif answer.sources and not answer.text:
        for rank, chunk in enumerate(answer.sources, start=1):
            title, document = chunk.get("title") or chunk.get("document_id"), chunk.get("document_id")
            score = float(chunk.get("score", 0))
            out.print(f"[{rank}] [bold]{escape(str(title))}[/bold] ({escape(str(document))}) {score:.3f}")
            out.print(f"    {escape(shorten(str(chunk.get('text', ''))))}", style="dim")


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question")],
    mode: Annotated[Mode, typer.Option("--mode", help="answer, search (sources only) or agent")] = Mode.answer,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=100, help="Chunks to retrieve")] = None,
    filters: Annotated[list[str] | None, typer.Option("--filter", help="Metadata k=v the documents must have")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, max=8, help="Agent mode: at most")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON answer instead of streaming")] = False,
) -> None:
    """Ask a question: the answer streams as it is generated, then its numbered citations."""
    body = query_body(question, mode, top_k, pairs(filters, "--filter"), max_steps)
    client = api(ctx)
    if as_json:
        print_json(client.json("POST", "/v1/query", json_body=body))
        return
    with client.stream("/v1/query", body) as response:
        answer = render_stream(parse_events(response.iter_lines()), console)
    render_citations(answer, console)
    if answer.done is None and mode is not Mode.search:
        console.print("[red]the stream ended without an answer[/red]")
        raise typer.Exit(EXIT_FAILED)


def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What to search for")],
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=100)] = None,
    filters: Annotated[list[str] | None, typer.Option("--filter", help="Metadata k=v the documents must have")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ranked chunks only, no generated answer."""
    body: dict[str, Any] = {"query": query}
    if top_k is not None:
        body["top_k"] = top_k
    if metadata := pairs(filters, "--filter"):
        body["filters"] = {"metadata": metadata}
    found = api(ctx).json("POST", "/v1/search", json_body=body)
    if as_json:
        print_json(found)
        return
    rows = [
        {
            "#": rank,
            "score": f"{c['score']:.3f}",
            "document": c["document_id"],
            "title": c["title"],
            "text": shorten(c["text"], 100),
        }
        for rank, c in enumerate(found.get("results", []), start=1)
    ]
    table(rows, ["#", "score", "document", "title", "text"])


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("search")(search)
