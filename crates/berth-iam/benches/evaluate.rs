//! Criterion benchmarks of the policy engine (figures and commands in BENCHMARKS.md):
//! (a) a typical ECR request, (b) a large policy set, (c) the decide line protocol.

use std::hint::black_box;
use std::sync::Arc;

use berth_iam::lines::Decider;
use berth_iam::{
    decide, evaluate, Action, CompiledPolicy, Context, PolicyKind, PolicySet, Principal, Request,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const IDENTITY_004: &str = include_str!("../../../examples/seeds/004-push-pull-identity.json");

/// Four statements: an IP-restricted allow, a tag-conditioned allow, a deny on deletes,
/// and a pull grant to another account.
const REPOSITORY_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "IPAllow", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
     "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}, "NotIpAddress": {"aws:SourceIp": "10.9.9.9/32"}}},
    {"Sid": "TeamPush", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:user/ci"}, "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"],
     "Condition": {"StringEquals": {"ecr:ResourceTag/team": "${aws:PrincipalTag/team}"}}},
    {"Sid": "NoDeletes", "Effect": "Deny", "Principal": "*", "Action": ["ecr:DeleteRepository", "ecr:BatchDeleteImage"]},
    {"Sid": "CrossAccountPull", "Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]}
  ]
}"#;

fn typical(c: &mut Criterion) {
    let identity = vec![Arc::new(
        CompiledPolicy::parse("identity", PolicyKind::Identity, IDENTITY_004).unwrap(),
    )];
    let resource = vec![Arc::new(
        CompiledPolicy::parse("repository", PolicyKind::Repository, REPOSITORY_POLICY).unwrap(),
    )];
    let principal = Principal::from_arn("arn:aws:iam::111111111111:user/ci").unwrap();
    let mut ctx = Context::new();
    ctx.insert("aws:SourceIp", "10.1.2.3");
    ctx.insert("aws:PrincipalTag/team", "red");
    ctx.insert("ecr:ResourceTag/team", "red");
    ctx.insert("aws:SecureTransport", "true");
    ctx.insert("aws:CurrentTime", "2026-11-22T12:00:00Z");
    principal.derive_context(&mut ctx);
    let action = Action::new("ecr:PutImage");
    let resource_arn = "arn:aws:ecr:us-east-1:111111111111:repository/my-app";
    let req = Request {
        principal: &principal,
        action: &action,
        resource: resource_arn,
        resource_account: "111111111111",
        context: &ctx,
    };
    let set = PolicySet {
        identity: &identity,
        resource: &resource,
        boundary: None,
        session: None,
    };
    assert_eq!(decide(&req, &set), berth_iam::Decision::Allow);

    let mut g = c.benchmark_group("a_typical_ecr_request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decide", |b| {
        b.iter(|| decide(black_box(&req), black_box(&set)))
    });
    let pull = Action::new("ecr:BatchGetImage");
    let pull_req = Request {
        action: &pull,
        ..req
    };
    g.bench_function("decide_pull_ip_condition", |b| {
        b.iter(|| decide(black_box(&pull_req), black_box(&set)))
    });
    let del = Action::new("ecr:DeleteRepository");
    let del_req = Request {
        action: &del,
        ..req
    };
    g.bench_function("decide_explicit_deny", |b| {
        b.iter(|| decide(black_box(&del_req), black_box(&set)))
    });
    g.bench_function("evaluate_with_explanation", |b| {
        b.iter(|| evaluate(black_box(&req), black_box(&set)))
    });
    g.bench_function("request_setup_and_decide", |b| {
        b.iter(|| {
            let mut ctx = Context::new();
            ctx.insert("aws:SourceIp", "10.1.2.3");
            ctx.insert("aws:PrincipalTag/team", "red");
            ctx.insert("ecr:ResourceTag/team", "red");
            let principal =
                Principal::from_arn(black_box("arn:aws:iam::111111111111:user/ci")).unwrap();
            principal.derive_context(&mut ctx);
            let action = Action::new(black_box("ecr:PutImage"));
            let req = Request {
                principal: &principal,
                action: &action,
                resource: resource_arn,
                resource_account: "111111111111",
                context: &ctx,
            };
            decide(&req, &set)
        })
    });
    g.finish();
}

