//! The decision logic: the worked examples of the spec (iam-policy.md §8), the
//! same-/cross-account rules, boundaries, session policies, NotPrincipal and the reason
//! sentences.

mod common;

use berth_iam::{Cause, Decision, PolicyType};
use common::*;

const ALLOW_ECR: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
const ALLOW_S3: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

fn alice() -> String {
    user(A, "alice")
}

#[test]
fn worked_example_01_identity_allow() {
    let s = scenario(&alice(), "ecr:BatchGetImage", REPO).identity(ALLOW_ECR);
    assert_eq!(s.decision(), Decision::Allow);
}

#[test]
fn worked_example_02_same_account_user_named_in_repository_policy() {
    let s = scenario(&alice(), "ecr:BatchGetImage", REPO).resource_policy(&repo_stmt(
        "Allow",
        r#"{"AWS":"arn:aws:iam::111111111111:user/alice"}"#,
        "ecr:BatchGetImage",
        "",
    ));
    assert_eq!(s.decision(), Decision::Allow);
}

#[test]
fn worked_example_03_account_principal_only_delegates() {
    let s = scenario(&alice(), "ecr:BatchGetImage", REPO).resource_policy(&repo_stmt(
        "Allow",
        r#"{"AWS":"111111111111"}"#,
        "ecr:BatchGetImage",
        "",
    ));
    let ev = s.evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert_eq!(ev.cause, Cause::NotAllowed(PolicyType::Identity));
}

