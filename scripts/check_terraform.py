#!/usr/bin/env python3
"""Offline structural check of terraform/ with python-hcl2 (no providers, no AWS).

Parses every .tf file and asserts that the environment has the variables, resources and
outputs the playbooks and docs rely on, that the user-data templates set the file limits
and sysctls, and that every instance passes each variable the user-data template reads. Exit status 0 when everything holds, 1 otherwise (every problem is listed).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import hcl2

ROOT = Path(
    os.environ.get("CHECK_TERRAFORM_DIR")
    or Path(__file__).resolve().parent.parent / "terraform"
).resolve()

REQUIRED_FILES = [
    "versions.tf",
    "variables.tf",
    "network.tf",
    "security.tf",
    "instances.tf",
    "outputs.tf",
    "README.md",
]
REQUIRED_VARIABLES = [
    "region",
    "availability_zone",
    "key_name",
    "management_cidrs",
    "ami_id",
    "nats_count",
    "emulator_count",
    "instances_per_host",
    "management_instance_type",
    "nats_instance_type",
    "emulator_instance_type",
    "node_url",
    "emulator_url",
    "federation_broker_url",
    "stream_replicator_url",
]
# Variables that must be given by the user (no default).
VARIABLES_WITHOUT_DEFAULT = ["key_name", "management_cidrs", "node_url"]
SINGLE_RESOURCES = [
    "aws_vpc",
    "aws_subnet",
    "aws_internet_gateway",
    "aws_route_table",
    "aws_route_table_association",
]
INSTANCES = {"management": None, "nats": "var.nats_count", "emulator": "var.emulator_count"}
LIST_OUTPUTS = ["nats", "emulators", "management"]
TEMPLATE_PATTERNS = {
    "net.core.somaxconn = 4096": r"net\.core\.somaxconn\s*=\s*4096\b",
    "net.ipv4.tcp_max_syn_backlog = 8192": r"net\.ipv4\.tcp_max_syn_backlog\s*=\s*8192\b",
    "net.ipv4.ip_local_port_range = 1024 65000": r"net\.ipv4\.ip_local_port_range\s*=\s*1024\s+65000\b",
    "fs.file-max": r"fs\.file-max\s*=\s*\d+",
    "fs.nr_open": r"fs\.nr_open\s*=\s*\d+",
    "LimitNOFILE=1048576": r"LimitNOFILE=1048576\b",
    "nofile in limits.d": r"\bnofile\s+1048576\b",
    "loadlab-node --server <management>:4222": r"loadlab-node\s+--server\s+\S+:4222",
    "--identity": r"--identity\s+\S+",
    "--fact role=": r"--fact\s+role=\S+",
}

problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)


def unquote(value):
    """python-hcl2 v8 keeps the quotes of strings and keys; v7 does not. Accept both."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def norm(value):
    """Strips v8's bookkeeping keys and quotes so the checks read like the HCL."""
    if isinstance(value, dict):
        return {
            unquote(k): norm(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(value, list):
        return [norm(v) for v in value]
    return unquote(value)


def blocks(doc: dict, kind: str) -> list[dict]:
    """The labelled blocks of one kind, e.g. every `variable` as {name: body}."""
    return [b for b in doc.get(kind, []) if isinstance(b, dict)]


def template_variables(text: str) -> set[str]:
    """The variables a template reads: `${name}` interpolations (not the `$${...}` escapes) and
    the names in `%{ if ... }` directives."""
    names = set(re.findall(r"(?<!\$)\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}", text))
    for cond in re.findall(r"%\{\s*if\s+([^}]*?)~?\s*\}", text):
        cond = re.sub(r'"[^"]*"', "", cond)
        names.update(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b", cond))
    return names - {"true", "false", "null"}


def main() -> int:
    if not ROOT.is_dir():
        print(f"check_terraform: {ROOT} does not exist", file=sys.stderr)
        return 1

    for name in REQUIRED_FILES:
        if not (ROOT / name).is_file():
            problem(f"missing file terraform/{name}")

    tf_files = sorted(ROOT.rglob("*.tf"))
    if not tf_files:
        problem("no .tf files")
    variables: dict[str, dict] = {}
    resources: dict[str, dict[str, dict]] = {}
    data_sources: dict[str, dict[str, dict]] = {}
    outputs: dict[str, dict] = {}
    locals_: set[str] = set()
    common: set[str] = set()  # keys of local.user_data_common
    terraform_blocks: list[dict] = []
    raw_text = ""
    for path in tf_files:
        text = path.read_text()
        raw_text += text + "\n"
        try:
            with path.open() as fh:
                doc = norm(hcl2.load(fh))
        except Exception as exc:  # lark raises several exception types
            problem(f"{path.relative_to(ROOT.parent)}: does not parse: {exc}")
            continue
        for b in blocks(doc, "variable"):
            variables.update(b)
        for b in blocks(doc, "output"):
            outputs.update(b)
        for b in blocks(doc, "locals"):
            locals_.update(b.keys())
            if isinstance(b.get("user_data_common"), dict):
                common.update(b["user_data_common"].keys())
        for b in blocks(doc, "resource"):
            for rtype, named in b.items():
                resources.setdefault(rtype, {}).update(named)
        for b in blocks(doc, "data"):
            for dtype, named in b.items():
                data_sources.setdefault(dtype, {}).update(named)
        terraform_blocks.extend(blocks(doc, "terraform"))

    # terraform block: version constraint and the aws provider
    if not terraform_blocks:
        problem("no terraform {} block")
    else:
        tb = terraform_blocks[0]
        if not re.search(r">=\s*1\.([5-9]|\d\d)", str(tb.get("required_version", ""))):
            problem("terraform.required_version should be >= 1.5")
        providers = tb.get("required_providers", [{}])
        providers = providers[0] if isinstance(providers, list) and providers else providers
        aws = providers.get("aws") if isinstance(providers, dict) else None
        if not aws or "hashicorp/aws" not in str(aws):
            problem("required_providers lacks hashicorp/aws")

    # variables
    for name in REQUIRED_VARIABLES:
        if name not in variables:
            problem(f"missing variable {name}")
    for name in VARIABLES_WITHOUT_DEFAULT:
        if name in variables and "default" in variables[name]:
            problem(f"variable {name} must not have a default (the user has to give it)")
    for name, body in variables.items():
        if not body.get("description"):
            problem(f"variable {name} has no description")

    # every var.X and local.X used is declared
    for ref in sorted(set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)", raw_text))):
        if ref not in variables:
            problem(f"var.{ref} is used but not declared")
    for ref in sorted(set(re.findall(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)", raw_text))):
        if ref not in locals_:
            problem(f"local.{ref} is used but not defined")

    # resources
    for rtype in SINGLE_RESOURCES:
        if not resources.get(rtype):
            problem(f"missing resource {rtype}")
    groups = resources.get("aws_security_group", {})
    if len(groups) < 2:
        problem(f"need at least 2 aws_security_group resources, found {len(groups)}")
    ingress = [rule for g in groups.values() for rule in g.get("ingress", [])]
    if not any(rule.get("self") is True for rule in ingress):
        problem("no security group rule allowing all traffic within the group (self = true)")
    if not any(
        rule.get("from_port") == 22 and "var.management_cidrs" in str(rule.get("cidr_blocks"))
        for rule in ingress
    ):
        problem("no ssh (22) rule from var.management_cidrs")
    open_ports = {rule.get("from_port") for rule in ingress}
    for port in (4222, 6222, 7422, 8222):
        if port not in open_ports:
            problem(f"no security group rule for NATS port {port}")

    instances = resources.get("aws_instance", {})
    for name, count_ref in INSTANCES.items():
        body = instances.get(name)
        if body is None:
            problem(f"missing resource aws_instance.{name}")
            continue
        if "count" not in body:
            problem(f"aws_instance.{name} has no count")
        elif count_ref and count_ref not in str(body["count"]):
            problem(f"aws_instance.{name} count should use {count_ref}, is {body['count']}")
        if "templatefile(" not in str(body.get("user_data", "")):
            problem(f"aws_instance.{name} user_data does not use templatefile()")
        for key in ("ami", "instance_type", "key_name", "subnet_id", "vpc_security_group_ids"):
            if key not in body:
                problem(f"aws_instance.{name} lacks {key}")
    if not data_sources.get("aws_ami"):
        problem("missing data source aws_ami (Debian 12 default image)")
    elif "debian-12" not in str(data_sources["aws_ami"]):
        problem("the aws_ami data source does not look for debian-12 images")

    # outputs
    for name in LIST_OUTPUTS:
        body = outputs.get(name)
        if body is None:
            problem(f"missing output {name}")
        elif "[*]" not in str(body.get("value", "")):
            problem(f"output {name} should be a list (a [*] splat of aws_instance)")

    # templates referenced exist, and together set the limits and sysctls
    for ref in sorted(set(re.findall(r"templates/([A-Za-z0-9_.-]+\.tftpl)", raw_text))):
        if not (ROOT / "templates" / ref).is_file():
            problem(f"templatefile() refers to missing templates/{ref}")
    templates = sorted((ROOT / "templates").glob("*.tftpl"))
    if not templates:
        problem("no templates/*.tftpl")
    template_text = "\n".join(t.read_text() for t in templates)
    for label, pattern in TEMPLATE_PATTERNS.items():
        if not re.search(pattern, template_text):
            problem(f"user-data templates lack {label}")

    # every variable the user-data template reads is passed by each aws_instance, either through
    # local.user_data_common or in the instance's own merge() map
    user_data = ROOT / "templates" / "user-data.sh.tftpl"
    if not common:
        problem("locals lack the user_data_common map")
    if user_data.is_file():
        for name in sorted(template_variables(user_data.read_text())):
            for inst, body in instances.items():
                passed = str(body.get("user_data", "")).partition("local.user_data_common")[2]
                if name not in common and not re.search(rf"\b{name}\s*=", passed):
                    problem(f"aws_instance.{inst} does not pass {name} to user-data.sh.tftpl")

    # the docs must not pretend apply was run
    readme = ROOT / "README.md"
    if readme.is_file() and "not" not in readme.read_text().lower():
        problem("terraform/README.md should say what was not verified")

    if problems:
        for p in problems:
            print(f"check_terraform: {p}", file=sys.stderr)
        print(f"check_terraform: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(
        f"check_terraform: ok ({len(tf_files)} .tf files, {len(variables)} variables, "
        f"{sum(len(v) for v in resources.values())} resources, {len(outputs)} outputs, "
        f"{len(templates)} templates)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
