"""infra/terraform under the trust model: one Kafka policy per service role generated from kafka/acls.py, a
provisioner policy for tenants, one database login secret per service readable only by it and the migrate Job.

`terraform validate` needs the providers from the registry; these checks read the files (python-hcl2)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ragstream_common.db_logins import LOGIN_ROLES
from ragstream_common.kafka.acls import STREAM_APPS
from ragstream_common.registry import SERVICE_NAMES
from ragstream_devstack import kafka_iam
from ragstream_devstack.pg_identities import SERVICE_LOGINS
from test_infra_terraform import TERRAFORM, blocks, parse

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ACCESS_FILE = TERRAFORM / "kafka-access.json"
# What each list of kafka-access.json becomes in a service's policy: IAM actions on topic or group ARNs.
IAM_ACTIONS = {
    "read": (["kafka-cluster:ReadData"], "kafka_topic_arn"),
    "write": (["kafka-cluster:WriteData"], "kafka_topic_arn"),
    "describe": (["kafka-cluster:DescribeTopic"], "kafka_topic_arn"),
    "groups": (["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"], "kafka_group_arn"),
    # A faust app's own internal topics, by prefix: it creates them itself.
    "stream_topics": (
        [
            "kafka-cluster:CreateTopic",
            "kafka-cluster:ReadData",
            "kafka-cluster:WriteData",
            "kafka-cluster:DescribeTopic",
        ],
        "kafka_topic_arn",
    ),
}


def resource(directory: Path, kind: str, name: str = "this") -> dict[str, Any]:
    """One resource of a module, wherever in its .tf files (several files may declare the same type)."""
    for path in sorted(directory.glob("*.tf")):
        for block in parse(path).get("resource", []):
            if name in block.get(kind, {}):
                found: dict[str, Any] = block[kind][name]
                return found
    raise KeyError(f"{kind}.{name}")


def policy_documents() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in parse(TERRAFORM / "iam.tf")["data"]:
        found.update(block.get("aws_iam_policy_document", {}))
    return found


def iam_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in parse(TERRAFORM / "iam.tf")["locals"]:
        merged.update(block)
    return merged


def documents_of(account: str) -> list[str]:
    """The policy documents an account's role gets, as `name` or `name[key]`."""
    references = iam_locals()["service_account_policies"][account]
    found = []
    for reference in references:
        match = re.fullmatch(r'\$\{data\.aws_iam_policy_document\.(\w+)(?:\["(\w+)"\])?\.json\}', reference)
        assert match, reference
        name, key = match.groups()
        found.append(f"{name}[{key}]" if key else name)
    return found


def test_kafka_access_file_is_generated_from_the_acl_map() -> None:
    assert ACCESS_FILE.read_text() == kafka_iam.render(), "run `python -m ragstream_devstack.kafka_iam`"


def test_every_service_has_a_row_of_the_lists_the_policy_translates() -> None:
    access = json.loads(ACCESS_FILE.read_text())
    assert set(access["services"]) == set(SERVICE_NAMES)
    for name, lists in access["services"].items():
        assert set(lists) == set(IAM_ACTIONS), name
        assert lists["read"] and lists["describe"] and lists["groups"], name
        # Literal names only, except the tenant id of tenants' topics.
        assert all("*" not in topic or topic.startswith("rag.tenant.*.") for topic in lists["read"] + lists["write"])
        app_id = STREAM_APPS.get(name)
        assert lists["stream_topics"] == ([f"{app_id}-*"] if app_id else []), name


def test_service_policy_translates_each_list_to_its_actions_on_exact_arns() -> None:
    policy = policy_documents()["kafka_service"]
    assert policy["for_each"] == "${local.kafka_access.services}"
    translated = {}
    for dynamic in policy["dynamic"]:
        statement = dynamic["statement"]
        (key,) = set(re.findall(r"each\.value\.(\w+)", statement["for_each"]))
        (content,) = statement["content"]
        (arn,) = re.findall(r"local\.(kafka_\w+_arn)", content["resources"])
        translated[key] = (content["actions"], arn)
    assert translated == IAM_ACTIONS
    (cluster,) = policy["statement"]
    assert "kafka-cluster:WriteDataIdempotently" in cluster["actions"] and "each.value.write" in cluster["actions"]


