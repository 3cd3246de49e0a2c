"""Metering worker settings (env prefix METERING_; Kafka and Postgres are the shared KAFKA_* and DATABASE_URL)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict
from ragstream_common.config import ServiceSettings
from ragstream_common.registry import SERVICES


class MeteringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="METERING_", extra="ignore")

    service_name: str = "metering"
    grpc_port: int = Field(default=SERVICES["metering"].grpc_port, ge=0, le=65535)
    metrics_port: int = Field(default=SERVICES["metering"].metrics_port, ge=0, le=65535)
    # The faust app id, which is its consumer group (the registry's) and the prefix of its internal topics
    # (`<group_id>-usage_windows-changelog`, `<group_id>-__assignor-__leader`), which its ACLs must cover.
    group_id: str = "ragstream-metering"
    # faust's own data directory; the images' root filesystem is read-only, /tmp is writable. Tables live in
    # memory (rebuilt from the changelog), so nothing there must outlive the process: one per process, so that
    # two workers on one host never share it.
    data_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / f"ragstream-metering-{os.getpid()}")
    # How often windows that changed are written to Postgres: the freshness of GET /v1/usage.
    flush_interval_s: float = Field(default=5.0, gt=0, le=60)
    # Facts are counted in batches of at most `batch_max`, gathered for at most `batch_window_s`: a table part
    # that gains several facts of a batch is written (and its changelog record sent) once, not once per fact.
    # The window adds at most this much to the freshness of GET /v1/usage.
    batch_max: int = Field(default=500, ge=1, le=10_000)
    batch_window_s: float = Field(default=0.5, gt=0, le=5)
    # How long a window is kept (and can still take late facts) after it ends. A fact older than this, by wall
    # clock, lands in a window recounted from less state: the GREATEST upsert keeps the larger total, so it is
    # never double counted, but it may be missed. Kafka keeps rag.usage.recorded.v1 a week; keep outages shorter
    # than this.
    window_expires_s: float = Field(default=2 * 3600.0, ge=120)
    # How long a silent (killed) worker keeps its partitions before the group moves them: the platform's
    # consumers' 30 s (faust's default is 60 s).
    session_timeout_s: float = Field(default=30.0, ge=6, le=300)
    # Replication of the changelog topic faust creates (the cluster's, like the topic bootstrap's).
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices("METERING_TOPIC_REPLICATION_FACTOR", "KAFKA_REPLICATION_FACTOR"),
    )
