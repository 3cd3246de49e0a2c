"""The CLI's SSE parsing and the rendering of a streamed answer, and problem+json as one line."""

from __future__ import annotations

import json

import httpx
import pytest
from ragstream_cli.ask import StreamedAnswer, render_citations, render_stream
from ragstream_cli.client import ApiError, problem_from
from ragstream_cli.render import problem_line
from ragstream_cli.sse import parse_events
from rich.console import Console

pytestmark = pytest.mark.unit


def sse(*events: tuple[str, dict[str, object]]) -> list[str]:
    lines: list[str] = [": ping"]
    for name, data in events:
        lines += [f"event: {name}", f"data: {json.dumps(data)}", ""]
    return lines


def test_parse_events_follows_the_sse_rules() -> None:
    lines = ["event: token\r\n", "data: {\"text\": \"a\"}", "", ": keep-alive", "data: line1", "data: line2", "",
             "id: 7", "event: done", "data:{}"]  # fmt: skip
    events = list(parse_events(lines))
    assert [(e.name, e.data) for e in events] == [
        ("token", '{"text": "a"}'),
        ("message", "line1\nline2"),
        ("done", "{}"),
    ]
    assert events[0].payload() == {"text": "a"} and events[1].payload() == {}


def recording() -> Console:
    return Console(record=True, width=200, force_terminal=False, color_system=None)


def test_render_stream_prints_steps_tokens_then_citations() -> None:
    citation = {"index": 1, "document_id": "doc-1", "chunk_id": "c", "title": "Plants", "snippet": "light", "score": 1}
    lines = sse(
        ("step", {"step": 1, "query": "what is it", "reason": "the question", "sources": [], "new_sources": 2}),
        ("sources", {"query_id": "q", "results": [{"document_id": "doc-1", "title": "Plants", "text": "x"}]}),
        ("token", {"text": "Light "}),
        ("token", {"text": "[1]."}),
        ("done", {"answer": "Light [1].", "no_answer": False, "citations": [citation]}),
    )
    out = recording()
    answer = render_stream(parse_events(lines), out)
    render_citations(answer, out)
    text = out.export_text()
    assert answer.text == "Light [1]." and answer.done is not None and len(answer.steps) == 1
    assert text.index("step 1: what is it") < text.index("Light [1].") < text.index("[1] Plants (doc-1)")
    assert "light" in text.splitlines()[-1]


def test_search_mode_lists_sources_without_an_answer() -> None:
    out = recording()
    answer = StreamedAnswer(sources=[{"document_id": "d", "title": "T", "text": "chunk text", "score": 0.5}])
    render_citations(answer, out)
    assert "[1] T (d) 0.500" in out.export_text()


def test_error_event_raises_its_problem() -> None:
    lines = sse(("error", {"status": 504, "detail": "no answer within the query deadline", "query_id": "q"}))
    with pytest.raises(ApiError) as raised:
        render_stream(parse_events(lines), recording())
    assert raised.value.status == 504 and raised.value.extensions == {"query_id": "q"}


def test_problem_json_becomes_one_line() -> None:
    body = {
        "type": "urn:ragstream:problem:unsupported-content",
        "title": "Unsupported Media Type",
        "status": 415,
        "detail": "the bytes are not a PDF",
        "correlation_id": "abc",
    }
    response = httpx.Response(415, json=body, headers={"content-type": "application/problem+json"})
    line = problem_line(problem_from(response))
    assert line == "error: 415 urn:ragstream:problem:unsupported-content: the bytes are not a PDF (correlation_id abc)"
    assert "\n" not in line


def test_non_problem_bodies_still_render() -> None:
    plain = problem_from(httpx.Response(502, text="Bad gateway from the proxy"))
    assert problem_line(plain) == "error: 502 about:blank: Bad gateway from the proxy"
    validation = problem_from(httpx.Response(422, json={"detail": [{"loc": ["body", "x"], "msg": "bad"}]}))
    assert validation.status == 422 and "bad" in validation.detail
