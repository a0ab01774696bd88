#!/usr/bin/env python3
"""Write N JSON lines for `berth policy decide`: ECR-style requests over a pool of
identity, repository, boundary and session policies (seeded, reproducible).

usage: decide-corpus.py [N] [SEED] [--unique] > corpus.jsonl

--unique makes every line's policies distinct (an Id naming the line), so that no
compiled policy can be reused: the worst case for `berth policy decide`.
"""
import json
import random
import sys

UNIQUE = "--unique" in sys.argv
ARGS = [a for a in sys.argv[1:] if a != "--unique"]
N = int(ARGS[0]) if len(ARGS) > 0 else 100_000
rng = random.Random(int(ARGS[1]) if len(ARGS) > 1 else 7)

A, B = "111111111111", "222222222222"
REPOS = ["app", "prod-api", "team-a/web", "team-b/worker", "my-app", "base/debian"]
ACTIONS = ["ecr:PutImage", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
           "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
           "ecr:CompleteLayerUpload", "ecr:DeleteRepository", "ecr:GetAuthorizationToken",
           "ecr:DescribeImages", "ecr:batchgetimage", "ECR:PutImage"]
PRINCIPALS = [f"arn:aws:iam::{A}:user/ci", f"arn:aws:iam::{A}:user/alice",
              f"arn:aws:sts::{A}:assumed-role/deploy/run-1", f"arn:aws:iam::{A}:root",
              f"arn:aws:iam::{B}:user/bob", f"arn:aws:sts::{B}:assumed-role/ci/x",
              f"arn:aws:iam::{B}:root"]


def doc(stmts, version="2012-10-17"):
    return {"Version": version, "Statement": stmts}


IDENTITY = [
    doc([{"Sid": "Auth", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
         {"Sid": "Pull", "Effect": "Allow", "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
          "Resource": f"arn:aws:ecr:us-east-1:{A}:repository/my-app"},
         {"Sid": "Push", "Effect": "Allow", "Action": ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"],
          "Resource": f"arn:aws:ecr:us-east-1:{A}:repository/my-app"}]),
    doc([{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]),
    doc([{"Effect": "Allow", "Action": ["ecr:Get*", "ecr:BatchGet*", "ecr:Describe*"], "Resource": f"arn:aws:ecr:*:{A}:repository/*"}]),
    doc([{"Effect": "Allow", "Action": "ecr:*", "Resource": f"arn:aws:ecr:us-east-1:{A}:repository/team-a/*"},
         {"Effect": "Deny", "Action": "ecr:Delete*", "Resource": "*"}]),
    doc([{"Effect": "Allow", "Action": "ecr:*", "Resource": "*",
          "Condition": {"StringEquals": {"ecr:ResourceTag/team": "${aws:PrincipalTag/team}"}}}]),
    doc([{"Effect": "Allow", "NotAction": ["ecr:Delete*", "ecr:SetRepositoryPolicy"], "Resource": "*",
          "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}}}]),
]
REPOSITORY = [
    None,
    doc([{"Sid": "AllowPull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]}], "2008-10-17"),
    doc([{"Sid": "AllowCrossAccountPush", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
          "Action": ["ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"]}], "2008-10-17"),
    doc([{"Sid": "IPAllow", "Effect": "Allow", "Principal": "*", "Action": "ecr:*",
          "Condition": {"NotIpAddress": {"aws:SourceIp": "54.240.143.188/32"}, "IpAddress": {"aws:SourceIp": "54.240.143.0/24"}}}]),
    doc([{"Sid": "DenyPull", "Effect": "Deny", "Principal": "*", "Action": ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]}], "2008-10-17"),
    doc([{"Sid": "Users", "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{A}:user/alice", f"arn:aws:iam::{A}:role/deploy"]}, "Action": "ecr:*"},
         {"Sid": "NoDelete", "Effect": "Deny", "Principal": "*", "Action": "ecr:DeleteRepository",
          "Condition": {"StringNotEquals": {"aws:PrincipalTag/role": "admin"}}}]),
]
BOUNDARY = [None, None, None, doc([{"Effect": "Allow", "Action": ["ecr:Get*", "ecr:Batch*"], "Resource": "*"}])]
SESSION = [None, None, None, doc([{"Effect": "Allow", "Action": "ecr:*", "Resource": f"arn:aws:ecr:*:*:repository/prod-*"}])]
IPS = ["54.240.143.7", "54.240.143.188", "10.1.2.3", "198.51.100.9", "2001:db8::1"]

out = sys.stdout
for i in range(N):
    principal = rng.choice(PRINCIPALS)
    action = rng.choice(ACTIONS)
    account = A if rng.random() < 0.85 else B
    resource = "*" if action.lower() == "ecr:getauthorizationtoken" else \
        f"arn:aws:ecr:us-east-1:{account}:repository/{rng.choice(REPOS)}"
    ctx = {"aws:SourceIp": rng.choice(IPS), "aws:SecureTransport": "true",
           "aws:CurrentTime": "2026-11-22T12:00:00Z"}
    if rng.random() < 0.5:
        ctx["aws:PrincipalTag/team"] = rng.choice(["red", "blue"])
        ctx["ecr:ResourceTag/team"] = rng.choice(["red", "blue"])
    line = {"id": i, "principal": principal, "action": action, "resource": resource,
            "resource_account": account if resource != "*" else principal.split(":")[4],
            "context": ctx,
            "identity_policies": rng.sample(IDENTITY, rng.randint(0, 2)),
            "resource_policy": rng.choice(REPOSITORY),
            "permissions_boundary": rng.choice(BOUNDARY),
            "session_policy": rng.choice(SESSION) if ":assumed-role/" in principal else None}
    if UNIQUE:
        for key in ("resource_policy", "permissions_boundary", "session_policy"):
            if line[key] is not None:
                line[key] = dict(line[key], Id=f"line-{i}")
        line["identity_policies"] = [dict(p, Id=f"line-{i}-{j}") for j, p in enumerate(line["identity_policies"])]
    out.write(json.dumps(line, separators=(",", ":")) + "\n")
