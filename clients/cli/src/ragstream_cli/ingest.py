"""`ragstream ingest PATH...`: upload files, follow each through indexing, summarise.

Resuming after Ctrl-C relies on the gateway, not on a local state file: ids are stable (ingest_plan), and the
gateway answers `unchanged` (200) for content, title and metadata equal to the current version, so a re-run
skips what is indexed and keeps following what was still processing."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragstream_cli.client import Api, ApiError
from ragstream_cli.ingest_plan import FileProgress, FileState, duplicates, plan
from ragstream_cli.render import console, errors, problem_line
from ragstream_cli.session import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, api, pairs

POLL_S = 0.5
STYLES = {
    FileState.indexed: "green",
    FileState.skipped: "cyan",
    FileState.failed: "red",
    FileState.processing: "yellow",
    FileState.uploaded: "blue",
}


def styled(state: FileState) -> str:
    style = STYLES.get(state)
    return f"[{style}]{state.value}[/]" if style else state.value


def upload(client: Api, item: FileProgress, metadata: dict[str, str]) -> None:
    item.start_upload()
    file = item.file
    fields = {
        "id": file.document_id,
        "title": file.path.name,
        "metadata": json.dumps({**metadata, "source_path": file.relative}, sort_keys=True),
    }
    try:
        content = file.path.read_bytes()
        # A generic type: the gateway decides the format from the extension, then checks the bytes.
        answer = client.json(
            "POST",
            "/v1/documents",
            files={"file": (file.path.name, content, "application/octet-stream")},
            data=fields,
        )
    except OSError as exc:
        item.refused(f"cannot read: {exc.strerror or exc}")
        return
    except ApiError as exc:
        item.refused(problem_line(exc).removeprefix("error: "))
        return
    item.accepted(answer)


def follow(client: Api, item: FileProgress, deadline: float, timeout_s: float, stop: threading.Event) -> None:
    """Poll the document's status until it is indexed or failed, the deadline passes, or the run stops."""
    while not item.done and not stop.is_set():
        if time.monotonic() > deadline:
            item.timed_out(timeout_s)
            return
        try:
            item.observe(client.json("GET", f"/v1/documents/{item.file.document_id}"))
        except ApiError as exc:
            if exc.status == 0 or exc.status >= 500:  # passing trouble: keep following until the deadline
                stop.wait(POLL_S)
                continue
            item.refused(problem_line(exc).removeprefix("error: "))
            return
        if not item.done:
            stop.wait(POLL_S)


def files_table(items: list[FileProgress], limit: int = 25) -> Table:
    """The files still moving (all of them when few), so a big run keeps a screen-sized table."""
    shown = items if len(items) <= limit else [i for i in items if not i.done][:limit]
    grid = Table(show_header=True, box=None, pad_edge=False)
    for column in ("file", "document", "state", "detail"):
        grid.add_column(column)
    for item in shown:
        grid.add_row(escape(item.file.relative), escape(item.file.document_id), styled(item.state), escape(item.reason))
    return grid


def summary(items: list[FileProgress]) -> Counter[FileState]:
    grid = Table(title="ingest summary")
    for column in ("file", "document", "state", "version", "chunks", "reason"):
        grid.add_column(column)
    for item in items:
        grid.add_row(
            escape(item.file.relative),
            escape(item.file.document_id),
            styled(item.state),
            str(item.version or "-"),
            str(item.chunks if item.chunks is not None else "-"),
            escape(item.reason),
        )
    console.print(grid)
    counts = Counter(item.state for item in items)
    console.print(
        f"{len(items)} files: {counts[FileState.indexed]} indexed, {counts[FileState.skipped]} skipped (unchanged), "
        f"{counts[FileState.failed]} failed"
    )
    return counts


def run(client: Api, items: list[FileProgress], metadata: dict[str, str], concurrency: int, timeout_s: float) -> None:
    """Upload and follow every file, `concurrency` at a time, with a live progress bar and file table."""
    stop = threading.Event()
    deadline = time.monotonic() + timeout_s
    bar = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    task = bar.add_task("ingest", total=len(items))

    def one(item: FileProgress) -> FileProgress:
        if not stop.is_set():
            upload(client, item, metadata)
            follow(client, item, deadline, timeout_s, stop)
        return item

    with Live(Group(bar, files_table(items)), console=console, refresh_per_second=8, transient=True) as live:
        executor = ThreadPoolExecutor(max_workers=concurrency)
        pending: set[Future[FileProgress]] = {executor.submit(one, item) for item in items}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = future.result()
                    bar.advance(task)
                    live.console.print(f"{styled(item.state)} {escape(item.file.relative)} {escape(item.reason)}")
                live.update(Group(bar, files_table(items)))
        except KeyboardInterrupt:
            stop.set()
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        executor.shutdown(wait=True)


def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to upload")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders")] = False,
    pattern: Annotated[str, typer.Option("--glob", help="Which files of a folder, e.g. '*.pdf'")] = "*",
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64, help="Files at a time")] = 4,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m", help="k=v on every document")] = None,
    id_prefix: Annotated[str, typer.Option("--id-prefix", help="Prefix of every document id")] = "",
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait for indexing in all")] = 600.0,
) -> None:
    """Upload files and follow them until indexed; exits 1 if any failed. Re-run it to resume."""
    extra = pairs(metadata, "--metadata")
    try:
        planned = plan(paths, recursive, pattern, id_prefix)
    except FileNotFoundError as exc:
        errors.print(f"[red]error: no such file or folder: {escape(str(exc))}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    if not planned:
        console.print("nothing to ingest")
        return
    items = [FileProgress(file) for file in planned]
    for document_id, group in duplicates(planned).items():
        for item in items:
            if item.file.document_id == document_id and item.file is not group[0]:
                item.refused(f"same document id as {group[0].path} (use --id-prefix per folder)")
    try:
        run(api(ctx), [i for i in items if not i.done], extra, concurrency, timeout_s)
    except KeyboardInterrupt:
        summary(items)
        console.print("[yellow]interrupted: run the same command again to resume[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if summary(items)[FileState.failed]:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
