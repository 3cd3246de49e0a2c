output "bucket_name" {
  value = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  value = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  value = aws_kms_key.this.arn
}

output "replica_bucket_arn" {
  value = aws_s3_bucket.replica.arn
}

output "replica_bucket_name" {
  value = aws_s3_bucket.replica.bucket
}
