# IAM roles for the Kubernetes ServiceAccounts (IRSA): least privilege per service.
#
# Kafka: MSK authorizes IAM clients by policy, not by Kafka ACL, so each service's role is its Kafka principal
# and gets exactly the topics and groups of ragstream-<service> in ragstream_common/kafka/acls.py, as literal
# ARNs (tenants' topics with `*` for the tenant id; a stream processor's own internal topics, `<app id>-*`, which
# faust-streaming creates itself). kafka-access.json is generated from that map by
# `python -m ragstream_devstack.kafka_iam`; tests/unit/test_infra_terraform_iam.py fails while it is stale.
# Postgres: each service reads only its own login's secret (modules/rds, logins.tf); `bootstrap` runs the
# migrate Job, which sets every login's password, and the topics Job. Redis: only the gateway reads its URL.
# Connector secrets (KMS, main.tf): the gateway creates and opens tenants' data keys, the connectors worker opens
# them; both only under an encryption context naming a tenant.

locals {
  kafka_arn_suffix = "${module.kafka.cluster_name}/${module.kafka.cluster_uuid}"
  kafka_arn_prefix = "arn:${data.aws_partition.current.partition}:kafka:${var.region}:${data.aws_caller_identity.current.account_id}"
  kafka_topic_arn  = "${local.kafka_arn_prefix}:topic/${local.kafka_arn_suffix}"
  kafka_group_arn  = "${local.kafka_arn_prefix}:group/${local.kafka_arn_suffix}"
  kafka_access     = jsondecode(file("${path.module}/kafka-access.json"))

  # Which database logins (modules/rds login_roles) each ServiceAccount may read.
  database_logins = {
    gateway    = ["gateway", "gateway_admin"]
    ingest     = ["ingest"]
    embed      = ["embed"]
    retrieve   = ["retrieve"]
    connectors = ["connectors"]
    metering   = ["metering"]
    bootstrap  = keys(module.postgres.login_secret_arns)
  }

  # Which policy documents each ServiceAccount gets; `bootstrap` runs the migrate and topics Jobs.
  service_account_policies = {
    gateway = [
      data.aws_iam_policy_document.kafka_service["gateway"].json,
      data.aws_iam_policy_document.tenant_provisioner.json,
      data.aws_iam_policy_document.database_login["gateway"].json,
      data.aws_iam_policy_document.blob_read_write.json,
      data.aws_iam_policy_document.rate_limit_store.json,
      data.aws_iam_policy_document.connector_secrets_seal.json,
    ]
    ingest = [
      data.aws_iam_policy_document.kafka_service["ingest"].json,
      data.aws_iam_policy_document.database_login["ingest"].json,
      data.aws_iam_policy_document.blob_read_write.json,
    ]
    embed = [
      data.aws_iam_policy_document.kafka_service["embed"].json,
      data.aws_iam_policy_document.database_login["embed"].json,
    ]
    retrieve = [
      data.aws_iam_policy_document.kafka_service["retrieve"].json,
      data.aws_iam_policy_document.database_login["retrieve"].json,
    ]
    # No database at all.
    generate = [data.aws_iam_policy_document.kafka_service["generate"].json]
    # Downloads content into the blob store; opens (never creates) tenants' data keys.
    connectors = [
      data.aws_iam_policy_document.kafka_service["connectors"].json,
      data.aws_iam_policy_document.database_login["connectors"].json,
      data.aws_iam_policy_document.blob_read_write.json,
      data.aws_iam_policy_document.connector_secrets_open.json,
    ]
    # Usage windows into Postgres; faust's changelog topics are its own (kafka-access.json stream_topics).
    metering = [
      data.aws_iam_policy_document.kafka_service["metering"].json,
      data.aws_iam_policy_document.database_login["metering"].json,
    ]
    bootstrap = [
      data.aws_iam_policy_document.kafka_topic_admin.json,
      data.aws_iam_policy_document.database_login["bootstrap"].json,
    ]
  }
}

# One policy per service: its principal's row of acls.py, nothing wider.
data "aws_iam_policy_document" "kafka_service" {
  for_each = local.kafka_access.services

  statement {
    sid = "Cluster"
    # Idempotent producers need WriteDataIdempotently on the cluster; a service that writes nothing does not.
    actions = concat(
      ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
      length(each.value.write) > 0 ? ["kafka-cluster:WriteDataIdempotently"] : [],
    )
    resources = [module.kafka.arn]
  }

  dynamic "statement" {
    for_each = length(each.value.read) > 0 ? [each.value.read] : []

    content {
      sid       = "ReadTopics"
      actions   = ["kafka-cluster:ReadData"]
      resources = [for topic in statement.value : "${local.kafka_topic_arn}/${topic}"]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.write) > 0 ? [each.value.write] : []

    content {
      sid       = "WriteTopics"
      actions   = ["kafka-cluster:WriteData"]
      resources = [for topic in statement.value : "${local.kafka_topic_arn}/${topic}"]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.describe) > 0 ? [each.value.describe] : []

    content {
      sid       = "DescribeTopics"
      actions   = ["kafka-cluster:DescribeTopic"]
      resources = [for topic in statement.value : "${local.kafka_topic_arn}/${topic}"]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.groups) > 0 ? [each.value.groups] : []

    content {
      sid       = "ConsumerGroups"
      actions   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
      resources = [for group in statement.value : "${local.kafka_group_arn}/${group}"]
    }
  }

  # A faust app's changelog and repartition topics: it creates them on start, then reads and writes them.
  dynamic "statement" {
    for_each = length(each.value.stream_topics) > 0 ? [each.value.stream_topics] : []

    content {
      sid = "StreamAppTopics"
      actions = [
        "kafka-cluster:CreateTopic",
        "kafka-cluster:ReadData",
        "kafka-cluster:WriteData",
        "kafka-cluster:DescribeTopic",
      ]
      resources = [for prefix in statement.value : "${local.kafka_topic_arn}/${prefix}"]
    }
  }
}

