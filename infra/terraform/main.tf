# Ragstream on AWS: VPC, EKS (managed node groups, IRSA, security groups for pods), MSK (TLS + IAM auth), RDS
# PostgreSQL with pgvector, ElastiCache Redis for the gateway's rate limits and quotas, an S3 blob store and ECR
# repositories, and the KMS key that wraps connectors' secrets.

data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  azs      = slice(data.aws_availability_zones.available.names, 0, 3)
  az_index = range(length(local.azs))

  services  = toset(["gateway", "ingest", "embed", "retrieve", "generate", "connectors", "metering"])
  namespace = "ragstream"

  account_root_arn = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  # Key administration without use (the AWS default policy's "key administrators", less CreateGrant, which would
  # let an administrator hand themselves Decrypt): for keys whose users the policy names.
  kms_admin_actions = [
    "kms:CreateAlias", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*",
    "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand",
  ]

  blob_bucket_name = coalesce(var.blob_bucket_name, "${var.name}-blobs-${data.aws_caller_identity.current.account_id}")

  tags = merge(var.tags, {
    Project     = "ragstream"
    Environment = var.environment
    ManagedBy   = "terraform"
  })

  # Security groups allowed to reach the data stores: every pod runs with the node security group.
  data_clients = { eks_nodes = module.eks.node_security_group_id }
  # Redis (rate limits and quotas) is the gateway's alone: its pods also carry a group of their own
  # (security groups for pods, overlays/aws/gateway-security-group.yaml), the only one ElastiCache admits.
  rate_limit_clients = { gateway_pods = aws_security_group.gateway_pods.id }
}

# ---- network ----

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 6.0"

  name = var.name
  cidr = var.vpc_cidr
  azs  = local.azs

  # 10.x.0.0/20 .. 10.x.32.0/20 for nodes and pods; /24s above them for the rest.
  private_subnets     = [for i in local.az_index : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets      = [for i in local.az_index : cidrsubnet(var.vpc_cidr, 8, 48 + i)]
  database_subnets    = [for i in local.az_index : cidrsubnet(var.vpc_cidr, 8, 52 + i)]
  elasticache_subnets = [for i in local.az_index : cidrsubnet(var.vpc_cidr, 8, 56 + i)]

  create_database_subnet_group    = true
  create_elasticache_subnet_group = true

  enable_nat_gateway   = true
  single_nat_gateway   = var.single_nat_gateway
  enable_dns_hostnames = true
  enable_dns_support   = true

  public_subnet_tags  = { "kubernetes.io/role/elb" = "1" }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = "1" }
  tags                = local.component_tags["network"]
}

# ---- Kubernetes ----

module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 21.0"

  name               = var.name
  kubernetes_version = var.kubernetes_version

  # The API is private (reached from inside the VPC); a public endpoint is opt-in and only for an allowlist
  # (variables.tf rejects 0.0.0.0/0).
  endpoint_private_access                  = true
  endpoint_public_access                   = var.eks_public_endpoint
  endpoint_public_access_cidrs             = var.eks_public_endpoint ? var.eks_public_access_cidrs : null
  enable_cluster_creator_admin_permissions = true
  enable_irsa                              = true

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # Control-plane logs (the audit log above all) under the logs key and a retention of their own (observability.tf).
  enabled_log_types                      = ["api", "audit", "authenticator"]
  create_cloudwatch_log_group            = true
  cloudwatch_log_group_retention_in_days = var.log_retention_days
  cloudwatch_log_group_kms_key_id        = aws_kms_key.logs.arn

  # Security groups for pods: the VPC resource controller (the cluster role) gives pods selected by a
  # SecurityGroupPolicy a branch ENI with their own groups.
  iam_role_additional_policies = {
    AmazonEKSVPCResourceController = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSVPCResourceController"
  }

  addons = {
    coredns    = {}
    kube-proxy = {}
    vpc-cni = {
      before_compute = true
      # ENABLE_POD_ENI: security groups for pods; `standard` enforces them for traffic within a node too; early
      # demux off so the kubelet's probes reach pods on branch ENIs. enableNetworkPolicy: the CNI's network policy
      # agent enforces the base's NetworkPolicies (without it EKS accepts them and enforces nothing).
      configuration_values = jsonencode({
        enableNetworkPolicy = "true"
        env = {
          ENABLE_POD_ENI                    = "true"
          POD_SECURITY_GROUP_ENFORCING_MODE = "standard"
        }
        init = {
          env = {
            DISABLE_TCP_EARLY_DEMUX = "true"
          }
        }
      })
    }
    eks-pod-identity-agent = {
      before_compute = true
    }
    # Container Insights (node, pod and container metrics). Its Fluent Bit stays off: the logging DaemonSet
    # already ships the containers' logs (observability.tf), twice would double the bill.
    amazon-cloudwatch-observability = {
      service_account_role_arn = module.cloudwatch_agent_role.role_arns["cloudwatch-agent"]
      configuration_values = jsonencode({
        containerLogs = { enabled = false }
      })
    }
  }

  eks_managed_node_groups = {
    general = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = var.node_instance_types
      min_size       = var.node_min_size
      desired_size   = var.node_desired_size
      max_size       = var.node_max_size
      labels = {
        "ragstream.io/pool" = "general"
      }
    }
  }

  node_security_group_additional_rules = {
    # The API server calls istiod's sidecar-injection and validation webhooks.
    istio_webhook = {
      description                   = "Control plane to istiod webhooks"
      type                          = "ingress"
      protocol                      = "tcp"
      from_port                     = 15017
      to_port                       = 15017
      source_cluster_security_group = true
    }
  }
  tags = local.component_tags["compute"]
}

