# One login per service role of migration 0005 (least privilege): a random password in a Secrets Manager secret
# of its own, under a key of its own. The migrate Job (`python -m ragstream_common.db_logins`) gives each role
# LOGIN with that password; each service reads only its own secret (../../iam.tf), so no service can sign in
# as another, and none as the master user. The secret has the usual RDS fields, so RDS's rotation functions
# can rotate it (docs/deployment.md).

resource "aws_kms_key" "logins" {
  description             = "${var.name} PostgreSQL service login secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

# URL-safe (no special characters): Kubernetes splices it into each service's DATABASE_URL.
resource "random_password" "login" {
  for_each = var.login_roles

  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "login" {
  for_each = var.login_roles

  name_prefix = "${var.name}/postgres-${replace(each.key, "_", "-")}-"
  description = "PostgreSQL login ${each.value} of ${var.name}"
  kms_key_id  = aws_kms_key.logins.arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "login" {
  for_each = var.login_roles

  secret_id = aws_secretsmanager_secret.login[each.key].id
  secret_string = jsonencode({
    engine   = "postgres"
    username = each.value
    password = random_password.login[each.key].result
    host     = aws_db_instance.this.address
    port     = aws_db_instance.this.port
    dbname   = aws_db_instance.this.db_name
  })

  # Rotated outside Terraform (docs/deployment.md): an apply must not put the old password back.
  lifecycle {
    ignore_changes = [secret_string]
  }
}