#[test]
fn worked_example_04_explicit_deny_in_repository_policy_wins() {
    let ev = scenario(&alice(), "ecr:BatchGetImage", REPO)
        .identity(ALLOW_ECR)
        .resource_policy(&repo_stmt("Deny", r#""*""#, "ecr:BatchGetImage", ""))
        .evaluate();
    assert_eq!(ev.decision, Decision::ExplicitDeny);
    assert_eq!(
        ev.reason,
        "User: arn:aws:iam::111111111111:user/alice is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:111111111111:repository/app with an explicit deny in a resource-based policy"
    );
    assert_eq!(ev.statements.len(), 1);
    assert_eq!(ev.statements[0].policy_type, PolicyType::Resource);
}

#[test]
fn worked_example_05_role_grant_limited_by_boundary() {
    let s = scenario(&session(A, "dev", "s1"), "ecr:BatchGetImage", REPO)
        .boundary(ALLOW_S3)
        .resource_policy(&repo_stmt(
            "Allow",
            r#"{"AWS":"arn:aws:iam::111111111111:role/dev"}"#,
            "ecr:BatchGetImage",
            "",
        ));
    let ev = s.evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert_eq!(ev.cause, Cause::NotAllowed(PolicyType::Boundary));
}

#[test]
fn worked_example_06_session_grant_bypasses_boundary() {
    let s = scenario(&session(A, "dev", "s1"), "ecr:BatchGetImage", REPO)
        .boundary(ALLOW_S3)
        .session(ALLOW_S3)
        .resource_policy(&repo_stmt(
            "Allow",
            r#"{"AWS":"arn:aws:sts::111111111111:assumed-role/dev/s1"}"#,
            "ecr:BatchGetImage",
            "",
        ));
    assert_eq!(s.decision(), Decision::Allow);
}

fn cross_identity() -> String {
    identity_stmt(
        "Allow",
        "ecr:BatchGetImage",
        "arn:aws:ecr:*:111111111111:repository/*",
        "",
    )
}

#[test]
fn worked_examples_07_to_09_cross_account_needs_both_sides() {
    let caller = session(B, "ci", "x");
    let repo_policy = repo_stmt(
        "Allow",
        r#"{"AWS":"222222222222"}"#,
        "ecr:BatchGetImage",
        "",
    );
    let both = scenario(&caller, "ecr:BatchGetImage", REPO)
        .identity(&cross_identity())
        .resource_policy(&repo_policy);
    assert_eq!(both.decision(), Decision::Allow);

    let ev = scenario(&caller, "ecr:BatchGetImage", REPO)
        .identity(&cross_identity())
        .evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert_eq!(
        ev.reason,
        "User: arn:aws:sts::222222222222:assumed-role/ci/x is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:111111111111:repository/app because no resource-based policy allows the ecr:BatchGetImage action"
    );

    let ev = scenario(&caller, "ecr:BatchGetImage", REPO)
        .resource_policy(&repo_policy)
        .evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert!(ev
        .reason
        .ends_with("because no identity-based policy allows the ecr:BatchGetImage action"));
}

#[test]
fn worked_example_10_star_principal_across_accounts() {
    let s = scenario(&user(B, "bob"), "ecr:BatchGetImage", REPO)
        .identity(ALLOW_ECR)
        .resource_policy(&repo_stmt("Allow", r#""*""#, "ecr:BatchGetImage", ""));
    assert_eq!(s.decision(), Decision::Allow);
    // Without bob's own allow, `*` is not enough across accounts.
    let s = scenario(&user(B, "bob"), "ecr:BatchGetImage", REPO).resource_policy(&repo_stmt(
        "Allow",
        r#""*""#,
        "ecr:BatchGetImage",
        "",
    ));
    assert_eq!(s.decision(), Decision::ImplicitDeny);
    // In the same account, `*` grants on its own.
    let s = scenario(&alice(), "ecr:BatchGetImage", REPO).resource_policy(&repo_stmt(
        "Allow",
        r#""*""#,
        "ecr:BatchGetImage",
        "",
    ));
    assert_eq!(s.decision(), Decision::Allow);
}

#[test]
fn worked_example_11_ip_condition_false() {
    let s = scenario(&alice(), "ecr:BatchGetImage", REPO)
        .identity(&identity_stmt(
            "Allow",
            "ecr:*",
            "*",
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
        ))
        .ctx("aws:SourceIp", "198.51.100.7");
    assert_eq!(s.decision(), Decision::ImplicitDeny);
}

#[test]
fn worked_example_12_principal_tag_variable_against_resource_tag() {
    let policy = identity_stmt(
        "Allow",
        "ecr:*",
        "*",
        r#"{"StringEquals":{"ecr:ResourceTag/team":"${aws:PrincipalTag/team}"}}"#,
    );
    let s = scenario(&alice(), "ecr:BatchGetImage", REPO)
        .identity(&policy)
        .ctx("aws:PrincipalTag/team", "red");
    assert_eq!(
        s.clone().ctx("ecr:ResourceTag/team", "blue").decision(),
        Decision::ImplicitDeny
    );
    assert_eq!(
        s.ctx("ecr:ResourceTag/team", "red").decision(),
        Decision::Allow
    );
}

#[test]
fn worked_example_13_missing_tag_with_negated_deny() {
    let s = scenario(&session(A, "dev", "s1"), "ecr:BatchGetImage", REPO)
        .identity(ALLOW_ECR)
        .identity(&identity_stmt(
            "Deny",
            "ecr:*",
            "*",
            r#"{"StringNotEquals":{"aws:PrincipalTag/team":"red"}}"#,
        ));
    assert_eq!(s.decision(), Decision::ExplicitDeny);
}

#[test]
fn worked_examples_14_15_create_repository_with_tag_keys() {
    let policy = identity_stmt(
        "Allow",
        "ecr:CreateRepository",
        "*",
        r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]}}"#,
    );
    let repo = "arn:aws:ecr:us-east-1:111111111111:repository/new";
    // With tags, the dependent ecr:TagResource is not allowed by this policy.
    let tag = scenario(&alice(), "ecr:TagResource", repo)
        .identity(&policy)
        .ctx_list("aws:TagKeys", &["env"]);
    assert_eq!(tag.decision(), Decision::ImplicitDeny);
    // Without tags, ForAllValues over a missing key is true.
    let create = scenario(&alice(), "ecr:CreateRepository", repo).identity(&policy);
    assert_eq!(create.decision(), Decision::Allow);
}

#[test]
fn worked_example_16_no_resource_level_permission() {
    let policy = identity_stmt(
        "Allow",
        "ecr:GetAuthorizationToken",
        "arn:aws:ecr:us-east-1:111111111111:repository/*",
        "",
    );
    let s = scenario(&alice(), "ecr:GetAuthorizationToken", "*").identity(&policy);
    assert_eq!(s.decision(), Decision::ImplicitDeny);
    let ok = identity_stmt("Allow", "ecr:GetAuthorizationToken", "*", "");
    let s = scenario(&alice(), "ecr:GetAuthorizationToken", "*").identity(&ok);
    assert_eq!(s.decision(), Decision::Allow);
}

#[test]
fn worked_example_17_federated_user_without_session_policy() {
    let fed = format!("arn:aws:sts::{A}:federated-user/temp1");
    let s = scenario(&fed, "ecr:BatchGetImage", REPO).identity(ALLOW_ECR);
    assert_eq!(s.decision(), Decision::ImplicitDeny);
    let s = scenario(&fed, "ecr:BatchGetImage", REPO)
        .identity(ALLOW_ECR)
        .session(ALLOW_ECR);
    assert_eq!(s.decision(), Decision::Allow);
}

#[test]
fn worked_example_18_not_principal_deny_with_boundary() {
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111111111111:user/carol","111111111111"]},"Action":"ecr:*"}]}"#;
    let carol = user(A, "carol");
    let with_boundary = scenario(&carol, "ecr:BatchGetImage", REPO)
        .identity(ALLOW_ECR)
        .boundary(ALLOW_ECR)
        .resource_policy(deny);
    assert_eq!(with_boundary.decision(), Decision::ExplicitDeny);
    let without = scenario(&carol, "ecr:BatchGetImage", REPO)
        .identity(ALLOW_ECR)
        .resource_policy(deny);
    assert_eq!(without.decision(), Decision::Allow);
}

#[test]
fn worked_example_19_variables_literal_without_version() {
    let doc = r#"{"Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:us-east-1:111111111111:repository/${aws:username}"}]}"#;
    let repo_alice = "arn:aws:ecr:us-east-1:111111111111:repository/alice";
    assert_eq!(
        scenario(&alice(), "ecr:BatchGetImage", repo_alice)
            .identity(doc)
            .decision(),
        Decision::ImplicitDeny
    );
    let v2012 = doc.replace("{\"Statement", "{\"Version\":\"2012-10-17\",\"Statement");
    assert_eq!(
        scenario(&alice(), "ecr:BatchGetImage", repo_alice)
            .identity(&v2012)
            .decision(),
        Decision::Allow
    );
}

#[test]
fn worked_example_20_root_subject_to_explicit_deny() {
    let root = format!("arn:aws:iam::{A}:root");
    let s = scenario(&root, "ecr:BatchGetImage", REPO)
        .resource_policy(&repo_stmt("Deny", r#""*""#, "ecr:*", ""));
    assert_eq!(s.decision(), Decision::ExplicitDeny);
    let s = scenario(&root, "ecr:BatchGetImage", REPO);
    assert_eq!(s.decision(), Decision::Allow);
    // The root of another account needs the resource side, and has its identity side.
    let other_root = format!("arn:aws:iam::{B}:root");
    assert_eq!(
        scenario(&other_root, "ecr:BatchGetImage", REPO).decision(),
        Decision::ImplicitDeny
    );
    let s = scenario(&other_root, "ecr:BatchGetImage", REPO).resource_policy(&repo_stmt(
        "Allow",
        r#"{"AWS":"arn:aws:iam::222222222222:root"}"#,
        "ecr:*",
        "",
    ));
    assert_eq!(s.decision(), Decision::Allow);
}

#[test]
fn session_policies_limit_identity_grants() {
    let s = scenario(&session(A, "dev", "s1"), "ecr:PutImage", REPO)
        .identity(ALLOW_ECR)
        .session(&identity_stmt("Allow", "ecr:BatchGetImage", "*", ""));
    let ev = s.evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert!(ev
        .reason
        .ends_with("because no session policy allows the ecr:PutImage action"));
    let s = scenario(&session(A, "dev", "s1"), "ecr:BatchGetImage", REPO)
        .identity(ALLOW_ECR)
        .session(&identity_stmt("Allow", "ecr:BatchGetImage", "*", ""));
    assert_eq!(s.decision(), Decision::Allow);
}

#[test]
fn boundaries_limit_identity_grants_not_user_grants() {
    let ev = scenario(&alice(), "ecr:PutImage", REPO)
        .identity(ALLOW_ECR)
        .boundary(ALLOW_S3)
        .evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert!(ev
        .reason
        .ends_with("because no permissions boundary allows the ecr:PutImage action"));
    // A repository policy naming the user grants regardless of the boundary.
    let s = scenario(&alice(), "ecr:PutImage", REPO)
        .boundary(ALLOW_S3)
        .resource_policy(&repo_stmt(
            "Allow",
            r#"{"AWS":"arn:aws:iam::111111111111:user/alice"}"#,
            "ecr:PutImage",
            "",
        ));
    assert_eq!(s.decision(), Decision::Allow);
    // A deny in the boundary is an explicit deny.
    let s = scenario(&alice(), "ecr:PutImage", REPO)
        .identity(ALLOW_ECR)
        .boundary(&identity_stmt("Deny", "ecr:PutImage", "*", ""));
    assert_eq!(s.decision(), Decision::ExplicitDeny);
}

#[test]
fn role_paths_come_from_principal_arn() {
    let role_grant = repo_stmt(
        "Allow",
        r#"{"AWS":"arn:aws:iam::111111111111:role/team/dev"}"#,
        "ecr:*",
        "",
    );
    let s =
        scenario(&session(A, "dev", "s1"), "ecr:BatchGetImage", REPO).resource_policy(&role_grant);
    assert_eq!(s.clone().decision(), Decision::ImplicitDeny);
    assert_eq!(
        s.ctx(
            "aws:PrincipalArn",
            "arn:aws:iam::111111111111:role/team/dev"
        )
        .decision(),
        Decision::Allow
    );
}

#[test]
fn not_principal_deny_needs_every_level_listed() {
    let deny = |entries: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"ecr:*"}},{{"Effect":"Deny","NotPrincipal":{{"AWS":[{entries}]}},"Action":"ecr:*"}}]}}"#
        )
    };
    let s1 = session(A, "dev", "s1");
    let only_session = deny(r#""arn:aws:sts::111111111111:assumed-role/dev/s1""#);
    let all_levels = deny(
        r#""arn:aws:sts::111111111111:assumed-role/dev/s1","arn:aws:iam::111111111111:role/dev","111111111111""#,
    );
    assert_eq!(
        scenario(&s1, "ecr:BatchGetImage", REPO)
            .resource_policy(&only_session)
            .decision(),
        Decision::ExplicitDeny
    );
    assert_eq!(
        scenario(&s1, "ecr:BatchGetImage", REPO)
            .resource_policy(&all_levels)
            .decision(),
        Decision::Allow
    );
    // Someone else is denied.
    assert_eq!(
        scenario(&alice(), "ecr:BatchGetImage", REPO)
            .resource_policy(&all_levels)
            .decision(),
        Decision::ExplicitDeny
    );
}

