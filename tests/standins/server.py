"""Run a Starlette stand-in of a third-party service on 127.0.0.1 in a background thread (uvicorn).

    with StandinServer(app, name="graph-standin") as server:
        httpx.get(f"{server.base_url}/v1.0/me")

The stand-ins (`openai_server.py`, `graph_server.py`, `box_server.py`, `drive_server.py`) speak the provider's
published wire protocol; this is only their lifecycle: a free port, start, wait until it listens, stop.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import uvicorn
from starlette.types import ASGIApp


class StandinServer:
    def __init__(self, app: ASGIApp, *, name: str, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._app = app
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StandinServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self._name} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class Standin:
    """What every stand-in shares: `_app()` served on `host` at a free port in a thread, `base_url`, `with`.

    Subclasses set `standin_name` and `host`, build `_app()`, and start/stop threads of their own (notification
    senders) in `_start_helpers` / `_stop_helpers`."""

    standin_name = "standin"
    host = "127.0.0.1"
    port = 0
    _server: StandinServer | None = None

    def _app(self) -> ASGIApp:
        raise NotImplementedError

    def _start_helpers(self) -> None:
        """Before the server starts: threads that call out (webhook deliveries)."""

    def _stop_helpers(self) -> None:
        """After the server stopped."""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._start_helpers()
        self._server = StandinServer(self._app(), name=self.standin_name, host=self.host).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()
        self._stop_helpers()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
