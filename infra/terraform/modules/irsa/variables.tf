variable "name_prefix" {
  description = "Role names are <name_prefix>-<service account>."
  type        = string
}

variable "oidc_provider_arn" {
  description = "IAM OIDC provider of the EKS cluster."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the service accounts."
  type        = string
}

variable "service_accounts" {
  description = "Service account name => IAM policy documents (JSON) merged into its role's policy."
  type        = map(list(string))
}

variable "tags" {
  type    = map(string)
  default = {}
}
