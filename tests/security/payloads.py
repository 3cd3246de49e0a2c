"""Hostile payloads (the corpora/ files plus generated ones) and where they go: every string field of a JSON
request body, found by walking the operation's OpenAPI schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from security.operations import resolve

CORPORA = Path(__file__).with_name("corpora")
# Literal files (one payload per line) and the one whose lines are JSON string bodies (escapes decoded).
LITERAL = ("sql_injection.txt", "xss.txt", "path_traversal.txt")
ESCAPED = ("special.txt",)
OVERSIZED_CHARS = 300_000  # over every string bound the API declares, under the upload limit


@dataclass(frozen=True)
class Payload:
    name: str
    value: str

    def __str__(self) -> str:
        return self.name


def _lines(name: str) -> list[str]:
    text = (CORPORA / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def corpus() -> list[Payload]:
    """Every payload, named `<file>:<line number among payloads>`, plus an oversized string."""
    payloads = [Payload(f"{name}:{i}", line) for name in LITERAL for i, line in enumerate(_lines(name), 1)]
    for name in ESCAPED:
        payloads += [Payload(f"{name}:{i}", json.loads(f'"{line}"')) for i, line in enumerate(_lines(name), 1)]
    return [*payloads, Payload("oversized", "A" * OVERSIZED_CHARS), Payload("oversized-4-byte", "😀" * 70_000)]


def encodable(value: str) -> bool:
    """Whether `value` has a UTF-8 form (a lone surrogate has none: it can only travel as a JSON escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_bytes(body: Any) -> bytes:
    """JSON with every non-ASCII character escaped, so that NULs and lone surrogates reach the server intact."""
    return json.dumps(body, ensure_ascii=True).encode("ascii")


# A path into a JSON body: property names, 0 for an array's first item, KEY/VALUE for a string map's one entry.
KEY, VALUE = "<key>", "<value>"
FieldPath = tuple[str | int, ...]


def string_fields(schema: dict[str, Any], components: dict[str, Any], path: FieldPath = ()) -> Iterator[FieldPath]:
    """Every place in `schema` that takes free text (enums, and fields of another format, count too: they must
    refuse it with 422)."""
    schema = resolve(schema, components)
    options = [s for s in schema.get("anyOf", schema.get("oneOf", [])) if s.get("type") != "null"]
    if options:
        yield from string_fields(options[0], components, path)
        return
    kind = schema.get("type")
    if kind == "string":
        yield path
    elif kind == "array":
        yield from string_fields(schema.get("items", {}), components, (*path, 0))
    elif kind == "object":
        for name, prop in schema.get("properties", {}).items():
            yield from string_fields(prop, components, (*path, name))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and resolve(extra, components).get("type") == "string":
            yield (*path, KEY)
            yield (*path, VALUE)


def with_value(body: Any, path: FieldPath, value: str) -> Any:
    """A copy of `body` with `value` at `path` (containers created as needed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == 0:
        return [with_value(None, rest, value)]
    if head in (KEY, VALUE):
        return {value: "v"} if head == KEY else {"k": value}
    current = dict(body) if isinstance(body, dict) else {}
    current[str(head)] = with_value(current.get(str(head)), rest, value)
    return current


def value_at(body: Any, path: FieldPath) -> Any:
    """What a response holds at `path` (None when it has nothing there)."""
    for step in path:
        if step in (KEY, VALUE):
            return body
        if isinstance(body, list) and step == 0 and body:
            body = body[0]
        elif isinstance(body, dict) and isinstance(step, str):
            body = body.get(step)
        else:
            return None
    return body


def nested(depth: int) -> bytes:
    """A JSON object nested `depth` levels deep, as text (no parser builds it here)."""
    return b'{"a":' * depth + b"1" + b"}" * depth
