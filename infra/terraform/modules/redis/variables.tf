variable "name" {
  description = "Replication group id and name prefix."
  type        = string
}

variable "node_type" {
  type = string
}

variable "engine_version" {
  description = "Redis OSS major.minor, e.g. 7.1; the parameter group family is redis<major>."
  type        = string
}

variable "replica_count" {
  description = "Replicas besides the primary; at least 1 for automatic failover."
  type        = number
  default     = 1
}

variable "vpc_id" {
  type = string
}

variable "subnet_group_name" {
  type = string
}

variable "client_security_group_ids" {
  description = "Security groups whose members may connect (static keys, so plans are stable): the gateway's pods only."
  type        = map(string)
}

variable "tags" {
  type    = map(string)
  default = {}
}