# The gateway pods' own security group (security groups for pods). It carries no rules: the pods keep the node
# group too, for their other traffic; this one only names them, so that the rate-limit store can admit them alone.
resource "aws_security_group" "gateway_pods" {
  name_prefix = "${var.name}-gateway-pods-"
  description = "Ragstream gateway pods (the only Redis clients)"
  vpc_id      = module.vpc.vpc_id
  tags        = merge(local.component_tags["compute"], { Name = "${var.name}-gateway-pods" })

  lifecycle {
    create_before_destroy = true
  }
}

# ---- data stores ----

module "kafka" {
  source = "./modules/msk"

  name                      = var.name
  kafka_version             = var.kafka_version
  broker_count              = var.kafka_broker_count
  broker_instance_type      = var.kafka_broker_instance_type
  broker_volume_gb          = var.kafka_broker_volume_gb
  vpc_id                    = module.vpc.vpc_id
  subnet_ids                = module.vpc.private_subnets
  client_security_group_ids = local.data_clients
  tags                      = local.component_tags["kafka"]
}

module "postgres" {
  source = "./modules/rds"

  name                      = var.name
  major_version             = var.postgres_major_version
  instance_class            = var.postgres_instance_class
  allocated_storage_gb      = var.postgres_allocated_storage_gb
  max_allocated_storage_gb  = var.postgres_max_allocated_storage_gb
  multi_az                  = var.postgres_multi_az
  deletion_protection       = var.deletion_protection
  backup_retention_days     = var.backup_retention_days
  vpc_id                    = module.vpc.vpc_id
  db_subnet_group_name      = module.vpc.database_subnet_group_name
  client_security_group_ids = local.data_clients
  tags                      = local.component_tags["postgres"]
}

module "redis" {
  source = "./modules/redis"

  name                      = var.name
  node_type                 = var.redis_node_type
  engine_version            = var.redis_engine_version
  vpc_id                    = module.vpc.vpc_id
  subnet_group_name         = module.vpc.elasticache_subnet_group_name
  client_security_group_ids = local.rate_limit_clients
  tags                      = local.component_tags["redis"]
}

# Versioned, replicated to the DR region (deletes too, as delete markers); old versions expire on both sides after
# blob_noncurrent_version_days, so a purged document's blobs are gone from both regions after that period.
module "blobstore" {
  source = "./modules/blobstore"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  bucket_name             = local.blob_bucket_name
  replica_bucket_name     = "${local.blob_bucket_name}-dr"
  noncurrent_version_days = var.blob_noncurrent_version_days
  tags                    = local.component_tags["blobstore"]
}

# ---- connector secrets ----

# Envelope encryption of connectors' secrets (client secrets, refresh tokens, webhook keys; docs/connectors.md):
# each tenant's data key is generated and wrapped by this key, with the tenant id as encryption context, and only
# the wrapped copy is stored (tenant_data_keys). The gateway wraps and unwraps, the connectors worker only
# unwraps (iam.tf). The services find it as SECRETS_KMS_KEY_ID (output kustomize_config).
resource "aws_kms_key" "connector_secrets" {
  description             = "${var.name} connector secrets (tenant data keys)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = local.component_tags["secrets"]
}

# Its policy names the two roles that use it; the account only administers it (no Decrypt for anyone else, not
# even an administrator's IAM policy). A resource of its own because the roles' policies name the key.
resource "aws_kms_key_policy" "connector_secrets" {
  key_id = aws_kms_key.connector_secrets.id
  policy = data.aws_iam_policy_document.connector_secrets_key.json
}

data "aws_iam_policy_document" "connector_secrets_key" {
  statement {
    sid       = "AccountAdministers"
    actions   = local.kms_admin_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }
  }

  statement {
    sid       = "GatewaySeals"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [module.service_roles.role_arns["gateway"]]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:tenant_id"
      values   = ["?*"]
    }
  }

  statement {
    sid       = "ConnectorsOpen"
    actions   = ["kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [module.service_roles.role_arns["connectors"]]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:tenant_id"
      values   = ["?*"]
    }
  }
}

resource "aws_kms_alias" "connector_secrets" {
  name          = "alias/${var.name}-connector-secrets"
  target_key_id = aws_kms_key.connector_secrets.key_id
}

# ---- images ----

resource "aws_ecr_repository" "service" {
  for_each = local.services

  name                 = "${var.name}/${each.key}"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
  tags = local.component_tags["images"]
}

resource "aws_ecr_lifecycle_policy" "service" {
  for_each = aws_ecr_repository.service

  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 50 most recent images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 50
      }
      action = { type = "expire" }
    }]
  })
}
