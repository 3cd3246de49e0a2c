# Network and cluster logs: VPC flow logs (every accepted and rejected flow, for incident forensics) and the log
# group of Container Insights' performance events, each with a retention and under the logs key
# (observability.tf), and the role of the Container Insights agent (the amazon-cloudwatch-observability addon,
# main.tf). The EKS control plane's group is the eks module's, with the same retention and key.

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow logs, in days."
  type        = number
  default     = 90

  validation {
    condition     = contains([30, 60, 90, 120, 150, 180, 365, 400, 545, 731], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a CloudWatch Logs retention period of 30 to 731 days."
  }
}

locals {
  container_insights_namespace = "amazon-cloudwatch"
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/${var.name}/vpc-flow-logs"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
  tags              = local.component_tags["network"]
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    sid       = "WriteFlowLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }

  statement {
    sid       = "FindLogGroups"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["*"]
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-vpc-flow-logs"
  description        = "VPC flow logs of ${var.name} into CloudWatch Logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
  tags               = local.component_tags["network"]
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "${var.name}-vpc-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "vpc" {
  vpc_id                   = module.vpc.vpc_id
  traffic_type             = "ALL"
  log_destination_type     = "cloud-watch-logs"
  log_destination          = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn             = aws_iam_role.flow_logs.arn
  max_aggregation_interval = 60
  tags                     = local.component_tags["network"]
}

# ---- Container Insights ----

# Declared here so that it has a retention and the logs key; the agent may write to it but create no group.
resource "aws_cloudwatch_log_group" "container_insights" {
  name              = "/aws/containerinsights/${var.name}/performance"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
  tags              = local.component_tags["observability"]
}

# What CloudWatchAgentServerPolicy grants, narrowed: metrics, this one log group, and the EC2 look-ups of its
# node metadata.
data "aws_iam_policy_document" "cloudwatch_agent" {
  statement {
    sid       = "PutMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
  }

  statement {
    sid       = "WritePerformanceLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.container_insights.arn}:*"]
  }

  statement {
    sid       = "Describe"
    actions   = ["logs:DescribeLogGroups", "ec2:DescribeVolumes", "ec2:DescribeTags", "ec2:DescribeInstances"]
    resources = ["*"]
  }
}

module "cloudwatch_agent_role" {
  source = "./modules/irsa"

  name_prefix       = var.name
  oidc_provider_arn = module.eks.oidc_provider_arn
  namespace         = local.container_insights_namespace
  service_accounts  = { cloudwatch-agent = [data.aws_iam_policy_document.cloudwatch_agent.json] }
  tags              = local.component_tags["observability"]
}
