# Public entry: an Application Load Balancer in front of the Istio ingress gateway, and the IRSA role of the AWS
# Load Balancer Controller.
#
# Who owns what: Terraform owns the load balancer, its listeners, security groups and target group, so that
# their settings (TLS policy, deletion protection, who may connect) and the 5xx alarm (alarms.tf) are declared
# and reviewed here, and stay when the cluster is rebuilt. The controller only keeps the target group's members
# in step with the istio-ingressgateway pods, through a TargetGroupBinding (target group ARN: output
# ingress_target_group_arn), so its role may register targets in that group and describe, nothing else: it
# cannot create load balancers from Service or Ingress annotations.
#
# TLS: the ALB terminates the public certificate (ACM) and re-encrypts to the gateway pods' HTTPS port, where
# Istio still serves ragstream-tls (infra/istio/ingress-gateway.yaml). An NLB would pass TLS through to Istio
# unchanged but sees no HTTP, so it could neither drop malformed headers nor count 5xx.

variable "ingress_certificate_arn" {
  description = "ACM certificate of the public host name (rag.example.com in infra/istio), in var.region."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.ingress_certificate_arn))
    error_message = "ingress_certificate_arn must be an ACM certificate ARN."
  }
}

variable "ingress_allowed_cidrs" {
  description = "Who may reach the public API (HTTPS, and HTTP only to be redirected); the internet by default."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.ingress_allowed_cidrs) > 0 && alltrue([for cidr in var.ingress_allowed_cidrs : can(cidrhost(cidr, 0))])
    error_message = "ingress_allowed_cidrs must be a non-empty list of CIDRs."
  }
}

locals {
  # Container ports of the istio-ingressgateway pods (Istio's chart maps Service 443 to 8443) and its readiness port.
  ingress_gateway_https_port  = 8443
  ingress_gateway_status_port = 15021
  ingress_listener_ports      = { https = 443, http = 80 }
  ingress_client_rules = {
    for pair in setproduct(keys(local.ingress_listener_ports), var.ingress_allowed_cidrs) :
    "${pair[0]}-${pair[1]}" => { port = local.ingress_listener_ports[pair[0]], cidr = pair[1] }
  }
  # Load balancer and target group names are at most 32 characters.
  ingress_lb_name           = trimsuffix(substr("${var.name}-ingress", 0, 32), "-")
  ingress_target_group_name = trimsuffix(substr("${var.name}-istio-ingress", 0, 32), "-")
}

# ---- security groups ----

resource "aws_security_group" "ingress_alb" {
  name_prefix = "${var.name}-ingress-alb-"
  description = "Ragstream public ALB"
  vpc_id      = module.vpc.vpc_id
  tags        = merge(local.component_tags["network"], { Name = "${var.name}-ingress-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ingress_alb_clients" {
  for_each = local.ingress_client_rules

  security_group_id = aws_security_group.ingress_alb.id
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = "Clients on ${each.value.port}"
}

# The ALB reaches the gateway pods (their IPs are the nodes' secondary addresses, in the node group) on the
# HTTPS and readiness ports only.
resource "aws_vpc_security_group_egress_rule" "ingress_alb_to_gateway" {
  for_each = toset([tostring(local.ingress_gateway_https_port), tostring(local.ingress_gateway_status_port)])

  security_group_id            = aws_security_group.ingress_alb.id
  referenced_security_group_id = module.eks.node_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  description                  = "Istio ingress gateway pods on ${each.value}"
}

resource "aws_vpc_security_group_ingress_rule" "gateway_from_ingress_alb" {
  for_each = toset([tostring(local.ingress_gateway_https_port), tostring(local.ingress_gateway_status_port)])

  security_group_id            = module.eks.node_security_group_id
  referenced_security_group_id = aws_security_group.ingress_alb.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  description                  = "Public ALB to the Istio ingress gateway on ${each.value}"
}

# ---- load balancer ----

resource "aws_lb" "ingress" {
  name               = local.ingress_lb_name
  load_balancer_type = "application"
  internal           = false
  subnets            = module.vpc.public_subnets
  security_groups    = [aws_security_group.ingress_alb.id]

  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  # Answers stream over SSE for up to the route timeout (300 s, infra/istio): an idle gap must not cut them.
  idle_timeout = 300

  tags = local.component_tags["network"]
}

resource "aws_lb_target_group" "istio_ingress" {
  name        = local.ingress_target_group_name
  target_type = "ip"
  protocol    = "HTTPS"
  port        = local.ingress_gateway_https_port
  vpc_id      = module.vpc.vpc_id

  # Long enough for a streamed answer to finish on a gateway pod that is going away.
  deregistration_delay = 300

  health_check {
    protocol            = "HTTP"
    port                = tostring(local.ingress_gateway_status_port)
    path                = "/healthz/ready"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = local.component_tags["network"]
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.ingress.arn
  port              = local.ingress_listener_ports["https"]
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.ingress_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.istio_ingress.arn
  }

  tags = local.component_tags["network"]
}

resource "aws_lb_listener" "http_redirect" {
  load_balancer_arn = aws_lb.ingress.arn
  port              = local.ingress_listener_ports["http"]
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = tostring(local.ingress_listener_ports["https"])
      status_code = "HTTP_301"
    }
  }

  tags = local.component_tags["network"]
}

# ---- AWS Load Balancer Controller ----

data "aws_iam_policy_document" "load_balancer_controller" {
  # Describe calls take no resource ARNs.
  statement {
    sid = "Describe"
    actions = [
      "elasticloadbalancing:DescribeLoadBalancers",
      "elasticloadbalancing:DescribeLoadBalancerAttributes",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeRules",
      "elasticloadbalancing:DescribeTags",
      "elasticloadbalancing:DescribeTargetGroups",
      "elasticloadbalancing:DescribeTargetGroupAttributes",
      "elasticloadbalancing:DescribeTargetHealth",
      "ec2:DescribeAvailabilityZones",
      "ec2:DescribeInstances",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSubnets",
      "ec2:DescribeVpcs",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "GatewayTargets"
    actions   = ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]
    resources = [aws_lb_target_group.istio_ingress.arn]
  }
}

module "load_balancer_controller_role" {
  source = "./modules/irsa"

  name_prefix       = var.name
  oidc_provider_arn = module.eks.oidc_provider_arn
  namespace         = "kube-system"
  service_accounts  = { aws-load-balancer-controller = [data.aws_iam_policy_document.load_balancer_controller.json] }
  tags              = local.component_tags["compute"]
}

output "ingress_dns_name" {
  description = "The ALB's DNS name: the target of the public host name's alias (CNAME) record."
  value       = aws_lb.ingress.dns_name
}

output "ingress_target_group_arn" {
  description = "spec.targetGroupARN of the istio-ingressgateway TargetGroupBinding (targetType ip, port 443)."
  value       = aws_lb_target_group.istio_ingress.arn
}

output "load_balancer_controller_role_arn" {
  description = "eks.amazonaws.com/role-arn of kube-system/aws-load-balancer-controller."
  value       = module.load_balancer_controller_role.role_arns["aws-load-balancer-controller"]
}
