# Backups and disaster recovery. RDS keeps point-in-time backups here and replicates them to the DR region
# (restore there to any second of the retention); AWS Backup takes a daily snapshot of the database and of the blob
# bucket and copies it to a vault in the DR region. The blob bucket itself is replicated to the DR region
# (modules/blobstore). Not backed up: Kafka (replicated across three zones; its topics carry events in flight, the
# records of truth are Postgres and the blobs) and Redis (rate-limit counters only). Backup and copy failures notify the operations topic (alarms.tf).

variable "dr_region" {
  description = "Disaster-recovery region: replicated database backups, the blob bucket's replica, the backup copy vault."
  type        = string
  default     = "eu-central-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.dr_region)) && var.dr_region != var.region
    error_message = "dr_region must be an AWS region other than region."
  }
}

variable "backup_retention_days" {
  description = "Days the database's point-in-time backups (here and replicated) and the daily AWS Backup recovery points are kept."
  type        = number
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be 7 to 35 (the most RDS keeps automated backups)."
  }
}

# ---- keys ----

data "aws_iam_policy_document" "backup_key" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }
  }
}

resource "aws_kms_key" "backup" {
  description             = "${var.name} AWS Backup vault"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.backup_key.json
  tags                    = local.component_tags["backup"]
}

# The DR region's key: replicated RDS backups and the copy vault.
resource "aws_kms_key" "dr_backup" {
  provider = aws.dr

  description             = "${var.name} backups in the DR region"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.backup_key.json
  tags                    = local.component_tags["backup"]
}

# ---- RDS: automated backups replicated to the DR region ----

resource "aws_db_instance_automated_backups_replication" "postgres" {
  provider = aws.dr

  source_db_instance_arn = module.postgres.arn
  kms_key_id             = aws_kms_key.dr_backup.arn
  retention_period       = var.backup_retention_days
}

# ---- AWS Backup: daily recovery points, copied to the DR region ----

resource "aws_backup_vault" "primary" {
  name        = "${var.name}-backups"
  kms_key_arn = aws_kms_key.backup.arn
  tags        = local.component_tags["backup"]
}

resource "aws_backup_vault" "dr" {
  provider = aws.dr

  name        = "${var.name}-backups-dr"
  kms_key_arn = aws_kms_key.dr_backup.arn
  tags        = local.component_tags["backup"]
}

resource "aws_backup_plan" "daily" {
  name = "${var.name}-daily"

  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.primary.name
    # 05:00 UTC: after RDS's backup window (02:00-03:00) and maintenance window (sun 03:30-04:30).
    schedule          = "cron(0 5 * * ? *)"
    start_window      = 60
    completion_window = 360

    lifecycle {
      delete_after = var.backup_retention_days
    }

    copy_action {
      destination_vault_arn = aws_backup_vault.dr.arn

      lifecycle {
        delete_after = var.backup_retention_days
      }
    }
  }

  tags = local.component_tags["backup"]
}

data "aws_iam_policy_document" "backup_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "${var.name}-backup"
  description        = "AWS Backup of ${var.name}'s database and blob bucket"
  assume_role_policy = data.aws_iam_policy_document.backup_assume.json
  tags               = local.component_tags["backup"]
}

locals {
  # AWS-managed: what AWS Backup needs to snapshot, copy and restore RDS and S3 (S3's are not under service-role/).
  backup_role_policies = {
    backup     = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
    restores   = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores"
    s3_backup  = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AWSBackupServiceRolePolicyForS3Backup"
    s3_restore = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AWSBackupServiceRolePolicyForS3Restore"
  }
}

resource "aws_iam_role_policy_attachment" "backup" {
  for_each = local.backup_role_policies

  role       = aws_iam_role.backup.name
  policy_arn = each.value
}

resource "aws_backup_selection" "data_stores" {
  name         = "${var.name}-data-stores"
  plan_id      = aws_backup_plan.daily.id
  iam_role_arn = aws_iam_role.backup.arn
  resources    = [module.postgres.arn, module.blobstore.bucket_arn]
}

output "dr_region" {
  value = var.dr_region
}

output "backup_vaults" {
  description = "AWS Backup vaults: where the daily recovery points are, here and in the DR region (docs/runbooks.md)."
  value       = { primary = aws_backup_vault.primary.name, dr = aws_backup_vault.dr.name }
}

output "blob_replica_bucket" {
  value = module.blobstore.replica_bucket_name
}
