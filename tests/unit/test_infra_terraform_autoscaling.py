"""infra/terraform node capacity: the node group's bounds hold prod's floor, and the Cluster Autoscaler's IRSA role
may resize only this cluster's node groups (node-autoscaling.tf; docs/capacity.md, docs/deployment.md).

The same guarantees as the `cluster_autoscaler_*` runs of infra/terraform/tests/operations.tftest.hcl, which need
the AWS provider (not downloadable here): these read the parsed files (python-hcl2).
"""

from __future__ import annotations

import math
import re
from typing import Any

import hcl2
import pytest
from test_infra_terraform import OPTIONS, TERRAFORM, blocks, parse, single

pytestmark = pytest.mark.unit

AUTOSCALING = TERRAFORM / "node-autoscaling.tf"
DEPLOYMENT = TERRAFORM.parents[1] / "docs" / "deployment.md"
RESIZE = {"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"}

# docs/capacity.md, "Replicas for a target load": what prod asks for, and what one m7i.xlarge node offers.
USABLE_VCPU_PER_NODE = 3.5
PROD_FLOOR_VCPU = 12.3 + 2.1  # 21 pods' requests plus 100m for each pod's Istio sidecar
PROD_RELEASE_VCPU = 29.0  # a blue-green release of all seven services at the floor: both colours
PROD_AUTOSCALERS_MAX_VCPU = 32.4  # every service at its prod autoscalers' maximum, with sidecars


def variable(name: str) -> dict[str, Any]:
    declared: dict[str, Any] = blocks(TERRAFORM, "variable")[name]
    return declared


def nodes_for(vcpu: float) -> int:
    return math.ceil(vcpu / USABLE_VCPU_PER_NODE)


def autoscaler_statements() -> dict[str, dict[str, Any]]:
    (document,) = (
        block["aws_iam_policy_document"]["cluster_autoscaler"]
        for block in parse(AUTOSCALING)["data"]
        if "cluster_autoscaler" in block.get("aws_iam_policy_document", {})
    )
    return {statement["sid"]: statement for statement in document["statement"]}


def autoscaler_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in parse(AUTOSCALING)["locals"]:
        merged.update(block)
    return merged


# --- node group bounds ---------------------------------------------------------------------------------------


def test_node_group_takes_its_bounds_from_the_variables() -> None:
    general = blocks(TERRAFORM, "module")["eks"]["eks_managed_node_groups"]["general"]
    assert (general["min_size"], general["desired_size"], general["max_size"]) == (
        "${var.node_min_size}",
        "${var.node_desired_size}",
        "${var.node_max_size}",
    )
    assert variable("node_instance_types")["default"] == ["m7i.xlarge"]  # the 3.5 usable vCPUs above


def test_default_node_group_holds_prods_floor_with_headroom() -> None:
    minimum = variable("node_min_size")["default"]
    assert minimum >= nodes_for(PROD_FLOOR_VCPU) == 5, "3 nodes (10.5 vCPU) cannot schedule prod's floor"
    assert minimum * USABLE_VCPU_PER_NODE - PROD_FLOOR_VCPU >= 2.5, "room for the platform's controllers"
    assert variable("node_desired_size")["default"] == minimum


def test_default_node_group_may_grow_to_a_release_and_to_every_autoscalers_maximum() -> None:
    maximum = variable("node_max_size")["default"]
    assert maximum >= nodes_for(PROD_RELEASE_VCPU) + 1
    assert maximum >= nodes_for(PROD_AUTOSCALERS_MAX_VCPU) + 1
    # Not beyond what prod's ResourceQuota could ever ask for (64 vCPU of requests).
    assert maximum <= nodes_for(64)


@pytest.mark.parametrize(
    "name,condition",
    [
        ("node_min_size", "var.node_min_size >= 1 && floor(var.node_min_size) == var.node_min_size"),
        (
            "node_desired_size",
            "var.node_min_size <= var.node_desired_size && var.node_desired_size <= var.node_max_size",
        ),
        ("node_max_size", "var.node_max_size >= var.node_min_size && floor(var.node_max_size) == var.node_max_size"),
    ],
)
def test_node_bounds_are_validated_and_described(name: str, condition: str) -> None:
    declared = variable(name)
    assert declared["type"] == "number" and declared["description"]
    assert single(declared["validation"])["condition"] == f"${{{condition}}}"


# --- the Cluster Autoscaler's role ----------------------------------------------------------------------------


def test_autoscaler_role_is_bound_to_kube_system_cluster_autoscaler_only() -> None:
    role = blocks(TERRAFORM, "module")["cluster_autoscaler_role"]
    assert role["source"] == "./modules/irsa" and role["oidc_provider_arn"] == "${module.eks.oidc_provider_arn}"
    assert role["namespace"] == "${local.cluster_autoscaler_namespace}"
    assert role["service_accounts"] == {
        "${(local.cluster_autoscaler_service_account)}": ["${data.aws_iam_policy_document.cluster_autoscaler.json}"]
    }
    assert role["tags"] == '${local.component_tags["compute"]}'
    names = autoscaler_locals()
    assert (names["cluster_autoscaler_namespace"], names["cluster_autoscaler_service_account"]) == (
        "kube-system",
        "cluster-autoscaler",
    )
    output = blocks(TERRAFORM, "output")["cluster_autoscaler_role_arn"]
    assert output["value"] == "${module.cluster_autoscaler_role.role_arns[local.cluster_autoscaler_service_account]}"


