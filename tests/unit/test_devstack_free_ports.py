"""Ports for servers the devstack starts: never one the kernel may hand an outgoing connection meanwhile, never
the same one twice."""

from __future__ import annotations

import socket

import pytest
from ragstream_devstack import processes
from ragstream_devstack.processes import free_port

pytestmark = pytest.mark.unit


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    low = processes._ephemeral_range_start()
    assert all(processes.LOWEST_PORT <= port < low for port in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", ports[0]))


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        assert not processes._bindable("127.0.0.1", busy)
        draws = iter([busy, busy + 1 if busy + 1 != busy else busy + 2])
        monkeypatch.setattr(processes.random, "randrange", lambda low, high: next(draws))
        monkeypatch.setattr(processes, "_HANDED_OUT", set())
        assert free_port() != busy
