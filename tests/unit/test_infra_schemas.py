"""infra/schemas: the vendored CRD schemas kubeconform validates against are all accounted for in SOURCES.md,
match scripts/vendor_schemas.py, and cover every custom resource kind the kustomizations render."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "infra" / "schemas"
SOURCES_MD = SCHEMAS / "SOURCES.md"
KUSTOMIZATIONS = (
    "infra/k8s/overlays/dev",
    "infra/k8s/overlays/staging",
    "infra/k8s/overlays/prod",
    "infra/k8s/overlays/in-cluster",
    "infra/k8s/overlays/aws",
    "infra/k8s/overlays/aws-observability",
    "infra/k8s/observability",
    "infra/istio",
)


@functools.cache
def vendor_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vendor_schemas", ROOT / "scripts" / "vendor_schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def schema_files() -> set[str]:
    return {str(p.relative_to(SCHEMAS)) for p in SCHEMAS.rglob("*.json")}


def is_custom(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def schema_path(doc: dict[str, Any]) -> str:
    """kubeconform's `{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json` for a custom resource."""
    group, _, version = doc["apiVersion"].rpartition("/")
    return f"{group}/{doc['kind'].lower()}_{version}.json"


def test_sources_md_lists_every_schema_file_and_nothing_else() -> None:
    listed = set(re.findall(r"`([a-z0-9.-]+/[a-z0-9]+_v[0-9a-z]+\.json)`", SOURCES_MD.read_text()))
    assert listed == schema_files()


def test_sources_md_records_each_source_module_and_version() -> None:
    text = SOURCES_MD.read_text()
    for source in vendor_script().SOURCES:
        row = next(line for line in text.splitlines() if line.startswith(f"| {source.module} "))
        assert f"| {source.version} |" in row
        for path in source.paths:
            assert f"`{path}`" in row


def test_every_vendored_kind_has_a_schema_file_per_source() -> None:
    files = schema_files()
    for source in vendor_script().SOURCES:
        for kind in source.kinds:
            assert any(f.split("/")[1].startswith(f"{kind.lower()}_") for f in files), (source.module, kind)


@pytest.mark.parametrize("path", sorted(schema_files()))
def test_schema_is_a_strict_object_schema(path: str) -> None:
    schema = json.loads((SCHEMAS / path).read_text())
    assert schema["type"] == "object" and "properties" in schema
    spec = schema["properties"].get("spec")
    # The conversion made nested objects refuse unknown fields, as kubectl's strict validation does.
    if spec and "properties" in spec and not spec.get("x-kubernetes-preserve-unknown-fields"):
        assert spec["additionalProperties"] is False


def test_conversion_follows_openapi2jsonschema() -> None:
    convert = vendor_script().to_json_schema
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}]}},
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        },
    }
    converted = convert(schema)
    assert "additionalProperties" not in converted
    assert converted["properties"]["spec"]["additionalProperties"] is False
    assert converted["properties"]["spec"]["properties"]["port"]["oneOf"] == [{"type": "string"}, {"type": "integer"}]
    assert "additionalProperties" not in converted["properties"]["status"]


@functools.cache
def rendered_custom_resources() -> tuple[tuple[str, dict[str, Any]], ...]:
    found: list[tuple[str, dict[str, Any]]] = []
    for target in KUSTOMIZATIONS:
        built = subprocess.run(
            ["kubectl", "kustomize", str(ROOT / target)], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        found += [(target, d) for d in yaml.safe_load_all(built) if d and is_custom(d["apiVersion"])]
    return tuple(found)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_every_rendered_custom_resource_kind_has_a_schema() -> None:
    resources = rendered_custom_resources()
    kinds = {doc["kind"] for _, doc in resources}
    # The platform's operators all appear: a kustomization that stopped rendering them would pass vacuously.
    assert {"ScaledObject", "ExternalSecret", "Certificate", "ServiceEntry", "Kafka", "Cluster", "Rollout"} <= kinds
    missing = {(target, schema_path(doc)) for target, doc in resources if schema_path(doc) not in schema_files()}
    assert not missing


def test_every_custom_resource_in_the_manifests_has_a_schema() -> None:
    """Also the sources kustomize does not reach (install-time files excepted: IstioOperator is istioctl's input,
    never applied to the cluster)."""
    missing = set()
    for directory in (ROOT / "infra" / "k8s", ROOT / "infra" / "istio"):
        for path in directory.rglob("*.yaml"):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or "apiVersion" not in doc or doc.get("kind") in ("Kustomization", "Component"):
                    continue
                if is_custom(doc["apiVersion"]) and doc["kind"] != "IstioOperator" and "metadata" in doc:
                    if schema_path(doc) not in schema_files() and "spec" in doc:
                        missing.add((str(path.relative_to(ROOT)), schema_path(doc)))
    assert not missing
