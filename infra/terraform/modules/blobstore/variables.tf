variable "bucket_name" {
  type = string
}

variable "replica_bucket_name" {
  description = "Bucket in the DR region (provider aws.dr) that every object version and delete marker is replicated to."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept, in both buckets."
  type        = number

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "tags" {
  type    = map(string)
  default = {}
}
