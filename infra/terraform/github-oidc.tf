# CI/CD roles assumed through GitHub OIDC (no stored keys), for .github/workflows/images.yml and deploy.yml:
#   images: push to this stack's ECR repositories, only from main or a v* tag (repository variable
#           AWS_IMAGES_ROLE_ARN);
#   deploy: one per GitHub environment (dev, staging, production; AWS_DEPLOY_ROLE_ARN of that environment), only
#           from a job running in that environment: find the cluster, pull (verify) the images, and edit the
#           ragstream namespace through an EKS access entry.
# Off until github_repository is set. An account holds one provider per issuer URL: the first stack creates it,
# the others set create_github_oidc_provider = false and use it. docs/releases.md (Prerequisites).

locals {
  github_enabled     = var.github_repository != null
  github_oidc_host   = "token.actions.githubusercontent.com"
  github_oidc_url    = "https://${local.github_oidc_host}"
  github_audience    = "sts.amazonaws.com"
  github_create_oidc = local.github_enabled && var.create_github_oidc_provider

  github_oidc_provider_arn = !local.github_enabled ? null : (
    var.create_github_oidc_provider
    ? one(aws_iam_openid_connect_provider.github[*].arn)
    : one(data.aws_iam_openid_connect_provider.github[*].arn)
  )

  # deploy.yml's environments are GitHub's names: the `prod` overlay and stack deploy as `production`. A stack
  # (one cluster) trusts its own environment unless github_deploy_environments names others.
  github_deploy_environments = !local.github_enabled ? toset([]) : (
    var.github_deploy_environments != null
    ? var.github_deploy_environments
    : toset([lookup({ prod = "production" }, var.environment, var.environment)])
  )

  image_repository_arns = [for repository in aws_ecr_repository.service : repository.arn]
  eks_edit_policy_arn   = "arn:${data.aws_partition.current.partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"

  # Who may assume each CI role: the `sub` claims of GitHub's token that its trust policy admits, written after
  # "repo:<github_repository>:" (github_trust below adds that prefix). Everything else of the trust is the same.
  # images: main and release tags (StringLike for the tag's version); another branch (workflow_dispatch runs
  # anywhere) or a pull request gets nothing.
  github_images_trust = {
    sid      = "ImagesWorkflowOnMainOrReleaseTags"
    test     = "StringLike"
    subjects = ["ref:refs/heads/main", "ref:refs/tags/v*"]
  }
  # deploy: a job running in the role's own GitHub environment, whose protection rules (reviewers, allowed refs)
  # gate the job, so they gate the role too.
  github_deploy_trust = {
    sid  = "DeployWorkflowInItsEnvironment"
    test = "StringEquals"
  }
  # One trust policy per role: `images`, and `deploy-<environment>` for each GitHub environment.
  github_trusts = merge(
    local.github_enabled && var.create_github_images_role ? { images = local.github_images_trust } : {},
    {
      for environment in local.github_deploy_environments :
      "deploy-${environment}" => merge(local.github_deploy_trust, { subjects = ["environment:${environment}"] })
    },
  )
}

resource "aws_iam_openid_connect_provider" "github" {
  count = local.github_create_oidc ? 1 : 0

  url            = local.github_oidc_url
  client_id_list = [local.github_audience]
  tags           = local.component_tags["compute"]
}

data "aws_iam_openid_connect_provider" "github" {
  count = local.github_enabled && !var.create_github_oidc_provider ? 1 : 0

  url = local.github_oidc_url
}

# Both CI roles trust GitHub's token for the STS audience, from this repository only; they differ in the subject
# (local.github_trusts).
data "aws_iam_policy_document" "github_trust" {
  for_each = local.github_trusts

  statement {
    sid     = each.value.sid
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:aud"
      values   = [local.github_audience]
    }

    condition {
      test     = each.value.test
      variable = "${local.github_oidc_host}:sub"
      values   = [for subject in each.value.subjects : "repo:${var.github_repository}:${subject}"]
    }
  }
}

# ---- images ----

# Push (build-push-action) and read back (cosign sign/attest, the SBOM); never delete, retag or change a repository.
data "aws_iam_policy_document" "github_images" {
  count = local.github_enabled && var.create_github_images_role ? 1 : 0

  # ecr-login's token: the action has no resource-level permissions.
  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "PushServiceImages"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = local.image_repository_arns
  }
}

resource "aws_iam_role" "github_images" {
  count = local.github_enabled && var.create_github_images_role ? 1 : 0

  name                 = "${var.name}-github-images"
  description          = "images.yml of ${var.github_repository}: push to ECR ${var.name}/*"
  assume_role_policy   = data.aws_iam_policy_document.github_trust["images"].json
  max_session_duration = 3600
  tags                 = local.component_tags["images"]
}

resource "aws_iam_role_policy" "github_images" {
  count = local.github_enabled && var.create_github_images_role ? 1 : 0

  name   = "push-service-images"
  role   = aws_iam_role.github_images[0].id
  policy = data.aws_iam_policy_document.github_images[0].json
}

# ---- deploy ----

# `aws eks update-kubeconfig` and `cosign verify` of the images; Kubernetes rights come from the access entry.
data "aws_iam_policy_document" "github_deploy" {
  count = length(local.github_deploy_environments) > 0 ? 1 : 0

  statement {
    sid       = "FindTheCluster"
    actions   = ["eks:DescribeCluster"]
    resources = [module.eks.cluster_arn]
  }

  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullServiceImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = local.image_repository_arns
  }
}

resource "aws_iam_role" "github_deploy" {
  for_each = local.github_deploy_environments

  name                 = "${var.name}-github-deploy-${each.key}"
  description          = "deploy.yml of ${var.github_repository} in the ${each.key} environment: EKS ${var.name}"
  assume_role_policy   = data.aws_iam_policy_document.github_trust["deploy-${each.key}"].json
  max_session_duration = 3600
  tags                 = local.component_tags["compute"]
}

resource "aws_iam_role_policy" "github_deploy" {
  for_each = aws_iam_role.github_deploy

  name   = "deploy-to-eks"
  role   = each.value.id
  policy = data.aws_iam_policy_document.github_deploy[0].json
}

# The cluster authenticates the role (EKS access entries, beside the eks module's own) and lets it edit the
# ragstream namespace only. kubernetes_groups names it to Kubernetes RBAC for what the access policy leaves out
# (custom resources, the cluster-scoped objects of the overlays).
resource "aws_eks_access_entry" "github_deploy" {
  for_each = aws_iam_role.github_deploy

  cluster_name      = module.eks.cluster_name
  principal_arn     = each.value.arn
  type              = "STANDARD"
  kubernetes_groups = ["ragstream-deployers"]
  tags              = local.component_tags["compute"]
}

resource "aws_eks_access_policy_association" "github_deploy" {
  for_each = aws_eks_access_entry.github_deploy

  cluster_name  = module.eks.cluster_name
  principal_arn = each.value.principal_arn
  policy_arn    = local.eks_edit_policy_arn

  access_scope {
    type       = "namespace"
    namespaces = [local.namespace]
  }
}