def test_autoscaler_policy_only_describes_apart_from_its_two_writes() -> None:
    statements = autoscaler_statements()
    assert set(statements) == {"DiscoverNodeGroups", "DescribeThisClustersNodeGroups", "ResizeThisClustersNodeGroups"}
    actions = [a for s in statements.values() for a in s["actions"]]
    assert not any("*" in action for action in actions)
    writes = {a for a in actions if not re.match(r"^(autoscaling|ec2|eks):(Describe|Get)", a)}
    assert writes == RESIZE
    assert set(statements["ResizeThisClustersNodeGroups"]["actions"]) == RESIZE
    # What the autoscaler's AWS provider calls (cluster-autoscaler/cloudprovider/aws), and no more.
    assert set(statements["DiscoverNodeGroups"]["actions"]) == {
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeLaunchConfigurations",
        "autoscaling:DescribeScalingActivities",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:GetInstanceTypesFromInstanceRequirements",
    }


def test_only_the_describe_calls_without_resource_arns_take_any_resource() -> None:
    statements = autoscaler_statements()
    unscoped = [sid for sid, s in statements.items() if s["resources"] == ["*"]]
    assert unscoped == ["DiscoverNodeGroups"]
    assert statements["DescribeThisClustersNodeGroups"]["actions"] == ["eks:DescribeNodegroup"]
    assert statements["DescribeThisClustersNodeGroups"]["resources"] == ["${local.node_group_eks_arns}"]
    assert autoscaler_locals()["node_group_eks_arns"].endswith(":nodegroup/${var.name}/*")


def test_autoscaler_resizes_only_this_clusters_tagged_node_group_asgs() -> None:
    resize = autoscaler_statements()["ResizeThisClustersNodeGroups"]
    assert resize["resources"] == (
        "${[for group in module.eks.eks_managed_node_groups_autoscaling_group_names : "
        '"${local.node_group_arn_prefix}/${group}"]}'
    )
    prefix = autoscaler_locals()["node_group_arn_prefix"]
    assert prefix == (
        "arn:${data.aws_partition.current.partition}:autoscaling:${var.region}:"
        "${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName"
    )
    conditions = {c["variable"]: c for c in resize["condition"]}
    assert conditions == {
        "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": {
            "test": "StringEquals",
            "variable": "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled",
            "values": ["true"],
        },
        "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.name}": {
            "test": "StringEquals",
            "variable": "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.name}",
            "values": ["owned"],
        },
    }
    # var.name is the cluster's name: the tag EKS sets is k8s.io/cluster-autoscaler/<cluster name>.
    assert blocks(TERRAFORM, "module")["eks"]["name"] == "${var.name}"


def test_terraform_test_asserts_the_autoscalers_conditions() -> None:
    with (TERRAFORM / "tests" / "operations.tftest.hcl").open() as handle:
        suite = hcl2.load(handle, serialization_options=OPTIONS)
    runs = {name: body for block in suite["run"] for name, body in block.items()}
    checked = runs["cluster_autoscaler_resizes_only_this_clusters_node_groups"]
    assert checked["command"] == "apply"
    conditions = " ".join(a["condition"] for a in checked["assert"])
    assert "data.aws_iam_policy_document.cluster_autoscaler" in conditions
    assert "StringEquals aws:ResourceTag/k8s.io/cluster-autoscaler/enabled=true" in conditions
    assert "StringEquals aws:ResourceTag/k8s.io/cluster-autoscaler/ragstream=owned" in conditions
    rejected = runs["node_desired_size_outside_the_bounds_is_rejected"]
    assert rejected["expect_failures"] == ["${var.node_desired_size}"]


# --- the install the docs describe -----------------------------------------------------------------------------


def helm_install() -> str:
    text = DEPLOYMENT.read_text()
    section = text.split("### Node autoscaling: the Cluster Autoscaler", 1)[1].split("\n## ", 1)[0]
    (command,) = re.findall(r"```bash\n(helm repo add autoscaler .*?)```", section, flags=re.S)
    return str(command)


def test_deployment_doc_installs_the_autoscaler_with_the_terraform_role() -> None:
    command = helm_install()
    assert "autoscaler/cluster-autoscaler" in command and "--namespace kube-system" in command
    assert re.search(r"--version \d+\.\d+\.\d+", command), "pin the chart"
    assert "rbac.serviceAccount.name=cluster-autoscaler" in command
    assert '"$(terraform output -raw cluster_autoscaler_role_arn)"' in command
    assert 'autoDiscovery.clusterName="$(terraform output -raw cluster_name)"' in command
    assert 'awsRegion="$(terraform output -raw region)"' in command
    # The services' pods all mount an emptyDir: with the default, no node running one would ever be removed.
    assert "extraArgs.skip-nodes-with-local-storage=false" in command


def test_autoscaler_image_matches_the_clusters_kubernetes_minor() -> None:
    (tag,) = re.findall(r"--set image\.tag=v(\d+\.\d+)\.\d+", helm_install())
    assert tag == variable("kubernetes_version")["default"]
