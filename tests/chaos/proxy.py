"""A small TCP proxy for network faults between one service and a dependency (instead of toxiproxy).

    proxy = await TcpProxy("127.0.0.1", upstream_port).start()
    proxy.partition()   # connections hang: bytes are swallowed, nothing is answered, new connections too
    proxy.heal()        # connections open during the partition are reset (the peer sees the break), then pass
    proxy.delay_s = 0.2 # latency on every chunk in both directions

It runs in the test's event loop, so the test must not block that loop while traffic flows through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from ragstream_devstack.processes import free_port


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, listen_port: int | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = listen_port or free_port()
        self.delay_s = 0.0
        self.partitioned = False
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._hung: set[asyncio.StreamWriter] = set()

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._reset(self._connections | self._hung)
            await self._server.wait_closed()
            self._server = None

    def partition(self) -> None:
        """Blackhole: what is in flight and what comes next is swallowed; peers wait for their own timeouts."""
        self.partitioned = True

    def heal(self) -> None:
        """End the partition; connections it hung are reset, as a peer's TCP stack eventually would."""
        self.partitioned = False
        self._reset(set(self._hung))
        self._hung.clear()

    def _reset(self, writers: set[asyncio.StreamWriter]) -> None:
        for writer in writers:
            writer.transport.abort()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.partitioned:
            self._hung.add(client_writer)
            await _drain_forever(client_reader)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._connections |= {client_writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, client_writer),
                self._pipe(upstream_reader, client_writer, client_writer),
            )
        finally:
            self._connections -= {client_writer, upstream_writer}
            self._reset({client_writer, upstream_writer})

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.partitioned:
                    self._hung.add(client)
                    continue  # swallowed
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


async def _drain_forever(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(65536):
            pass
