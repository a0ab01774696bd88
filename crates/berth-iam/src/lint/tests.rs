//! Each check with a policy that triggers it and one that does not.

use super::*;

fn codes(src: &str, kind: PolicyKind) -> Vec<&'static str> {
    lint(src, kind).into_iter().map(|f| f.issue_code).collect()
}

fn stmt(body: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{body}]}}"#)
}

/// (check, policy kind, triggering policy, clean policy)
fn table() -> Vec<(&'static str, PolicyKind, String, String)> {
    use PolicyKind::*;
    let repo = "arn:aws:ecr:us-east-1:111111111111:repository/app";
    vec![
        (
            "INVALID_ACTION",
            Identity,
            stmt(&format!(r#"{{"Effect":"Allow","Action":"ecr:PutImgae","Resource":"{repo}"}}"#)),
            stmt(&format!(r#"{{"Effect":"Allow","Action":"ecr:PutImage","Resource":"{repo}"}}"#)),
        ),
        (
            "UNSUPPORTED_RESOURCE_ARN_IN_POLICY",
            Identity,
            stmt(&format!(r#"{{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"{repo}"}}"#)),
            stmt(r#"{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}"#),
        ),
        (
            "NO_EFFECT_IN_REPOSITORY_POLICY",
            Repository,
            stmt(r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"ecr:GetAuthorizationToken"}"#),
            stmt(r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"ecr:BatchGetImage"}"#),
        ),
        (
            "INVALID_SERVICE_CONDITION_KEY",
            Identity,
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringEquals":{"ecr:RepositoryName":"x"}}}"#),
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringEquals":{"ecr:ResourceTag/env":"x"}}}"#),
        ),
        (
            "INVALID_GLOBAL_CONDITION_KEY",
            Identity,
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransports":"true"}}}"#),
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}"#),
        ),
        (
            "MISSING_QUALIFIER",
            Identity,
            stmt(r#"{"Effect":"Allow","Action":"ecr:TagResource","Resource":"*","Condition":{"StringEquals":{"aws:TagKeys":"team"}}}"#),
            stmt(r#"{"Effect":"Allow","Action":"ecr:TagResource","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"aws:TagKeys":"team"}}}"#),
        ),
        (
            "FORALLVALUES_WITH_SINGLE_VALUED_KEY",
            Identity,
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"ForAllValues:IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}"#),
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}"#),
        ),
        (
            "ALLOW_WITH_FORALLVALUES_ON_ABSENT_KEY",
            Identity,
            stmt(r#"{"Effect":"Allow","Action":"ecr:TagResource","Resource":"*","Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["team"]}}}"#),
            stmt(r#"{"Effect":"Deny","Action":"ecr:TagResource","Resource":"*","Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["team"]}}}"#),
        ),
        (
            "PUBLIC_WRITE_ACCESS",
            Repository,
            stmt(r#"{"Effect":"Allow","Principal":"*","Action":["ecr:PutImage","ecr:BatchGetImage"]}"#),
            stmt(r#"{"Effect":"Allow","Principal":"*","Action":"ecr:PutImage","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-123"}}}"#),
        ),
        (
            "OVERLY_WIDE_IP_RANGE",
            Identity,
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"0.0.0.0/1"}}}"#),
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}}"#),
        ),
        (
            "WILDCARD_WITHOUT_LIKE_OPERATOR",
            Identity,
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"dev*"}}}"#),
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringLike":{"aws:PrincipalTag/team":"dev*"}}}"#),
        ),
        (
            "NULL_WITH_QUALIFIER",
            Identity,
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"ForAnyValue:Null":{"aws:TagKeys":"false"}}}"#),
            stmt(r#"{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"Null":{"aws:TagKeys":"false"}}}"#),
        ),
        (
            "REDUNDANT_STATEMENT",
            Identity,
            stmt(r#"{"Sid":"A","Effect":"Allow","Action":"ecr:ListImages","Resource":"*"},{"Sid":"B","Effect":"Allow","Action":"ecr:ListImages","Resource":"*"}"#),
            stmt(r#"{"Sid":"A","Effect":"Allow","Action":"ecr:ListImages","Resource":"*"},{"Sid":"B","Effect":"Allow","Action":"ecr:DescribeImages","Resource":"*"}"#),
        ),
        (
            "REDUNDANT_STATEMENT",
            Repository,
            stmt(r#"{"Effect":"Allow","Principal":"*","Action":"ecr:*"},{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":["ecr:BatchGetImage","ecr:Get*"]}"#),
            stmt(r#"{"Effect":"Allow","Principal":"*","Action":"ecr:*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"ecr:BatchGetImage"}"#),
        ),
        (
            "SHADOWED_STATEMENT",
            Identity,
            stmt(&format!(r#"{{"Effect":"Allow","Action":"ecr:PutImage","Resource":"{repo}"}},{{"Effect":"Deny","Action":"ecr:Put*","Resource":"arn:aws:ecr:*:111111111111:repository/*"}}"#)),
            stmt(&format!(r#"{{"Effect":"Allow","Action":"ecr:PutImage","Resource":"{repo}"}},{{"Effect":"Deny","Action":"ecr:Put*","Resource":"arn:aws:ecr:*:111111111111:repository/prod-*"}}"#)),
        ),
        (
            "SHADOWED_STATEMENT",
            Repository,
            stmt(r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"ecr:BatchGetImage"},{"Effect":"Deny","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}"#),
            stmt(r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"ecr:BatchGetImage"},{"Effect":"Deny","Principal":"*","Action":"ecr:BatchGetImage","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#),
        ),
        (
            "UNIQUE_SIDS_RECOMMENDED",
            Repository,
            stmt(r#"{"Sid":"same","Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"},{"Sid":"same","Effect":"Deny","Principal":"*","Action":"ecr:PutImage"}"#),
            stmt(r#"{"Sid":"one","Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"},{"Sid":"two","Effect":"Deny","Principal":"*","Action":"ecr:PutImage"}"#),
        ),
        (
            "ALLOW_WITH_NOT_PRINCIPAL",
            Repository,
            stmt(r#"{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111111111111:user/mallory"},"Action":"ecr:BatchGetImage"}"#),
            stmt(r#"{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111111111111:user/ci","111111111111"]},"Action":"ecr:PutImage"}"#),
        ),
        (
            "EMPTY_SID_VALUE",
            Repository,
            stmt(r#"{"Sid":"","Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}"#),
            stmt(r#"{"Sid":"Pull","Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}"#),
        ),
        (
            "MISSING_VERSION",
            Identity,
            r#"{"Statement":[{"Effect":"Allow","Action":"ecr:ListImages","Resource":"*"}]}"#.into(),
            stmt(r#"{"Effect":"Allow","Action":"ecr:ListImages","Resource":"*"}"#),
        ),
        (
            "VARIABLE_UNSUPPORTED_IN_VERSION",
            Identity,
            r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"ecr:ListImages","Resource":"arn:aws:ecr:*:*:repository/${aws:username}/*"}]}"#.into(),
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:ListImages","Resource":"arn:aws:ecr:*:*:repository/${aws:username}/*"}]}"#.into(),
        ),
        (
            "INVALID_POLICY_ELEMENT",
            Identity,
            stmt(r#"{"Effect":"Alow","Action":"ecr:ListImages","Resource":"*"}"#),
            stmt(r#"{"Effect":"Allow","Action":"ecr:ListImages","Resource":"*"}"#),
        ),
        (
            "JSON_SYNTAX_ERROR",
            Identity,
            r#"{"Version":"2012-10-17","Statement":[}"#.into(),
            stmt(r#"{"Effect":"Allow","Action":"ecr:ListImages","Resource":"*"}"#),
        ),
    ]
}

#[test]
fn each_check_fires_and_only_when_it_should() {
    for (code, kind, bad, good) in table() {
        let got = codes(&bad, kind);
        assert!(
            got.contains(&code),
            "{code}: not found in {got:?} for {bad}"
        );
        let clean = codes(&good, kind);
        assert!(
            !clean.contains(&code),
            "{code}: found in {clean:?} for {good}"
        );
    }
}

#[test]
fn findings_say_where() {
    let src = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{\n    \"Effect\": \"Allow\",\n    \"Action\": [\"ecr:ListImages\", \"ecr:PutImgae\"],\n    \"Resource\": \"*\"\n  }]\n}";
    let f = lint(src, PolicyKind::Identity);
    let bad = f.iter().find(|f| f.issue_code == "INVALID_ACTION").unwrap();
    assert_eq!(bad.path, "Statement[0].Action[1]");
    assert_eq!((bad.line, bad.column), (5, 34));
    assert_eq!(bad.finding_type, FindingType::Error);
    assert!(
        bad.details.contains("Did you mean ecr:PutImage?"),
        "{}",
        bad.details
    );
    assert_eq!(&src[bad.offset..bad.offset + 14], "\"ecr:PutImgae\"");
}

#[test]
fn the_seed_policies_have_no_errors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seeds");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let kind = if name.starts_with("003") {
            PolicyKind::Registry
        } else if src.contains("\"Principal\"") {
            PolicyKind::Repository
        } else {
            PolicyKind::Identity
        };
        let mut errors: Vec<_> = lint(&src, kind)
            .into_iter()
            .filter(|f| f.finding_type == FindingType::Error)
            .collect();
        if name.starts_with("002") {
            // The seed keeps the documentation's placeholders "ecr:action1"/"ecr:action2":
            // the linter rightly calls them unknown actions.
            let placeholders = errors
                .iter()
                .filter(|f| f.issue_code == "INVALID_ACTION" && f.details.contains("ecr:action"))
                .count();
            assert_eq!(placeholders, 2, "{name}: {errors:?}");
            errors.retain(|f| !f.details.contains("ecr:action"));
        }
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

/// Two unconditional statements that cover each other: only the later one is flagged.
#[test]
fn mutual_cover_flags_only_the_later_statement() {
    let src = stmt(
        r#"{"Effect":"Allow","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Resource":"*"},{"Effect":"Allow","Action":["ecr:getdownloadurlforlayer","ecr:BatchGetImage"],"Resource":"*"}"#,
    );
    let found: Vec<String> = lint(&src, PolicyKind::Identity)
        .into_iter()
        .filter(|f| f.issue_code == "REDUNDANT_STATEMENT")
        .map(|f| f.path)
        .collect();
    assert_eq!(found, ["Statement[1]"]);
}

/// A resource pattern that lacks a segment matches nothing: it covers nothing either.
#[test]
fn broken_resource_patterns_cover_nothing() {
    let repo = "arn:aws:ecr:us-east-1:111111111111:repository/app";
    let src = stmt(&format!(
        r#"{{"Effect":"Allow","Action":"ecr:PutImage","Resource":"{repo}"}},{{"Effect":"Deny","Action":"ecr:PutImage","Resource":"arn:aws:ecr:*:repository/*"}},{{"Effect":"Allow","Action":"ecr:PutImage","Resource":"arn:aws:ecr:*:repository/*"}}"#
    ));
    let c = codes(&src, PolicyKind::Identity);
    assert!(!c.contains(&"SHADOWED_STATEMENT"), "{c:?}");
    assert!(!c.contains(&"REDUNDANT_STATEMENT"), "{c:?}");
    // Segment-wise, a wildcard account covers a named one.
    let src = stmt(&format!(
        r#"{{"Effect":"Allow","Action":"ecr:PutImage","Resource":"{repo}"}},{{"Effect":"Deny","Action":"ecr:PutImage","Resource":"arn:aws:ecr:*:*:repository/*"}}"#
    ));
    assert!(codes(&src, PolicyKind::Identity).contains(&"SHADOWED_STATEMENT"));
}

/// `NotPrincipal` with `Allow` is an ERROR that a policy write refuses, naming the
/// statement (its Sid when it has one) and saying what to write instead.
#[test]
fn allow_with_not_principal_is_an_error_that_refuses_a_write() {
    let src = stmt(
        r#"{"Sid":"Pull","Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"},{"Sid":"AllButMallory","Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111111111111:user/mallory"},"Action":"ecr:*"}"#,
    );
    for kind in [PolicyKind::Repository, PolicyKind::Registry] {
        let found: Vec<Finding> = lint(&src, kind)
            .into_iter()
            .filter(|f| f.issue_code == "ALLOW_WITH_NOT_PRINCIPAL")
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.finding_type, FindingType::Error);
        assert!(f.refuses_write());
        assert_eq!(f.path, "Statement[1].NotPrincipal");
        assert_eq!(&src[f.offset..f.offset + 7], "{\"AWS\":");
        assert!(
            f.details.contains("Statement[1] (Sid \"AllButMallory\")"),
            "{}",
            f.details
        );
        assert!(f.details.contains("\"Effect\": \"Deny\""), "{}", f.details);
    }
}
