output "role_arns" {
  description = "Service account name => role ARN (the eks.amazonaws.com/role-arn annotation)."
  value       = { for account, role in aws_iam_role.this : account => role.arn }
}
