"""Vendor the JSON schemas kubeconform needs for the custom resources of infra/k8s and infra/istio.

Each operator's CustomResourceDefinitions come from its Go module (`go mod download -json`, through the Go module
proxy) or, where the proxy has no usable version (Strimzi, the AWS Load Balancer Controller), from a git checkout
at the release tag (`--checkout <repository>=<dir>`; a bare clone will do).
Every served version's openAPIV3Schema becomes `infra/schemas/<group>/<kind>_<version>.json`, kubeconform's
layout for CRDs (`-schema-location 'infra/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'`),
converted the way kubeconform's openapi2jsonschema.py does: objects with `properties` refuse unknown fields
(kubectl's strict validation), `x-kubernetes-int-or-string` accepts either. SOURCES.md records where each file
came from. Kubernetes' own kinds are not vendored: the tests take them from the kubernetes-validate package.

    python scripts/vendor_schemas.py \
        --checkout github.com/strimzi/strimzi-kafka-operator=/path/to/strimzi-kafka-operator \
        --checkout github.com/kubernetes-sigs/aws-load-balancer-controller=/path/to/aws-load-balancer-controller
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "infra" / "schemas"


@dataclass(frozen=True)
class CrdSource:
    """CRD files of one operator release and the kinds taken from them."""

    origin: str  # "go" (a Go module) or "git" (a checkout at `version`, a tag, given by --checkout)
    module: str
    version: str
    paths: tuple[str, ...]
    kinds: tuple[str, ...]


SOURCES = (
    CrdSource(
        "go",
        "istio.io/api",
        "v1.32.0",
        ("kubernetes/customresourcedefinitions.gen.yaml",),
        (
            "AuthorizationPolicy",
            "DestinationRule",
            "Gateway",
            "PeerAuthentication",
            "RequestAuthentication",
            "ServiceEntry",
            "Sidecar",
            "Telemetry",
            "VirtualService",
        ),
    ),
    CrdSource(
        "go",
        "github.com/argoproj/argo-rollouts",
        "v1.10.1",
        tuple(
            f"manifests/crds/{name}-crd.yaml"
            for name in ("rollout", "analysis-template", "cluster-analysis-template", "analysis-run", "experiment")
        ),
        ("Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun", "Experiment"),
    ),
    CrdSource(
        "go",
        "github.com/kedacore/keda/v2",
        "v2.21.0",
        tuple(
            f"config/crd/bases/keda.sh_{name}.yaml"
            for name in ("scaledobjects", "triggerauthentications", "clustertriggerauthentications")
        ),
        ("ScaledObject", "TriggerAuthentication", "ClusterTriggerAuthentication"),
    ),
    CrdSource(
        "go",
        "github.com/cert-manager/cert-manager",
        "v1.21.2",
        tuple(f"deploy/crds/cert-manager.io_{name}.yaml" for name in ("certificates", "clusterissuers", "issuers")),
        ("Certificate", "ClusterIssuer", "Issuer"),
    ),
    CrdSource(
        "go",
        "github.com/external-secrets/external-secrets",
        "v1.3.2",
        tuple(
            f"config/crds/bases/external-secrets.io_{name}.yaml"
            for name in ("externalsecrets", "clustersecretstores", "secretstores")
        ),
        ("ExternalSecret", "ClusterSecretStore", "SecretStore"),
    ),
    CrdSource(
        "go",
        "github.com/prometheus-operator/prometheus-operator",
        "v0.85.0",
        tuple(
            f"example/prometheus-operator-crd/monitoring.coreos.com_{name}.yaml"
            for name in ("servicemonitors", "podmonitors", "prometheusrules")
        ),
        ("ServiceMonitor", "PodMonitor", "PrometheusRule"),
    ),
    CrdSource(
        "go",
        "github.com/cloudnative-pg/cloudnative-pg",
        "v1.29.0",
        tuple(
            f"config/crd/bases/postgresql.cnpg.io_{name}.yaml"
            for name in ("clusters", "scheduledbackups", "backups", "poolers")
        ),
        ("Cluster", "ScheduledBackup", "Backup", "Pooler"),
    ),
    CrdSource(
        "go",
        "github.com/aws/amazon-vpc-resource-controller-k8s",
        "v1.8.2",
        ("config/crd/bases/vpcresources.k8s.aws_securitygrouppolicies.yaml",),
        ("SecurityGroupPolicy",),
    ),
    # Its v3 releases are the Go module sigs.k8s.io/aws-load-balancer-controller/v3, which the module proxy this
    # project uses does not serve (403); the unsuffixed path lists only v1.1.9, which predates TargetGroupBinding.
    CrdSource(
        "git",
        "github.com/kubernetes-sigs/aws-load-balancer-controller",
        "v3.5.0",
        ("config/crd/bases/elbv2.k8s.aws_targetgroupbindings.yaml",),
        ("TargetGroupBinding",),
    ),
    # Strimzi is Java; its tags carry no `v`, so the Go proxy serves nothing usable, and the io.strimzi:api jar on
    # Maven Central holds classes only. The same files are the release asset strimzi-crds-<version>.yaml.
    CrdSource(
        "git",
        "github.com/strimzi/strimzi-kafka-operator",
        "1.2.0",
        tuple(
            f"install/cluster-operator/{name}.yaml"
            for name in ("040-Crd-kafka", "043-Crd-kafkatopic", "044-Crd-kafkauser", "045-Crd-kafkanodepool")
        ),
        ("Kafka", "KafkaTopic", "KafkaUser", "KafkaNodePool"),
    ),
)


def go_module_dir(module: str, version: str) -> Path:
    """The module's directory in the Go module cache, downloading it through the module proxy if needed."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True, check=False
    )
    info = json.loads(result.stdout or "{}")
    if "Dir" not in info:
        raise SystemExit(f"go mod download {module}@{version}: {info.get('Error') or result.stderr.strip()}")
    return Path(info["Dir"])


