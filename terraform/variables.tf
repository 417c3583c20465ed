# ---------------------------------------------------------------------------------------------
# Where
# ---------------------------------------------------------------------------------------------

variable "region" {
  description = "AWS region, e.g. eu-central-1."
  type        = string
  default     = "eu-central-1"
}

variable "availability_zone" {
  description = "Availability zone of the subnet; null means \"<region>a\". One zone keeps broker traffic free of cross-AZ charges."
  type        = string
  default     = null
}

variable "project" {
  description = "Name prefix for every resource and the Project tag."
  type        = string
  default     = "choria-loadlab"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.project))
    error_message = "project must be lower case letters, digits and dashes (2-31 characters)."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR of the VPC."
  type        = string
  default     = "10.128.0.0/16"
}

variable "subnet_cidr" {
  description = "CIDR of the single public subnet; every host gets a fixed address in it (see instances.tf)."
  type        = string
  default     = "10.128.0.0/20"
}

variable "management_cidrs" {
  description = "CIDRs allowed to ssh to every host (your office or VPN address, e.g. [\"203.0.113.7/32\"])."
  type        = list(string)

  validation {
    condition     = length(var.management_cidrs) > 0 && alltrue([for c in var.management_cidrs : can(cidrhost(c, 0))])
    error_message = "management_cidrs must be a non-empty list of CIDRs."
  }
}

variable "key_name" {
  description = "Name of an existing EC2 key pair in the region, for ssh as the image's default user (admin on Debian)."
  type        = string
}

# ---------------------------------------------------------------------------------------------
# Image
# ---------------------------------------------------------------------------------------------

variable "ami_id" {
  description = "AMI for every host; null looks up the newest official Debian 12 image for var.architecture."
  type        = string
  default     = null
}

variable "architecture" {
  description = "CPU architecture of the image and the instance types: x86_64 or arm64. The binary URLs must match it."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

# ---------------------------------------------------------------------------------------------
# How many and how big
# ---------------------------------------------------------------------------------------------

variable "nats_count" {
  description = "NATS hosts; they are configured as one NATS cluster (routes on 6222). Use 1 or 3 or more."
  type        = number
  default     = 3

  validation {
    condition     = var.nats_count >= 1 && var.nats_count <= 50 && floor(var.nats_count) == var.nats_count
    error_message = "nats_count must be a whole number from 1 to 50."
  }
}

variable "emulator_count" {
  description = "Emulator hosts."
  type        = number
  default     = 5

  validation {
    condition     = var.emulator_count >= 1 && var.emulator_count <= 1000 && floor(var.emulator_count) == var.emulator_count
    error_message = "emulator_count must be a whole number from 1 to 1000."
  }
}

variable "instances_per_host" {
  description = "Emulated Choria daemons per emulator host; used for the expected_nodes and loadtest_command outputs and written to /etc/loadlab/loadlab.env."
  type        = number
  default     = 10000

  validation {
    condition     = var.instances_per_host >= 1 && var.instances_per_host <= 60000
    error_message = "instances_per_host must be from 1 to 60000."
  }
}

variable "management_instance_type" {
  description = "Instance type of the management host (control-plane NATS, playbook runner, measuring client)."
  type        = string
  default     = "m6i.large"
}

variable "nats_instance_type" {
  description = "Instance type of each NATS host."
  type        = string
  default     = "c6i.2xlarge"
}

variable "emulator_instance_type" {
  description = "Instance type of each emulator host."
  type        = string
  default     = "c6i.xlarge"
}

variable "root_volume_size" {
  description = "Root volume size in GiB (gp3) of every host."
  type        = number
  default     = 20
}

# ---------------------------------------------------------------------------------------------
# Software
# ---------------------------------------------------------------------------------------------

variable "node_url" {
  description = "http(s) URL of the loadlab-node daemon binary (installed on every host)."
  type        = string

  validation {
    condition     = can(regex("^https?://[^\\s'\"]+$", var.node_url))
    error_message = "node_url must be an http(s) URL without quotes or spaces."
  }
}

variable "node_sha256" {
  description = "SHA-256 of the loadlab-node binary; empty skips the check."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-fA-F0-9]{64})?$", var.node_sha256))
    error_message = "node_sha256 must be empty or 64 hex digits."
  }
}

variable "emulator_url" {
  description = "http(s) URL of the emulator binary, installed as /usr/local/bin/emulator on the management and emulator hosts; empty skips it (then use playbooks/setup-prereqs.yaml)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(https?://[^\\s'\"]+)?$", var.emulator_url))
    error_message = "emulator_url must be empty or an http(s) URL without quotes or spaces."
  }
}

variable "emulator_sha256" {
  description = "SHA-256 of the emulator binary; empty skips the check."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-fA-F0-9]{64})?$", var.emulator_sha256))
    error_message = "emulator_sha256 must be empty or 64 hex digits."
  }
}

variable "playbook_url" {
  description = "http(s) URL of the playbook runner binary, installed on the management host; empty skips it."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(https?://[^\\s'\"]+)?$", var.playbook_url))
    error_message = "playbook_url must be empty or an http(s) URL without quotes or spaces."
  }
}

variable "federation_broker_url" {
  description = "http(s) URL of the federation-broker binary, installed as /usr/local/bin/federation-broker (beside loadlab-node, where start_federation looks for it) on the NATS hosts; empty skips it."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(https?://[^\\s'\"]+)?$", var.federation_broker_url))
    error_message = "federation_broker_url must be empty or an http(s) URL without quotes or spaces."
  }
}

variable "federation_broker_sha256" {
  description = "SHA-256 of the federation-broker binary; empty skips the check."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-fA-F0-9]{64})?$", var.federation_broker_sha256))
    error_message = "federation_broker_sha256 must be empty or 64 hex digits."
  }
}

variable "stream_replicator_url" {
  description = "http(s) URL of the stream-replicator binary, installed as /usr/local/bin/stream-replicator on the management host; empty skips it."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(https?://[^\\s'\"]+)?$", var.stream_replicator_url))
    error_message = "stream_replicator_url must be empty or an http(s) URL without quotes or spaces."
  }
}

variable "stream_replicator_sha256" {
  description = "SHA-256 of the stream-replicator binary; empty skips the check."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-fA-F0-9]{64})?$", var.stream_replicator_sha256))
    error_message = "stream_replicator_sha256 must be empty or 64 hex digits."
  }
}

variable "nats_server_version" {
  description = "nats-server release installed from GitHub on the management and NATS hosts."
  type        = string
  default     = "2.10.22"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.nats_server_version))
    error_message = "nats_server_version must look like 2.10.22."
  }
}

variable "nats_autostart" {
  description = "Start the clustered nats-server (loadlab-nats.service) on the NATS hosts at boot. Leave false when the playbooks start NATS through the emulator agent (start-nats.yaml, loadtest.yaml)."
  type        = bool
  default     = false
}

variable "nats_max_connections" {
  description = "max_connections of each test nats-server (the nats-server default is 65536)."
  type        = number
  default     = 200000
}
