variable "name" {
  description = "DB instance identifier and name prefix."
  type        = string
}

variable "major_version" {
  description = "PostgreSQL major version (16, 17 or 18); RDS picks the latest minor."
  type        = string
}

variable "instance_class" {
  type = string
}

variable "allocated_storage_gb" {
  type = number
}

variable "max_allocated_storage_gb" {
  type = number
}

variable "multi_az" {
  type = bool
}

variable "deletion_protection" {
  type = bool
}

variable "database_name" {
  type    = string
  default = "ragstream"
}

variable "master_username" {
  type    = string
  default = "ragstream_admin"
}

variable "backup_retention_days" {
  type    = number
  default = 14
}

variable "vpc_id" {
  type = string
}

variable "db_subnet_group_name" {
  description = "Subnet group over the private database subnets."
  type        = string
}

variable "client_security_group_ids" {
  description = "Security groups whose members may connect (static keys, so plans are stable)."
  type        = map(string)
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "login_roles" {
  description = "Service login => PostgreSQL role (migration 0005, roles.sql); each gets a password secret of its own."
  type        = map(string)
  default = {
    gateway       = "ragstream_gateway"
    gateway_admin = "ragstream_gateway_admin"
    ingest        = "ragstream_ingest"
    embed         = "ragstream_embed"
    retrieve      = "ragstream_retrieve"
    connectors    = "ragstream_connectors"
    metering      = "ragstream_metering"
  }
}
