"""The guarded fetcher against a real HTTP server on 127.0.0.1."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ragstream_ingest.fetch import (
    BlockedAddressError,
    FetchPolicy,
    HttpFetcher,
    ResponseTooLargeError,
    fetch_url,
)

pytestmark = pytest.mark.integration

DOCUMENT = b"# Runbook\n\nRestart the consumer group after a deploy.\n"
LIMIT = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/runbook.md":
            self._send(200, DOCUMENT, {"Content-Type": "text/markdown; charset=utf-8"})
        elif self.path == "/moved":
            self._send(302, b"", {"Location": "/runbook.md"})
        elif self.path == "/declared-huge":
            self._send(200, b"z" * (LIMIT + 1), {"Content-Type": "text/plain"})
        elif self.path == "/streamed-huge":
            self._stream_without_length(chunks=1024, size=1024)
        else:
            self._send(404, b"not found", {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _stream_without_length(self, chunks: int, size: int) -> None:
        self.protocol_version = "HTTP/1.0"  # no Content-Length: the body ends at close
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        try:
            for _ in range(chunks):
                self.wfile.write(b"s" * size)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up at its size cap, as it should

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _dev_fetcher() -> HttpFetcher:
    return HttpFetcher(FetchPolicy(timeout_s=10, max_bytes=LIMIT, allow_private_networks=True))


async def test_local_server_is_fetched_when_private_networks_are_allowed(server_url: str) -> None:
    result = await fetch_url(f"{server_url}/moved", timeout_s=10, allow_private_networks=True)
    assert result.data == DOCUMENT
    assert result.content_type == "text/markdown; charset=utf-8"
    assert (result.url, result.filename) == (f"{server_url}/runbook.md", "runbook.md")


async def test_local_server_is_refused_by_default(server_url: str) -> None:
    with pytest.raises(BlockedAddressError):
        await fetch_url(f"{server_url}/runbook.md", timeout_s=10)
    with pytest.raises(BlockedAddressError):
        await fetch_url(server_url.replace("127.0.0.1", "localhost") + "/runbook.md")


@pytest.mark.parametrize("path", ["/declared-huge", "/streamed-huge"])
async def test_size_cap_aborts_an_oversize_body(server_url: str, path: str) -> None:
    with pytest.raises(ResponseTooLargeError) as caught:
        await _dev_fetcher().fetch(server_url + path)
    assert caught.value.error_class == "too_large"
