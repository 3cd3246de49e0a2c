"""A real single-node Apache Kafka (KRaft) broker run as a local JVM, no Docker.

with LocalKafka(admin_password=credentials.secret("kafka-admin")) as kafka:
    print(kafka.bootstrap_servers)   # 127.0.0.1:<port>
    kafka.admin_settings             # KafkaSettings of the super user `ragstream-admin` (SASL/SCRAM-SHA-512)

Clients must authenticate (SASL_PLAINTEXT, SCRAM-SHA-512) and need ACLs (StandardAuthorizer, nothing allowed
without one); kafka_identities.py creates each service's principal and grants.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import hashlib
import logging
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Self

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from pydantic import SecretStr
from ragstream_common.kafka.acls import ADMIN_USER
from ragstream_common.kafka.connection import client_options
from ragstream_common.kafka_settings import KafkaSettings

from ragstream_devstack.kafka_artifacts import ensure_kafka_jars, require_java
from ragstream_devstack.kafka_config import (
    CLIENT_PROTOCOL,
    KAFKA_VERSION,
    SASL_MECHANISM,
    ExtraListener,
    new_cluster_id,
    render_log4j2,
    render_properties,
    scram_credential_argument,
    single_node_settings,
)
from ragstream_devstack.processes import (
    DevstackError,
    LocalProcess,
    ProcessSpec,
    free_port,
    port_accepts,
    stop_process_tree,
)

_log = logging.getLogger(__name__)

# Flags from Kafka's kafka-run-class.sh, with a heap sized for a laptop-scale dev broker.
DEFAULT_JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


class _ConfigFiles(NamedTuple):
    server: Path
    log4j2: Path


# Written next to the KRaft storage once it was formatted with the admin's SCRAM credential: a fingerprint of
# that password, so that storage formatted without one (before SASL) or for another password is recognised.
_SCRAM_MARKER = "admin-scram.sha256"


class LocalKafka(LocalProcess):
    """Kafka broker+controller bound to `host` on free (or given) ports.

    With no `data_dir` a temporary directory is used and removed on stop; a given
    `data_dir` is kept and reused (its storage is formatted only once, with the super user's SCRAM credential
    for `admin_password`; storage formatted without it, or for another password, is reset with a warning).
    With no `admin_password` a random one is made (read it back from `admin_settings`).
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        controller_port: int | None = None,
        startup_timeout: float = 60.0,
        jvm_options: tuple[str, ...] = DEFAULT_JVM_OPTIONS,
        extra_listeners: dict[str, ExtraListener] | None = None,
        admin_password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.controller_port = controller_port or free_port(host)
        self.startup_timeout = startup_timeout
        self.jvm_options = jvm_options
        self.extra_listeners = extra_listeners or {}
        self._given_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._data_dir: Path | None = self._given_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin_password = admin_password or secrets.token_urlsafe(24)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_settings(self) -> KafkaSettings:
        """How the super user reaches this broker (topic bootstrap, provisioning, test fixtures)."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol=CLIENT_PROTOCOL,
            sasl_mechanism=SASL_MECHANISM,
            sasl_username=ADMIN_USER,
            sasl_password=SecretStr(self._admin_password),
        )

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise DevstackError("LocalKafka has not been started")
        return self._data_dir

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    def start(self) -> Self:
        if self._proc is not None:
            return self
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="ragstream-kafka-"))
        # stop() also removes a temporary data dir when formatting failed.
        self._launch(f"Kafka {KAFKA_VERSION} on {self.bootstrap_servers}", self.log_file)
        _log.info("Kafka %s ready on %s (pid %s)", KAFKA_VERSION, self.bootstrap_servers, self.pid)
        return self

    def process_spec(self, name: str = "kafka") -> ProcessSpec:
        """Write the config, format storage once, and return how to run the broker.

        `start()` runs it as our child; `make run` hands it to its Supervisor, which restarts the broker on the
        same ports and data directory (it needs a given `data_dir`: a temporary one is made only by start()).
        """
        java = require_java()
        lib = ensure_kafka_jars()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        base = [java, *self.jvm_options, f"-Dlog4j2.configurationFile={config.log4j2}"]
        base += ["-cp", f"{lib}/*"]
        self._format_storage(base, config.server)
        return ProcessSpec(
            name=name,
            command=(*base, "kafka.Kafka", str(config.server)),
            log_file=self.data_dir / "logs" / "jvm.out",
            stop_signal=signal.SIGTERM,  # a controlled shutdown
            grace_s=30.0,
            ready=self.is_ready,
            startup_timeout_s=self.startup_timeout,
        )

    def is_ready(self) -> bool:
        """True once a metadata request, authenticated as the super user, lists the broker."""
        if not port_accepts(self.host, self.port):
            return False
        # A private loop in a worker thread: start() may be called from inside a running loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, _broker_registered(self.admin_settings)).result()

    def stop(self) -> None:
        """SIGTERM for a controlled shutdown, SIGKILL if that hangs; idempotent."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            stop_process_tree(self._proc, graceful=signal.SIGTERM, timeout=30)
            self._proc = None
        if self._given_dir is None and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def _write_config(self) -> _ConfigFiles:
        settings = single_node_settings(
            listen_host=self.host,
            advertised_host=self.host,
            broker_port=self.port,
            controller_port=self.controller_port,
            log_dir=self.data_dir / "kraft",
            extra_listeners=self.extra_listeners,
            admin_password=self._admin_password,
        )
        files = _ConfigFiles(self.data_dir / "server.properties", self.data_dir / "log4j2.properties")
        # It holds the broker's own (super user) password: owner-only, written before any content.
        files.server.touch(mode=0o600)
        files.server.chmod(0o600)
        files.server.write_text(render_properties(settings))
        files.log4j2.write_text(render_log4j2(self.log_file))
        return files

    def _format_storage(self, base: list[str], server_properties: Path) -> None:
        """`kafka-storage format` with the super user's SCRAM credential, once per data directory."""
        storage = self.data_dir / "kraft"
        marker = self.data_dir / _SCRAM_MARKER
        fingerprint = _fingerprint(self._admin_password)
        if (storage / "meta.properties").is_file():
            if marker.is_file() and marker.read_text().strip() == fingerprint:
                return
            self._reset_storage(storage)
        marker.unlink(missing_ok=True)
        command = [*base, "kafka.tools.StorageTool", "format", "--ignore-formatted"]
        command += [f"--cluster-id={new_cluster_id()}", "-c", str(server_properties)]
        command += ["--add-scram", scram_credential_argument(self._admin_password)]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).replace(self._admin_password, "***")
            raise DevstackError(f"Formatting Kafka storage in {self.data_dir} failed:\n{output}")
        marker.write_text(fingerprint + "\n")

    def _reset_storage(self, storage: Path) -> None:
        """Storage from before SASL (no super user credential) or for another admin password (the credentials
        directory was replaced) would never let anyone in: start it afresh, and say so."""
        message = (
            f"WARNING: local Kafka data in {storage} was reset: it was formatted without the SCRAM credential of"
            f" {ADMIN_USER} (made before the broker required SASL) or for another admin password. Topics are"
            " recreated empty; documents and chunks in Postgres are kept (events in flight are lost)."
        )
        _log.warning(message)
        print(message, file=sys.stderr, flush=True)
        shutil.rmtree(storage)


def _fingerprint(password: str) -> str:
    # A random 24-byte secret: an unsalted hash reveals nothing usable, and it is only compared.
    return hashlib.sha256(password.encode()).hexdigest()


async def _broker_registered(settings: KafkaSettings) -> bool:
    """True once a metadata request lists the (unfenced) broker."""
    client = AIOKafkaClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=3000, **client_options(settings)
    )
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except KafkaError:
        return False
    finally:
        await client.close()
