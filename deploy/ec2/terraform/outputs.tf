output "url" {
  description = "Where clients go: the NLB with several hosts, else the one host."
  value       = var.lb_count > 1 ? "http://${aws_lb.nlb[0].dns_name}" : "http://${aws_instance.lb[0].public_ip}"
}

output "lb_public_ips" {
  description = "Public addresses of the edgeproxy hosts."
  value       = aws_instance.lb[*].public_ip
}

output "lb_private_ips" {
  description = "Private addresses of the edgeproxy hosts: Prometheus scrapes port 9091 there."
  value       = aws_instance.lb[*].private_ip
}

output "backend_private_ips" {
  description = "The backends edgeproxy balances over."
  value       = aws_instance.backend[*].private_ip
}

output "config_parameter" {
  description = "The SSM parameter every edgeproxy host follows."
  value       = aws_ssm_parameter.config.name
}
