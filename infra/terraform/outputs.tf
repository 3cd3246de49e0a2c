output "region" {
  value = var.region
}

output "vpc_id" {
  value = module.vpc.vpc_id
}

output "cluster_name" {
  description = "aws eks update-kubeconfig --name <this> --region <region>"
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  value = module.eks.cluster_endpoint
}

output "kafka_bootstrap_brokers_sasl_iam" {
  value = module.kafka.bootstrap_brokers_sasl_iam
}

output "postgres_address" {
  value = module.postgres.address
}

output "postgres_master_user_secret_arn" {
  description = "Secrets Manager secret with the master credentials (managed and rotated by RDS)."
  value       = module.postgres.master_user_secret_arn
}

output "database_url_template" {
  description = "The administrator's DATABASE_URL for the ragstream-database-admin Secret (migrate Job only), once the master password is filled in (TLS is enforced by rds.force_ssl; use verify-full with the RDS CA bundle mounted)."
  value       = "postgresql://${module.postgres.master_username}:<password>@${module.postgres.address}:${module.postgres.port}/${module.postgres.database_name}?sslmode=require"
}

output "database_login_secret_arns" {
  description = "Service login => Secrets Manager secret of its password: postgres-password (postgres-admin-password for gateway_admin) of ragstream-<service>-credentials."
  value       = module.postgres.login_secret_arns
}

output "kafka_bootstrap_brokers_sasl_scram" {
  description = "Tenants' SCRAM listener: GATEWAY_KAFKA_TENANT_BOOTSTRAP_SERVERS."
  value       = module.kafka.bootstrap_brokers_sasl_scram
}

output "redis_url_secret_arn" {
  description = "Secret holding GATEWAY_RATE_LIMIT_STORAGE (an async+rediss:// URI with the AUTH token): rate-limit-storage of ragstream-gateway-credentials."
  value       = module.redis.url_secret_arn
}

output "gateway_pod_security_group_ids" {
  description = "groupIds of overlays/aws/gateway-security-group.yaml: the nodes' group and the gateway pods' own (the only Redis client)."
  value       = [module.eks.node_security_group_id, aws_security_group.gateway_pods.id]
}

output "blob_bucket" {
  value = module.blobstore.bucket_name
}

output "ecr_repository_urls" {
  description = "Service => image repository, for the overlay's `images:`."
  value       = { for service, repository in aws_ecr_repository.service : service => repository.repository_url }
}

output "service_account_role_arns" {
  description = "ServiceAccount => IAM role, for the eks.amazonaws.com/role-arn annotations."
  value       = module.service_roles.role_arns
}

output "kustomize_config" {
  description = "Non-secret literals for ragstream-config in infra/k8s/overlays/aws."
  value = {
    KAFKA_BOOTSTRAP_SERVERS = module.kafka.bootstrap_brokers_sasl_iam
    KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
    KAFKA_SASL_MECHANISM    = "OAUTHBEARER"
    AWS_REGION              = var.region
    DATABASE_LOCATION       = "${module.postgres.address}:${module.postgres.port}/${module.postgres.database_name}?sslmode=require"
    REPLY_ALLOWED_TARGETS   = var.vpc_cidr
    BLOB_STORE              = "s3"
    BLOB_S3_BUCKET          = module.blobstore.bucket_name
    BLOB_S3_REGION          = var.region
    SECRETS_PROVIDER        = "kms"
    SECRETS_KMS_KEY_ID      = aws_kms_key.connector_secrets.arn
    SECRETS_KMS_REGION      = var.region
  }
}

output "github_images_role_arn" {
  description = "Repository variable AWS_IMAGES_ROLE_ARN (images.yml); null unless github_repository and create_github_images_role."
  value       = one(aws_iam_role.github_images[*].arn)
}

output "github_deploy_role_arns" {
  description = "GitHub environment => its AWS_DEPLOY_ROLE_ARN (deploy.yml)."
  value       = { for environment, role in aws_iam_role.github_deploy : environment => role.arn }
}
