variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name prefix for every resource; also the EKS cluster and MSK cluster name."
  type        = string
  default     = "ragstream"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment tag (prod, staging, ...)."
  type        = string
  default     = "prod"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# ---- network ----

variable "vpc_cidr" {
  description = "VPC CIDR; a /16 is split into private /20s and public, database and cache /24s."
  type        = string
  default     = "10.40.0.0/16"
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper, not AZ-redundant)."
  type        = bool
  default     = false
}

# ---- EKS ----

variable "kubernetes_version" {
  description = "EKS Kubernetes version (the manifests need 1.27+ for gRPC probes and HPA v2)."
  type        = string
  default     = "1.33"
}

variable "eks_public_endpoint" {
  description = "Also expose the Kubernetes API publicly, to eks_public_access_cidrs only; the private endpoint is always on."
  type        = bool
  default     = false
}

variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint (CI runners, operators' VPN); never the internet."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.eks_public_access_cidrs : can(cidrhost(cidr, 0)) && !contains(["0.0.0.0/0", "::/0"], cidr)])
    error_message = "eks_public_access_cidrs must be CIDRs narrower than the whole internet (no 0.0.0.0/0 or ::/0)."
  }

  validation {
    condition     = !var.eks_public_endpoint || length(var.eks_public_access_cidrs) > 0
    error_message = "eks_public_endpoint needs at least one CIDR in eks_public_access_cidrs."
  }
}

variable "node_instance_types" {
  description = "Instance types of the managed node group (embed needs about 2 vCPU per replica)."
  type        = list(string)
  default     = ["m7i.xlarge"]
}

# Node group bounds (docs/capacity.md, "Replicas for a target load"); the Cluster Autoscaler (node-autoscaling.tf)
# moves the node count between them. Prod's floor, 21 pods asking 12.3 vCPU plus about 2.1 for their Istio
# sidecars, needs 5 of the ~3.5 usable vCPUs of an m7i.xlarge; 3 nodes (about 10.5) cannot schedule it.
variable "node_min_size" {
  description = "Fewest nodes, whatever the load: 5 hold prod's floor of pods with about 3 vCPU to spare (platform controllers, a first scale-out)."
  type        = number
  default     = 5

  validation {
    condition     = var.node_min_size >= 1 && floor(var.node_min_size) == var.node_min_size
    error_message = "node_min_size must be a whole number of nodes, at least 1."
  }
}

variable "node_desired_size" {
  description = "Nodes at creation only: the Cluster Autoscaler owns the count afterwards (the eks module ignores later changes)."
  type        = number
  default     = 5

  validation {
    condition     = var.node_min_size <= var.node_desired_size && var.node_desired_size <= var.node_max_size
    error_message = "node_desired_size must lie between node_min_size and node_max_size."
  }
}

variable "node_max_size" {
  description = "Most nodes the Cluster Autoscaler may grow to: every service at its prod autoscalers' maximum asks about 32 vCPU with sidecars (10 nodes), a blue-green release of all seven at prod's floor about 29 (9 nodes); 12 leaves two for the platform's controllers. Prod's ResourceQuota (64 vCPU of requests) would fill about 19."
  type        = number
  default     = 12

  validation {
    condition     = var.node_max_size >= var.node_min_size && floor(var.node_max_size) == var.node_max_size
    error_message = "node_max_size must be a whole number of nodes, at least node_min_size."
  }
}

# ---- Kafka (MSK) ----

variable "kafka_version" {
  description = "MSK Apache Kafka version, e.g. 3.9.x or 4.0.x."
  type        = string
  default     = "4.0.x"

  validation {
    condition     = can(regex("^(3\\.[6-9]|4\\.[0-9]+)\\.", var.kafka_version))
    error_message = "kafka_version must be a 3.6+ or 4.x MSK version string, e.g. 3.9.x or 4.0.x."
  }
}

variable "kafka_broker_instance_type" {
  type    = string
  default = "kafka.m7g.large"
}

variable "kafka_broker_count" {
  description = "Broker count; a multiple of the three availability zones."
  type        = number
  default     = 3

  validation {
    condition     = var.kafka_broker_count >= 3 && var.kafka_broker_count % 3 == 0
    error_message = "kafka_broker_count must be a positive multiple of 3 (one per AZ)."
  }
}

variable "kafka_broker_volume_gb" {
  type    = number
  default = 100
}

# ---- Postgres (RDS) ----

