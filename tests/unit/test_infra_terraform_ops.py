"""infra/terraform operations: backups replicated to the DR region, encryption under explicit key policies, no
public access, deletion protection, log retention, a closed Kubernetes API, alarms and the ingress ALB.

The same guarantees as infra/terraform/tests/*.tftest.hcl, which need the AWS provider (not downloadable here):
these read the parsed files (python-hcl2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from test_infra_terraform import OPTIONS, TERRAFORM, blocks, parse, single

pytestmark = pytest.mark.unit

BLOBSTORE = TERRAFORM / "modules" / "blobstore"
ROOT_ARN = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"


def resources(directory: Path) -> dict[str, dict[str, Any]]:
    """Every resource of a module by type, then name (blocks of one type from several files merged)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in parse(path).get("resource", []):
            for kind, named in block.items():
                found.setdefault(kind, {}).update(named)
    return found


def policy_documents(directory: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in parse(path).get("data", []):
            found.update(block.get("aws_iam_policy_document", {}))
    return found


def variable(name: str) -> dict[str, Any]:
    return blocks(TERRAFORM, "variable")[name]


def all_module_dirs() -> list[Path]:
    return [TERRAFORM, *sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())]


# --- Kubernetes API and network policy ---------------------------------------------------------------------


def test_eks_api_is_private_unless_an_allowlist_is_given() -> None:
    eks = blocks(TERRAFORM, "module")["eks"]
    assert eks["endpoint_private_access"] is True
    assert eks["endpoint_public_access"] == "${var.eks_public_endpoint}"
    assert variable("eks_public_endpoint")["default"] is False
    cidrs = variable("eks_public_access_cidrs")
    assert cidrs["default"] == []
    conditions = " ".join(v["condition"] for v in cidrs["validation"])
    assert '"0.0.0.0/0"' in conditions and '"::/0"' in conditions
    assert "!var.eks_public_endpoint || length(var.eks_public_access_cidrs) > 0" in conditions


def test_vpc_cni_enforces_network_policies() -> None:
    cni = blocks(TERRAFORM, "module")["eks"]["addons"]["vpc-cni"]["configuration_values"]
    assert 'enableNetworkPolicy = "true"' in cni


def test_container_insights_runs_without_a_second_log_shipper() -> None:
    addons = blocks(TERRAFORM, "module")["eks"]["addons"]
    insights = addons["amazon-cloudwatch-observability"]
    assert insights["service_account_role_arn"] == '${module.cloudwatch_agent_role.role_arns["cloudwatch-agent"]}'
    assert "enabled = false" in insights["configuration_values"]
    agent = policy_documents(TERRAFORM)["cloudwatch_agent"]["statement"]
    assert not any("logs:CreateLogGroup" in s["actions"] for s in agent), "the agent must not create unexpiring groups"


# --- logs ----------------------------------------------------------------------------------------------------


def test_every_log_group_has_a_retention_and_the_logs_key() -> None:
    groups = resources(TERRAFORM)["aws_cloudwatch_log_group"]
    assert {"service", "security", "flow_logs", "container_insights"} <= set(groups)
    for name, group in groups.items():
        assert group["retention_in_days"].startswith("${var."), name
        assert group["kms_key_id"] == "${aws_kms_key.logs.arn}", name
    msk_broker = resources(TERRAFORM / "modules" / "msk")["aws_cloudwatch_log_group"]["broker"]
    assert msk_broker["retention_in_days"] == "${var.log_retention_days}"


def test_eks_control_plane_logs_are_kept_encrypted_for_a_while() -> None:
    eks = blocks(TERRAFORM, "module")["eks"]
    assert "audit" in eks["enabled_log_types"]
    assert eks["cloudwatch_log_group_retention_in_days"] == "${var.log_retention_days}"
    assert eks["cloudwatch_log_group_kms_key_id"] == "${aws_kms_key.logs.arn}"


def test_vpc_flow_logs_capture_all_traffic() -> None:
    flow = resources(TERRAFORM)["aws_flow_log"]["vpc"]
    assert flow["traffic_type"] == "ALL" and flow["vpc_id"] == "${module.vpc.vpc_id}"
    assert flow["log_destination"] == "${aws_cloudwatch_log_group.flow_logs.arn}"
    assert variable("flow_log_retention_days")["default"] >= 30


# --- KMS -----------------------------------------------------------------------------------------------------


def key_policy_statements(directory: Path, key_name: str, key: dict[str, Any]) -> list[dict[str, Any]]:
    documents = policy_documents(directory)
    if "policy" in key:
        document = key["policy"].removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
    else:
        (attached,) = [
            p
            for p in resources(directory)["aws_kms_key_policy"].values()
            if p["key_id"] == f"${{aws_kms_key.{key_name}.id}}"
        ]
        document = attached["policy"].removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
    return documents[document]["statement"]


