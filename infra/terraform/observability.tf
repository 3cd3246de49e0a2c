# Log shipping on AWS: a CloudWatch Logs group per service and one for security events, with their retention and a
# KMS key of their own (it also encrypts the flow logs, the EKS control plane's and Container Insights' groups,
# flow-logs.tf), and the IRSA role of the Fluent Bit DaemonSet (infra/k8s/observability/logging) that writes to them. The group names are what infra/observability/fluent-bit/k8s.yaml writes to:
# /<name>/services/<service> (the record's `service`), /<name>/services/unattributed, /<name>/security.
# Everything here is tagged Component=observability (cost.tf budgets and anomaly monitors).

variable "log_retention_days" {
  description = "Retention of the services' CloudWatch log groups, in days (a value CloudWatch accepts)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' retention periods."
  }
}

variable "security_log_retention_days" {
  description = "Retention of the security event log group, in days; audits usually ask for a year or more."
  type        = number
  default     = 400

  validation {
    condition     = contains([90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.security_log_retention_days)
    error_message = "security_log_retention_days must be a CloudWatch Logs retention period of at least 90 days."
  }
}

variable "log_opensearch_domain_arn" {
  description = "Amazon OpenSearch Service domain the log shipper also writes to (its OPENSEARCH_HOST); empty for none."
  type        = string
  default     = ""
}

locals {
  # Every service logs under its own group; the shipper routes by the record's `service` field.
  # (metering is listed until it joins local.services; setunion keeps one entry either way).
  log_group_names = merge(
    { for service in setunion(local.services, ["metering"]) : service => "/${var.name}/services/${service}" },
    { unattributed = "/${var.name}/services/unattributed" },
  )
  security_log_group_name = "/${var.name}/security"
  log_shipper_namespace   = "logging"

  # Groups under the logs key: ours, the EKS control plane's, Container Insights' (flow-logs.tf, main.tf).
  encrypted_log_group_prefixes = ["/${var.name}/", "/aws/eks/${var.name}/", "/aws/containerinsights/${var.name}/"]
}

data "aws_iam_policy_document" "logs_key" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts and decrypts the groups' events, and only for this account's log groups.
  statement {
    sid       = "CloudWatchLogsUse"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = [for prefix in local.encrypted_log_group_prefixes : "arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:${prefix}*"]
    }
  }
}

resource "aws_kms_key" "logs" {
  description             = "${var.name} CloudWatch log groups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.logs_key.json
  tags                    = local.component_tags["observability"]
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${var.name}-logs"
  target_key_id = aws_kms_key.logs.key_id
}

resource "aws_cloudwatch_log_group" "service" {
  for_each = local.log_group_names

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
  tags              = local.component_tags["observability"]
}

# Authentication failures, refused admin credentials and webhooks, tenant mismatches: what a SIEM subscribes to
# (a subscription filter to Kinesis or Lambda, or the SIEM's own CloudWatch reader).
resource "aws_cloudwatch_log_group" "security" {
  name              = local.security_log_group_name
  retention_in_days = var.security_log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
  tags              = local.component_tags["observability"]
}

# The shipper creates streams (one per pod) and writes events in the groups above; it creates no group (the
# config sets auto_create_group false), so retention and encryption stay as declared here.
data "aws_iam_policy_document" "log_shipper" {
  statement {
    sid       = "WriteLogEvents"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [for group in concat(values(aws_cloudwatch_log_group.service), [aws_cloudwatch_log_group.security]) : "${group.arn}:*"]
  }

  statement {
    sid       = "FindLogGroups"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = var.log_opensearch_domain_arn == "" ? [] : [var.log_opensearch_domain_arn]
    content {
      sid       = "WriteOpenSearch"
      actions   = ["es:ESHttpPost", "es:ESHttpPut", "es:ESHttpGet", "es:ESHttpHead"]
      resources = [statement.value, "${statement.value}/*"]
    }
  }
}

module "log_shipper_role" {
  source = "./modules/irsa"

  name_prefix       = var.name
  oidc_provider_arn = module.eks.oidc_provider_arn
  namespace         = local.log_shipper_namespace
  service_accounts  = { fluent-bit = [data.aws_iam_policy_document.log_shipper.json] }
  tags              = local.component_tags["observability"]
}

output "log_groups" {
  description = "CloudWatch log groups: service => group, plus `security`; LOG_GROUP_PREFIX of the Fluent Bit DaemonSet is /<name>."
  value       = merge(local.log_group_names, { security = local.security_log_group_name })
}

output "log_shipper_role_arn" {
  description = "IRSA role of the logging/fluent-bit service account (eks.amazonaws.com/role-arn)."
  value       = module.log_shipper_role.role_arns["fluent-bit"]
}
