output "primary_endpoint_address" {
  value = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  value = aws_elasticache_replication_group.this.port
}

output "url_secret_arn" {
  description = "Secrets Manager secret holding the full async+rediss:// URI."
  value       = aws_secretsmanager_secret.url.arn
}

output "security_group_id" {
  value = aws_security_group.this.id
}

output "kms_key_arn" {
  description = "Key of the cache and of the URL secret: readers of the secret need kms:Decrypt via Secrets Manager."
  value       = aws_kms_key.this.arn
}

output "member_cluster_ids" {
  description = "CacheClusterId of each node (<group>-001, -002, ...), the dimension of its CloudWatch metrics; known at plan."
  value       = [for index in range(1, var.replica_count + 2) : format("%s-%03d", var.name, index)]
}