KEYS = [(directory, name) for directory in all_module_dirs() for name in resources(directory).get("aws_kms_key", {})]


@pytest.mark.parametrize("directory,name", KEYS, ids=[f"{d.name}.{n}" for d, n in KEYS])
def test_every_kms_key_has_an_explicit_policy_without_wildcard_principals(directory: Path, name: str) -> None:
    key = resources(directory)["aws_kms_key"][name]
    assert key["enable_key_rotation"] is True
    statements = key_policy_statements(directory, name, key)
    administers = [s for s in statements if s["sid"] == "AccountAdministers"]
    assert administers and single(administers[0]["principals"])["identifiers"] in (
        [ROOT_ARN],
        ["${local.account_root_arn}"],
    )
    for statement in statements:
        for principal in statement.get("principals", []):
            assert principal["type"] != "*" and "*" not in principal["identifiers"], f"{name}: {statement['sid']}"


def test_connector_secrets_key_is_used_only_by_the_roles_it_names() -> None:
    key = resources(TERRAFORM)["aws_kms_key"]["connector_secrets"]
    statements = {s["sid"]: s for s in key_policy_statements(TERRAFORM, "connector_secrets", key)}
    assert statements["AccountAdministers"]["actions"] == "${local.kms_admin_actions}"
    admin_actions = blocks(TERRAFORM, "locals")["kms_admin_actions"]
    assert not any(
        a.startswith(("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:CreateGrant")) for a in admin_actions
    )
    assert single(statements["GatewaySeals"]["principals"])["identifiers"] == [
        '${module.service_roles.role_arns["gateway"]}'
    ]
    assert statements["ConnectorsOpen"]["actions"] == ["kms:Decrypt"]


# --- backups and DR ------------------------------------------------------------------------------------------


def test_dr_provider_is_a_second_region() -> None:
    providers = parse(TERRAFORM / "providers.tf")["provider"]
    (dr,) = [p["aws"] for p in providers if p["aws"].get("alias") == "dr"]
    assert dr["region"] == "${var.dr_region}"
    assert "var.dr_region != var.region" in single(variable("dr_region")["validation"])["condition"]


def test_rds_backups_are_replicated_to_the_dr_region_and_the_instance_protected() -> None:
    replication = resources(TERRAFORM)["aws_db_instance_automated_backups_replication"]["postgres"]
    assert replication["provider"] == "${aws.dr}"
    assert replication["source_db_instance_arn"] == "${module.postgres.arn}"
    assert replication["kms_key_id"] == "${aws_kms_key.dr_backup.arn}"
    assert 7 <= variable("backup_retention_days")["default"] <= 35
    instance = resources(TERRAFORM / "modules" / "rds")["aws_db_instance"]["this"]
    assert instance["deletion_protection"] == "${var.deletion_protection}" and instance["skip_final_snapshot"] is False
    assert variable("deletion_protection")["default"] is True
    assert blocks(TERRAFORM, "module")["postgres"]["backup_retention_days"] == "${var.backup_retention_days}"


def test_aws_backup_takes_daily_copies_of_database_and_blobs_to_the_dr_vault() -> None:
    found = resources(TERRAFORM)
    rule = single(found["aws_backup_plan"]["daily"]["rule"])
    assert rule["schedule"].startswith("cron(0 5 * * ? *")
    assert single(rule["lifecycle"])["delete_after"] == "${var.backup_retention_days}"
    assert single(rule["copy_action"])["destination_vault_arn"] == "${aws_backup_vault.dr.arn}"
    assert found["aws_backup_vault"]["dr"]["provider"] == "${aws.dr}"
    assert all(v["kms_key_arn"].startswith("${aws_kms_key.") for v in found["aws_backup_vault"].values())
    selection = found["aws_backup_selection"]["data_stores"]
    assert selection["resources"] == ["${module.postgres.arn}", "${module.blobstore.bucket_arn}"]


