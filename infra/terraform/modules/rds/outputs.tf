output "address" {
  value = aws_db_instance.this.address
}

output "port" {
  value = aws_db_instance.this.port
}

output "database_name" {
  value = aws_db_instance.this.db_name
}

output "master_username" {
  value = aws_db_instance.this.username
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret (username/password JSON) managed and rotated by RDS."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "security_group_id" {
  value = aws_security_group.this.id
}

output "login_secret_arns" {
  description = "Service login => Secrets Manager secret (username, password, host, port, dbname JSON)."
  value       = { for login, secret in aws_secretsmanager_secret.login : login => secret.arn }
}

output "login_kms_key_arn" {
  value = aws_kms_key.logins.arn
}

output "arn" {
  description = "DB instance ARN: source of the DR region's replicated backups and of AWS Backup's selection."
  value       = aws_db_instance.this.arn
}

output "identifier" {
  description = "DBInstanceIdentifier dimension of the instance's CloudWatch metrics."
  value       = aws_db_instance.this.identifier
}
