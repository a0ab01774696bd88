//! Every policy of the seed documents (examples/seeds/) with requests that are allowed,
//! implicitly denied and explicitly denied: same and cross account, users, role sessions
//! and roots, IP inside / outside / the excepted address, wildcard repository names and
//! action-name case variants.

mod common;

use berth_iam::Decision::{self, Allow, ExplicitDeny, ImplicitDeny};
use common::*;

macro_rules! seed {
    ($name:literal) => {
        include_str!(concat!("../../../examples/seeds/", $name, ".json"))
    };
}

const ALLOW_ECR: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
const DENY_PUT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ecr:PutImage","Resource":"*"}]}"#;

fn repo_case(principal: &str, action: &str, policy: &str) -> Scenario {
    scenario(principal, action, REPO).resource_policy(policy)
}

fn check(cases: Vec<(Scenario, Decision)>) {
    for (i, (s, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            s.decision(),
            want,
            "case {i}: {} {} {}",
            s.principal,
            s.action,
            s.resource
        );
    }
}

#[test]
fn repository_policy_allowing_users_to_push_and_pull() {
    let p = seed!("000-allow-iam-users-push-pull");
    let u1 = user(A, "push-pull-user-1");
    check(vec![
        (repo_case(&u1, "ecr:PutImage", p), Allow),
        (
            repo_case(&user(A, "push-pull-user-2"), "ecr:BatchGetImage", p),
            Allow,
        ),
        (repo_case(&u1, "ecr:putimage", p), Allow),
        (repo_case(&u1, "ECR:InitiateLayerUpload", p), Allow),
        (repo_case(&u1, "ecr:DeleteRepository", p), ImplicitDeny),
        (
            repo_case(&user(A, "someone-else"), "ecr:PutImage", p),
            ImplicitDeny,
        ),
        (
            repo_case(&session(A, "push-pull-user-1", "s"), "ecr:PutImage", p),
            ImplicitDeny,
        ),
        (
            repo_case(&u1, "ecr:PutImage", p).identity(DENY_PUT),
            ExplicitDeny,
        ),
        // Same name in another account is another user.
        (
            repo_case(&user(B, "push-pull-user-1"), "ecr:PutImage", p).identity(ALLOW_ECR),
            ImplicitDeny,
        ),
    ]);
}

#[test]
fn repository_policy_allowing_another_account_to_push() {
    let p = seed!("000-allow-another-account-push");
    check(vec![
        (
            repo_case(&user(B, "ci"), "ecr:PutImage", p).identity(ALLOW_ECR),
            Allow,
        ),
        (
            repo_case(&session(B, "deploy", "run-1"), "ecr:CompleteLayerUpload", p)
                .identity(ALLOW_ECR),
            Allow,
        ),
        (
            repo_case(&format!("arn:aws:iam::{B}:root"), "ecr:PutImage", p),
            Allow,
        ),
        (repo_case(&user(B, "ci"), "ecr:PutImage", p), ImplicitDeny),
        (
            repo_case(&user(B, "ci"), "ecr:BatchGetImage", p).identity(ALLOW_ECR),
            ImplicitDeny,
        ),
        (
            repo_case(&user("333333333333", "ci"), "ecr:PutImage", p).identity(ALLOW_ECR),
            ImplicitDeny,
        ),
        (
            repo_case(&user(A, "local"), "ecr:PutImage", p),
            ImplicitDeny,
        ),
        (
            repo_case(&user(B, "ci"), "ecr:PutImage", p)
                .identity(ALLOW_ECR)
                .identity(DENY_PUT),
            ExplicitDeny,
        ),
    ]);
}

#[test]
fn repository_policy_pull_users_and_admin() {
    let p = seed!("000-pull-users-and-admin");
    let admin = user(A, "admin-user");
    check(vec![
        (
            repo_case(&user(A, "pull-user-1"), "ecr:BatchGetImage", p),
            Allow,
        ),
        (
            repo_case(&user(A, "pull-user-2"), "ecr:GetDownloadUrlForLayer", p),
            Allow,
        ),
        (
            repo_case(&user(A, "pull-user-1"), "ecr:PutImage", p),
            ImplicitDeny,
        ),
        (repo_case(&admin, "ecr:DeleteRepository", p), Allow),
        (repo_case(&admin, "ECR:deleterepository", p), Allow),
        (
            repo_case(&admin, "ecr:PutImage", p).identity(DENY_PUT),
            ExplicitDeny,
        ),
    ]);
}

#[test]
fn repository_policy_allowing_every_account_to_pull() {
    let p = seed!("000-allow-all-accounts-pull");
    check(vec![
        (repo_case(&user(A, "anyone"), "ecr:BatchGetImage", p), Allow),
        (
            repo_case(&session(A, "r", "s"), "ecr:GetDownloadUrlForLayer", p),
            Allow,
        ),
        (
            repo_case(&user(B, "bob"), "ecr:BatchGetImage", p).identity(ALLOW_ECR),
            Allow,
        ),
        (
            repo_case(&user(B, "bob"), "ecr:BatchGetImage", p),
            ImplicitDeny,
        ),
        (
            repo_case(&user(A, "anyone"), "ecr:PutImage", p),
            ImplicitDeny,
        ),
    ]);
}

