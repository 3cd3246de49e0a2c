variable "bucket_name" {
  type = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
}

variable "tags" {
  type    = map(string)
  default = {}
}
