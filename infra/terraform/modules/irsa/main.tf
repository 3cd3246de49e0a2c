# One IAM role per Kubernetes ServiceAccount (IRSA): only that account in that namespace can
# assume it, through the cluster's OIDC provider.

locals {
  # arn:aws:iam::<account>:oidc-provider/<issuer host and path>
  oidc_issuer = element(split("oidc-provider/", var.oidc_provider_arn), 1)
}

data "aws_iam_policy_document" "assume" {
  for_each = var.service_accounts

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${each.key}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "permissions" {
  for_each = var.service_accounts

  source_policy_documents = each.value
}

resource "aws_iam_role" "this" {
  for_each = var.service_accounts

  name               = "${var.name_prefix}-${each.key}"
  description        = "IRSA role of ${var.namespace}/${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "this" {
  for_each = var.service_accounts

  name   = "${var.name_prefix}-${each.key}"
  role   = aws_iam_role.this[each.key].id
  policy = data.aws_iam_policy_document.permissions[each.key].json
}