def test_blob_bucket_replicates_versions_and_deletes_to_a_private_encrypted_replica() -> None:
    store = resources(BLOBSTORE)
    for name in ("this", "replica"):
        assert single(store["aws_s3_bucket_versioning"][name]["versioning_configuration"])["status"] == "Enabled"
        block = store["aws_s3_bucket_public_access_block"][name]
        assert all(
            block[k] is True
            for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        )
        encryption = single(store["aws_s3_bucket_server_side_encryption_configuration"][name]["rule"])
        assert single(encryption["apply_server_side_encryption_by_default"])["sse_algorithm"] == "aws:kms"
    assert store["aws_s3_bucket"]["replica"]["provider"] == "${aws.dr}"
    rule = single(store["aws_s3_bucket_replication_configuration"]["this"]["rule"])
    assert single(rule["delete_marker_replication"])["status"] == "Enabled"
    destination = single(rule["destination"])
    assert destination["bucket"] == "${aws_s3_bucket.replica.arn}"
    assert single(destination["encryption_configuration"])["replica_kms_key_id"] == "${aws_kms_key.replica.arn}"
    call = blocks(TERRAFORM, "module")["blobstore"]
    assert "${aws.dr}" in call["providers"].values(), "the module's aws.dr is the DR provider"


def test_old_blob_versions_expire_on_both_sides() -> None:
    store = resources(BLOBSTORE)
    for name in ("this", "replica"):
        rule = single(store["aws_s3_bucket_lifecycle_configuration"][name]["rule"])
        assert single(rule["noncurrent_version_expiration"])["noncurrent_days"] == "${var.noncurrent_version_days}"
        assert single(rule["expiration"])["expired_object_delete_marker"] is True
    assert 1 <= variable("blob_noncurrent_version_days")["default"] <= 90


# --- alarms --------------------------------------------------------------------------------------------------


def test_alarms_cover_the_managed_services_and_notify_the_ops_topic() -> None:
    alarms = resources(TERRAFORM)["aws_cloudwatch_metric_alarm"]
    postgres = blocks(TERRAFORM, "locals")["postgres_alarms"]
    assert {v["metric"] for v in postgres.values()} == {"CPUUtilization", "FreeStorageSpace", "DatabaseConnections"}
    metrics = {alarms[n]["metric_name"] for n in ("kafka_disk_used", "kafka_under_replicated", "redis_memory")}
    assert metrics == {"KafkaDataLogsDiskUsed", "UnderReplicatedPartitions", "DatabaseMemoryUsagePercentage"}
    queried = json.dumps(alarms["ingress_5xx"])  # the ratio's expression and its dynamic metric queries
    assert "HTTPCode_ELB_5XX_Count" in queried and "HTTPCode_Target_5XX_Count" in queried
    for name, alarm in alarms.items():
        assert alarm["alarm_actions"] == "${local.ops_alert_actions}", name
        assert "Runbook: ${local.runbooks}" in alarm["alarm_description"], name
    assert blocks(TERRAFORM, "locals")["ops_alert_actions"] == ["${aws_sns_topic.ops_alerts.arn}"]
    topic = resources(TERRAFORM)["aws_sns_topic"]["ops_alerts"]
    assert topic["kms_master_key_id"] == "${aws_kms_key.ops_alerts.arn}"


# --- ingress -------------------------------------------------------------------------------------------------


def test_ingress_alb_is_hardened_and_forwards_to_the_istio_gateway() -> None:
    found = resources(TERRAFORM)
    alb = found["aws_lb"]["ingress"]
    assert (
        alb["drop_invalid_header_fields"] is True and alb["enable_deletion_protection"] == "${var.deletion_protection}"
    )
    https = found["aws_lb_listener"]["https"]
    assert https["protocol"] == "HTTPS" and https["ssl_policy"].startswith("ELBSecurityPolicy-TLS13")
    redirect = single(single(found["aws_lb_listener"]["http_redirect"]["default_action"])["redirect"])
    assert redirect["protocol"] == "HTTPS"
    group = found["aws_lb_target_group"]["istio_ingress"]
    assert group["target_type"] == "ip" and group["protocol"] == "HTTPS"
    assert single(group["health_check"])["path"] == "/healthz/ready"


def test_load_balancer_controller_may_only_register_targets_in_the_ingress_group() -> None:
    role = blocks(TERRAFORM, "module")["load_balancer_controller_role"]
    assert role["source"] == "./modules/irsa" and role["namespace"] == "kube-system"
    statements = {s["sid"]: s for s in policy_documents(TERRAFORM)["load_balancer_controller"]["statement"]}
    assert all("Describe" in action for action in statements["Describe"]["actions"])
    assert statements["GatewayTargets"]["resources"] == ["${aws_lb_target_group.istio_ingress.arn}"]
    writes = [a for s in statements.values() for a in s["actions"] if "Describe" not in a]
    assert sorted(writes) == ["elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets"]


# --- terraform test suite ------------------------------------------------------------------------------------