/// `NotPrincipal` with `Allow` is unsupported (IAM User Guide: "NotPrincipal must be used
/// with \"Effect\":\"Deny\""): evaluated anyway, the statement grants nothing, to
/// nobody — neither to those it does not list nor to those it does.
#[test]
fn not_principal_allow_grants_nothing() {
    let p = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111111111111:user/mallory"},"Action":"ecr:*"}]}"#;
    for who in [
        alice(),
        user(A, "mallory"),
        user(B, "bob"),
        session(A, "dev", "s1"),
        format!("arn:aws:sts::{A}:federated-user/temp1"),
        "codebuild.amazonaws.com".to_string(),
    ] {
        let ev = scenario(&who, "ecr:BatchGetImage", REPO)
            .resource_policy(p)
            .evaluate();
        assert_eq!(ev.decision, Decision::ImplicitDeny, "{who}");
        assert!(ev.statements.is_empty(), "{who}: {:?}", ev.statements);
    }
    // Next to an identity grant it takes nothing away either.
    assert_eq!(
        scenario(&alice(), "ecr:BatchGetImage", REPO)
            .identity(ALLOW_ECR)
            .resource_policy(p)
            .decision(),
        Decision::Allow
    );
    // From another account: the identity side allows, the resource side does not.
    let ev = scenario(&user(B, "bob"), "ecr:BatchGetImage", REPO)
        .identity(ALLOW_ECR)
        .resource_policy(p)
        .evaluate();
    assert_eq!(ev.cause, Cause::NotAllowed(PolicyType::Resource));
}

