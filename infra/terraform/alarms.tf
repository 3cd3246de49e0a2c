# CloudWatch alarms on the managed services, all notifying one operations topic (e-mail, or a pager's SNS
# endpoint): RDS CPU, free storage and connections; MSK broker disk and under-replicated partitions; ElastiCache
# memory; the ALB's 5xx rate; and AWS Backup's failed jobs. Each alarm is named like the section of
# docs/runbooks.md that says what to do.

variable "ops_alert_emails" {
  description = "E-mail addresses subscribed to the operations alerts topic (each confirms once)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for address in var.ops_alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", address))])
    error_message = "ops_alert_emails must be e-mail addresses."
  }
}

variable "alarm_thresholds" {
  description = "Alarm thresholds; any attribute left out keeps its default."
  type = object({
    postgres_cpu_percent      = optional(number, 80)
    postgres_free_storage_gb  = optional(number, 20)
    postgres_connections      = optional(number, 400)
    kafka_disk_used_percent   = optional(number, 75)
    redis_memory_percent      = optional(number, 80)
    ingress_5xx_percent       = optional(number, 5)
    ingress_min_requests_5min = optional(number, 100)
  })
  default = {}
}

locals {
  ops_alarm_publishers = ["cloudwatch.amazonaws.com", "backup.amazonaws.com"]
  ops_alert_actions    = [aws_sns_topic.ops_alerts.arn]
  kafka_broker_ids     = toset([for id in range(1, var.kafka_broker_count + 1) : tostring(id)])
  runbooks             = "docs/runbooks.md#"

  # Single-metric alarms on the database: five-minute periods, three in a row.
  postgres_alarms = {
    PostgresCpuHigh = {
      metric    = "CPUUtilization", statistic = "Average", comparison = "GreaterThanThreshold"
      threshold = var.alarm_thresholds.postgres_cpu_percent
    }
    PostgresFreeStorageLow = {
      metric    = "FreeStorageSpace", statistic = "Minimum", comparison = "LessThanThreshold"
      threshold = var.alarm_thresholds.postgres_free_storage_gb * 1073741824
    }
    PostgresConnectionsHigh = {
      metric    = "DatabaseConnections", statistic = "Maximum", comparison = "GreaterThanThreshold"
      threshold = var.alarm_thresholds.postgres_connections
    }
  }
}

# ---- where alerts go ----

data "aws_iam_policy_document" "ops_alerts_key" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }
  }

  # CloudWatch and AWS Backup publish to the encrypted topic, for this account only.
  statement {
    sid       = "AlarmPublishersEncrypt"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = local.ops_alarm_publishers
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_kms_key" "ops_alerts" {
  description             = "${var.name} operations alerts topic"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.ops_alerts_key.json
  tags                    = local.component_tags["observability"]
}

resource "aws_sns_topic" "ops_alerts" {
  name              = "${var.name}-ops-alerts"
  kms_master_key_id = aws_kms_key.ops_alerts.arn
  tags              = local.component_tags["observability"]
}