def read_crd_files(source: CrdSource, checkouts: dict[str, Path]) -> list[str]:
    if source.origin == "go":
        directory = go_module_dir(source.module, source.version)
        return [(directory / path).read_text() for path in source.paths]
    if source.module not in checkouts:
        raise SystemExit(f"pass --checkout {source.module}=<dir> (a git clone with tag {source.version})")
    show = ["git", "-C", str(checkouts[source.module]), "show"]
    return [
        subprocess.run([*show, f"{source.version}:{p}"], capture_output=True, text=True, check=True).stdout
        for p in source.paths
    ]


def to_json_schema(node: Any, root: bool = True) -> Any:
    """openAPIV3Schema -> JSON schema as kubeconform's openapi2jsonschema.py converts it."""
    if isinstance(node, list):
        return [to_json_schema(item, root=False) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string") is True:
        rest = {k: v for k, v in node.items() if k not in ("x-kubernetes-int-or-string", "anyOf", "type")}
        return {"oneOf": [{"type": "string"}, {"type": "integer"}], **rest}
    converted = {key: to_json_schema(value, root=False) for key, value in node.items()}
    open_ended = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and "additionalProperties" not in node and not open_ended and not root:
        converted["additionalProperties"] = False
    return converted


def schemas_of(crd_text: str, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """{relative path: JSON schema} for every served version of the wanted kinds in a CRD file."""
    found: dict[str, dict[str, Any]] = {}
    for crd in yaml.safe_load_all(crd_text):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        if kind not in kinds:
            continue
        for version in crd["spec"]["versions"]:
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if version.get("served", True) and schema:
                found[f"{group}/{kind.lower()}_{version['name']}.json"] = to_json_schema(schema)
    return found


def vendor(checkouts: dict[str, Path]) -> list[tuple[CrdSource, list[str]]]:
    shutil.rmtree(SCHEMAS, ignore_errors=True)
    written: list[tuple[CrdSource, list[str]]] = []
    for source in SOURCES:
        files: dict[str, dict[str, Any]] = {}
        for text in read_crd_files(source, checkouts):
            files.update(schemas_of(text, source.kinds))
        missing = {k for k in source.kinds if not any(f"/{k.lower()}_" in path for path in files)}
        if missing:
            raise SystemExit(f"{source.module}@{source.version}: no CRD for {sorted(missing)}")
        for path, schema in sorted(files.items()):
            target = SCHEMAS / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append((source, sorted(files)))
    return written


def write_sources(written: list[tuple[CrdSource, list[str]]]) -> None:
    lines = [
        "# Vendored CRD schemas for kubeconform",
        "",
        "Generated by `python scripts/vendor_schemas.py`; do not edit by hand.",
        "Layout: `<group>/<kind>_<version>.json`, kubeconform's for CRDs.",
        "Kubernetes' own kinds come from the kubernetes-validate package at test time.",
        "",
        "| Source | Version | CRD files | Schema files |",
        "| --- | --- | --- | --- |",
    ]
    for source, files in written:
        origin = f"{source.module} (git tag)" if source.origin == "git" else f"{source.module} (Go module)"
        crds = "<br>".join(f"`{p}`" for p in source.paths)
        lines.append(f"| {origin} | {source.version} | {crds} | {'<br>'.join(f'`{f}`' for f in files)} |")
    (SCHEMAS / "SOURCES.md").write_text("\n".join(lines) + "\n")


def checkout_arg(value: str) -> tuple[str, Path]:
    module, separator, directory = value.partition("=")
    if not separator or module not in {s.module for s in SOURCES if s.origin == "git"}:
        git_sources = ", ".join(s.module for s in SOURCES if s.origin == "git")
        raise argparse.ArgumentTypeError(f"expected <repository>=<dir>, the repository one of: {git_sources}")
    return module, Path(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkout",
        type=checkout_arg,
        action="append",
        default=[],
        metavar="REPOSITORY=DIR",
        help="a git clone of a source read from git, e.g. github.com/strimzi/strimzi-kafka-operator=../strimzi",
    )
    args = parser.parse_args()
    write_sources(vendor(dict(args.checkout)))


if __name__ == "__main__":
    main()
