"""Server-Sent Events as the gateway sends them (sse-starlette): `event:` and `data:` lines, a blank line ends
an event, `:` lines are keep-alive comments."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    name: str
    data: str

    def payload(self) -> dict[str, Any]:
        """The JSON object the gateway puts in every event's data; {} for anything else."""
        try:
            value = json.loads(self.data)
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events in order, per the WHATWG rules the gateway needs: multi-line data joined by newlines, the
    default name "message", comments and unknown fields skipped, a last event without its blank line kept."""
    name, data = "", list[str]()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Event(name or "message", "\n".join(data))
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield Event(name or "message", "\n".join(data))
