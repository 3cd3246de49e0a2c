"""The `ragstream` CLI against the running system, as a user runs it: a subprocess with RAGSTREAM_URL and
RAGSTREAM_API_KEY, talking to the public HTTP API only."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from ragstream_common.registry import SERVICES
from ragstream_devstack.system import LocalServices
from support.samples import FORMATS
from support.system_plugin import ADMIN_TOKEN

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Run:
    code: int
    output: str


async def ragstream(system: LocalServices, tmp_path: Path, *args: str, admin: bool = False) -> Run:
    env = {
        **os.environ,
        "RAGSTREAM_URL": system.gateway_url,
        "RAGSTREAM_API_KEY": "dev-key",
        "RAGSTREAM_CONFIG": str(tmp_path / "config.toml"),  # never the developer's own profiles
        "COLUMNS": "200",
    }
    env.pop("RAGSTREAM_ADMIN_TOKEN", None)
    if admin:
        env["RAGSTREAM_ADMIN_TOKEN"] = ADMIN_TOKEN
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ragstream_cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return Run(process.returncode or 0, output.decode())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """One file of every supported format, built by the shared sample builders."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    for index, (filename, _type, make) in enumerate(FORMATS.values()):
        target = root / "sub" / filename if index % 2 else root / filename
        target.write_bytes(make())
    return root


async def test_ingest_folder_then_rerun_is_all_skipped_then_ask_cites(
    system: LocalServices, tmp_path: Path, folder: Path
) -> None:
    run_id = uuid.uuid4().hex[:8]
    args = ("ingest", str(folder), "--recursive", "--id-prefix", f"cli-{run_id}:", "--metadata", f"run={run_id}")
    first = await ragstream(system, tmp_path, *args)
    assert first.code == 0, first.output
    assert f"{len(FORMATS)} files: {len(FORMATS)} indexed, 0 skipped (unchanged), 0 failed" in first.output

    again = await ragstream(system, tmp_path, *args)
    assert again.code == 0, again.output
    assert f"{len(FORMATS)} files: 0 indexed, {len(FORMATS)} skipped (unchanged), 0 failed" in again.output

    listed = await ragstream(system, tmp_path, "docs", "show", f"cli-{run_id}:sub:notes.md")
    assert listed.code == 0 and "indexed" in listed.output, listed.output

    asked = await ragstream(system, tmp_path, "ask", "What does the Calvin cycle fix?", "--filter", f"run={run_id}")
    assert asked.code == 0, asked.output
    assert "Sources" in asked.output and "[1] " in asked.output, asked.output
    assert f"cli-{run_id}:" in asked.output  # the citations name our documents


async def test_corrupt_file_fails_with_its_reason(system: LocalServices, tmp_path: Path, folder: Path) -> None:
    (folder / "broken.pdf").write_bytes(b"this is not a pdf at all \x00\x01\x02")
    run_id = uuid.uuid4().hex[:8]
    result = await ragstream(system, tmp_path, "ingest", str(folder), "--id-prefix", f"bad-{run_id}:")
    assert result.code == 1, result.output
    failed_line = next(line for line in result.output.splitlines() if "broken.pdf" in line and "failed" in line)
    assert "415" in failed_line or "unsupported" in failed_line, failed_line
    assert "1 failed" in result.output


WORKERS = sorted(name for name, spec in SERVICES.items() if spec.http_port is None)


async def test_status_and_problem_lines(system: LocalServices, tmp_path: Path) -> None:
    status = await ragstream(system, tmp_path, "status")
    assert status.code == 0 and "ready" in status.output, status.output
    assert "worker health: needs the admin token" in status.output
    missing = await ragstream(system, tmp_path, "docs", "show", f"no-such-{uuid.uuid4().hex[:6]}")
    assert missing.code == 1
    assert "urn:ragstream:problem:document-not-found" in missing.output
    assert len(missing.output.strip().splitlines()) == 1


async def test_status_shows_every_service_serving(system: LocalServices, tmp_path: Path) -> None:
    """With the admin token: the gateway asks every worker's grpc.health.v1 (GET /v1/admin/health)."""
    shown = await ragstream(system, tmp_path, "status", admin=True)
    assert shown.code == 0, shown.output
    for name in WORKERS:
        assert any(f" {name} " in line and "SERVING" in line for line in shown.output.splitlines()), shown.output
    assert "every service SERVING" in shown.output

    as_json = await ragstream(system, tmp_path, "status", "--json", admin=True)
    assert as_json.code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["ready"] is True and report["healthy"] is True
    assert {s["name"]: s["status"] for s in report["services"]} == dict.fromkeys(WORKERS, "SERVING")
    for service in report["services"]:
        assert service["address"] == system.grpc_address(service["name"]) and service["latency_ms"] >= 0
