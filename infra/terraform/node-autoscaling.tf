# Node autoscaling: the Kubernetes Cluster Autoscaler grows the managed node group (main.tf, `general`) when pods
# cannot be scheduled (an autoscaler's scale-out, a blue-green release that runs both colours for up to 10 minutes)
# and shrinks it back to node_min_size when nodes sit underused. It runs in the cluster (Helm chart, installed as
# docs/deployment.md shows); Terraform owns its IRSA role and the node group's bounds (variables.tf).
#
# Why the Cluster Autoscaler rather than Karpenter: one node group of one instance type is all the sizing needs
# (docs/capacity.md), and the autoscaler's role only sets the desired size of, and terminates instances in, the
# Auto Scaling group EKS already made; Karpenter would launch instances itself, which takes ec2:RunInstances,
# iam:PassRole of the node role, instance profiles and an interruption queue.
#
# Least privilege, after the autoscaler's AWS documentation (cluster-autoscaler/cloudprovider/aws/README.md,
# "Full Cluster Autoscaler Features Policy", restricted as it recommends): reads that take no resource ARN; the
# two writes only on this cluster's node group Auto Scaling groups, by ARN and by the discovery tags EKS puts on
# every managed node group's group; and only kube-system/cluster-autoscaler may assume the role.

locals {
  cluster_autoscaler_namespace       = "kube-system"
  cluster_autoscaler_service_account = "cluster-autoscaler"

  # var.name is the EKS cluster's name (main.tf).
  node_group_arn_prefix = "arn:${data.aws_partition.current.partition}:autoscaling:${var.region}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName"
  node_group_eks_arns   = "arn:${data.aws_partition.current.partition}:eks:${var.region}:${data.aws_caller_identity.current.account_id}:nodegroup/${var.name}/*"
}

data "aws_iam_policy_document" "cluster_autoscaler" {
  # Finding the groups, their instances, launch templates and instance types: these calls take no resource ARN.
  statement {
    sid = "DiscoverNodeGroups"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
    ]
    resources = ["*"]
  }

  # Labels and taints of a managed node group (for scaling one up from zero), of this cluster's groups only.
  statement {
    sid       = "DescribeThisClustersNodeGroups"
    actions   = ["eks:DescribeNodegroup"]
    resources = [local.node_group_eks_arns]
  }

  # The only writes: add nodes (desired capacity, within the group's min and max) and remove a drained one.
  statement {
    sid       = "ResizeThisClustersNodeGroups"
    actions   = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    resources = [for group in module.eks.eks_managed_node_groups_autoscaling_group_names : "${local.node_group_arn_prefix}/${group}"]

    # The discovery tags EKS sets on every managed node group's Auto Scaling group (the chart's default
    # autoDiscovery.tags): groups of another cluster, or not meant for the autoscaler, stay out of reach.
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled"
      values   = ["true"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.name}"
      values   = ["owned"]
    }
  }
}

module "cluster_autoscaler_role" {
  source = "./modules/irsa"

  name_prefix       = var.name
  oidc_provider_arn = module.eks.oidc_provider_arn
  namespace         = local.cluster_autoscaler_namespace
  service_accounts  = { (local.cluster_autoscaler_service_account) = [data.aws_iam_policy_document.cluster_autoscaler.json] }
  tags              = local.component_tags["compute"]
}

output "cluster_autoscaler_role_arn" {
  description = "eks.amazonaws.com/role-arn of kube-system/cluster-autoscaler (the Cluster Autoscaler's chart, docs/deployment.md)."
  value       = module.cluster_autoscaler_role.role_arns[local.cluster_autoscaler_service_account]
}
