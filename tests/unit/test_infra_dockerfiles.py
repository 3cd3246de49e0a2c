"""services/*/Dockerfile and .dockerignore: locked, per-service, non-root images; torch only in embed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "ingest", "embed", "retrieve", "generate")


def instructions(service: str, kind: str) -> list[str]:
    parser = DockerfileParser(path=str(ROOT / "services" / service / "Dockerfile"))
    return [i["value"] for i in parser.structure if i["instruction"] == kind]


def final_stage(service: str) -> list[dict[str, str]]:
    structure = DockerfileParser(path=str(ROOT / "services" / service / "Dockerfile")).structure
    last_from = max(n for n, i in enumerate(structure) if i["instruction"] == "FROM")
    return structure[last_from:]


def locked_closure(root: str) -> set[str]:
    """Every package `uv sync --no-dev --package <root>` installs, from the dependency graph in uv.lock."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    # Nodes are (package, extra); extra None stands for the package's own dependencies.
    seen: set[tuple[str, str | None]] = set()
    pending: list[tuple[str, str | None]] = [(root, None)]
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        name, extra = node
        package = packages[name]
        edges = package.get("optional-dependencies", {}).get(extra, []) if extra else package.get("dependencies", [])
        pending += [(d["name"], None) for d in edges]
        pending += [(d["name"], e) for d in edges for e in d.get("extra", ())]
        if extra:
            pending.append((name, None))
    return {name for name, _ in seen}


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_is_python_311_slim_and_runs_as_uid_10001(service) -> None:
    assert any(a.startswith("PYTHON_IMAGE=python:3.11-slim") for a in instructions(service, "ARG"))
    stage = final_stage(service)
    assert stage[0]["value"].startswith("${PYTHON_IMAGE}")
    users = [i["value"] for i in stage if i["instruction"] == "USER"]
    assert users == ["10001:10001"]


@pytest.mark.parametrize("service", SERVICES)
def test_venv_is_synced_frozen_without_dev_deps_for_this_service_only(service) -> None:
    syncs = [run for run in instructions(service, "RUN") if "uv sync" in run]
    assert len(syncs) == 2
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync and "--no-editable" in sync
        assert f"--package ragstream-{service}" in sync
    copied = " ".join(instructions(service, "COPY"))
    assert "ghcr.io/astral-sh/uv" in " ".join(instructions(service, "ARG")) and "--from=uv /uv" in copied


def test_only_the_embed_image_syncs_the_embed_package() -> None:
    syncing_embed = [s for s in SERVICES if any("ragstream-embed" in r for r in instructions(s, "RUN"))]
    assert syncing_embed == ["embed"]


@pytest.mark.parametrize("service", SERVICES)
def test_torch_is_only_locked_into_the_embed_image(service) -> None:
    closure = locked_closure(f"ragstream-{service}")
    assert ("torch" in closure) == (service == "embed")
    assert "ragstream-devstack" not in closure


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_the_service_console_script_with_a_healthcheck(service) -> None:
    manifest = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    assert f"ragstream-{service}" in manifest["project"]["scripts"]
    assert instructions(service, "ENTRYPOINT") == [f'["ragstream-{service}"]']
    (health,) = instructions(service, "HEALTHCHECK")
    assert "CMD" in health
    assert ("/healthz" in health) if service == "gateway" else ("grpc_health.v1" in health)


def test_dockerignore_keeps_every_copy_source_and_drops_local_state() -> None:
    context = exclude_paths(str(ROOT), (ROOT / ".dockerignore").read_text().splitlines())
    for service in SERVICES:
        for copy in instructions(service, "COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _destination = copy.split()
            for source in sources:
                assert source in context, f"{service}: COPY {source} is not in the build context"
    assert not any(p.startswith((".venv/", ".git/", "tests/", "infra/")) for p in context)
    assert not any("__pycache__" in p for p in context)
