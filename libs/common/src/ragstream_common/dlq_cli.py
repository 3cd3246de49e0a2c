"""`python -m ragstream_common.dlq list|show|redrive`: the operator's view of the dead-letter topics.

Reads the KAFKA_* connection variables (ragstream_common.kafka_settings). Tables for people, `--json` (one JSON
object per line) for scripts. Redrives are idempotent: a dead letter redriven before is reported, not resent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ragstream_common.config import load_settings
from ragstream_common.dlq_records import DeadLetterFilter
from ragstream_common.dlq_service import DeadLetterService, ListedDeadLetter, RedriveOutcome
from ragstream_common.dlq_store import open_dead_letter_service
from ragstream_common.kafka_settings import KafkaSettings

T = TypeVar("T")
app = typer.Typer(help="List, inspect and redrive dead-lettered events.", no_args_is_help=True)
console = Console()
# Errors and hints, so that `--json` output on stdout stays one object per line.
notes = Console(stderr=True)

Tenant = Annotated[str | None, typer.Option(help="Only events of this tenant")]
Reason = Annotated[str | None, typer.Option(help="Only this error class, e.g. InvalidEvent")]
# ISO 8601 with or without an offset ("Z" included); times without one are UTC.
MOMENT_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"]
Since = Annotated[
    datetime | None, typer.Option(formats=MOMENT_FORMATS, metavar="TIME", help="Dead-lettered at or after (ISO 8601)")
]
Until = Annotated[
    datetime | None, typer.Option(formats=MOMENT_FORMATS, metavar="TIME", help="Dead-lettered before (ISO 8601)")
]
Offset = Annotated[int, typer.Option(min=0, help="Start reading the DLQ at this offset")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object per line")]


def _run(work: Callable[[DeadLetterService], Awaitable[T]]) -> T:
    async def main() -> T:
        async with AsyncExitStack() as stack:
            service = await open_dead_letter_service(stack, load_settings(KafkaSettings))
            return await work(service)

    try:
        return asyncio.run(main())
    except LookupError as exc:  # unknown topic, no record at that offset
        notes.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def _json_line(data: dict[str, Any]) -> None:
    print(json.dumps(data, default=str, ensure_ascii=False))


@app.command("list")
def list_command(
    topic: Annotated[str | None, typer.Argument(help="A DLQ topic or its source topic; none: every DLQ")] = None,
    tenant: Tenant = None,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    offset: Offset = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: AsJson = False,
) -> None:
    """Without TOPIC: the depth of every DLQ. With TOPIC: its dead letters, oldest first."""
    if topic is None:
        depths = _run(lambda service: service.depths())
        table = Table("dlq topic", "depth", "redriven", "offsets")
        for depth in depths:
            if as_json:
                _json_line(asdict(depth))
            table.add_row(depth.dlq_topic, str(depth.depth), str(depth.redriven), f"{depth.first_offset}..")
        if not as_json:
            console.print(table)
        return
    where = DeadLetterFilter(tenant, reason, since, until)
    page = _run(lambda service: service.list_page(topic, where, offset=offset, limit=limit))
    if as_json:
        for item in page.items:
            _json_line({**asdict(item.letter), "redriven": asdict(item.redriven) if item.redriven else None})
    else:
        console.print(_letters_table(page.items))
    if page.next_offset is not None:
        notes.print(f"more: --offset {page.next_offset}", style="dim")


def _letters_table(items: list[ListedDeadLetter]) -> Table:
    table = Table("offset", "failed at", "tenant", "event", "reason", "group", "redriven")
    for item in items:
        letter = item.letter
        table.add_row(
            str(letter.dlq_offset),
            letter.failed_at.isoformat(timespec="seconds"),
            letter.tenant_id or "-",
            letter.event_type or "-",
            f"{letter.reason_class}: {letter.reason_message[:80]}",
            letter.consumer_group,
            item.redriven.redriven_at.isoformat(timespec="seconds") if item.redriven else "",
        )
    return table


@app.command("show")
def show_command(
    topic: Annotated[str, typer.Argument(help="A DLQ topic or its source topic")],
    offset: Annotated[int, typer.Argument(min=0)],
) -> None:
    """One dead letter: its reasons, headers and a preview of the payload (JSON)."""
    inspected, mark = _run(lambda service: service.inspect(topic, offset))
    _json_line(
        {
            **asdict(inspected.dead_letter),
            "headers": inspected.headers,
            "payload": asdict(inspected.payload),
            "redriven": asdict(mark) if mark else None,
        }
    )


@app.command("redrive")
def redrive_command(
    topic: Annotated[str, typer.Argument(help="A DLQ topic or its source topic")],
    offset: Annotated[int | None, typer.Argument(min=0, help="One dead letter; none: every one matching")] = None,
    tenant: Tenant = None,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    start: Annotated[int, typer.Option("--from", min=0, help="Bulk: start at this DLQ offset")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Bulk: at most this many")] = None,
    actor: Annotated[str, typer.Option(help="Who redrives (kept in the ledger)")] = "cli",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Bulk: do not ask")] = False,
) -> None:
    """Republish dead letters to their source topic; ones redriven before are skipped."""
    if offset is not None:
        outcome = _run(lambda service: service.redrive(topic, offset, actor))
        _print_outcome(outcome)
        return
    if not yes:
        typer.confirm(f"Redrive every matching dead letter of {topic}?", abort=True)
    where = DeadLetterFilter(tenant, reason, since, until)

    async def printed(outcome: RedriveOutcome) -> None:  # as it happens: a failure later still shows what was done
        _print_outcome(outcome)

    result = _run(
        lambda service: service.redrive_matching(topic, where, actor, offset=start, limit=limit, on_outcome=printed)
    )
    _json_line({"redriven": result.redriven, "already_redriven": result.already_redriven})


def _print_outcome(outcome: RedriveOutcome) -> None:
    _json_line(
        {
            "dlq_topic": outcome.letter.dlq_topic,
            "dlq_offset": outcome.letter.dlq_offset,
            "status": outcome.status,
            "target_topic": outcome.mark.target_topic,
            "redriven_at": outcome.mark.redriven_at.isoformat(),
        }
    )
