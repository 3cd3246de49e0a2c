# IAM roles for the Kubernetes ServiceAccounts (IRSA): least privilege per service.

locals {
  kafka_arn_suffix = "${module.kafka.cluster_name}/${module.kafka.cluster_uuid}"
  kafka_arn_prefix = "arn:${data.aws_partition.current.partition}:kafka:${var.region}:${data.aws_caller_identity.current.account_id}"

  # Which policy documents each ServiceAccount gets; `bootstrap` runs the migrate and topics Jobs.
  service_account_policies = {
    gateway  = [data.aws_iam_policy_document.kafka_client.json, data.aws_iam_policy_document.blob_read_write.json]
    ingest   = [data.aws_iam_policy_document.kafka_client.json, data.aws_iam_policy_document.blob_read_write.json]
    embed    = [data.aws_iam_policy_document.kafka_client.json]
    retrieve = [data.aws_iam_policy_document.kafka_client.json]
    generate = [data.aws_iam_policy_document.kafka_client.json]
    bootstrap = [
      data.aws_iam_policy_document.kafka_client.json,
      data.aws_iam_policy_document.kafka_topic_admin.json,
    ]
  }
}

# Produce and consume rag.* topics (and their .dlq), in consumer groups named ragstream-*.
data "aws_iam_policy_document" "kafka_client" {
  statement {
    sid = "Cluster"
    actions = [
      "kafka-cluster:Connect",
      "kafka-cluster:DescribeCluster",
      "kafka-cluster:WriteDataIdempotently",
    ]
    resources = [module.kafka.arn]
  }

  statement {
    sid = "Topics"
    actions = [
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:ReadData",
      "kafka-cluster:WriteData",
    ]
    resources = ["${local.kafka_arn_prefix}:topic/${local.kafka_arn_suffix}/rag.*"]
  }

  statement {
    sid = "ConsumerGroups"
    actions = [
      "kafka-cluster:AlterGroup",
      "kafka-cluster:DescribeGroup",
    ]
    resources = ["${local.kafka_arn_prefix}:group/${local.kafka_arn_suffix}/ragstream-*"]
  }
}

# Broker auto-create is off; only the topics Job creates and reconfigures topics.
data "aws_iam_policy_document" "kafka_topic_admin" {
  statement {
    sid = "TopicAdmin"
    actions = [
      "kafka-cluster:CreateTopic",
      "kafka-cluster:AlterTopic",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
      "kafka-cluster:AlterTopicDynamicConfiguration",
    ]
    resources = ["${local.kafka_arn_prefix}:topic/${local.kafka_arn_suffix}/rag.*"]
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

module "service_roles" {
  source = "./modules/irsa"

  name_prefix       = var.name
  oidc_provider_arn = module.eks.oidc_provider_arn
  namespace         = local.namespace
  service_accounts  = local.service_account_policies
  tags              = local.tags
}
