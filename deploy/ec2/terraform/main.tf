# One or more edgeproxy hosts in front of N backend instances, in the default VPC.

data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }
}

data "aws_ami" "al2023" {
  most_recent = true
  owners      = ["amazon"]
  filter {
    name   = "name"
    values = ["al2023-ami-2023.*-x86_64"]
  }
}

locals {
  subnets = sort(data.aws_subnets.default.ids)

  # The upstream list edgeproxy balances over: the backends' private addresses.
  config = templatefile("${path.module}/edgeproxy.yaml.tftpl", {
    backends = [for i, b in aws_instance.backend : {
      addr = "${b.private_ip}:${var.backend_port}"
      id   = "backend-${i + 1}"
    }]
    prometheus_cidr = var.prometheus_cidr
    acme_domains    = var.acme_domains
    acme_email      = var.acme_email
    acme_directory = var.acme_staging ? (
      "https://acme-staging-v02.api.letsencrypt.org/directory"
    ) : "https://acme-v02.api.letsencrypt.org/directory"
  })
}

resource "aws_security_group" "lb" {
  name        = "${var.name}-lb"
  description = "edgeproxy hosts: HTTP/HTTPS from clients, metrics from Prometheus only"
  vpc_id      = data.aws_vpc.default.id

  ingress {
    description = "HTTP"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }

  ingress {
    description = "HTTPS"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }

  ingress {
    description = "Prometheus scrapes /metrics"
    from_port   = 9091
    to_port     = 9091
    protocol    = "tcp"
    cidr_blocks = [var.prometheus_cidr]
  }

  dynamic "ingress" {
    for_each = var.ssh_cidr == null ? [] : [var.ssh_cidr]
    content {
      description = "SSH"
      from_port   = 22
      to_port     = 22
      protocol    = "tcp"
      cidr_blocks = [ingress.value]
    }
  }

  egress {
    description = "Backends, package mirrors, SSM"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "backend" {
  name        = "${var.name}-backend"
  description = "Backends: reachable only from the edgeproxy hosts"
  vpc_id      = data.aws_vpc.default.id

  ingress {
    description     = "Requests from edgeproxy"
    from_port       = var.backend_port
    to_port         = var.backend_port
    protocol        = "tcp"
    security_groups = [aws_security_group.lb.id]
  }

  dynamic "ingress" {
    for_each = var.ssh_cidr == null ? [] : [var.ssh_cidr]
    content {
      description = "SSH"
      from_port   = 22
      to_port     = 22
      protocol    = "tcp"
      cidr_blocks = [ingress.value]
    }
  }

  egress {
    description = "Package mirrors"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_instance" "backend" {
  count                  = var.backend_count
  ami                    = data.aws_ami.al2023.id
  instance_type          = var.backend_instance_type
  subnet_id              = local.subnets[count.index % length(local.subnets)]
  vpc_security_group_ids = [aws_security_group.backend.id]
  key_name               = var.key_name
  user_data = join("\n", [
    "#!/bin/bash",
    "export BACKEND_ID=backend-${count.index + 1} BACKEND_PORT=${var.backend_port}",
    file("${path.module}/backend-user-data.sh"),
  ])

  metadata_options {
    http_tokens = "required"
  }

  tags = {
    Name = "${var.name}-backend-${count.index + 1}"
    Role = "edgeproxy-backend"
  }
}

# The config every edgeproxy host runs; changing it (e.g. a new backend) reaches every host
# within a minute through edgeproxy-config-sync.timer, which checks it and reloads.
resource "aws_ssm_parameter" "config" {
  name  = "/${var.name}/edgeproxy.yaml"
  type  = "String"
  value = local.config
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "read_config" {
  statement {
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.config.arn]
  }
}

resource "aws_iam_role" "lb" {
  name               = "${var.name}-lb"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

resource "aws_iam_role_policy" "read_config" {
  name   = "read-config"
  role   = aws_iam_role.lb.id
  policy = data.aws_iam_policy_document.read_config.json
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.lb.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "lb" {
  name = "${var.name}-lb"
  role = aws_iam_role.lb.name
}

resource "aws_instance" "lb" {
  count                  = var.lb_count
  ami                    = data.aws_ami.al2023.id
  instance_type          = var.lb_instance_type
  subnet_id              = local.subnets[count.index % length(local.subnets)]
  vpc_security_group_ids = [aws_security_group.lb.id]
  iam_instance_profile   = aws_iam_instance_profile.lb.name
  key_name               = var.key_name
  user_data = join("\n", [
    "#!/bin/bash",
    "export EDGEPROXY_GIT_URL='${var.git_url}' EDGEPROXY_GIT_REF='${var.git_ref}'",
    "export EDGEPROXY_TARBALL_URL='${var.tarball_url}'",
    "export EDGEPROXY_CONFIG_B64='${base64encode(local.config)}'",
    "export EDGEPROXY_CONFIG_SSM_PARAMETER='${aws_ssm_parameter.config.name}'",
    file("${path.module}/../user-data.sh"),
  ])
  user_data_replace_on_change = false

  lifecycle {
    # Each host would order its own certificate, and the CA's check could reach another.
    precondition {
      condition     = length(var.acme_domains) == 0 || var.lb_count == 1
      error_message = "acme_domains needs lb_count = 1: with several hosts, terminate TLS at the load balancer or give edgeproxy certificate files."
    }
  }

  metadata_options {
    http_tokens = "required"
  }

  tags = {
    Name = "${var.name}-lb-${count.index + 1}"
    Role = "edgeproxy-lb"
  }
}

# Past one host: a managed, multi-AZ Network Load Balancer in front of every edgeproxy host.
# TCP passthrough keeps TLS on edgeproxy; the client address reaches edgeproxy unchanged
# (client IP preservation), so X-Forwarded-For stays right.
resource "aws_lb" "nlb" {
  count              = var.lb_count > 1 ? 1 : 0
  name               = "${var.name}-nlb"
  load_balancer_type = "network"
  subnets            = local.subnets
}

resource "aws_lb_target_group" "edge" {
  for_each = var.lb_count > 1 ? toset(["80", "443"]) : toset([])
  name     = "${var.name}-${each.key}"
  port     = tonumber(each.key)
  protocol = "TCP"
  vpc_id   = data.aws_vpc.default.id

  health_check {
    protocol = "HTTP"
    port     = "80"
    path     = "/edge-health"
  }
}

resource "aws_lb_target_group_attachment" "edge" {
  for_each = {
    for pair in setproduct(keys(aws_lb_target_group.edge), range(var.lb_count)) :
    "${pair[0]}-${pair[1]}" => { port = pair[0], host = pair[1] }
  }
  target_group_arn = aws_lb_target_group.edge[each.value.port].arn
  target_id        = aws_instance.lb[each.value.host].id
  port             = tonumber(each.value.port)
}

resource "aws_lb_listener" "edge" {
  for_each          = aws_lb_target_group.edge
  load_balancer_arn = aws_lb.nlb[0].arn
  port              = tonumber(each.key)
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = each.value.arn
  }
}