/// 20 identity policies of 50 statements each: wildcard actions and resources, conditions.
pub fn large_policy_set() -> Vec<Arc<CompiledPolicy>> {
    let services = [
        "s3", "ec2", "lambda", "dynamodb", "sqs", "sns", "ecr", "logs", "kms", "iam",
    ];
    let verbs = [
        "Get", "Put", "Describe", "List", "Delete", "Create", "Update", "Batch",
    ];
    (0..20)
        .map(|p| {
            let stmts: Vec<String> = (0..50)
                .map(|s| {
                    let n = p * 50 + s;
                    let svc = services[n % services.len()];
                    let verb = verbs[(n / 3) % verbs.len()];
                    let effect = if n % 17 == 0 { "Deny" } else { "Allow" };
                    let resource = match n % 4 {
                        0 => format!("arn:aws:{svc}:us-east-1:111111111111:thing-{n}/*"),
                        1 => format!("arn:aws:{svc}:*:111111111111:res{n}*"),
                        2 => format!("arn:aws:{svc}:us-*-1:*:team-{}/*", n % 7),
                        _ => "*".to_string(),
                    };
                    let cond = match n % 5 {
                        0 => r#","Condition":{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","198.51.100.0/24"]}}"#.to_string(),
                        1 => format!(r#","Condition":{{"StringEquals":{{"aws:PrincipalTag/team":"team-{}"}}}}"#, n % 9),
                        2 => r#","Condition":{"Bool":{"aws:SecureTransport":"true"},"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#.to_string(),
                        3 => r#","Condition":{"ForAnyValue:StringLike":{"aws:TagKeys":["cost*","team"]}}"#.to_string(),
                        _ => String::new(),
                    };
                    format!(
                        r#"{{"Sid":"S{n}","Effect":"{effect}","Action":["{svc}:{verb}*","{svc}:{verb}Thing{n}"],"Resource":"{resource}"{cond}}}"#
                    )
                })
                .collect();
            let doc = format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, stmts.join(","));
            Arc::new(CompiledPolicy::parse(&format!("policy{p}"), PolicyKind::Identity, &doc).unwrap())
        })
        .collect()
}

fn large(c: &mut Criterion) {
    let identity = large_policy_set();
    assert_eq!(
        identity.iter().map(|p| p.statements.len()).sum::<usize>(),
        1000
    );
    let principal = Principal::from_arn("arn:aws:iam::111111111111:user/ci").unwrap();
    let mut ctx = Context::new();
    ctx.insert("aws:SourceIp", "192.0.2.10");
    ctx.insert("aws:PrincipalTag/team", "team-3");
    ctx.insert("aws:SecureTransport", "true");
    ctx.insert("aws:CurrentTime", "2026-11-22T12:00:00Z");
    principal.derive_context(&mut ctx);
    let set = PolicySet {
        identity: &identity,
        resource: &[],
        boundary: None,
        session: None,
    };
    let mut g = c.benchmark_group("b_20_policies_1000_statements");
    g.throughput(Throughput::Elements(1));
    for (name, action, resource) in [
        (
            "ecr_put_image",
            "ecr:PutImage",
            "arn:aws:ecr:us-east-1:111111111111:repository/team-3/app",
        ),
        (
            "s3_get_object",
            "s3:GetObject",
            "arn:aws:s3:us-east-1:111111111111:thing-0/x",
        ),
        ("unmatched_action", "sts:AssumeRole", "*"),
    ] {
        let action = Action::new(action);
        let req = Request {
            principal: &principal,
            action: &action,
            resource,
            resource_account: "111111111111",
            context: &ctx,
        };
        g.bench_function(name, |b| {
            b.iter(|| decide(black_box(&req), black_box(&set)))
        });
    }
    g.finish();
}

fn decide_lines(c: &mut Criterion) {
    let identity: String = IDENTITY_004
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let repo: String = REPOSITORY_POLICY
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let line = format!(
        r#"{{"id": 1, "principal": "arn:aws:iam::111111111111:user/ci", "action": "ecr:PutImage", "resource": "arn:aws:ecr:us-east-1:111111111111:repository/my-app", "resource_account": "111111111111", "context": {{"aws:SourceIp": "10.1.2.3", "aws:PrincipalTag/team": "red", "ecr:ResourceTag/team": "red"}}, "identity_policies": [{identity}], "resource_policy": {repo}}}"#
    );
    let mut d = Decider::new();
    let mut out = String::new();
    d.decide_line(&line, &mut out);
    assert!(out.contains("\"Allow\""), "{out}");
    let mut g = c.benchmark_group("c_decide_line");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cached_policies", |b| {
        b.iter(|| {
            out.clear();
            d.decide_line(black_box(&line), &mut out);
        })
    });
    g.bench_function("uncached_policies", |b| {
        b.iter(|| {
            let mut fresh = Decider::new();
            out.clear();
            fresh.decide_line(black_box(&line), &mut out);
        })
    });
    g.finish();
}

criterion_group!(benches, typical, large, decide_lines);
criterion_main!(benches);
