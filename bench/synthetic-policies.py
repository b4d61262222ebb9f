#!/usr/bin/env python3
"""Writes the shipped policies plus COUNT synthetic ones into DIR, the same
three kinds in turn as the Criterion benchmark (benches/stages.rs): identity
permits scoped to another team's group with a bandwidth condition; identity
permits scoped to everyone, matching an ARN pattern of another team's
instances; guardrail forbids scoped to everyone, matching a region, an ARN
pattern and a source range.

Usage: bench/synthetic-policies.py COUNT DIR
"""
import pathlib
import shutil
import sys

count, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
shipped = pathlib.Path(__file__).resolve().parent.parent / "policies"
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(shipped, out)
identity, control = [], []
for i in range(count):
    if i % 3 == 0:
        identity.append(
            f'@id("identity.team-{i}")\n'
            f'permit (principal in Ram::Group::"Team{i}", action == Action::"ecs:ModifyInstanceNetworkSpec", resource)\n'
            f'when {{ resource.region == "cn-hangzhou" && context.request has internet_max_bandwidth_out'
            f' && context.request.internet_max_bandwidth_out <= {i % 200} }};\n')
    elif i % 3 == 1:
        identity.append(
            f'@id("identity.instances-{i}")\n'
            f'permit (principal, action == Action::"ecs:ModifyInstanceNetworkSpec", resource)\n'
            f'when {{ resource.arn like "acs:ecs:*:*:instance/i-team{i}-*" }};\n')
    else:
        control.append(
            f'@id("control.range-{i}")\nforbid (principal, action, resource)\n'
            f'when {{ resource.arn like "acs:ecs:cn-shanghai:*:instance/i-team{i}-*"'
            f' && context["acs:SourceIp"].isInRange(ip("172.{i % 256}.0.0/16")) }};\n')
(out / "identity" / "synthetic.cedar").write_text("".join(identity))
(out / "control" / "synthetic.cedar").write_text("".join(control))
