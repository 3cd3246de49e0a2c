"""How the CLI prints: tables and key/value panels on stdout, problems as one line on stderr."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragstream_cli.client import ApiError

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


def problem_line(error: ApiError) -> str:
    """One line: status, problem type and detail (plus a correlation id to quote to operators)."""
    status = f"{error.status} " if error.status else ""
    line = f"error: {status}{error.type}: {error.detail}"
    if correlation := error.extensions.get("correlation_id"):
        line += f" (correlation_id {correlation})"
    return line


def print_problem(error: ApiError) -> None:
    errors.print(escape(problem_line(error)), style="red", soft_wrap=True)


def print_json(value: Any) -> None:
    """Plain JSON for scripts: no colours, no wrapping."""
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    grid = Table(title=title, show_lines=False)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(escape(cell(row.get(column))) for column in columns))
    console.print(grid)


def fields(record: Mapping[str, Any], title: str | None = None) -> None:
    """One record as a two-column table of its fields."""
    grid = Table(title=title, show_header=False)
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in record.items():
        grid.add_row(escape(key), escape(cell(value)))
    console.print(grid)


def shorten(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
