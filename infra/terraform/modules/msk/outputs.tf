output "arn" {
  value = aws_msk_cluster.this.arn
}

output "cluster_name" {
  value = aws_msk_cluster.this.cluster_name
}

output "cluster_uuid" {
  description = "Part of the topic and group ARNs in IAM policies."
  value       = aws_msk_cluster.this.cluster_uuid
}

output "bootstrap_brokers_sasl_iam" {
  description = "Comma-separated host:9098 list for SASL_SSL + OAUTHBEARER (IAM) clients."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "security_group_id" {
  value = aws_security_group.this.id
}

output "bootstrap_brokers_sasl_scram" {
  description = "Comma-separated host:9096 list for tenants' SASL_SSL + SCRAM-SHA-512 clients (empty without tenant_scram)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "tenant_scram_kms_key_arn" {
  description = "The key tenants' AmazonMSK_ secrets must be encrypted with."
  value       = aws_kms_key.scram.arn
}

output "tenant_scram_secret_prefix" {
  description = "Name prefix of tenants' SCRAM secrets (MSK requires AmazonMSK_)."
  value       = "AmazonMSK_${var.name}-tenant-"
}
