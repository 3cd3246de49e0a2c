terraform {
  required_version = ">= 1.10.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.14"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }

  # State lives in S3 with native locking (use_lockfile, Terraform 1.10+); pass bucket/key/region with
  # `terraform init -backend-config=backend.hcl` (see docs/deployment.md).
  backend "s3" {}
}
