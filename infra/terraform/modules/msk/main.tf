# MSK provisioned cluster: TLS everywhere, encrypted at rest with a dedicated key, topics created only by the
# bootstrap Job (auto-create off). Services authenticate with IAM (SASL/OAUTHBEARER, port 9098), each as its
# own IRSA role (../../iam.tf). Tenants' external clients authenticate with SASL/SCRAM (port 9096) as
# `tenant-<id>`, whose users are AmazonMSK_ secrets under the key below; on that listener MSK applies Kafka ACLs,
# and nothing is allowed that no ACL allows (docs/security.md).

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
  description             = "${var.name} MSK data at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

# Tenants' SCRAM users: MSK accepts only secrets encrypted with a customer managed key.
resource "aws_kms_key" "scram" {
  description             = "${var.name} MSK tenant SCRAM secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-msk-"
  description = "MSK brokers: IAM-authenticated TLS clients"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-msk" })

  lifecycle {
    create_before_destroy = true
  }
}

# 9098: SASL/IAM over TLS inside the VPC.
resource "aws_vpc_security_group_ingress_rule" "iam_tls" {
  for_each = var.client_security_group_ids

  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  description                  = "Kafka SASL/IAM over TLS from ${each.key}"
}

# 9096: SASL/SCRAM over TLS, for tenants' clients only.
resource "aws_vpc_security_group_ingress_rule" "scram_tls" {
  for_each = var.tenant_scram ? var.client_security_group_ids : {}

  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 9096
  to_port                      = 9096
  description                  = "Kafka SASL/SCRAM over TLS (tenants) from ${each.key}"
}

resource "aws_cloudwatch_log_group" "broker" {
  name              = "/aws/msk/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-${replace(var.kafka_version, ".", "-")}"
  kafka_versions = [var.kafka_version]
  description    = "Ragstream broker defaults"

  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    allow.everyone.if.no.acl.found=false
    default.replication.factor=3
    min.insync.replicas=2
    num.partitions=6
    unclean.leader.election.enable=false
  PROPERTIES

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.broker_count
  enhanced_monitoring    = "PER_TOPIC_PER_BROKER"

  broker_node_group_info {
    instance_type   = var.broker_instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.this.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.broker_volume_gb
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  client_authentication {
    unauthenticated = false

    sasl {
      iam   = true
      scram = var.tenant_scram
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.this.arn

    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.broker.name
      }
    }
  }

  tags = var.tags
}