def test_no_kafka_wildcard_beyond_the_tenant_id() -> None:
    text = (TERRAFORM / "iam.tf").read_text()
    assert "rag.*" not in text and "ragstream-*" not in text
    assert json.loads(ACCESS_FILE.read_text())["tenant_topics"] == "rag.tenant.*"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_role_gets_its_own_kafka_policy_and_database_login(name: str) -> None:
    documents = documents_of(name)
    assert [d for d in documents if d.startswith("kafka_service")] == [f"kafka_service[{name}]"]
    logins = [d for d in documents if d.startswith("database_login")]
    assert logins == ([f"database_login[{name}]"] if name in SERVICE_LOGINS else [])
    assert ("tenant_provisioner" in documents) == (name == "gateway")


def test_database_logins_of_each_role_are_its_own() -> None:
    readable = iam_locals()["database_logins"]
    for name, variables in SERVICE_LOGINS.items():
        assert sorted(readable[name]) == sorted(identity.replace("-", "_") for identity in variables.values())
    assert "generate" not in readable
    assert readable["bootstrap"] == "${keys(module.postgres.login_secret_arns)}"


def test_bootstrap_creates_the_declared_topics_and_reads_every_login() -> None:
    assert documents_of("bootstrap") == ["kafka_topic_admin", "database_login[bootstrap]"]
    admin = {s["sid"]: s for s in policy_documents()["kafka_topic_admin"]["statement"]}
    assert "kafka-cluster:CreateTopic" in admin["TopicAdmin"]["actions"]
    assert "local.kafka_access.topics" in admin["TopicAdmin"]["resources"]
    access = json.loads(ACCESS_FILE.read_text())
    assert not any(topic.startswith("rag.tenant.") for topic in access["topics"])


def test_provisioner_manages_tenant_topics_acls_and_scram_secrets_only() -> None:
    statements = {s["sid"]: s for s in policy_documents()["tenant_provisioner"]["statement"]}
    topics = statements["TenantTopics"]
    assert topics["actions"] == [
        "kafka-cluster:CreateTopic",
        "kafka-cluster:DeleteTopic",
        "kafka-cluster:DescribeTopic",
    ]
    assert topics["resources"] == ["${local.kafka_topic_arn}/${local.kafka_access.tenant_topics}"]
    assert set(statements["TenantScramUsers"]["actions"]) >= {
        "kafka:BatchAssociateScramSecret",
        "kafka:BatchDisassociateScramSecret",
    }
    (secrets,) = statements["TenantScramSecrets"]["resources"]
    assert secrets.endswith("${module.kafka.tenant_scram_secret_prefix}*")
    assert statements["TenantScramKey"]["resources"] == ["${module.kafka.tenant_scram_kms_key_arn}"]


def test_rds_has_one_secret_per_service_login_under_its_own_key() -> None:
    rds = TERRAFORM / "modules" / "rds"
    roles = blocks(rds, "variable")["login_roles"]["default"]
    assert {login.replace("_", "-"): role for login, role in roles.items()} == LOGIN_ROLES
    password = resource(rds, "random_password", "login")
    assert password["special"] is False and password["length"] >= 32
    secret = resource(rds, "aws_secretsmanager_secret", "login")
    assert secret["kms_key_id"] == "${aws_kms_key.logins.arn}"
    (lifecycle,) = resource(rds, "aws_secretsmanager_secret_version", "login")["lifecycle"]
    assert lifecycle["ignore_changes"] == ["secret_string"]
    assert resource(rds, "aws_kms_key", "logins")["enable_key_rotation"] is True


def test_msk_opens_scram_for_tenants_with_acls_denying_by_default() -> None:
    msk = TERRAFORM / "modules" / "msk"
    properties = resource(msk, "aws_msk_configuration")["server_properties"]
    assert "allow.everyone.if.no.acl.found=false" in properties.splitlines()
    (auth,) = resource(msk, "aws_msk_cluster")["client_authentication"]
    (sasl,) = auth["sasl"]
    assert sasl == {"iam": True, "scram": "${var.tenant_scram}"}
    assert resource(msk, "aws_kms_key", "scram")["enable_key_rotation"] is True


def test_kustomize_config_output_matches_the_aws_overlay() -> None:
    output = blocks(TERRAFORM, "output")["kustomize_config"]["value"]
    overlay = yaml.safe_load((ROOT / "infra" / "k8s" / "overlays" / "aws" / "kustomization.yaml").read_text())
    (generator,) = overlay["configMapGenerator"]
    assert set(output) == {literal.split("=", 1)[0] for literal in generator["literals"]}