def test_terraform_test_suite_mocks_both_aws_providers() -> None:
    suites = sorted((TERRAFORM / "tests").glob("*.tftest.hcl"))
    assert suites
    for suite in suites:
        with suite.open() as handle:
            parsed = hcl2.load(handle, serialization_options=OPTIONS)
        mocked = [
            next(iter(m)) + (f".{v['alias']}" if (v := next(iter(m.values()))).get("alias") else "")
            for m in parsed["mock_provider"]
        ]
        assert {"aws", "aws.dr"} <= set(mocked), suite.name
        runs = [r for block in parsed["run"] for r in block.values()]
        assert runs and all(r.get("assert") or r.get("expect_failures") for r in runs), suite.name


# --- CI roles through GitHub OIDC (github-oidc.tf; .github/workflows/images.yml, deploy.yml) -----------------

GITHUB_OIDC = TERRAFORM / "github-oidc.tf"
WORKFLOWS = TERRAFORM.parents[1] / ".github" / "workflows"
GITHUB_SUB = "${local.github_oidc_host}:sub"


def github_documents() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in parse(GITHUB_OIDC).get("data", []):
        found.update(block.get("aws_iam_policy_document", {}))
    return found


def trust_conditions() -> dict[str, dict[str, Any]]:
    """The one trust document of every CI role (github_trust, one instance per role): its conditions by variable."""
    trust = github_documents()["github_trust"]
    assert trust["for_each"] == "${local.github_trusts}"
    statement = single(trust["statement"])
    assert statement["sid"] == "${each.value.sid}" and statement["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    assert single(statement["principals"]) == {
        "type": "Federated",
        "identifiers": ["${local.github_oidc_provider_arn}"],
    }
    return {c["variable"]: c for c in statement["condition"]}


def github_locals() -> dict[str, Any]:
    return blocks(TERRAFORM, "locals")


def test_github_oidc_provider_is_githubs_issuer_for_sts_only() -> None:
    assert github_locals()["github_oidc_host"] == "token.actions.githubusercontent.com"
    assert github_locals()["github_audience"] == "sts.amazonaws.com"
    provider = resources(TERRAFORM)["aws_iam_openid_connect_provider"]["github"]
    assert provider["url"] == "${local.github_oidc_url}" and provider["client_id_list"] == ["${local.github_audience}"]
    assert variable("create_github_oidc_provider")["default"] is True  # else: the account's existing provider


def test_github_trust_pins_the_audience_and_this_repository() -> None:
    conditions = trust_conditions()
    assert set(conditions) == {"${local.github_oidc_host}:aud", GITHUB_SUB}
    audience = conditions["${local.github_oidc_host}:aud"]
    assert audience["test"] == "StringEquals" and audience["values"] == ["${local.github_audience}"]
    subject = conditions[GITHUB_SUB]
    assert subject["test"] == "${each.value.test}"
    # Every admitted subject is this repository's: the roles' entries only name what follows "repo:<owner/name>:".
    assert subject["values"] == '${[for subject in each.value.subjects : "repo:${var.github_repository}:${subject}"]}'
    images = github_locals()["github_images_trust"]["subjects"]
    deploy = re.findall(r"subjects = \[([^\]]*)\]", github_locals()["github_trusts"])
    for entry in [*images, *deploy]:
        # The one wildcard allowed: the release tag's version, never a branch or an environment.
        assert "*" not in entry.removesuffix("ref:refs/tags/v*"), entry


def test_every_ci_role_has_its_own_trust_instance() -> None:
    trusts = github_locals()["github_trusts"]
    assert "local.github_enabled && var.create_github_images_role ? {images = local.github_images_trust} : {}" in trusts
    assert 'for environment in local.github_deploy_environments : "deploy-${environment}"' in trusts
    found = resources(TERRAFORM)["aws_iam_role"]
    assert found["github_images"]["assume_role_policy"] == '${data.aws_iam_policy_document.github_trust["images"].json}'
    assert found["github_deploy"]["assume_role_policy"] == (
        '${data.aws_iam_policy_document.github_trust["deploy-${each.key}"].json}'
    )
    assert found["github_images"]["count"].startswith("${local.github_enabled && var.create_github_images_role ?")


def test_images_role_answers_to_main_and_release_tags_only() -> None:
    images = github_locals()["github_images_trust"]
    assert images["test"] == "StringLike"
    assert images["subjects"] == ["ref:refs/heads/main", "ref:refs/tags/v*"]
    # images.yml runs only as ci.yml's last job, and only for its pushes: main and v* tags (the token's `sub` is
    # the caller's ref). YAML reads `on:` as True.
    assert set(yaml.safe_load((WORKFLOWS / "images.yml").read_text())[True]) == {"workflow_call"}
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    assert ci[True]["push"] == {"branches": ["main"], "tags": ["v*"]}
    (job,) = (job for job in ci["jobs"].values() if job.get("uses") == "./.github/workflows/images.yml")
    assert job["if"] == "github.event_name == 'push'"


