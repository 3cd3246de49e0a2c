"""infra/terraform: parses as HCL, module wiring is consistent, and the data stores are locked down.

`terraform validate` needs the providers from the registry; these checks need nothing but the files.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
MODULES = sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
OPTIONS = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True, preserve_heredocs=False
)


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=OPTIONS)


def blocks(directory: Path, kind: str) -> dict[str, Any]:
    """Top-level `kind` blocks of a module (all its .tf files), keyed by their first label.

    Resources and data sources of one type in several files are merged by name (the second label).
    """
    found: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in parse(path).get(kind, []):
            for label, body in block.items():
                if kind in {"resource", "data"} and label in found:
                    found[label] = {**found[label], **body}
                else:
                    found[label] = body
    return found


def resource(directory: Path, kind: str, name: str = "this") -> dict[str, Any]:
    return blocks(directory, "resource")[kind][name]


def single(block_list: list[dict[str, Any]]) -> dict[str, Any]:
    (block,) = block_list
    return block


def module_text(directory: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(directory.glob("*.tf")))


@pytest.mark.parametrize("path", TF_FILES, ids=[str(p.relative_to(TERRAFORM)) for p in TF_FILES])
def test_every_tf_file_parses(path) -> None:
    assert isinstance(parse(path), dict)


def test_root_pins_terraform_and_providers() -> None:
    settings = single(parse(TERRAFORM / "versions.tf")["terraform"])
    assert settings["required_version"].startswith(">=")
    providers = single(settings["required_providers"])
    assert providers["aws"]["source"] == "hashicorp/aws"
    assert all(p["version"].startswith("~>") for p in providers.values())
    registry_modules = [m for m in blocks(TERRAFORM, "module").values() if not m["source"].startswith("./")]
    assert registry_modules and all(m["version"].startswith("~>") for m in registry_modules)


@pytest.mark.parametrize("directory", [TERRAFORM, *MODULES], ids=lambda p: p.name)
def test_every_variable_reference_is_declared(directory) -> None:
    declared = set(blocks(directory, "variable"))
    referenced = set(re.findall(r"\bvar\.([a-z0-9_]+)", module_text(directory)))
    assert referenced <= declared
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= {p.name for p in directory.glob("*.tf")}


def test_local_module_calls_match_their_variables_and_outputs() -> None:
    root_text = module_text(TERRAFORM)
    for name, call in blocks(TERRAFORM, "module").items():
        if not call["source"].startswith("./"):
            continue
        directory = (TERRAFORM / call["source"]).resolve()
        variables = blocks(directory, "variable")
        passed = set(call) - {"source", "providers", "depends_on", "count", "for_each"}
        assert passed <= set(variables), f"module.{name} passes undeclared inputs"
        required = {v for v, body in variables.items() if "default" not in body}
        assert required <= passed, f"module.{name} misses required inputs"
        outputs = set(blocks(directory, "output"))
        used = set(re.findall(rf"\bmodule\.{name}\.([a-z0-9_]+)", root_text))
        assert used <= outputs, f"module.{name} has no output {used - outputs}"


def test_kafka_is_iam_authenticated_tls_without_topic_auto_creation() -> None:
    msk = TERRAFORM / "modules" / "msk"
    properties = resource(msk, "aws_msk_configuration")["server_properties"]
    assert "auto.create.topics.enable=false" in properties.splitlines()
    cluster = resource(msk, "aws_msk_cluster")
    auth = single(cluster["client_authentication"])
    assert auth["unauthenticated"] is False and single(auth["sasl"])["iam"] is True
    in_transit = single(single(cluster["encryption_info"])["encryption_in_transit"])
    assert in_transit == {"client_broker": "TLS", "in_cluster": True}
    default_version = blocks(TERRAFORM, "variable")["kafka_version"]["default"]
    assert re.match(r"^(3|4)\.\d+\.", default_version)


def test_postgres_is_private_encrypted_and_pgvector_capable() -> None:
    rds = TERRAFORM / "modules" / "rds"
    instance = resource(rds, "aws_db_instance")
    assert instance["engine"] == "postgres"
    assert instance["storage_encrypted"] is True and instance["publicly_accessible"] is False
    assert instance["manage_master_user_password"] is True
    parameters = resource(rds, "aws_db_parameter_group")
    assert parameters["family"] == "postgres${var.major_version}"
    assert {"name": "rds.force_ssl", "value": "1"} in parameters["parameter"]
    assert blocks(TERRAFORM, "variable")["postgres_major_version"]["default"] in {"16", "17", "18"}


def test_blob_bucket_is_private_versioned_and_kms_encrypted() -> None:
    store = TERRAFORM / "modules" / "blobstore"
    block = resource(store, "aws_s3_bucket_public_access_block")
    assert all(
        block[k] is True
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    versioning = resource(store, "aws_s3_bucket_versioning")
    assert single(versioning["versioning_configuration"])["status"] == "Enabled"
    encryption = single(resource(store, "aws_s3_bucket_server_side_encryption_configuration")["rule"])
    assert single(encryption["apply_server_side_encryption_by_default"])["sse_algorithm"] == "aws:kms"


def test_redis_encrypts_in_transit_and_at_rest() -> None:
    group = resource(TERRAFORM / "modules" / "redis", "aws_elasticache_replication_group")
    assert group["transit_encryption_enabled"] is True and group["at_rest_encryption_enabled"] is True
    assert group["automatic_failover_enabled"] is True


def test_eks_uses_managed_node_groups_and_irsa() -> None:
    eks = blocks(TERRAFORM, "module")["eks"]
    assert eks["source"] == "terraform-aws-modules/eks/aws"
    assert eks["enable_irsa"] is True and eks["eks_managed_node_groups"]


def test_irsa_roles_cover_every_kubernetes_service_account() -> None:
    (locals_block,) = (b for b in parse(TERRAFORM / "iam.tf")["locals"] if "service_account_policies" in b)
    roles = set(locals_block["service_account_policies"])
    base = ROOT / "infra" / "k8s" / "base"
    accounts = {
        d["metadata"]["name"]
        for path in base.glob("*.yaml")
        for d in yaml.safe_load_all(path.read_text())
        if d and d["kind"] == "ServiceAccount"
    }
    # The base's Redis is replaced by ElastiCache on AWS (overlays/aws deletes it): it needs no role.
    assert roles == accounts - {"redis"}


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not installed")
def test_terraform_files_are_canonically_formatted() -> None:
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-list=true", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive infra/terraform`: {result.stdout}"
