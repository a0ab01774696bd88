#!/usr/bin/env python3
"""Peer for the engine benchmarks: moto's IAM policy evaluator (Apache-2.0, pip install
moto) deciding benchmark (a)'s request: ecr:PutImage by user ci on repository my-app,
with seed 004's identity policy and the 4-statement repository policy of
crates/berth-iam/benches/evaluate.rs. moto evaluates one policy at a time (no
cross-account or principal logic), so this times its two policy evaluations per
decision: a lower bound on a complete evaluator's cost. Prints decisions/s (median of 5).

usage: python3 bench/peer-moto.py [ITERATIONS]
"""
import json
import statistics
import sys
import time
from pathlib import Path

from moto.iam.access_control import IAMPolicy, PermissionResult

ROOT = Path(__file__).resolve().parent.parent
identity = json.loads((ROOT / "examples/seeds/004-push-pull-identity.json").read_text())
bench_src = (ROOT / "crates/berth-iam/benches/evaluate.rs").read_text()
repo_text = bench_src.split('const REPOSITORY_POLICY: &str = r#"', 1)[1].split('"#;', 1)[0]
repository = json.loads(repo_text)
# moto wants a Resource in every statement; the repository policy's is its own repository.
for s in repository["Statement"]:
    s.setdefault("Resource", "arn:aws:ecr:us-east-1:111111111111:repository/my-app")

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
action = "ecr:PutImage"
resource = "arn:aws:ecr:us-east-1:111111111111:repository/my-app"
ctx = {"aws:SourceIp": "10.1.2.3", "aws:PrincipalTag/team": "red", "ecr:ResourceTag/team": "red"}


# Compiled once, evaluated many times (as the engine benchmark does).
identity_policy = IAMPolicy(json.dumps(identity))
repository_policy = IAMPolicy(json.dumps(repository))


def decide():
    i = identity_policy.is_action_permitted(action, resource, incoming_condition_values=ctx)
    r = repository_policy.is_action_permitted(action, resource, incoming_condition_values=ctx)
    if PermissionResult.DENIED in (i, r):
        return "ExplicitDeny"
    return "Allow" if PermissionResult.PERMITTED in (i, r) else "ImplicitDeny"


# moto reads a false condition as a deny, so its answer here may differ from IAM's Allow.
print(f"moto decides: {decide()}")
rates = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(N):
        decide()
    rates.append(N / (time.perf_counter() - t))
print(f"moto {__import__('moto').__version__}: median {statistics.median(rates):,.0f} decisions/s "
      f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
