//! The `berth policy decide` line protocol (`berth_iam::lines::Decider`): the context
//! keys AWS sends with every signed request are derived from the principal when a line
//! omits them, a federated user without a `session_policy` has no permissions, and a
//! `NotPrincipal` + `Allow` statement grants nothing.

use berth_iam::lines::Decider;

const REPO: &str = "arn:aws:ecr:us-east-1:111111111111:repository/app";

fn answer(line: &str) -> String {
    let mut out = String::new();
    Decider::new().decide_line(line, &mut out);
    out
}

/// A line for `principal` pushing to REPO with `extra` members (each `,"key":value`).
fn line(principal: &str, extra: &str) -> String {
    format!(
        r#"{{"id":1,"principal":"{principal}","action":"ecr:PutImage","resource":"{REPO}","resource_account":"111111111111"{extra}}}"#
    )
}

fn allow_if(condition: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{condition}}}]}}"#
    )
}

const ALLOW: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
const ALLOWED: &str = "{\"id\":1,\"decision\":\"Allow\"}\n";
const IMPLICIT: &str = "{\"id\":1,\"decision\":\"ImplicitDeny\"}\n";

#[test]
fn principal_keys_are_derived_when_a_line_omits_them() {
    let user = "arn:aws:iam::111111111111:user/ci";
    let cases = [
        // (principal, key, value it gets)
        (user, "aws:PrincipalArn", user),
        (user, "aws:PrincipalAccount", "111111111111"),
        (user, "aws:PrincipalType", "User"),
        (user, "aws:username", "ci"),
        (
            "arn:aws:sts::111111111111:assumed-role/deploy/run-1",
            "aws:PrincipalArn",
            "arn:aws:iam::111111111111:role/deploy",
        ),
        (
            "arn:aws:sts::111111111111:assumed-role/deploy/run-1",
            "aws:PrincipalType",
            "AssumedRole",
        ),
        (
            "arn:aws:iam::111111111111:root",
            "aws:PrincipalType",
            "Account",
        ),
    ];
    for (principal, key, value) in cases {
        let policy = allow_if(&format!(r#"{{"StringEquals":{{"{key}":"{value}"}}}}"#));
        // No context member, an empty one, and one with other keys: all derived.
        for context in [
            "",
            r#","context":{}"#,
            r#","context":{"aws:SourceIp":"10.0.0.1"}"#,
        ] {
            let l = line(
                principal,
                &format!(r#"{context},"identity_policies":[{policy}]"#),
            );
            assert_eq!(answer(&l), ALLOWED, "{principal} {key} with {context:?}");
        }
        // A key the line gives is used as given (the root user of the resource's
        // account is allowed whatever the policies say).
        if principal.ends_with(":root") {
            continue;
        }
        let l = line(
            principal,
            &format!(r#","context":{{"{key}":"something-else"}},"identity_policies":[{policy}]"#),
        );
        assert_eq!(answer(&l), IMPLICIT, "{principal} {key} given");
    }
    // Root and role sessions have no user name.
    let policy = allow_if(r#"{"Null":{"aws:username":"true"}}"#);
    for principal in [
        "arn:aws:iam::111111111111:root",
        "arn:aws:sts::111111111111:assumed-role/deploy/run-1",
        "arn:aws:sts::111111111111:federated-user/temp",
    ] {
        let session = if principal.contains("federated") {
            format!(r#","session_policy":{ALLOW}"#)
        } else {
            String::new()
        };
        let l = line(
            principal,
            &format!(r#","identity_policies":[{policy}]{session}"#),
        );
        assert_eq!(answer(&l), ALLOWED, "{principal}");
    }
}

#[test]
fn a_federated_user_without_a_session_policy_has_no_permissions() {
    let fed = "arn:aws:sts::111111111111:federated-user/temp";
    let with = |extra: &str| answer(&line(fed, extra));
    let identity = format!(r#","identity_policies":[{ALLOW}]"#);
    assert_eq!(with(&identity), IMPLICIT);
    assert_eq!(
        with(&format!(r#"{identity},"session_policy":null"#)),
        IMPLICIT
    );
    // A resource policy naming only the account does not help either.
    let account = r#","resource_policy":{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"ecr:*"}]}"#;
    assert_eq!(with(&format!("{identity}{account}")), IMPLICIT);
    // With a session policy that allows, the identity policies count.
    assert_eq!(
        with(&format!(r#"{identity},"session_policy":{ALLOW}"#)),
        ALLOWED
    );
    // A resource policy naming the session itself grants (AWS's documented exception).
    let direct = format!(
        r#","resource_policy":{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{fed}"}},"Action":"ecr:*"}}]}}"#
    );
    assert_eq!(with(&direct), ALLOWED);
}

#[test]
fn not_principal_with_allow_grants_nothing_in_a_decision() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111111111111:user/mallory"},"Action":"ecr:*"}]}"#;
    for who in [
        "arn:aws:iam::111111111111:user/ci",
        "arn:aws:iam::222222222222:user/bob",
        "arn:aws:iam::111111111111:user/mallory",
    ] {
        let l = line(who, &format!(r#","resource_policy":{policy}"#));
        assert_eq!(answer(&l), IMPLICIT, "{who}");
    }
}