/// The issue's example: `ForAnyValue:StringEqualsIfExists` on `aws:TagKeys` does not let
/// through a request without tags (IfExists does not rescue ForAnyValue).
#[test]
fn for_any_value_if_exists_does_not_allow_untagged_requests() {
    let policy = identity_stmt(
        "Allow",
        "ecr:CreateRepository",
        "*",
        r#"{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":["team"]}}"#,
    );
    let untagged = scenario(&alice(), "ecr:CreateRepository", REPO).identity(&policy);
    assert_eq!(untagged.decision(), Decision::ImplicitDeny);
    let tagged = untagged.clone().ctx_list("aws:TagKeys", &["team", "env"]);
    assert_eq!(tagged.decision(), Decision::Allow);
    // As a Deny it does not deny the untagged request either.
    let deny = identity_stmt(
        "Deny",
        "ecr:CreateRepository",
        "*",
        r#"{"ForAnyValue:StringNotEqualsIfExists":{"aws:TagKeys":["team"]}}"#,
    );
    let s = scenario(&alice(), "ecr:CreateRepository", REPO)
        .identity(ALLOW_ECR)
        .identity(&deny);
    assert_eq!(s.decision(), Decision::Allow);
    assert_eq!(
        s.ctx_list("aws:TagKeys", &["cost"]).decision(),
        Decision::ExplicitDeny
    );
}

