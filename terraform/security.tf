# Every host is in "internal" (all traffic between members) and "management" (ssh from
# var.management_cidrs). NATS hosts are also in "nats", which names the broker ports explicitly
# for the whole VPC (clients 4222, routes 6222, leaf nodes 7422, monitor 8222).

resource "aws_security_group" "internal" {
  name        = "${var.project}-internal"
  description = "All traffic between the hosts of this environment"
  vpc_id      = aws_vpc.main.id

  ingress {
    description = "All traffic from members of this group"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    self        = true
  }

  egress {
    description = "Anywhere (package and binary downloads)"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = {
    Name = "${var.project}-internal"
  }
}

resource "aws_security_group" "management" {
  name        = "${var.project}-management"
  description = "ssh from the operators' networks"
  vpc_id      = aws_vpc.main.id

  ingress {
    description = "ssh"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = var.management_cidrs
  }

  tags = {
    Name = "${var.project}-management"
  }
}

resource "aws_security_group" "nats" {
  name        = "${var.project}-nats"
  description = "NATS client, route, leaf node and monitor ports inside the VPC"
  vpc_id      = aws_vpc.main.id

  ingress {
    description = "NATS clients"
    from_port   = 4222
    to_port     = 4222
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }

  ingress {
    description = "NATS cluster routes"
    from_port   = 6222
    to_port     = 6222
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }

  ingress {
    description = "NATS leaf nodes"
    from_port   = 7422
    to_port     = 7422
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }

  ingress {
    description = "NATS HTTP monitor"
    from_port   = 8222
    to_port     = 8222
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }

  tags = {
    Name = "${var.project}-nats"
  }
}
