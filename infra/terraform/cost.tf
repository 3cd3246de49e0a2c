# Cost controls: a `Component` cost allocation tag on every resource, AWS Budgets (the monthly total and one per
# component) and Cost Anomaly Detection (one monitor per component), all notifying one SNS topic. The default
# amounts come from the capacity model in docs/capacity.md.

locals {
  # Every billable resource names the part of Ragstream it serves; budgets and anomaly monitors filter on it.
  # Module calls and resources take `local.component_tags["<component>"]` instead of `local.tags`.
  cost_components = toset([
    "compute",       # EKS control plane, node groups (instances, volumes), pod security groups
    "kafka",         # MSK brokers and storage
    "postgres",      # RDS instance, storage, login secrets
    "redis",         # ElastiCache (rate limits and quotas)
    "blobstore",     # S3 uploads bucket
    "network",       # VPC, NAT gateways, load balancers
    "secrets",       # connector-secret KMS key
    "images",        # ECR repositories
    "observability", # log groups, tracing storage, cost alerts, operations alarms
    "backup",        # AWS Backup vaults, replicated database backups (the blob replica is blobstore's)
  ])
  component_tags = { for component in local.cost_components : component => merge(local.tags, { Component = component }) }

  # Cost Explorer spells a tag filter `user:<key>$<value>`.
  component_cost_filter = { for component in local.cost_components : component => format("user:Component$%s", component) }

  cost_alert_publishers = ["budgets.amazonaws.com", "costalerts.amazonaws.com"]
}

# ---- where alerts go ----

# Budgets and Cost Anomaly Detection cannot publish to a topic under the AWS-managed SNS key, hence a key of our own
# whose policy lets both services encrypt.
resource "aws_kms_key" "cost_alerts" {
  description             = "${var.name} cost alerts topic"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.cost_alerts_key.json
  tags                    = local.component_tags["observability"]
}

data "aws_iam_policy_document" "cost_alerts_key" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CostServicesEncrypt"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = local.cost_alert_publishers
    }
  }
}

resource "aws_sns_topic" "cost_alerts" {
  name              = "${var.name}-cost-alerts"
  kms_master_key_id = aws_kms_key.cost_alerts.arn
  tags              = local.component_tags["observability"]
}

data "aws_iam_policy_document" "cost_alerts_topic" {
  statement {
    sid       = "CostServicesPublish"
    actions   = ["SNS:Publish"]
    resources = [aws_sns_topic.cost_alerts.arn]

    principals {
      type        = "Service"
      identifiers = local.cost_alert_publishers
    }

    # Only on behalf of this account (confused-deputy guard).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "cost_alerts" {
  arn    = aws_sns_topic.cost_alerts.arn
  policy = data.aws_iam_policy_document.cost_alerts_topic.json
}

resource "aws_sns_topic_subscription" "cost_alert_email" {
  for_each = toset(var.cost_alert_emails)

  topic_arn = aws_sns_topic.cost_alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

# ---- cost allocation tags ----

# Billing only knows a tag key a day or so after a resource first carries it, and only the organization's
# management account may activate it: hence opt-in (see docs/capacity.md, "Budgets and anomaly alerts").
resource "aws_ce_cost_allocation_tag" "this" {
  for_each = var.activate_cost_allocation_tags ? toset(["Component", "Project", "Environment"]) : toset([])

  tag_key = each.value
  status  = "Active"
}

# ---- budgets ----

# The whole account's spend: untagged charges (data transfer between zones, support, tax) count here and in no
# component's budget. One account per environment keeps this figure the environment's own.
resource "aws_budgets_budget" "monthly_total" {
  name         = "${var.name}-monthly-total"
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  # Credits and refunds would hide real spend until they run out.
  cost_types {
    include_credit = false
    include_refund = false
  }

  dynamic "notification" {
    for_each = local.budget_notifications
    content {
      comparison_operator       = "GREATER_THAN"
      notification_type         = notification.value.type
      threshold                 = notification.value.percent
      threshold_type            = "PERCENTAGE"
      subscriber_sns_topic_arns = [aws_sns_topic.cost_alerts.arn]
    }
  }

  tags       = local.component_tags["observability"]
  depends_on = [aws_sns_topic_policy.cost_alerts]
}

resource "aws_budgets_budget" "component" {
  for_each = var.component_monthly_budgets_usd

  name         = "${var.name}-${each.key}"
  budget_type  = "COST"
  limit_amount = tostring(each.value)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  cost_filter {
    name   = "TagKeyValue"
    values = [local.component_cost_filter[each.key]]
  }

  cost_types {
    include_credit = false
    include_refund = false
  }

  dynamic "notification" {
    for_each = local.budget_notifications
    content {
      comparison_operator       = "GREATER_THAN"
      notification_type         = notification.value.type
      threshold                 = notification.value.percent
      threshold_type            = "PERCENTAGE"
      subscriber_sns_topic_arns = [aws_sns_topic.cost_alerts.arn]
    }
  }

  tags       = local.component_tags["observability"]
  depends_on = [aws_sns_topic_policy.cost_alerts]
}

locals {
  # Actual spend crossing each threshold, and the month's forecast crossing the budget (an early warning).
  budget_notifications = concat(
    [for percent in var.budget_actual_alert_percents : { type = "ACTUAL", percent = percent }],
    [{ type = "FORECASTED", percent = var.budget_forecast_alert_percent }],
  )
}

# ---- anomaly detection ----

# One custom monitor per component: a spike in one (an embed scale-out loop, a runaway MSK volume) stands out
# instead of drowning in the account's total. Accounts already have AWS's default per-service monitor; only one
# of that kind may exist, so ours are tag-scoped.
resource "aws_ce_anomaly_monitor" "component" {
  for_each = local.cost_components

  name         = "${var.name}-${each.key}"
  monitor_type = "CUSTOM"
  monitor_specification = jsonencode({
    And            = null
    CostCategories = null
    Dimensions     = null
    Not            = null
    Or             = null
    Tags = {
      Key          = "Component"
      MatchOptions = ["EQUALS"]
      Values       = [each.key]
    }
  })

  tags = local.component_tags["observability"]
}

resource "aws_ce_anomaly_subscription" "component" {
  name             = "${var.name}-cost-anomalies"
  frequency        = "IMMEDIATE" # IMMEDIATE needs an SNS subscriber; e-mail arrives through the topic
  monitor_arn_list = [for monitor in aws_ce_anomaly_monitor.component : monitor.arn]

  subscriber {
    type    = "SNS"
    address = aws_sns_topic.cost_alerts.arn
  }

  # Both: a large absolute impact on a small base is noise unless it is also a large share of that base.
  threshold_expression {
    and {
      dimension {
        key           = "ANOMALY_TOTAL_IMPACT_ABSOLUTE"
        match_options = ["GREATER_THAN_OR_EQUAL"]
        values        = [tostring(var.cost_anomaly_min_impact_usd)]
      }
    }
    and {
      dimension {
        key           = "ANOMALY_TOTAL_IMPACT_PERCENTAGE"
        match_options = ["GREATER_THAN_OR_EQUAL"]
        values        = [tostring(var.cost_anomaly_min_impact_percent)]
      }
    }
  }

  tags       = local.component_tags["observability"]
  depends_on = [aws_sns_topic_policy.cost_alerts]
}