data "aws_iam_policy_document" "ops_alerts_topic" {
  statement {
    sid       = "AlarmPublishers"
    actions   = ["SNS:Publish"]
    resources = [aws_sns_topic.ops_alerts.arn]

    principals {
      type        = "Service"
      identifiers = local.ops_alarm_publishers
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "ops_alerts" {
  arn    = aws_sns_topic.ops_alerts.arn
  policy = data.aws_iam_policy_document.ops_alerts_topic.json
}

resource "aws_sns_topic_subscription" "ops_alert_email" {
  for_each = toset(var.ops_alert_emails)

  topic_arn = aws_sns_topic.ops_alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

# ---- RDS ----

resource "aws_cloudwatch_metric_alarm" "postgres" {
  for_each = local.postgres_alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = "RDS ${module.postgres.identifier}: ${each.value.metric} ${each.value.comparison} ${each.value.threshold}. Runbook: ${local.runbooks}${lower(each.key)}"
  namespace           = "AWS/RDS"
  metric_name         = each.value.metric
  dimensions          = { DBInstanceIdentifier = module.postgres.identifier }
  statistic           = each.value.statistic
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  period              = 300
  evaluation_periods  = 3
  alarm_actions       = local.ops_alert_actions
  ok_actions          = local.ops_alert_actions
  tags                = local.component_tags["observability"]
}

# ---- MSK (per broker: both metrics are published per broker at the DEFAULT monitoring level) ----

resource "aws_cloudwatch_metric_alarm" "kafka_disk_used" {
  for_each = local.kafka_broker_ids

  alarm_name          = "${var.name}-KafkaBrokerDiskHigh-${each.key}"
  alarm_description   = "MSK broker ${each.key}: data log disk over ${var.alarm_thresholds.kafka_disk_used_percent}% used. Runbook: ${local.runbooks}kafkabrokerdiskhigh"
  namespace           = "AWS/Kafka"
  metric_name         = "KafkaDataLogsDiskUsed"
  dimensions          = { "Cluster Name" = module.kafka.cluster_name, "Broker ID" = each.key }
  statistic           = "Maximum"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_thresholds.kafka_disk_used_percent
  period              = 300
  evaluation_periods  = 2
  alarm_actions       = local.ops_alert_actions
  ok_actions          = local.ops_alert_actions
  tags                = local.component_tags["observability"]
}

resource "aws_cloudwatch_metric_alarm" "kafka_under_replicated" {
  for_each = local.kafka_broker_ids

  alarm_name          = "${var.name}-KafkaUnderReplicatedPartitions-${each.key}"
  alarm_description   = "MSK broker ${each.key}: partitions under-replicated for 15 minutes (min.insync.replicas=2 is at risk). Runbook: ${local.runbooks}kafkaunderreplicatedpartitions"
  namespace           = "AWS/Kafka"
  metric_name         = "UnderReplicatedPartitions"
  dimensions          = { "Cluster Name" = module.kafka.cluster_name, "Broker ID" = each.key }
  statistic           = "Maximum"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  period              = 300
  evaluation_periods  = 3
  alarm_actions       = local.ops_alert_actions
  ok_actions          = local.ops_alert_actions
  tags                = local.component_tags["observability"]
}

# ---- ElastiCache (per node) ----

# noeviction (modules/redis): a full node refuses writes and the gateway fails closed, so warn well before.
resource "aws_cloudwatch_metric_alarm" "redis_memory" {
  for_each = toset(module.redis.member_cluster_ids)

  alarm_name          = "${var.name}-RedisMemoryHigh-${each.key}"
  alarm_description   = "ElastiCache ${each.key}: memory over ${var.alarm_thresholds.redis_memory_percent}% (noeviction: writes fail when full). Runbook: ${local.runbooks}redismemoryhigh"
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { CacheClusterId = each.key }
  statistic           = "Maximum"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_thresholds.redis_memory_percent
  period              = 300
  evaluation_periods  = 2
  alarm_actions       = local.ops_alert_actions
  ok_actions          = local.ops_alert_actions
  tags                = local.component_tags["observability"]
}

# ---- ALB ----

# The share of requests answered 5xx, by the ALB itself or by the gateway behind it; quiet periods (fewer than
# ingress_min_requests_5min requests) do not count.
resource "aws_cloudwatch_metric_alarm" "ingress_5xx" {
  alarm_name          = "${var.name}-IngressErrorRateHigh"
  alarm_description   = "ALB ${aws_lb.ingress.name}: over ${var.alarm_thresholds.ingress_5xx_percent}% of requests answered 5xx. Runbook: ${local.runbooks}ingresserrorratehigh"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_thresholds.ingress_5xx_percent
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.ops_alert_actions
  ok_actions          = local.ops_alert_actions
  tags                = local.component_tags["observability"]

  metric_query {
    id          = "error_percent"
    expression  = "IF(requests >= ${var.alarm_thresholds.ingress_min_requests_5min}, 100 * (elb_5xx + target_5xx) / requests, 0)"
    label       = "5xx percent"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = { requests = "RequestCount", elb_5xx = "HTTPCode_ELB_5XX_Count", target_5xx = "HTTPCode_Target_5XX_Count" }
    content {
      id = metric_query.key

      metric {
        namespace   = "AWS/ApplicationELB"
        metric_name = metric_query.value
        dimensions  = { LoadBalancer = aws_lb.ingress.arn_suffix }
        stat        = "Sum"
        period      = 300
      }
    }
  }
}

# ---- AWS Backup ----

resource "aws_backup_vault_notifications" "primary" {
  backup_vault_name   = aws_backup_vault.primary.name
  sns_topic_arn       = aws_sns_topic.ops_alerts.arn
  backup_vault_events = ["BACKUP_JOB_FAILED", "BACKUP_JOB_EXPIRED", "COPY_JOB_FAILED", "RESTORE_JOB_COMPLETED"]

  depends_on = [aws_sns_topic_policy.ops_alerts]
}

output "ops_alerts_topic_arn" {
  description = "SNS topic of the operations alarms: subscribe a pager here (ops_alert_emails adds e-mail)."
  value       = aws_sns_topic.ops_alerts.arn
}
