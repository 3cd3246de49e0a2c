# The data-store modules on their own, planned against mocked AWS providers: storage encryption, no public access,
# deletion protection, the blob bucket's replica in the DR region, old versions expiring on both sides.

mock_provider "aws" {
  override_data {
    target = data.aws_iam_policy_document.key
    values = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

mock_provider "aws" {
  alias = "dr"
}

mock_provider "random" {}

run "postgres_is_private_encrypted_and_protected" {
  command = plan

  module {
    source = "./modules/rds"
  }

  variables {
    name                      = "ragstream"
    major_version             = "18"
    instance_class            = "db.r7g.large"
    allocated_storage_gb      = 100
    max_allocated_storage_gb  = 1000
    multi_az                  = true
    deletion_protection       = true
    vpc_id                    = "vpc-0123456789abcdef0"
    db_subnet_group_name      = "ragstream"
    client_security_group_ids = { eks_nodes = "sg-0123456789abcdef0" }
  }

  assert {
    condition     = aws_db_instance.this.storage_encrypted && !aws_db_instance.this.publicly_accessible
    error_message = "RDS must be encrypted and private."
  }

  assert {
    condition     = aws_db_instance.this.deletion_protection && !aws_db_instance.this.skip_final_snapshot
    error_message = "RDS must be protected from deletion and keep a final snapshot."
  }

  assert {
    condition     = aws_db_instance.this.backup_retention_period >= 7
    error_message = "RDS must keep at least a week of point-in-time backups."
  }
}

run "blob_bucket_is_private_encrypted_and_replicated" {
  command = plan

  module {
    source = "./modules/blobstore"
  }

  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  variables {
    bucket_name             = "ragstream-blobs-111122223333"
    replica_bucket_name     = "ragstream-blobs-111122223333-dr"
    noncurrent_version_days = 30
  }

  assert {
    condition = alltrue([for block in [aws_s3_bucket_public_access_block.this, aws_s3_bucket_public_access_block.replica] :
    block.block_public_acls && block.block_public_policy && block.ignore_public_acls && block.restrict_public_buckets])
    error_message = "Both buckets must block public access."
  }

  assert {
    condition = alltrue([for config in [aws_s3_bucket_server_side_encryption_configuration.this, aws_s3_bucket_server_side_encryption_configuration.replica] :
    one(one(config.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"])
    error_message = "Both buckets must be encrypted with KMS."
  }

  assert {
    condition     = one(aws_s3_bucket_versioning.replica.versioning_configuration).status == "Enabled" && one(aws_s3_bucket_versioning.this.versioning_configuration).status == "Enabled"
    error_message = "Replication needs versioning on both sides."
  }

  assert {
    condition     = one(one(aws_s3_bucket_replication_configuration.this.rule).delete_marker_replication).status == "Enabled"
    error_message = "Deletes must reach the replica."
  }

  assert {
    condition     = one(one(aws_s3_bucket_lifecycle_configuration.replica.rule).noncurrent_version_expiration).noncurrent_days == 30
    error_message = "Old versions must expire in the replica as they do here."
  }
}

run "redis_is_encrypted" {
  command = plan

  module {
    source = "./modules/redis"
  }

  variables {
    name                      = "ragstream"
    node_type                 = "cache.t4g.small"
    engine_version            = "7.1"
    vpc_id                    = "vpc-0123456789abcdef0"
    subnet_group_name         = "ragstream"
    client_security_group_ids = { gateway_pods = "sg-0123456789abcdef0" }
  }

  assert {
    condition     = aws_elasticache_replication_group.this.at_rest_encryption_enabled && aws_elasticache_replication_group.this.transit_encryption_enabled
    error_message = "ElastiCache must be encrypted at rest and in transit."
  }
}
