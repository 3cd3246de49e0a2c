"""The `ragstream` commands end to end in-process, with httpx.MockTransport standing in for the gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from ragstream_cli.main import app
from ragstream_cli.session import Session
from typer.testing import CliRunner

pytestmark = pytest.mark.unit
runner = CliRunner()
PROBLEM = {"content-type": "application/problem+json"}


def invoke(handler: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    session = Session(transport=httpx.MockTransport(handler))
    environment = {"RAGSTREAM_API_KEY": "k-1", "RAGSTREAM_CONFIG": "/nonexistent/config.toml", **(env or {})}
    return runner.invoke(app, list(args), obj=session, env=environment)


def test_api_key_sent_and_problem_printed_as_one_line_exit_1() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {"type": "urn:ragstream:problem:document-not-found", "status": 404, "detail": "no document 'x'"}
        return httpx.Response(404, json=body, headers=PROBLEM)

    result = invoke(handler, "docs", "show", "x")
    assert result.exit_code == 1
    assert "error: 404 urn:ragstream:problem:document-not-found: no document 'x'" in result.output
    assert seen[0].headers["authorization"] == "Bearer k-1" and seen[0].url.path == "/v1/documents/x"


def test_flags_override_environment() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    result = invoke(handler, "--url", "http://flag:9", "--api-key", "flag-key", "docs", "ls", "--status", "indexed")
    assert result.exit_code == 0, result.output
    assert str(seen[0].url).startswith("http://flag:9/v1/documents") and seen[0].url.params["status"] == "indexed"
    assert seen[0].headers["authorization"] == "Bearer flag-key"


def test_usage_errors_exit_2() -> None:
    assert invoke(lambda r: httpx.Response(500), "ask", "q", "--filter", "novalue").exit_code == 2
    assert invoke(lambda r: httpx.Response(500), "ask", "q", "--mode", "chat").exit_code == 2
    missing_admin = invoke(lambda r: httpx.Response(500), "tenants", "show", "acme")
    assert missing_admin.exit_code == 2 and "admin token" in missing_admin.output


def test_ask_streams_and_sends_the_body() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.headers["accept"] == "text/event-stream"
        done = {"answer": "Yes [1].", "citations": [{"index": 1, "document_id": "d", "title": "Doc", "snippet": "s"}]}
        stream = "".join(
            f"event: {name}\ndata: {json.dumps(data)}\n\n"
            for name, data in [("sources", {"results": []}), ("token", {"text": "Yes [1]."}), ("done", done)]
        )
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    result = invoke(handler, "ask", "is it?", "--mode", "agent", "--max-steps", "3", "--filter", "lang=en")
    assert result.exit_code == 0, result.output
    assert bodies == [{"question": "is it?", "mode": "agent", "max_steps": 3, "filters": {"metadata": {"lang": "en"}}}]
    assert "Yes [1]." in result.output and "[1] Doc (d)" in result.output


def test_ingest_uploads_follows_and_fails_with_reason(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good")
    (tmp_path / "same.txt").write_text("same")
    (tmp_path / "bad.pdf").write_bytes(b"garbage")
    polls: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            content = request.content
            if b"garbage" in content:
                problem = {"type": "urn:ragstream:problem:unsupported-content", "status": 415, "detail": "not a PDF"}
                return httpx.Response(415, json=problem, headers=PROBLEM)
            assert b'name="metadata"' in content and b"source_path" in content and b'"team": "a"' in content
            if b'name="id"\r\n\r\nsame.txt' in content:
                return httpx.Response(
                    200, json={"document_id": "same.txt", "version": 2, "status": "indexed", "unchanged": True}
                )
            return httpx.Response(202, json={"document_id": "good.md", "version": 1, "status": "received"})
        document = request.url.path.rsplit("/", 1)[1]
        polls[document] = polls.get(document, 0) + 1
        status = "indexed" if polls[document] > 1 else "processing"
        return httpx.Response(200, json={"document_id": document, "status": status, "chunk_count": 1})

    result = invoke(handler, "ingest", str(tmp_path), "--metadata", "team=a", "-c", "2")
    assert result.exit_code == 1, result.output
    assert "3 files: 1 indexed, 1 skipped (unchanged), 1 failed" in result.output
    assert "unsupported-content" in result.output and polls == {"good.md": 2}


def test_status_reports_each_check_and_exits_1_when_not_ready() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            assert "authorization" not in request.headers
            return httpx.Response(200, json={"status": "ok"})
        body = {"type": "urn:ragstream:problem:not-ready", "status": 503, "detail": "not ready: kafka",
                "checks": {"database": True, "kafka": False}}  # fmt: skip
        return httpx.Response(503, json=body, headers=PROBLEM)

    result = invoke(handler, "status")
    assert result.exit_code == 1
    assert "NOT READY" in result.output and "kafka" in result.output and "FAILING" in result.output