/// A GetFederationToken session without a session policy has no permissions: not from
/// the identity policies of the user that federated, and not from a resource policy that
/// names that user (which is limited by the session policy). Only a resource policy that
/// names the federated-user session itself grants.
#[test]
fn federated_user_without_session_policy_has_no_permissions() {
    use berth_iam::{
        decide, Action, CompiledPolicy, Context, PolicyKind, PolicySet, Principal, Request,
    };
    use std::sync::Arc;
    let fed = format!("arn:aws:sts::{A}:federated-user/temp1");
    let mut principal = Principal::from_arn(&fed).unwrap();
    principal.federating_user_arn = Some(alice().into());
    let mut ctx = Context::new();
    principal.settle_context(&mut ctx);
    let action = Action::new("ecr:BatchGetImage");
    let req = Request {
        principal: &principal,
        action: &action,
        resource: REPO,
        resource_account: A,
        context: &ctx,
    };
    let compile = |kind, doc: &str| Arc::new(CompiledPolicy::parse("p", kind, doc).unwrap());
    let identity = [compile(PolicyKind::Identity, ALLOW_ECR)];
    let names = |who: &str| {
        compile(
            PolicyKind::Repository,
            &repo_stmt(
                "Allow",
                &format!(r#"{{"AWS":"{who}"}}"#),
                "ecr:BatchGetImage",
                "",
            ),
        )
    };
    let decide_with = |resource: &[Arc<CompiledPolicy>], session: Option<&CompiledPolicy>| {
        decide(
            &req,
            &PolicySet {
                identity: &identity,
                resource,
                boundary: None,
                session,
            },
        )
    };
    assert_eq!(decide_with(&[], None), Decision::ImplicitDeny);
    assert_eq!(
        decide_with(&[names(&alice())], None),
        Decision::ImplicitDeny
    );
    assert_eq!(decide_with(&[names(A)], None), Decision::ImplicitDeny);
    assert_eq!(decide_with(&[names(&fed)], None), Decision::Allow);
    let session = compile(PolicyKind::Session, ALLOW_ECR);
    assert_eq!(decide_with(&[], Some(&session)), Decision::Allow);
    assert_eq!(
        decide_with(&[names(&alice())], Some(&session)),
        Decision::Allow
    );
}

#[test]
fn service_principals() {
    let p = r#"{"Version":"2012-10-17","Statement":[{"Sid":"CodeBuildAccess","Effect":"Allow","Principal":{"Service":"codebuild.amazonaws.com"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
    assert_eq!(
        scenario("codebuild.amazonaws.com", "ecr:BatchGetImage", REPO)
            .resource_policy(p)
            .decision(),
        Decision::Allow
    );
    assert_eq!(
        scenario("codebuild.amazonaws.com", "ecr:PutImage", REPO)
            .resource_policy(p)
            .decision(),
        Decision::ImplicitDeny
    );
    assert_eq!(
        scenario("lambda.amazonaws.com", "ecr:BatchGetImage", REPO)
            .resource_policy(p)
            .decision(),
        Decision::ImplicitDeny
    );
    assert_eq!(
        scenario(&alice(), "ecr:BatchGetImage", REPO)
            .resource_policy(p)
            .decision(),
        Decision::ImplicitDeny
    );
}

#[test]
fn actions_are_case_insensitive_and_not_action_inverts() {
    for action in [
        "ecr:BatchGetImage",
        "ECR:batchgetimage",
        "Ecr:BATCHGETIMAGE",
    ] {
        let s = scenario(&alice(), action, REPO).identity(&identity_stmt(
            "Allow",
            "ecr:batchGet*",
            "*",
            "",
        ));
        assert_eq!(s.decision(), Decision::Allow, "{action}");
    }
    let not_action = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"ecr:Delete*","Resource":"*"}]}"#;
    assert_eq!(
        scenario(&alice(), "ecr:PutImage", REPO)
            .identity(not_action)
            .decision(),
        Decision::Allow
    );
    assert_eq!(
        scenario(&alice(), "ecr:DeleteRepository", REPO)
            .identity(not_action)
            .decision(),
        Decision::ImplicitDeny
    );
    assert_eq!(
        scenario(&alice(), "s3:GetObject", "*")
            .identity(not_action)
            .decision(),
        Decision::Allow
    );
}

