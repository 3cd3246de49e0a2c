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

# CI roles (github-oidc.tf): a deploy role answers only to a job in its own GitHub environment of this repository,
# the images role only to main and release tags; both only for the STS audience.
run "github_deploy_roles_trust_only_their_environment" {
  command = apply

  variables {
    github_repository          = "example-org/ragstream"
    github_deploy_environments = ["dev", "staging", "production"]
  }

  assert {
    condition     = toset(keys(aws_iam_role.github_deploy)) == toset(["dev", "staging", "production"])
    error_message = "Every GitHub environment named needs its deploy role."
  }

  assert {
    condition     = toset(keys(data.aws_iam_policy_document.github_trust)) == toset(["images", "deploy-dev", "deploy-staging", "deploy-production"])
    error_message = "One trust policy per CI role: images, and deploy-<environment> for each environment."
  }

  assert {
    condition = alltrue([for environment in keys(aws_iam_role.github_deploy) : anytrue([
      for condition in one(data.aws_iam_policy_document.github_trust["deploy-${environment}"].statement).condition : condition.test == "StringEquals" && condition.variable == "token.actions.githubusercontent.com:sub" && length(condition.values) == 1 && contains(condition.values, "repo:example-org/ragstream:environment:${environment}")
    ])])
    error_message = "A deploy role's sub must be repo:<repository>:environment:<its environment>, exactly."
  }

  assert {
    condition = alltrue([for trust in values(data.aws_iam_policy_document.github_trust) : anytrue([
      for condition in one(trust.statement).condition : condition.test == "StringEquals" && condition.variable == "token.actions.githubusercontent.com:aud" && toset(condition.values) == toset(["sts.amazonaws.com"])
    ])])
    error_message = "Every CI role's trust policy must pin the audience to sts.amazonaws.com."
  }

  assert {
    condition = anytrue([for condition in one(data.aws_iam_policy_document.github_trust["images"].statement).condition :
    condition.test == "StringLike" && toset(condition.values) == toset(["repo:example-org/ragstream:ref:refs/heads/main", "repo:example-org/ragstream:ref:refs/tags/v*"])])
    error_message = "The images role must answer to main and v* tags of the repository only."
  }

  assert {
    condition     = alltrue([for association in aws_eks_access_policy_association.github_deploy : endswith(association.policy_arn, ":cluster-access-policy/AmazonEKSEditPolicy") && one(association.access_scope).type == "namespace" && toset(one(association.access_scope).namespaces) == toset(["ragstream"])])
    error_message = "Deploy roles may edit the ragstream namespace only."
  }
}

run "github_deploy_role_defaults_to_the_stacks_own_environment" {
  command = plan

  variables {
    github_repository = "example-org/ragstream"
    environment       = "prod"
  }

  assert {
    condition     = toset(keys(aws_iam_role.github_deploy)) == toset(["production"])
    error_message = "A stack's cluster trusts its own GitHub environment only (prod deploys as production)."
  }
}

run "github_repository_wildcard_is_rejected" {
  command = plan

  variables {
    github_repository = "example-org/*"
  }

  expect_failures = [var.github_repository]
}

# Node autoscaling (node-autoscaling.tf): the Cluster Autoscaler's role only describes, except for its two writes,
# which reach this cluster's node group Auto Scaling groups alone (by ARN, and by the discovery tags EKS sets).
run "cluster_autoscaler_resizes_only_this_clusters_node_groups" {
  command = apply

  assert {
    condition = alltrue([for statement in data.aws_iam_policy_document.cluster_autoscaler.statement : (
      statement.sid == "ResizeThisClustersNodeGroups" ||
      alltrue([for action in statement.actions : can(regex("^(autoscaling|ec2|eks):(Describe|Get)", action))])
    )])
    error_message = "Every statement of the autoscaler's policy but the resize one may only describe."
  }

  assert {
    condition = anytrue([for statement in data.aws_iam_policy_document.cluster_autoscaler.statement : (
      statement.sid == "ResizeThisClustersNodeGroups" &&
      toset(statement.actions) == toset(["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]) &&
      toset([for condition in statement.condition : "${condition.test} ${condition.variable}=${join(",", condition.values)}"]) == toset([
        "StringEquals aws:ResourceTag/k8s.io/cluster-autoscaler/enabled=true",
        "StringEquals aws:ResourceTag/k8s.io/cluster-autoscaler/ragstream=owned",
      ])
    )])
    error_message = "SetDesiredCapacity and TerminateInstanceInAutoScalingGroup only on groups tagged k8s.io/cluster-autoscaler/enabled=true and k8s.io/cluster-autoscaler/<cluster>=owned."
  }

  assert {
    condition = alltrue(flatten([for statement in data.aws_iam_policy_document.cluster_autoscaler.statement : [
      for resource in statement.resources : startswith(resource, "arn:aws:autoscaling:eu-west-1:111122223333:autoScalingGroup:*:autoScalingGroupName/")
    ] if statement.sid == "ResizeThisClustersNodeGroups"]))
    error_message = "The autoscaler may resize this account's and region's node group Auto Scaling groups only, named one by one."
  }

  assert {
    condition = anytrue([for statement in data.aws_iam_policy_document.cluster_autoscaler.statement :
    statement.sid == "DescribeThisClustersNodeGroups" && toset(statement.resources) == toset(["arn:aws:eks:eu-west-1:111122223333:nodegroup/ragstream/*"])])
    error_message = "eks:DescribeNodegroup only on this cluster's node groups."
  }

  assert {
    condition     = var.node_min_size <= var.node_desired_size && var.node_desired_size <= var.node_max_size && var.node_min_size * 3.5 >= 14.4
    error_message = "The default node group must hold prod's floor (14.4 vCPU of requests with sidecars, ~3.5 usable vCPU a node; docs/capacity.md)."
  }
}

run "node_desired_size_outside_the_bounds_is_rejected" {
  command = plan

  variables {
    node_min_size     = 6
    node_desired_size = 5
  }

  expect_failures = [var.node_desired_size]
}
