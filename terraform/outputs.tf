# nats, emulators and management are lists of private DNS names: the identities the hosts'
# loadlab-node daemons use, so a playbook `terraform` node set can address them, e.g.
#   terraform -chdir=terraform output -json emulators   ->   ["ip-10-128-0-100.eu-central-1.compute.internal", ...]
# The *_public_* outputs are for ssh from var.management_cidrs; the *_private_ips outputs for
# anything inside the VPC.

output "management" {
  description = "Private DNS name (node identity) of the management host, as a one-element list."
  value       = aws_instance.management[*].private_dns
}

output "nats" {
  description = "Private DNS names (node identities) of the NATS hosts."
  value       = aws_instance.nats[*].private_dns
}

output "emulators" {
  description = "Private DNS names (node identities) of the emulator hosts."
  value       = aws_instance.emulator[*].private_dns
}

output "management_public_dns" {
  description = "Public DNS name of the management host (ssh admin@...)."
  value       = aws_instance.management[*].public_dns
}

output "management_public_ips" {
  description = "Public IP of the management host."
  value       = aws_instance.management[*].public_ip
}

output "management_private_ips" {
  description = "Private IP of the management host (its control-plane NATS listens on 4222)."
  value       = aws_instance.management[*].private_ip
}

output "nats_public_dns" {
  description = "Public DNS names of the NATS hosts."
  value       = aws_instance.nats[*].public_dns
}

output "nats_public_ips" {
  description = "Public IPs of the NATS hosts."
  value       = aws_instance.nats[*].public_ip
}

output "nats_private_ips" {
  description = "Private IPs of the NATS hosts."
  value       = aws_instance.nats[*].private_ip
}

output "emulators_public_dns" {
  description = "Public DNS names of the emulator hosts."
  value       = aws_instance.emulator[*].public_dns
}

output "emulators_public_ips" {
  description = "Public IPs of the emulator hosts."
  value       = aws_instance.emulator[*].public_ip
}

output "emulators_private_ips" {
  description = "Private IPs of the emulator hosts."
  value       = aws_instance.emulator[*].private_ip
}

output "management_nats" {
  description = "host:port of the control-plane NATS every loadlab-node connects to (the playbook runner's --server)."
  value       = "${local.management_ip}:4222"
}

output "nats_servers" {
  description = "Comma separated host:port list of the test brokers (the playbooks' --servers)."
  value       = local.nats_servers
}

output "expected_nodes" {
  description = "emulator_count x instances_per_host: what discovery should find."
  value       = var.emulator_count * var.instances_per_host
}

output "loadtest_command" {
  description = "A playbooks/loadtest.yaml command line for this environment, to run on the management host."
  value = join(" ", [
    "playbook run playbooks/loadtest.yaml",
    "--server ${local.management_ip}:4222",
    "--instances ${var.instances_per_host}",
    "--expected ${var.emulator_count * var.instances_per_host}",
    "--servers ${local.nats_servers}",
    "--report_dir reports/$(date -u +%Y%m%d-%H%M%S)",
  ])
}