# Broker auto-create is off; only the topics Job creates and reconfigures the declared topics (never tenants').
data "aws_iam_policy_document" "kafka_topic_admin" {
  statement {
    sid       = "Cluster"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [module.kafka.arn]
  }

  statement {
    sid = "TopicAdmin"
    actions = [
      "kafka-cluster:CreateTopic",
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:AlterTopic",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
      "kafka-cluster:AlterTopicDynamicConfiguration",
    ]
    resources = [for topic in local.kafka_access.topics : "${local.kafka_topic_arn}/${topic}"]
  }
}

# The gateway's tenant admin path (the provisioner, docs/security.md): tenants' topics, their ACLs
# and their SCRAM users, which MSK keeps as AmazonMSK_ secrets under a customer key. Cluster ALTER creates and
# deletes any ACL: it is as powerful as the provisioner's grant on a local broker.
data "aws_iam_policy_document" "tenant_provisioner" {
  statement {
    sid       = "TenantTopics"
    actions   = ["kafka-cluster:CreateTopic", "kafka-cluster:DeleteTopic", "kafka-cluster:DescribeTopic"]
    resources = ["${local.kafka_topic_arn}/${local.kafka_access.tenant_topics}"]
  }

  statement {
    sid       = "TenantAcls"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:AlterCluster"]
    resources = [module.kafka.arn]
  }

  statement {
    sid       = "TenantScramUsers"
    actions   = ["kafka:BatchAssociateScramSecret", "kafka:BatchDisassociateScramSecret", "kafka:ListScramSecrets"]
    resources = [module.kafka.arn]
  }

  statement {
    sid = "TenantScramSecrets"
    actions = [
      "secretsmanager:CreateSecret",
      "secretsmanager:PutSecretValue",
      "secretsmanager:DescribeSecret",
      "secretsmanager:TagResource",
      "secretsmanager:DeleteSecret",
    ]
    resources = ["arn:${data.aws_partition.current.partition}:secretsmanager:${var.region}:${data.aws_caller_identity.current.account_id}:secret:${module.kafka.tenant_scram_secret_prefix}*"]
  }

  statement {
    sid       = "TenantScramKey"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [module.kafka.tenant_scram_kms_key_arn]
  }

  # MSK reads an associated secret through a grant on its key.
  statement {
    sid       = "TenantScramKeyGrant"
    actions   = ["kms:CreateGrant"]
    resources = [module.kafka.tenant_scram_kms_key_arn]

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

# A service's own database login(s); bootstrap (the migrate Job) reads all of them to set the passwords.
data "aws_iam_policy_document" "database_login" {
  for_each = local.database_logins

  statement {
    sid       = "Logins"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [for login in each.value : module.postgres.login_secret_arns[login]]
  }

  statement {
    sid       = "Decrypt"
    actions   = ["kms:Decrypt"]
    resources = [module.postgres.login_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.region}.amazonaws.com"]
    }
  }
}

# The gateway's GATEWAY_RATE_LIMIT_STORAGE (the ElastiCache URL with its AUTH token), synced into
# ragstream-gateway-credentials with the pod's role; no other role may read it.
data "aws_iam_policy_document" "rate_limit_store" {
  statement {
    sid       = "Url"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [module.redis.url_secret_arn]
  }

  statement {
    sid       = "Decrypt"
    actions   = ["kms:Decrypt"]
    resources = [module.redis.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.region}.amazonaws.com"]
    }
  }
}

# Claim-check blobs: objects are written with SSE-KMS under the bucket's key.
data "aws_iam_policy_document" "blob_read_write" {
  statement {
    sid       = "Objects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${module.blobstore.bucket_arn}/*"]
  }

  statement {
    sid       = "Bucket"
    actions   = ["s3:ListBucket"]
    resources = [module.blobstore.bucket_arn]
  }

  statement {
    sid       = "Encryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [module.blobstore.kms_key_arn]
  }
}

# Connector secrets, gateway side: a tenant's first connector generates its data key; webhooks and the connector
# API open it. The condition keeps every call bound to a tenant (EncryptionContext {"tenant_id": ...}), which
# KMS also requires again to decrypt, so a data key cannot be opened as another tenant's.
data "aws_iam_policy_document" "connector_secrets_seal" {
  statement {
    sid       = "TenantDataKeys"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.connector_secrets.arn]

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:tenant_id"
      values   = ["?*"]
    }
  }
}

# Connector secrets, worker side: open a tenant's data key, nothing else.
data "aws_iam_policy_document" "connector_secrets_open" {
  statement {
    sid       = "TenantDataKeys"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.connector_secrets.arn]

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:tenant_id"
      values   = ["?*"]
    }
  }
}

module "service_roles" {
  source = "./modules/irsa"

  name_prefix       = var.name
  oidc_provider_arn = module.eks.oidc_provider_arn
  namespace         = local.namespace
  service_accounts  = local.service_account_policies
  tags              = local.component_tags["compute"]
}
