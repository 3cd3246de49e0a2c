# Operations guarantees, planned against mocked AWS providers (no account, no credentials): encryption, no public
# access, replicated backups, deletion protection, log retention, a closed API endpoint.
# Run: terraform -chdir=infra/terraform init -backend=false && terraform -chdir=infra/terraform test

mock_provider "aws" {
  override_data {
    target = data.aws_availability_zones.available
    values = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"] }
  }

  override_data {
    target = data.aws_caller_identity.current
    values = { account_id = "111122223333" }
  }

  override_data {
    target = data.aws_partition.current
    values = { partition = "aws" }
  }
}

mock_provider "aws" {
  alias = "dr"
}

# The eks module's other providers (OIDC thumbprint, waits, node user data).
mock_provider "random" {}
mock_provider "tls" {}
mock_provider "time" {}
mock_provider "cloudinit" {}

variables {
  ingress_certificate_arn = "arn:aws:acm:eu-west-1:111122223333:certificate/1234abcd-12ab-34cd-56ef-1234567890ab"
}

# apply (against the mocks): the assertions compare ARNs, which a plan does not know yet.
run "defaults_are_private_encrypted_and_replicated" {
  command = apply

  assert {
    condition     = var.eks_public_endpoint == false && length(var.eks_public_access_cidrs) == 0
    error_message = "The Kubernetes API must be private by default."
  }

  assert {
    condition     = aws_db_instance_automated_backups_replication.postgres.retention_period >= 7 && aws_db_instance_automated_backups_replication.postgres.kms_key_id == aws_kms_key.dr_backup.arn
    error_message = "RDS backups must be replicated to the DR region, encrypted, for at least 7 days."
  }

  assert {
    condition     = one(aws_backup_plan.daily.rule).schedule == "cron(0 5 * * ? *)" && one(one(aws_backup_plan.daily.rule).copy_action).destination_vault_arn == aws_backup_vault.dr.arn
    error_message = "AWS Backup must run daily and copy to the DR vault."
  }

  assert {
    condition     = toset(aws_backup_selection.data_stores.resources) == toset([module.postgres.arn, module.blobstore.bucket_arn])
    error_message = "AWS Backup must select the database and the blob bucket."
  }

  assert {
    condition     = aws_cloudwatch_log_group.flow_logs.retention_in_days > 0 && aws_flow_log.vpc.traffic_type == "ALL"
    error_message = "VPC flow logs must capture all traffic into a group with a retention."
  }

  assert {
    condition     = alltrue([for group in concat(values(aws_cloudwatch_log_group.service), [aws_cloudwatch_log_group.security, aws_cloudwatch_log_group.container_insights]) : group.retention_in_days > 0])
    error_message = "Every log group needs a retention."
  }

  assert {
    condition     = aws_lb.ingress.enable_deletion_protection && aws_lb.ingress.drop_invalid_header_fields && aws_lb_listener.https.ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    error_message = "The ALB must be protected from deletion, drop invalid headers and speak TLS 1.2+."
  }

  assert {
    condition     = one(one(aws_lb_listener.http_redirect.default_action).redirect).protocol == "HTTPS"
    error_message = "Plain HTTP must only redirect to HTTPS."
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.kafka_under_replicated) == var.kafka_broker_count && length(aws_cloudwatch_metric_alarm.postgres) == 3
    error_message = "Every broker and the database need their alarms."
  }
}

run "public_api_endpoint_open_to_the_internet_is_rejected" {
  command = plan

  variables {
    eks_public_endpoint     = true
    eks_public_access_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.eks_public_access_cidrs]
}

run "public_api_endpoint_needs_an_allowlist" {
  command = plan

  variables {
    eks_public_endpoint = true
  }

  expect_failures = [var.eks_public_access_cidrs]
}

run "dr_region_must_differ_from_the_primary" {
  command = plan

  variables {
    dr_region = "eu-west-1"
  }

  expect_failures = [var.dr_region]
}
