provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

# The disaster-recovery region: replicated RDS backups, the blob bucket's replica and the AWS Backup copy vault
# (backup.tf, modules/blobstore).
provider "aws" {
  alias  = "dr"
  region = var.dr_region

  default_tags {
    tags = local.tags
  }
}
