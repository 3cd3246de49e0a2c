"""`make check-infra`: offline checks of the infrastructure code against a reviewed baseline.

kustomize renders every overlay, kubeconform validates the result against Kubernetes and vendored CRD schemas,
checkov scans Terraform, manifests and Dockerfiles (infra/checkov-baseline.json holds the accepted findings, each
with its reason), hadolint lints the Dockerfiles, terraform checks formatting (and validates when it can), promtool
checks and tests the alert rules, actionlint checks the CI workflows. Entry point: scripts/check_infra.py.
"""
