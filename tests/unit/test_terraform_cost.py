"""infra/terraform/cost.tf: budgets, anomaly detection and the Component tag that both filter on.

Checks on the parsed files only (the AWS provider is not downloadable here): what each resource is wired to, and
that the components, their default budgets and the tag filters agree.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from test_infra_terraform import TERRAFORM, blocks, module_text, parse

pytestmark = pytest.mark.unit

COST = TERRAFORM / "cost.tf"
TOPIC_ARN = "${aws_sns_topic.cost_alerts.arn}"
PUBLISHERS = {"budgets.amazonaws.com", "costalerts.amazonaws.com"}


def cost_resources() -> dict[str, dict[str, Any]]:
    """cost.tf's resources by type, then name (several blocks of one type merged)."""
    found: dict[str, dict[str, Any]] = {}
    for block in parse(COST)["resource"]:
        for kind, named in block.items():
            found.setdefault(kind, {}).update(named)
    return found


def cost_policy_documents() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in parse(COST)["data"]:
        found.update(block.get("aws_iam_policy_document", {}))
    return found


def cost_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in parse(COST)["locals"]:
        merged.update(block)
    return merged


def cost_components() -> set[str]:
    return set(re.findall(r'"([a-z]+)"', cost_locals()["cost_components"]))


def variables() -> dict[str, Any]:
    return blocks(TERRAFORM, "variable")


def policy_statement(document: str, sid: str) -> dict[str, Any]:
    statements = cost_policy_documents()[document]["statement"]
    (statement,) = (s for s in statements if s["sid"] == sid)
    return statement


def test_components_cover_every_priced_part_of_the_deployment() -> None:
    components = cost_components()
    assert {"compute", "kafka", "postgres", "redis", "blobstore", "network"} <= components
    assert "Component = component" in cost_locals()["component_tags"]
    assert "merge(local.tags," in cost_locals()["component_tags"]
    assert 'format("user:Component$%s", component)' in cost_locals()["component_cost_filter"]


def test_every_component_tag_reference_names_a_declared_component() -> None:
    referenced = set(re.findall(r'local\.component_tags\["([a-z]+)"\]', module_text(TERRAFORM)))
    assert referenced and referenced <= cost_components()


def test_total_budget_is_monthly_usd_without_credits_and_notifies_the_topic() -> None:
    budget = cost_resources()["aws_budgets_budget"]["monthly_total"]
    assert (budget["budget_type"], budget["time_unit"], budget["limit_unit"]) == ("COST", "MONTHLY", "USD")
    assert budget["limit_amount"] == "${tostring(var.monthly_budget_usd)}"
    assert "cost_filter" not in budget, "the total covers untagged charges too"
    assert budget["cost_types"] == [{"include_credit": False, "include_refund": False}]
    assert_notifies_topic(budget)


def test_component_budgets_filter_on_the_component_tag() -> None:
    budget = cost_resources()["aws_budgets_budget"]["component"]
    assert budget["for_each"] == "${var.component_monthly_budgets_usd}"
    assert budget["cost_filter"] == [{"name": "TagKeyValue", "values": ["${local.component_cost_filter[each.key]}"]}]
    assert budget["cost_types"] == [{"include_credit": False, "include_refund": False}]
    assert_notifies_topic(budget)


def assert_notifies_topic(budget: dict[str, Any]) -> None:
    (dynamic,) = budget["dynamic"]
    notification = dynamic["notification"]
    assert notification["for_each"] == "${local.budget_notifications}"
    (content,) = notification["content"]
    assert content["subscriber_sns_topic_arns"] == [TOPIC_ARN]
    assert content["threshold_type"] == "PERCENTAGE" and content["comparison_operator"] == "GREATER_THAN"
    assert "${aws_sns_topic_policy.cost_alerts}" in budget["depends_on"]
    kinds = cost_locals()["budget_notifications"]
    assert '"ACTUAL"' in kinds and '"FORECASTED"' in kinds


def test_default_budgets_are_components_and_fit_in_the_total() -> None:
    declared = variables()
    per_component = declared["component_monthly_budgets_usd"]["default"]
    assert set(per_component) <= cost_components()
    assert all(amount > 0 for amount in per_component.values())
    assert sum(per_component.values()) <= declared["monthly_budget_usd"]["default"]
    assert declared["budget_actual_alert_percents"]["default"] == [80, 100]
    assert declared["activate_cost_allocation_tags"]["default"] is False


@pytest.mark.parametrize(
    "name",
    [
        "monthly_budget_usd",
        "component_monthly_budgets_usd",
        "budget_actual_alert_percents",
        "budget_forecast_alert_percent",
        "cost_alert_emails",
        "cost_anomaly_min_impact_usd",
        "cost_anomaly_min_impact_percent",
        "activate_cost_allocation_tags",
    ],
)
def test_cost_variables_are_described_and_typed(name: str) -> None:
    variable = variables()[name]
    assert variable["description"] and variable["type"] and "default" in variable


