variable "name" {
  description = "Cluster name."
  type        = string
}

variable "kafka_version" {
  type = string
}

variable "broker_count" {
  type = number
}

variable "broker_instance_type" {
  type = string
}

variable "broker_volume_gb" {
  type = number
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "One private subnet per AZ."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups whose members may connect (static keys, so plans are stable)."
  type        = map(string)
}

variable "log_retention_days" {
  type    = number
  default = 30
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "tenant_scram" {
  description = "Open the SASL/SCRAM listener (9096) for tenants' external Kafka clients."
  type        = bool
  default     = true
}
