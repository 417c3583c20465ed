# Every host gets a fixed private address so that the NATS route list and the control-plane
# broker address are known before any instance exists (no dependency cycles, stable restarts):
#   management  subnet host 10
#   nats        subnet hosts 20, 21, ...   (at most 50)
#   emulators   subnet hosts 100, 101, ... (at most 1000)

data "aws_ami" "debian" {
  count       = var.ami_id == null ? 1 : 0
  most_recent = true
  owners      = ["136693071363"] # Debian's official AWS account

  filter {
    name   = "name"
    values = ["debian-12-${var.architecture == "arm64" ? "arm64" : "amd64"}-*"]
  }

  filter {
    name   = "architecture"
    values = [var.architecture]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  ami = var.ami_id != null ? var.ami_id : data.aws_ami.debian[0].id

  management_ip = cidrhost(var.subnet_cidr, 10)
  nats_ips      = [for i in range(var.nats_count) : cidrhost(var.subnet_cidr, 20 + i)]
  emulator_ips  = [for i in range(var.emulator_count) : cidrhost(var.subnet_cidr, 100 + i)]
  nats_servers  = join(",", [for ip in local.nats_ips : "${ip}:4222"])

  nats_arch       = var.architecture == "arm64" ? "arm64" : "amd64"
  nats_server_url = "https://github.com/nats-io/nats-server/releases/download/v${var.nats_server_version}/nats-server-v${var.nats_server_version}-linux-${local.nats_arch}.tar.gz"

  security_groups = [aws_security_group.internal.id, aws_security_group.management.id]

  # Values every user data render shares; the role specific ones are merged in below. The
  # template itself picks the roles of the federation broker (nats) and the stream
  # replicator (management).
  user_data_common = {
    project                  = var.project
    management_ip            = local.management_ip
    nats_servers             = local.nats_servers
    instances_per_host       = var.instances_per_host
    node_url                 = var.node_url
    node_sha256              = var.node_sha256
    emulator_url             = var.emulator_url
    emulator_sha256          = var.emulator_sha256
    federation_broker_url    = var.federation_broker_url
    federation_broker_sha256 = var.federation_broker_sha256
    stream_replicator_url    = var.stream_replicator_url
    stream_replicator_sha256 = var.stream_replicator_sha256
    nats_server_url          = local.nats_server_url
    nats_autostart           = var.nats_autostart
  }
}

resource "aws_instance" "management" {
  count = 1

  ami                    = local.ami
  instance_type          = var.management_instance_type
  key_name               = var.key_name
  subnet_id              = aws_subnet.main.id
  private_ip             = local.management_ip
  vpc_security_group_ids = local.security_groups

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", merge(local.user_data_common, {
    role         = "management"
    playbook_url = var.playbook_url
    install_nats = true
    nats_conf    = ""
    nats_unit    = ""
    control_conf = templatefile("${path.module}/templates/control-nats.conf.tftpl", { project = var.project })
    control_unit = templatefile("${path.module}/templates/nats-server.service.tftpl", {
      description = "control-plane nats-server of ${var.project}"
      config      = "/etc/loadlab/control-nats.conf"
    })
    node_unit = templatefile("${path.module}/templates/loadlab-node.service.tftpl", {
      role          = "management"
      management_ip = local.management_ip
    })
  }))
  user_data_replace_on_change = true

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_size
  }

  tags = {
    Name = "${var.project}-management"
    Role = "management"
  }

  depends_on = [aws_route_table_association.main]
}

resource "aws_instance" "nats" {
  count = var.nats_count

  ami                    = local.ami
  instance_type          = var.nats_instance_type
  key_name               = var.key_name
  subnet_id              = aws_subnet.main.id
  private_ip             = local.nats_ips[count.index]
  vpc_security_group_ids = concat(local.security_groups, [aws_security_group.nats.id])

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", merge(local.user_data_common, {
    role         = "nats"
    playbook_url = ""
    install_nats = true
    nats_conf = templatefile("${path.module}/templates/nats-cluster.conf.tftpl", {
      project         = var.project
      server_name     = "${var.project}-nats-${count.index + 1}"
      routes          = local.nats_ips
      max_connections = var.nats_max_connections
    })
    nats_unit = templatefile("${path.module}/templates/nats-server.service.tftpl", {
      description = "test nats-server (cluster member) of ${var.project}"
      config      = "/etc/loadlab/nats-cluster.conf"
    })
    control_conf = ""
    control_unit = ""
    node_unit = templatefile("${path.module}/templates/loadlab-node.service.tftpl", {
      role          = "nats"
      management_ip = local.management_ip
    })
  }))
  user_data_replace_on_change = true

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_size
  }

  tags = {
    Name = "${var.project}-nats-${count.index + 1}"
    Role = "nats"
  }

  depends_on = [aws_route_table_association.main]
}

resource "aws_instance" "emulator" {
  count = var.emulator_count

  ami                    = local.ami
  instance_type          = var.emulator_instance_type
  key_name               = var.key_name
  subnet_id              = aws_subnet.main.id
  private_ip             = local.emulator_ips[count.index]
  vpc_security_group_ids = local.security_groups

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", merge(local.user_data_common, {
    role         = "emulator"
    playbook_url = ""
    install_nats = false
    nats_conf    = ""
    nats_unit    = ""
    control_conf = ""
    control_unit = ""
    node_unit = templatefile("${path.module}/templates/loadlab-node.service.tftpl", {
      role          = "emulator"
      management_ip = local.management_ip
    })
  }))
  user_data_replace_on_change = true

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_size
  }

  tags = {
    Name = "${var.project}-emulator-${count.index + 1}"
    Role = "emulator"
  }

  depends_on = [aws_route_table_association.main]
}