def test_one_anomaly_monitor_per_component_scoped_by_the_tag() -> None:
    monitor = cost_resources()["aws_ce_anomaly_monitor"]["component"]
    assert monitor["for_each"] == "${local.cost_components}"
    assert monitor["monitor_type"] == "CUSTOM"
    specification = monitor["monitor_specification"]
    assert 'Tags = {Key = "Component", MatchOptions = ["EQUALS"], Values = [each.key]}' in specification


def test_anomaly_subscription_covers_every_monitor_immediately_over_sns() -> None:
    subscription = cost_resources()["aws_ce_anomaly_subscription"]["component"]
    assert "aws_ce_anomaly_monitor.component" in subscription["monitor_arn_list"]
    assert subscription["frequency"] == "IMMEDIATE"
    assert subscription["subscriber"] == [{"type": "SNS", "address": TOPIC_ARN}]
    (expression,) = subscription["threshold_expression"]
    keys = {single_dimension(part)["key"] for part in expression["and"]}
    assert keys == {"ANOMALY_TOTAL_IMPACT_ABSOLUTE", "ANOMALY_TOTAL_IMPACT_PERCENTAGE"}


def single_dimension(part: dict[str, Any]) -> dict[str, Any]:
    (dimension,) = part["dimension"]
    return dimension


def test_alert_topic_is_encrypted_with_a_key_the_cost_services_may_use() -> None:
    resources = cost_resources()
    assert resources["aws_sns_topic"]["cost_alerts"]["kms_master_key_id"] == "${aws_kms_key.cost_alerts.arn}"
    assert resources["aws_kms_key"]["cost_alerts"]["enable_key_rotation"] is True
    key_grant = policy_statement("cost_alerts_key", "CostServicesEncrypt")
    assert set(key_grant["actions"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    assert key_grant["principals"][0]["identifiers"] == "${local.cost_alert_publishers}"
    assert set(cost_locals()["cost_alert_publishers"]) == PUBLISHERS


def test_only_this_account_cost_services_may_publish() -> None:
    publish = policy_statement("cost_alerts_topic", "CostServicesPublish")
    assert publish["actions"] == ["SNS:Publish"] and publish["resources"] == [TOPIC_ARN]
    (condition,) = publish["condition"]
    assert condition["variable"] == "aws:SourceAccount"
    policy = cost_resources()["aws_sns_topic_policy"]["cost_alerts"]
    assert policy["policy"] == "${data.aws_iam_policy_document.cost_alerts_topic.json}"


def test_email_subscribers_and_cost_allocation_tags_are_opt_in() -> None:
    resources = cost_resources()
    email = resources["aws_sns_topic_subscription"]["cost_alert_email"]
    assert email["for_each"] == "${toset(var.cost_alert_emails)}" and email["protocol"] == "email"
    activation = resources["aws_ce_cost_allocation_tag"]["this"]
    assert activation["for_each"].startswith("${var.activate_cost_allocation_tags ?")
    assert '"Component"' in activation["for_each"] and activation["status"] == "Active"


def test_cost_resources_carry_a_component_tag() -> None:
    untaggable = {"aws_sns_topic_policy", "aws_sns_topic_subscription", "aws_ce_cost_allocation_tag"}
    for kind, named in cost_resources().items():
        if kind in untaggable:
            continue
        for name, body in named.items():
            assert body["tags"].startswith("${local.component_tags["), f"{kind}.{name} has no Component tag"


MODULE_COMPONENTS = {
    "eks": "compute",
    "kafka": "kafka",
    "postgres": "postgres",
    "redis": "redis",
    "blobstore": "blobstore",
    "vpc": "network",
}


def test_data_store_and_compute_modules_are_tagged_with_their_component() -> None:
    calls = blocks(TERRAFORM, "module")
    tags = {name: calls[name].get("tags") for name in MODULE_COMPONENTS}
    assert tags == {name: f'${{local.component_tags["{c}"]}}' for name, c in MODULE_COMPONENTS.items()}, json.dumps(
        tags
    )


def test_compute_budget_covers_the_default_node_floor() -> None:
    """Below what the node group's floor costs, the compute budget would fire every month (docs/capacity.md)."""
    declared = variables()
    nodes = declared["node_min_size"]["default"]
    # On-demand list prices: m7i.xlarge 0.2016 USD/h, its 20 GB gp3 volume 0.08 USD/GB-month, EKS 0.10 USD/h.
    floor = nodes * (0.2016 * 730 + 20 * 0.08) + 0.10 * 730
    assert declared["component_monthly_budgets_usd"]["default"]["compute"] >= 1.2 * floor


def test_capacity_model_states_the_default_budgets() -> None:
    """docs/capacity.md explains where the defaults come from: they must be the ones it names."""
    text = " ".join((TERRAFORM.parents[1] / "docs" / "capacity.md").read_text().split())
    declared = variables()
    assert f"`monthly_budget_usd` (default {declared['monthly_budget_usd']['default']:,}" in text
    for component, amount in declared["component_monthly_budgets_usd"]["default"].items():
        assert f"{component} {amount}" in text