#[test]
fn not_resource_and_unresolvable_resource_variables() {
    let p = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","NotResource":"arn:aws:ecr:*:*:repository/prod-*"}]}"#;
    assert_eq!(
        scenario(&alice(), "ecr:PutImage", REPO)
            .identity(p)
            .decision(),
        Decision::Allow
    );
    let prod = "arn:aws:ecr:us-east-1:111111111111:repository/prod-api";
    assert_eq!(
        scenario(&alice(), "ecr:PutImage", prod)
            .identity(p)
            .decision(),
        Decision::ImplicitDeny
    );
    // A Resource entry whose variable has no value matches nothing (roles have no aws:username).
    let mine = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:*:*:repository/${aws:username}/*"}]}"#;
    let own = "arn:aws:ecr:us-east-1:111111111111:repository/alice/app";
    assert_eq!(
        scenario(&alice(), "ecr:PutImage", own)
            .identity(mine)
            .decision(),
        Decision::Allow
    );
    let ev = scenario(&session(A, "dev", "s1"), "ecr:PutImage", own)
        .identity(mine)
        .evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert_eq!(ev.missing_context_keys, vec!["aws:username"]);
}

#[test]
fn large_policies_use_the_action_index() {
    // 60 statements: the index must find the one that matters, wherever it is.
    let mut stmts: Vec<String> = (0..59)
        .map(|i| {
            format!(
                r#"{{"Effect":"Allow","Action":["s3:Get{i}","ec2:Describe{i}*"],"Resource":"*"}}"#
            )
        })
        .collect();
    stmts.insert(
        31,
        r#"{"Sid":"Push","Effect":"Allow","Action":["ecr:PutImage","ecr:Upload*"],"Resource":"*"}"#
            .into(),
    );
    stmts.push(r#"{"Sid":"NoDelete","Effect":"Deny","NotAction":["ecr:Get*","ecr:Put*","ecr:Upload*","s3:*","ec2:*"],"Resource":"*"}"#.into());
    let doc = format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        stmts.join(",")
    );
    let ev = scenario(&alice(), "ecr:PutImage", REPO)
        .identity(&doc)
        .evaluate();
    assert_eq!(ev.decision, Decision::Allow);
    assert_eq!(ev.statements.len(), 1);
    assert_eq!(ev.statements[0].index, 31);
    assert_eq!(ev.statements[0].sid.as_deref(), Some("Push"));
    assert_eq!(
        scenario(&alice(), "ecr:UploadLayerPart", REPO)
            .identity(&doc)
            .decision(),
        Decision::Allow
    );
    assert_eq!(
        scenario(&alice(), "ecr:DeleteRepository", REPO)
            .identity(&doc)
            .decision(),
        Decision::ExplicitDeny
    );
    assert_eq!(
        scenario(&alice(), "ec2:Describe7Things", "*")
            .identity(&doc)
            .decision(),
        Decision::Allow
    );
    assert_eq!(
        scenario(&alice(), "s3:get7", "*").identity(&doc).decision(),
        Decision::Allow
    );
    assert_eq!(
        scenario(&alice(), "s3:get77", "*")
            .identity(&doc)
            .decision(),
        Decision::ImplicitDeny
    );
}

#[test]
fn repository_policies_do_not_speak_of_registry_wide_actions() {
    // GetAuthorizationToken has no resource: a repository policy (no Resource) neither grants nor denies it.
    let grant = repo_stmt("Allow", r#""*""#, "ecr:*", "");
    assert_eq!(
        scenario(&alice(), "ecr:GetAuthorizationToken", "*")
            .resource_policy(&grant)
            .decision(),
        Decision::ImplicitDeny
    );
    let deny = repo_stmt("Deny", r#""*""#, "ecr:*", "");
    assert_eq!(
        scenario(&alice(), "ecr:GetAuthorizationToken", "*")
            .identity(ALLOW_ECR)
            .resource_policy(&deny)
            .decision(),
        Decision::Allow
    );
}

#[test]
fn context_cannot_swap_the_principal_identity() {
    // aws:PrincipalArn naming another role does not make the session a session of that role.
    let grant = repo_stmt(
        "Allow",
        r#"{"AWS":"arn:aws:iam::111111111111:role/admin"}"#,
        "ecr:*",
        "",
    );
    let s = scenario(&session(A, "dev", "s1"), "ecr:BatchGetImage", REPO)
        .resource_policy(&grant)
        .ctx("aws:PrincipalArn", "arn:aws:iam::111111111111:role/admin");
    assert_eq!(s.decision(), Decision::ImplicitDeny);
    // A unique id is taken only when it fits the principal.
    let by_id = repo_stmt("Allow", r#"{"AWS":"AROAEXAMPLEROLEID0001"}"#, "ecr:*", "");
    let session_id =
        scenario(&session(A, "dev", "s1"), "ecr:BatchGetImage", REPO).resource_policy(&by_id);
    assert_eq!(
        session_id
            .clone()
            .ctx("aws:userid", "AROAEXAMPLEROLEID0001:s1")
            .decision(),
        Decision::Allow
    );
    assert_eq!(
        session_id
            .ctx("aws:userid", "AROAEXAMPLEROLEID0001:other")
            .decision(),
        Decision::ImplicitDeny
    );
}

#[test]
fn variables_are_refused_where_iam_refuses_them() {
    use berth_iam::{parse_policy, PolicyKind};
    let action = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:${aws:username}","Resource":"*"}}"#;
    let e = parse_policy(action, PolicyKind::Identity)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Statement.Action: \"ecr:${aws:username}\" uses a policy variable"),
        "{e}"
    );
    let principal = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:user/${aws:username}"},"Action":"ecr:*"}}"#;
    assert!(parse_policy(principal, PolicyKind::Repository).is_err());
    // Under 2008-10-17 the same text is literal, hence allowed.
    let old = action.replace("2012-10-17", "2008-10-17");
    assert!(parse_policy(&old, PolicyKind::Identity).is_err()); // still two colons
    let key = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/${aws:username}":"x"}}}}"#;
    assert!(parse_policy(key, PolicyKind::Identity).is_err());
}

#[test]
fn explanations_name_the_deciding_statements() {
    use berth_iam::policy::ast::Effect;
    let identity = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Push","Effect":"Allow","Action":"ecr:PutImage","Resource":"*"},{"Sid":"Other","Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    let boundary = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Ecr","Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
    let ev = scenario(&alice(), "ecr:PutImage", REPO)
        .identity(identity)
        .boundary(boundary)
        .evaluate();
    assert_eq!(ev.decision, Decision::Allow);
    assert_eq!(ev.cause, Cause::Allowed(PolicyType::Identity));
    let got: Vec<(PolicyType, usize, Option<&str>, Effect)> = ev
        .statements
        .iter()
        .map(|m| (m.policy_type, m.index, m.sid.as_deref(), m.effect))
        .collect();
    assert_eq!(
        got,
        vec![
            (PolicyType::Identity, 0, Some("Push"), Effect::Allow),
            (PolicyType::Boundary, 0, Some("Ecr"), Effect::Allow),
        ]
    );
    // Spans point at the statement objects in the source text.
    let (start, end) = ev.statements[0].span;
    assert!(
        identity[start..end].starts_with("{\"Sid\":\"Push\"")
            && identity[start..end].ends_with('}')
    );

    // An explicit deny names only the denying statements, from every policy that denies.
    let ev = scenario(&alice(), "ecr:PutImage", REPO)
        .identity(&identity_stmt("Deny", "ecr:Put*", "*", ""))
        .identity(identity)
        .resource_policy(&repo_stmt("Deny", r#""*""#, "ecr:*", ""))
        .evaluate();
    assert_eq!(ev.decision, Decision::ExplicitDeny);
    assert_eq!(ev.cause, Cause::Denied(PolicyType::Identity));
    assert_eq!(ev.statements.len(), 2);
    assert!(ev.statements.iter().all(|m| m.effect == Effect::Deny));
    assert_eq!(
        ev.reason,
        "User: arn:aws:iam::111111111111:user/alice is not authorized to perform: ecr:PutImage on resource: arn:aws:ecr:us-east-1:111111111111:repository/app with an explicit deny in an identity-based policy"
    );

    // An implicit deny names none.
    let ev = scenario(&alice(), "ecr:DeleteRepository", REPO)
        .identity(identity)
        .evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert!(ev.statements.is_empty());
}

#[test]
fn reason_sentences_for_limits_and_roles() {
    let s1 = session(A, "dev", "s1");
    let role_grant = repo_stmt(
        "Allow",
        r#"{"AWS":"arn:aws:iam::111111111111:role/dev"}"#,
        "ecr:*",
        "",
    );
    let ev = scenario(&s1, "ecr:BatchGetImage", REPO)
        .resource_policy(&role_grant)
        .session(&identity_stmt("Allow", "s3:*", "*", ""))
        .evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert_eq!(
        ev.reason,
        "User: arn:aws:sts::111111111111:assumed-role/dev/s1 is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:111111111111:repository/app because no session policy allows the ecr:BatchGetImage action"
    );
    let ev = scenario(&s1, "ecr:BatchGetImage", REPO)
        .resource_policy(&role_grant)
        .evaluate();
    assert_eq!(ev.decision, Decision::Allow);
    assert_eq!(ev.cause, Cause::Allowed(PolicyType::Resource));
    assert_eq!(ev.statements.len(), 1);
    assert_eq!(ev.statements[0].policy_type, PolicyType::Resource);
}