variable "postgres_major_version" {
  description = "RDS PostgreSQL major version; 16+ ship pgvector 0.8 (HNSW, iterative scans)."
  type        = string
  default     = "18"

  validation {
    condition     = contains(["16", "17", "18"], var.postgres_major_version)
    error_message = "postgres_major_version must be 16, 17 or 18."
  }
}

variable "postgres_instance_class" {
  description = "Memory-optimised class: HNSW indexes should stay in memory."
  type        = string
  default     = "db.r7g.large"
}

variable "postgres_allocated_storage_gb" {
  type    = number
  default = 100
}

variable "postgres_max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling."
  type        = number
  default     = 1000
}

variable "postgres_multi_az" {
  type    = bool
  default = true
}

variable "deletion_protection" {
  description = "Protect the database and the ingress load balancer from deletion (turn off only to tear an environment down)."
  type        = bool
  default     = true
}

# ---- Redis (ElastiCache) ----

variable "redis_node_type" {
  type    = string
  default = "cache.t4g.small"
}

variable "redis_engine_version" {
  type    = string
  default = "7.1"
}

# ---- blob store (S3) ----

variable "blob_bucket_name" {
  description = "Bucket for uploaded documents; defaults to <name>-blobs-<account id>."
  type        = string
  default     = null
}

variable "blob_noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept before expiry."
  type        = number
  default     = 30
}

# ---- cost (cost.tf; amounts from docs/capacity.md) ----

variable "monthly_budget_usd" {
  description = "Monthly budget of the whole account in USD (the default topology, 5 nodes, costs about 1,845 USD on demand)."
  type        = number
  default     = 2500

  validation {
    condition     = var.monthly_budget_usd > 0
    error_message = "monthly_budget_usd must be positive."
  }
}

variable "component_monthly_budgets_usd" {
  description = "Monthly budget in USD per Component tag value (a key per budget; see local.cost_components)."
  type        = map(number)
  default = {
    compute   = 1050
    kafka     = 600
    postgres  = 475
    redis     = 60
    network   = 150
    blobstore = 20
  }

  validation {
    condition     = alltrue([for component, amount in var.component_monthly_budgets_usd : contains(local.cost_components, component) && amount > 0])
    error_message = "component_monthly_budgets_usd keys must be components of local.cost_components, amounts positive."
  }
}

variable "budget_actual_alert_percents" {
  description = "Percentages of a budget at which actual spend notifies."
  type        = list(number)
  default     = [80, 100]
}

variable "budget_forecast_alert_percent" {
  description = "Percentage of a budget at which the month's forecast notifies."
  type        = number
  default     = 100
}

variable "cost_alert_emails" {
  description = "E-mail addresses subscribed to the cost alerts topic (each confirms once)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for address in var.cost_alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", address))])
    error_message = "cost_alert_emails must be e-mail addresses."
  }
}

variable "cost_anomaly_min_impact_usd" {
  description = "A cost anomaly notifies once its total impact reaches this many USD (and the percentage below)."
  type        = number
  default     = 50
}

variable "cost_anomaly_min_impact_percent" {
  description = "A cost anomaly notifies once its impact reaches this percentage of the expected spend (and the amount above)."
  type        = number
  default     = 20
}

variable "activate_cost_allocation_tags" {
  description = "Activate Component, Project and Environment as cost allocation tags (management account only; billing must have seen the keys, a day after the first apply)."
  type        = bool
  default     = false
}

# ---- CI/CD through GitHub OIDC (github-oidc.tf) ----

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows (images.yml, deploy.yml) assume the CI roles; null creates none."
  type        = string
  default     = null

  validation {
    condition     = var.github_repository == null || can(regex("^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must be one repository, owner/name, without wildcards."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's token.actions.githubusercontent.com OIDC provider; false uses the existing one (one per account: another stack made it)."
  type        = bool
  default     = true
}

variable "create_github_images_role" {
  description = "Create the images role (AWS_IMAGES_ROLE_ARN): only in the stack whose ECR repositories images.yml pushes to."
  type        = bool
  default     = true
}

variable "github_deploy_environments" {
  description = "GitHub environments (deploy.yml) that get a deploy role on this stack's cluster; null: this stack's own (environment, prod as production)."
  type        = set(string)
  default     = null

  validation {
    condition     = var.github_deploy_environments == null || alltrue([for environment in coalesce(var.github_deploy_environments, []) : contains(["dev", "staging", "production"], environment)])
    error_message = "github_deploy_environments must be deploy.yml's environments: dev, staging, production."
  }
}