#[test]
fn repository_policy_denying_all_pulls() {
    let p = seed!("000-deny-all-pull");
    check(vec![
        (
            repo_case(&user(A, "alice"), "ecr:BatchGetImage", p).identity(ALLOW_ECR),
            ExplicitDeny,
        ),
        (
            repo_case(
                &format!("arn:aws:iam::{A}:root"),
                "ecr:GetDownloadUrlForLayer",
                p,
            ),
            ExplicitDeny,
        ),
        (
            repo_case(&session(B, "r", "s"), "ecr:BatchGetImage", p).identity(ALLOW_ECR),
            ExplicitDeny,
        ),
        (
            repo_case(&user(A, "alice"), "ecr:PutImage", p).identity(ALLOW_ECR),
            Allow,
        ),
        (
            repo_case(&user(A, "alice"), "ecr:PutImage", p),
            ImplicitDeny,
        ),
    ]);
}

#[test]
fn repository_policy_restricting_source_ip() {
    let p = seed!("000-ip-restricted");
    let alice = user(A, "alice");
    let from = |who: &str, ip: &str| repo_case(who, "ecr:BatchGetImage", p).ctx("aws:SourceIp", ip);
    check(vec![
        (from(&alice, "54.240.143.7"), Allow),
        (from(&alice, "54.240.143.0"), Allow),
        (from(&alice, "54.240.143.255"), Allow),
        (from(&alice, "54.240.143.188"), ImplicitDeny),
        (from(&alice, "54.240.144.1"), ImplicitDeny),
        (from(&alice, "2001:db8::1"), ImplicitDeny),
        (repo_case(&alice, "ecr:BatchGetImage", p), ImplicitDeny),
        (from(&session(A, "r", "s"), "54.240.143.7"), Allow),
        (
            from(&user(B, "bob"), "54.240.143.7").identity(ALLOW_ECR),
            Allow,
        ),
        (
            from(&user(B, "bob"), "54.240.143.188").identity(ALLOW_ECR),
            ImplicitDeny,
        ),
        (from(&alice, "54.240.143.7").identity(DENY_PUT), Allow),
        (
            repo_case(&alice, "ecr:PutImage", p)
                .ctx("aws:SourceIp", "54.240.143.7")
                .identity(DENY_PUT),
            ExplicitDeny,
        ),
    ]);
}

#[test]
fn repository_policy_for_a_service() {
    let p = seed!("000-codebuild-service");
    check(vec![
        (
            repo_case("codebuild.amazonaws.com", "ecr:BatchGetImage", p),
            Allow,
        ),
        (
            repo_case("codebuild.amazonaws.com", "ecr:PutImage", p),
            ImplicitDeny,
        ),
        (
            repo_case("ecs.amazonaws.com", "ecr:BatchGetImage", p),
            ImplicitDeny,
        ),
        (
            repo_case(&user(A, "alice"), "ecr:BatchGetImage", p),
            ImplicitDeny,
        ),
    ]);
}

#[test]
fn registry_policies_for_replication() {
    let west = |name: &str| format!("arn:aws:ecr:us-west-2:{A}:repository/{name}");
    let b_root = format!("arn:aws:iam::{B}:root");
    let c_root = "arn:aws:iam::333333333333:root".to_string();
    let case = |who: &str, action: &str, repo: &str, policy: &str| {
        scenario(who, action, repo).resource_policy(policy)
    };
    let all = seed!("003-registry-replicate-all");
    let multi = seed!("003-registry-multiple-accounts");
    let prod = seed!("003-registry-prod-prefix");
    let only = seed!("003-registry-replicate-only");
    check(vec![
        (case(&b_root, "ecr:ReplicateImage", &west("app"), all), Allow),
        (case(&b_root, "ecr:CreateRepository", &west("team/app"), all), Allow),
        (case(&b_root, "ecr:ReplicateImage", REPO, all), ImplicitDeny),
        (case(&c_root, "ecr:ReplicateImage", &west("app"), all), ImplicitDeny),
        (case(&user(B, "ci"), "ecr:ReplicateImage", &west("app"), all).identity(ALLOW_ECR), Allow),
        (case(&user(B, "ci"), "ecr:ReplicateImage", &west("app"), all), ImplicitDeny),
        (case(&c_root, "ecr:ReplicateImage", &west("app"), multi), Allow),
        (case(&b_root, "ecr:CreateRepository", &west("app"), multi), Allow),
        (case(&b_root, "ecr:ReplicateImage", &west("prod-api"), prod), Allow),
        (case(&b_root, "ecr:ReplicateImage", &west("prod-"), prod), Allow),
        (case(&b_root, "ecr:ReplicateImage", &west("dev-api"), prod), ImplicitDeny),
        (case(&b_root, "ecr:ReplicateImage", &west("app"), only), Allow),
        (case(&b_root, "ecr:CreateRepository", &west("app"), only), ImplicitDeny),
        (case(&b_root, "ecr:ReplicateImage", &west("app"), all).identity(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ecr:Replicate*","Resource":"*"}}"#,
        ), ExplicitDeny),
    ]);
}

