"""Server-Sent Events as the query API streams them: `event:` and `data:` (one JSON object) per event."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx


def parse_sse(lines: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    name = None
    for line in lines:
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and name:
            events.append((name, json.loads(line.split(":", 1)[1])))
            name = None
    return events


async def read_sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The events of a streamed response, read to its end."""
    return parse_sse([line async for line in response.aiter_lines()])
