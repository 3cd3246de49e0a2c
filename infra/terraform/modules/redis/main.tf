# ElastiCache Redis for the gateway's rate-limit windows and quota counters: small, replicated across AZs,
# TLS in transit with an AUTH token, encrypted at rest, reachable only from the client security groups (the
# gateway's pods). Losing it only resets the counters. The gateway fails closed while it is unreachable.

# Explicit key policy: the account administers and, through IAM policies that name this key (../../iam.tf), lets
# its roles use it; the service acts with those callers' credentials. No other principal, no wildcard.
data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "key" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name} ElastiCache and its AUTH secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-redis-"
  description = "ElastiCache Redis clients"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-redis" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "redis" {
  for_each = var.client_security_group_ids

  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  description                  = "Redis TLS from ${each.key}"
}

# noeviction: when memory is full Redis refuses writes, which the gateway treats as an outage (503, fail closed).
# The default group's volatile-lru would silently evict live windows (they carry TTLs) and admit bursts.
resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-rate-limits"
  family      = "redis${split(".", var.engine_version)[0]}"
  description = "Ragstream gateway rate limits: never evict"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  tags = var.tags
}

resource "random_password" "auth" {
  length  = 64
  special = false
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = var.name
  description          = "Ragstream gateway rate limits"
  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = 6379
  parameter_group_name = aws_elasticache_parameter_group.this.name

  num_cache_clusters         = var.replica_count + 1
  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = var.subnet_group_name
  security_group_ids = [aws_security_group.this.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.auth.result

  # Rate-limit windows are worth nothing a minute later, but the daily quota counters are not: losing both nodes
  # would reset every tenant's quota. Snapshots are encrypted with the module's key and kept a week (their keys
  # name client addresses: docs/data-governance.md); multi-AZ replication (above) covers a single failover.
  snapshot_retention_limit = 7
  snapshot_window          = "03:00-04:00"
  maintenance_window       = "sun:05:00-sun:06:00"

  tags = var.tags
}

# The gateway's rate-limit storage URI (limits notation), for an external-secrets sync.
resource "aws_secretsmanager_secret" "url" {
  name_prefix = "${var.name}/redis-url-"
  description = "async+rediss:// URI (with AUTH token) of the ${var.name} rate-limit Redis"
  kms_key_id  = aws_kms_key.this.arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "url" {
  secret_id     = aws_secretsmanager_secret.url.id
  secret_string = "async+rediss://:${random_password.auth.result}@${aws_elasticache_replication_group.this.primary_endpoint_address}:6379/0"
}