#[test]
fn push_pull_identity_policy() {
    let p = seed!("004-push-pull-identity");
    let ci = user(A, "ci");
    let my_app = format!("arn:aws:ecr:us-east-1:{A}:repository/my-app");
    let other = format!("arn:aws:ecr:us-east-1:{A}:repository/other");
    let case = |who: &str, action: &str, res: &str| scenario(who, action, res).identity(p);
    check(vec![
        (case(&ci, "ecr:GetAuthorizationToken", "*"), Allow),
        (case(&ci, "ecr:getauthorizationtoken", "*"), Allow),
        (case(&ci, "ecr:PutImage", &my_app), Allow),
        (case(&ci, "ecr:BatchGetImage", &my_app), Allow),
        (case(&ci, "ecr:UPLOADLAYERPART", &my_app), Allow),
        (case(&ci, "ecr:PutImage", &other), ImplicitDeny),
        (case(&ci, "ecr:DeleteRepository", &my_app), ImplicitDeny),
        (
            case(&session(A, "ci-role", "build-7"), "ecr:PutImage", &my_app),
            Allow,
        ),
        (
            case(&ci, "ecr:PutImage", &my_app).resource_policy(&repo_stmt(
                "Deny",
                r#"{"AWS":"arn:aws:iam::111111111111:user/ci"}"#,
                "ecr:PutImage",
                "",
            )),
            ExplicitDeny,
        ),
        (
            case(&ci, "ecr:PutImage", &my_app).identity(DENY_PUT),
            ExplicitDeny,
        ),
        // The policy names account 111111111111's repository; the same name elsewhere is not it.
        (
            case(
                &ci,
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:222222222222:repository/my-app",
            ),
            ImplicitDeny,
        ),
        (
            case(
                &ci,
                "ecr:PutImage",
                "arn:aws:ecr:us-west-2:111111111111:repository/my-app",
            ),
            ImplicitDeny,
        ),
    ]);
}

#[test]
fn arn_forms_of_the_policy_structure_page() {
    let p = seed!("002-all-ecr-resources-identity");
    let alice = user(A, "alice");
    let my_repo = format!("arn:aws:ecr:us-east-1:{A}:repository/my-repo");
    check(vec![
        (
            scenario(&alice, "ecr:DescribeRepositories", REPO).identity(p),
            Allow,
        ),
        (
            scenario(
                &alice,
                "ecr:DescribeImages",
                "arn:aws:ecr:eu-west-1:111111111111:repository/x",
            )
            .identity(p),
            Allow,
        ),
        (scenario(&alice, "ecr:action1", REPO).identity(p), Allow),
        (
            scenario(
                &alice,
                "ecr:action1",
                "arn:aws:ecr:us-west-2:111111111111:repository/app",
            )
            .identity(p),
            ImplicitDeny,
        ),
        (
            scenario(&alice, "ecr:DeleteRepository", &my_repo).identity(p),
            Allow,
        ),
        (
            scenario(&alice, "ecr:DeleteRepository", REPO).identity(p),
            ImplicitDeny,
        ),
        (
            scenario(&alice, "ecr:DescribeRepositories", "*").identity(p),
            ImplicitDeny,
        ),
    ]);
}

#[test]
fn every_seed_policy_passes_validation_as_its_kind() {
    use berth_iam::{parse_policy, PolicyKind};
    let repository = [
        seed!("000-allow-iam-users-push-pull"),
        seed!("000-allow-another-account-push"),
        seed!("000-pull-users-and-admin"),
        seed!("000-allow-all-accounts-pull"),
        seed!("000-deny-all-pull"),
        seed!("000-ip-restricted"),
        seed!("000-codebuild-service"),
    ];
    for p in repository {
        parse_policy(p, PolicyKind::Repository).unwrap();
    }
    for p in [
        seed!("003-registry-replicate-all"),
        seed!("003-registry-multiple-accounts"),
        seed!("003-registry-prod-prefix"),
        seed!("003-registry-replicate-only"),
    ] {
        parse_policy(p, PolicyKind::Registry).unwrap();
    }
    parse_policy(seed!("004-push-pull-identity"), PolicyKind::Identity).unwrap();
    parse_policy(
        seed!("002-all-ecr-resources-identity"),
        PolicyKind::Identity,
    )
    .unwrap();
}