def test_deploy_roles_answer_to_a_job_in_their_own_environment_only() -> None:
    deploy = github_locals()["github_deploy_trust"]
    assert deploy["test"] == "StringEquals" and "subjects" not in deploy
    assert (
        'merge(local.github_deploy_trust, {subjects = ["environment:${environment}"]})'
        in (github_locals()["github_trusts"])
    )
    role = resources(TERRAFORM)["aws_iam_role"]["github_deploy"]
    assert role["for_each"] == "${local.github_deploy_environments}"
    # The environments are deploy.yml's (GitHub's names: the prod overlay deploys as `production`).
    workflow = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    options = workflow[True]["workflow_dispatch"]["inputs"]["environment"]["options"]
    allowed = single(variable("github_deploy_environments")["validation"])["condition"]
    assert all(f'"{environment}"' in allowed for environment in options) and options == ["dev", "staging", "production"]
    assert 'lookup({prod = "production"}, var.environment' in github_locals()["github_deploy_environments"]


@pytest.mark.parametrize(
    "repository,accepted",
    [("example-org/ragstream", True), ("example-org/*", False), ("*/*", False), ("example-org", False)],
)
def test_github_repository_must_name_one_repository(repository: str, accepted: bool) -> None:
    condition = single(variable("github_repository")["validation"])["condition"]
    (pattern,) = re.findall(r'regex\("([^"]+)"', condition)
    assert (re.fullmatch(pattern, repository) is not None) is accepted


@pytest.mark.parametrize("document", ["github_images", "github_deploy"])
def test_ci_policies_grant_named_actions_on_named_resources(document: str) -> None:
    for statement in github_documents()[document]["statement"]:
        assert not any("*" in action for action in statement["actions"]), statement["sid"]
        if "*" in statement["resources"]:
            assert statement["actions"] == ["ecr:GetAuthorizationToken"], statement["sid"]
        assert all("Delete" not in a and "Tag" not in a and "Policy" not in a for a in statement["actions"])


def test_images_role_pushes_to_the_service_repositories_only() -> None:
    statements = {s["sid"]: s for s in github_documents()["github_images"]["statement"]}
    push = statements["PushServiceImages"]
    assert push["resources"] == "${local.image_repository_arns}"
    assert blocks(TERRAFORM, "locals")["image_repository_arns"] == (
        "${[for repository in aws_ecr_repository.service : repository.arn]}"
    )
    assert {"ecr:PutImage", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"} <= set(push["actions"])
    assert set(statements) == {"RegistryLogin", "PushServiceImages"}


def test_deploy_roles_describe_the_cluster_and_edit_the_ragstream_namespace_only() -> None:
    statements = {s["sid"]: s for s in github_documents()["github_deploy"]["statement"]}
    assert statements["FindTheCluster"] == {
        "sid": "FindTheCluster",
        "actions": ["eks:DescribeCluster"],
        "resources": ["${module.eks.cluster_arn}"],
    }
    assert not any(a.startswith("ecr:") and "Upload" in a for s in statements.values() for a in s["actions"])
    found = resources(TERRAFORM)
    entry = found["aws_eks_access_entry"]["github_deploy"]
    assert entry["for_each"] == "${aws_iam_role.github_deploy}" and entry["type"] == "STANDARD"
    association = found["aws_eks_access_policy_association"]["github_deploy"]
    assert association["policy_arn"] == "${local.eks_edit_policy_arn}"
    assert blocks(TERRAFORM, "locals")["eks_edit_policy_arn"].endswith(":cluster-access-policy/AmazonEKSEditPolicy")
    assert single(association["access_scope"]) == {"type": "namespace", "namespaces": ["${local.namespace}"]}
    assert blocks(TERRAFORM, "locals")["namespace"] == "ragstream"


def test_workflows_assume_the_roles_the_outputs_name() -> None:
    outputs = blocks(TERRAFORM, "output")
    assert "AWS_IMAGES_ROLE_ARN" in outputs["github_images_role_arn"]["description"]
    assert "AWS_DEPLOY_ROLE_ARN" in outputs["github_deploy_role_arns"]["description"]
    assert "${{ vars.AWS_IMAGES_ROLE_ARN }}" in (WORKFLOWS / "images.yml").read_text()
    assert "${{ vars.AWS_DEPLOY_ROLE_ARN }}" in (WORKFLOWS / "deploy.yml").read_text()
