"""services/Dockerfile and .dockerignore: one locked, non-root image recipe per service; no torch at run time
(embed ships an ONNX export built in a throwaway environment)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser
from ragstream_common.healthcheck import settings_class
from ragstream_common.registry import SERVICE_NAMES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "services" / "Dockerfile"


def instructions(kind: str, service: str | None = None) -> list[str]:
    """The values of every `kind` instruction, with ${SERVICE} as `service` builds it."""
    structure = DockerfileParser(path=str(DOCKERFILE)).structure
    values = [i["value"] for i in structure if i["instruction"] == kind]
    return [v.replace("${SERVICE}", service) for v in values] if service else values


def final_stage() -> list[dict[str, str]]:
    structure: list[dict[str, str]] = DockerfileParser(path=str(DOCKERFILE)).structure
    last_from = max(n for n, i in enumerate(structure) if i["instruction"] == "FROM")
    return structure[last_from:]


def locked_closure(root: str) -> set[str]:
    """Every package `uv sync --no-dev --package <root>` installs, from the dependency graph in uv.lock."""
    return locked_closure_with_extra(root, None)


def locked_closure_with_extra(root: str, root_extra: str | None) -> set[str]:
    """... with `--extra root_extra` as well."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    # Nodes are (package, extra); extra None stands for the package's own dependencies.
    seen: set[tuple[str, str | None]] = set()
    pending: list[tuple[str, str | None]] = [(root, None), *([(root, root_extra)] if root_extra else [])]
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


def test_one_dockerfile_serves_every_service() -> None:
    assert sorted(p.parent.name for p in (ROOT / "services").glob("*/Dockerfile")) == []
    assert any("SERVICE" in run and "required" in run for run in instructions("RUN"))


def test_final_stage_is_python_311_slim_and_runs_as_uid_10001() -> None:
    assert any(a.startswith("PYTHON_IMAGE=python:3.11-slim") for a in instructions("ARG"))
    stage = final_stage()
    assert stage[0]["value"].startswith("${PYTHON_IMAGE}")
    assert [i["value"] for i in stage if i["instruction"] == "USER"] == ["10001:10001"]
    env = " ".join(i["value"] for i in stage if i["instruction"] == "ENV")
    assert "RAGSTREAM_BIND_HOST=0.0.0.0" in env and "HF_HUB_OFFLINE=1" in env


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_venv_is_synced_frozen_without_dev_deps_for_this_service_only(service: str) -> None:
    runs = instructions("RUN", service)
    syncs = [run for run in runs if "uv sync" in run and "/export/.venv" not in run]
    assert len(syncs) == 2
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync and "--no-editable" in sync
        assert f"--package ragstream-{service}" in sync
        assert sum(f"ragstream-{other}" in sync for other in SERVICE_NAMES) == 1
    copied = " ".join(instructions("COPY"))
    assert "ghcr.io/astral-sh/uv" in " ".join(instructions("ARG")) and "--from=uv /uv" in copied


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_no_runtime_image_locks_torch(service: str) -> None:
    closure = locked_closure(f"ragstream-{service}")
    assert not {"torch", "sentence-transformers", "onnx", "ragstream-devstack"} & closure
    assert ("onnxruntime" in closure) == (service == "embed")


def test_embed_exports_its_model_in_a_throwaway_environment_and_ships_only_the_export() -> None:
    (export,) = [run for run in instructions("RUN", "embed") if "/export/.venv" in run]
    assert "--extra export" in export and "--package ragstream-embed" in export
    assert "python -m ragstream_embed.onnx_export --cache-dir /app/models" in export
    assert "torch" in locked_closure_with_extra("ragstream-embed", "export")
    copied = [i["value"] for i in final_stage() if i["instruction"] == "COPY"]
    assert copied == ["--from=build /app/.venv /app/.venv", "--from=build /app/models /app/models"]
    env = " ".join(i["value"] for i in final_stage() if i["instruction"] == "ENV")
    assert "EMBED_MODEL_DIR=/app/models" in env


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_entrypoint_is_the_service_console_script_with_a_healthcheck(service: str) -> None:
    manifest = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    assert f"ragstream-{service}" in manifest["project"]["scripts"]
    assert any(
        f"ln -s /app/.venv/bin/ragstream-{service} /app/.venv/bin/ragstream-service" in run
        for run in instructions("RUN", service)
    )
    assert instructions("ENTRYPOINT") == ['["ragstream-service"]']
    (health,) = instructions("HEALTHCHECK")
    assert "CMD python -m ragstream_common.healthcheck" in health
    # The healthcheck finds the port through the service's one settings class.
    assert settings_class(service)().grpc_port > 0


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_dockerignore_keeps_every_copy_source_and_drops_local_state(service: str) -> None:
    context = exclude_paths(str(ROOT), (ROOT / ".dockerignore").read_text().splitlines())
    for copy in instructions("COPY", service):
        if copy.startswith("--from="):
            continue
        *sources, _destination = copy.split()
        for source in sources:
            assert source in context, f"{service}: COPY {source} is not in the build context"
    assert not any(p.startswith((".venv/", ".git/", "tests/", "infra/")) for p in context)
    assert not any("__pycache__" in p for p in context)
