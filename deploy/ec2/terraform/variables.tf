variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "edgeproxy"
}

variable "lb_count" {
  description = "edgeproxy hosts. Above 1, an AWS Network Load Balancer spreads clients over them."
  type        = number
  default     = 1
  validation {
    condition     = var.lb_count >= 1
    error_message = "lb_count must be at least 1."
  }
}

variable "backend_count" {
  description = "Backend instances behind edgeproxy."
  type        = number
  default     = 2
  validation {
    condition     = var.backend_count >= 1
    error_message = "backend_count must be at least 1."
  }
}

variable "backend_port" {
  description = "Port the backends listen on."
  type        = number
  default     = 8000
}

variable "lb_instance_type" {
  description = "Instance type of the edgeproxy hosts."
  type        = string
  default     = "t3.small"
}

variable "backend_instance_type" {
  description = "Instance type of the backends."
  type        = string
  default     = "t3.micro"
}

variable "client_cidrs" {
  description = "Who may reach ports 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "prometheus_cidr" {
  description = "The only network that may scrape /metrics on port 9091."
  type        = string
  default     = "10.0.0.0/8"
}

variable "ssh_cidr" {
  description = "Who may reach SSH (port 22) on every instance; null closes it (use SSM Session Manager)."
  type        = string
  default     = null
}

variable "key_name" {
  description = "EC2 key pair for SSH; null for none."
  type        = string
  default     = null
}

variable "git_url" {
  description = "Repository the edgeproxy hosts build edgeproxy from."
  type        = string
}

variable "git_ref" {
  description = "Branch or tag to build."
  type        = string
  default     = "main"
}

variable "acme_domains" {
  description = "Names edgeproxy gets a Let's Encrypt certificate for (server.tls.acme), e.g. [\"shop.example.com\"]; point their DNS at the host's public IP first. Empty: plain HTTP only."
  type        = list(string)
  default     = []
}

variable "acme_email" {
  description = "Contact address of the ACME account, to which Let's Encrypt writes about expiring certificates."
  type        = string
  default     = ""
}

variable "acme_staging" {
  description = "Use Let's Encrypt's staging CA (untrusted certificates, far higher rate limits) for trials."
  type        = bool
  default     = false
}

variable "tarball_url" {
  description = "A release tarball with the edgeproxy binary; skips the build on the hosts when set."
  type        = string
  default     = ""
}
