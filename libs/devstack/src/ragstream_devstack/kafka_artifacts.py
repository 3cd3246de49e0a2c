"""Resolve the Kafka broker jars from Maven Central into a project cache, and check Java.

The jars land in `<cache>/kafka/<version>/lib`; `<cache>` is $RAGSTREAM_CACHE_DIR or
`<repo>/.cache` (the directory holding uv.lock), falling back to ~/.cache/ragstream.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from ragstream_devstack.kafka_config import (
    KAFKA_VERSION,
    LOG4J_VERSION,
    SCALA_VERSION,
    parse_java_major,
)
from ragstream_devstack.processes import DevstackError, MissingToolError, require_executable

CACHE_ENV = "RAGSTREAM_CACHE_DIR"
MIN_JAVA = 17
JAVA_HINT = "apt-get install openjdk-17-jre-headless (or any JDK/JRE 17+ on PATH)"
MAVEN_HINT = "apt-get install maven"
_RESOLVED_MARKER = "resolved.ok"


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser().resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "uv.lock").is_file():
            return parent / ".cache"
    return Path.home() / ".cache" / "ragstream"


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / "kafka" / version


def render_pom(version: str = KAFKA_VERSION) -> str:
    """A throwaway pom whose runtime dependency closure is exactly the broker classpath."""
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ragstream.devstack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


def require_java() -> str:
    """Path of a Java 17+ `java`, or an error that says what to install."""
    java = require_executable("java", JAVA_HINT)
    probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    major = parse_java_major(probe.stderr + probe.stdout)
    if major is None or major < MIN_JAVA:
        raise MissingToolError(
            f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+, but `{java} -version` reports "
            f"{major or 'an unknown version'}. Install it, e.g.: {JAVA_HINT}"
        )
    return java


def ensure_kafka_jars(version: str = KAFKA_VERSION) -> Path:
    """The lib directory with the broker jars, resolving them with mvn on first use.

    A file lock serialises concurrent first runs (several test sessions may start at once);
    the marker file is written last so an interrupted resolution is redone.
    """
    home = kafka_home(version)
    lib = home / "lib"
    if (home / _RESOLVED_MARKER).is_file():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / _RESOLVED_MARKER).is_file():
            _resolve_with_maven(home, lib, version)
            (home / _RESOLVED_MARKER).write_text(f"kafka_{SCALA_VERSION}:{version}\n")
    return lib


def _resolve_with_maven(home: Path, lib: Path, version: str) -> None:
    mvn = require_executable("mvn", MAVEN_HINT)
    shutil.rmtree(lib, ignore_errors=True)
    pom = home / "pom.xml"
    pom.write_text(render_pom(version))
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0 or not any(lib.glob(f"kafka_{SCALA_VERSION}-*.jar")):
        raise DevstackError(
            f"mvn could not resolve Kafka {version} into {lib} (exit {result.returncode}). "
            f"Maven Central must be reachable or ~/.m2 pre-populated.\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
