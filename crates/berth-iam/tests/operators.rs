//! Every condition operator, table-driven: an identity policy allows `ecr:BatchGetImage`
//! only under one condition, and each row says whether the request is allowed.

mod common;

use berth_iam::Decision;
use common::*;

/// (condition block, context, allowed?)
type Row = (
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
    bool,
);

fn run_table(rows: &[Row]) {
    for (i, (cond, ctx, allowed)) in rows.iter().enumerate() {
        let mut s = scenario(&user(A, "alice"), "ecr:BatchGetImage", REPO)
            .identity(&identity_stmt("Allow", "ecr:BatchGetImage", "*", cond));
        for (k, vs) in ctx.iter() {
            s = if vs.len() == 1 {
                s.ctx(k, vs[0])
            } else {
                s.ctx_list(k, vs)
            };
        }
        let want = if *allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        };
        assert_eq!(s.decision(), want, "row {i}: {cond} with {ctx:?}");
    }
}

#[test]
fn string_operators() {
    run_table(&[
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"red"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"red"}}"#,
            &[("aws:PrincipalTag/team", &["Red"])],
            false,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":["blue","red"]}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
        // `*` is literal for StringEquals.
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"r*"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            false,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"r*"}}"#,
            &[("aws:PrincipalTag/team", &["r*"])],
            true,
        ),
        // Key names are case-insensitive, including the tag key.
        (
            r#"{"StringEquals":{"AWS:principaltag/TEAM":"red"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
        // Missing key: positive false, negated true.
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"red"}}"#,
            &[],
            false,
        ),
        (
            r#"{"StringNotEquals":{"aws:PrincipalTag/team":"red"}}"#,
            &[],
            true,
        ),
        (
            r#"{"StringNotEquals":{"aws:PrincipalTag/team":"red"}}"#,
            &[("aws:PrincipalTag/team", &["blue"])],
            true,
        ),
        (
            r#"{"StringNotEquals":{"aws:PrincipalTag/team":"red"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            false,
        ),
        // Negated with several values: NOR.
        (
            r#"{"StringNotEquals":{"aws:PrincipalTag/team":["red","blue"]}}"#,
            &[("aws:PrincipalTag/team", &["blue"])],
            false,
        ),
        (
            r#"{"StringNotEquals":{"aws:PrincipalTag/team":["red","blue"]}}"#,
            &[("aws:PrincipalTag/team", &["green"])],
            true,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"aws:PrincipalTag/team":"RED"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"aws:PrincipalTag/team":"ÉTÉ"}}"#,
            &[("aws:PrincipalTag/team", &["été"])],
            true,
        ),
        (
            r#"{"StringNotEqualsIgnoreCase":{"aws:PrincipalTag/team":"RED"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            false,
        ),
        (
            r#"{"StringNotEqualsIgnoreCase":{"aws:PrincipalTag/team":"RED"}}"#,
            &[("aws:PrincipalTag/team", &["blue"])],
            true,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/team":"r*"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/team":"r?d"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/team":"r?d"}}"#,
            &[("aws:PrincipalTag/team", &["reed"])],
            false,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/team":"*/x/*"}}"#,
            &[("aws:PrincipalTag/team", &["a/x/b"])],
            true,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/team":"R*"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            false,
        ),
        (
            r#"{"StringNotLike":{"aws:PrincipalTag/team":["r*","b*"]}}"#,
            &[("aws:PrincipalTag/team", &["blue"])],
            false,
        ),
        (
            r#"{"StringNotLike":{"aws:PrincipalTag/team":["r*","b*"]}}"#,
            &[("aws:PrincipalTag/team", &["green"])],
            true,
        ),
        (
            r#"{"StringNotLike":{"aws:PrincipalTag/team":"r*"}}"#,
            &[],
            true,
        ),
        // Several keys under one operator: AND.
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"red","aws:PrincipalTag/env":"prod"}}"#,
            &[
                ("aws:PrincipalTag/team", &["red"]),
                ("aws:PrincipalTag/env", &["prod"]),
            ],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"red","aws:PrincipalTag/env":"prod"}}"#,
            &[
                ("aws:PrincipalTag/team", &["red"]),
                ("aws:PrincipalTag/env", &["dev"]),
            ],
            false,
        ),
        // Several operators: AND.
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":"red"},"StringLike":{"aws:PrincipalTag/env":"p*"}}"#,
            &[
                ("aws:PrincipalTag/team", &["red"]),
                ("aws:PrincipalTag/env", &["dev"]),
            ],
            false,
        ),
        // Numbers and booleans in the policy compare by their text.
        (
            r#"{"StringEquals":{"aws:PrincipalTag/level":10}}"#,
            &[("aws:PrincipalTag/level", &["10"])],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/flag":true}}"#,
            &[("aws:PrincipalTag/flag", &["true"])],
            true,
        ),
        // An empty value list never matches a positive operator.
        (
            r#"{"StringEquals":{"aws:PrincipalTag/team":[]}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            false,
        ),
        (r#"{}"#, &[], true),
    ]);
}

#[test]
fn numeric_operators() {
    run_table(&[
        (
            r#"{"NumericEquals":{"s3:max-keys":"10"}}"#,
            &[("s3:max-keys", &["10"])],
            true,
        ),
        (
            r#"{"NumericEquals":{"s3:max-keys":10}}"#,
            &[("s3:max-keys", &["10.0"])],
            true,
        ),
        (
            r#"{"NumericEquals":{"s3:max-keys":"10"}}"#,
            &[("s3:max-keys", &["11"])],
            false,
        ),
        (
            r#"{"NumericNotEquals":{"s3:max-keys":["10","11"]}}"#,
            &[("s3:max-keys", &["11"])],
            false,
        ),
        (
            r#"{"NumericNotEquals":{"s3:max-keys":["10","11"]}}"#,
            &[("s3:max-keys", &["12"])],
            true,
        ),
        (r#"{"NumericNotEquals":{"s3:max-keys":"10"}}"#, &[], true),
        (
            r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#,
            &[("s3:max-keys", &["9.5"])],
            true,
        ),
        (
            r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#,
            &[("s3:max-keys", &["10"])],
            false,
        ),
        (
            r#"{"NumericLessThanEquals":{"s3:max-keys":"10"}}"#,
            &[("s3:max-keys", &["10"])],
            true,
        ),
        (
            r#"{"NumericGreaterThan":{"s3:max-keys":"10"}}"#,
            &[("s3:max-keys", &["10"])],
            false,
        ),
        (
            r#"{"NumericGreaterThan":{"s3:max-keys":"-1"}}"#,
            &[("s3:max-keys", &["0"])],
            true,
        ),
        (
            r#"{"NumericGreaterThanEquals":{"s3:max-keys":"10"}}"#,
            &[("s3:max-keys", &["10"])],
            true,
        ),
        (
            r#"{"NumericGreaterThanEquals":{"s3:max-keys":"10"}}"#,
            &[("s3:max-keys", &["ten"])],
            false,
        ),
        (r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#, &[], false),
    ]);
}

#[test]
fn date_operators() {
    run_table(&[
        (
            r#"{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2024-05-01T12:00:00Z"])],
            true,
        ),
        (
            r#"{"DateLessThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2024-05-01T12:00:00Z"])],
            false,
        ),
        (
            r#"{"DateLessThan":{"aws:CurrentTime":"2025"}}"#,
            &[("aws:CurrentTime", &["2024-12-31T23:59:59Z"])],
            true,
        ),
        (
            r#"{"DateLessThanEquals":{"aws:CurrentTime":"2024-05-01"}}"#,
            &[("aws:CurrentTime", &["2024-05-01T00:00:00Z"])],
            true,
        ),
        (
            r#"{"DateEquals":{"aws:CurrentTime":"2024-05-01T02:00:00+02:00"}}"#,
            &[("aws:CurrentTime", &["2024-05-01T00:00:00Z"])],
            true,
        ),
        (
            r#"{"DateNotEquals":{"aws:CurrentTime":"2024-05-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2024-05-01T00:00:00Z"])],
            false,
        ),
        (
            r#"{"DateNotEquals":{"aws:CurrentTime":"2024-05-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2024-05-02T00:00:00Z"])],
            true,
        ),
        (
            r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2024-05-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["2024-05-01T00:00:00Z"])],
            true,
        ),
        // Epoch seconds on either side.
        (
            r#"{"DateGreaterThan":{"aws:EpochTime":"1700000000"}}"#,
            &[("aws:EpochTime", &["1714564800"])],
            true,
        ),
        (
            r#"{"DateGreaterThan":{"aws:CurrentTime":1700000000}}"#,
            &[("aws:CurrentTime", &["2024-05-01T12:00:00Z"])],
            true,
        ),
        (
            r#"{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#,
            &[("aws:CurrentTime", &["not a date"])],
            false,
        ),
        (
            r#"{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#,
            &[],
            false,
        ),
    ]);
}

#[test]
fn bool_binary_ip_arn_null() {
    run_table(&[
        (
            r#"{"Bool":{"aws:SecureTransport":"true"}}"#,
            &[("aws:SecureTransport", &["true"])],
            true,
        ),
        (
            r#"{"Bool":{"aws:SecureTransport":true}}"#,
            &[("aws:SecureTransport", &["TRUE"])],
            true,
        ),
        (
            r#"{"Bool":{"aws:SecureTransport":"true"}}"#,
            &[("aws:SecureTransport", &["false"])],
            false,
        ),
        (
            r#"{"Bool":{"aws:MultiFactorAuthPresent":"false"}}"#,
            &[],
            false,
        ),
        (
            r#"{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}"#,
            &[],
            true,
        ),
        (
            r#"{"BinaryEquals":{"x:key":"QmluYXJ5VmFsdWU="}}"#,
            &[("x:key", &["QmluYXJ5VmFsdWU="])],
            true,
        ),
        (
            r#"{"BinaryEquals":{"x:key":"QmluYXJ5VmFsdWU="}}"#,
            &[("x:key", &["T3RoZXI="])],
            false,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
            &[("aws:SourceIp", &["203.0.113.9"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
            &[("aws:SourceIp", &["198.51.100.7"])],
            false,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":["198.51.100.0/24","203.0.113.0/24"]}}"#,
            &[("aws:SourceIp", &["198.51.100.7"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.9"}}"#,
            &[("aws:SourceIp", &["203.0.113.9"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            &[("aws:SourceIp", &["2001:db8:1::1"])],
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            &[("aws:SourceIp", &["203.0.113.9"])],
            false,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
            &[("aws:SourceIp", &["2001:db8::1"])],
            true,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
            &[("aws:SourceIp", &["203.0.113.1"])],
            false,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
            &[],
            true,
        ),
        (
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:codebuild:*:111111111111:project/*"}}"#,
            &[(
                "aws:SourceArn",
                &["arn:aws:codebuild:us-east-1:111111111111:project/p"],
            )],
            true,
        ),
        (
            r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:codebuild:*:111111111111:project/*"}}"#,
            &[(
                "aws:SourceArn",
                &["arn:aws:codebuild:us-east-1:111111111111:project/p"],
            )],
            true,
        ),
        (
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:svc:*:111111111111:finance/*"}}"#,
            &[(
                "aws:SourceArn",
                &["arn:aws:svc:us-east-2:999999999999:store/abc:111111111111:finance/x"],
            )],
            false,
        ),
        (
            r#"{"StringLike":{"aws:SourceArn":"arn:aws:svc:*:111111111111:finance/*"}}"#,
            &[(
                "aws:SourceArn",
                &["arn:aws:svc:us-east-2:999999999999:store/abc:111111111111:finance/x"],
            )],
            true,
        ),
        (
            r#"{"ArnLike":{"aws:SourceArn":"*"}}"#,
            &[("aws:SourceArn", &["not-an-arn"])],
            false,
        ),
        (
            r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111111111111:user/bob"}}"#,
            &[],
            true,
        ),
        (
            r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::111111111111:user/al*"}}"#,
            &[],
            false,
        ),
        (r#"{"Null":{"aws:PrincipalTag/team":"true"}}"#, &[], true),
        (
            r#"{"Null":{"aws:PrincipalTag/team":"true"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            false,
        ),
        (
            r#"{"Null":{"aws:PrincipalTag/team":"false"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
        (r#"{"Null":{"aws:PrincipalTag/team":false}}"#, &[], false),
        (
            r#"{"ForAllValues:Null":{"aws:PrincipalTag/team":"false"}}"#,
            &[],
            true,
        ),
        (
            r#"{"ForAnyValue:Null":{"aws:PrincipalTag/team":"true"}}"#,
            &[],
            false,
        ),
    ]);
}

#[test]
fn if_exists() {
    run_table(&[
        (
            r#"{"StringEqualsIfExists":{"aws:PrincipalTag/team":"red"}}"#,
            &[],
            true,
        ),
        (
            r#"{"StringEqualsIfExists":{"aws:PrincipalTag/team":"red"}}"#,
            &[("aws:PrincipalTag/team", &["blue"])],
            false,
        ),
        (
            r#"{"StringEqualsIfExists":{"aws:PrincipalTag/team":"red"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
        (
            r#"{"NumericLessThanIfExists":{"s3:max-keys":"5"}}"#,
            &[],
            true,
        ),
        (
            r#"{"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            &[("aws:SourceIp", &["11.0.0.1"])],
            false,
        ),
        (
            r#"{"StringNotEqualsIfExists":{"aws:PrincipalTag/team":"red"}}"#,
            &[],
            true,
        ),
        (
            r#"{"StringNotEqualsIfExists":{"aws:PrincipalTag/team":"red"}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            false,
        ),
    ]);
}

#[test]
fn set_qualifiers() {
    run_table(&[
        // ForAllValues: every request value in the policy set; missing or empty key is true.
        (
            r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]}}"#,
            &[("aws:TagKeys", &["env", "team"])],
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]}}"#,
            &[("aws:TagKeys", &["env", "cost"])],
            false,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]}}"#,
            &[],
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]}}"#,
            &[("aws:TagKeys", &[])],
            true,
        ),
        (
            r#"{"ForAllValues:StringLike":{"aws:TagKeys":["e*"]}}"#,
            &[("aws:TagKeys", &["env", "eco"])],
            true,
        ),
        // ForAnyValue: at least one; missing key or empty set is false, IfExists or not.
        (
            r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &["cost", "env"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &["cost", "team"])],
            false,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["env"]}}"#,
            &[],
            false,
        ),
        (
            r#"{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":["env"]}}"#,
            &[],
            false,
        ),
        (
            r#"{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &[])],
            false,
        ),
        (
            r#"{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &["cost", "env"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringNotEqualsIfExists":{"aws:TagKeys":["env"]}}"#,
            &[],
            false,
        ),
        (
            r#"{"ForAnyValue:StringNotEqualsIfExists":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &[])],
            false,
        ),
        (
            r#"{"ForAnyValue:StringNotEqualsIfExists":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &["env", "team"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringLikeIfExists":{"aws:PrincipalTag/team":"r*"}}"#,
            &[],
            false,
        ),
        // ForAllValues with IfExists: a missing key or an empty set is still true.
        (
            r#"{"ForAllValues:StringEqualsIfExists":{"aws:TagKeys":["env"]}}"#,
            &[],
            true,
        ),
        (
            r#"{"ForAllValues:StringNotEqualsIfExists":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &[])],
            true,
        ),
        // Negated operators inside qualifiers.
        (
            r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["secret"]}}"#,
            &[("aws:TagKeys", &["env", "team"])],
            true,
        ),
        (
            r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["secret"]}}"#,
            &[("aws:TagKeys", &["env", "secret"])],
            false,
        ),
        (
            r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &["env", "team"])],
            true,
        ),
        (
            r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["env"]}}"#,
            &[("aws:TagKeys", &["env"])],
            false,
        ),
        // A multivalued key without a qualifier never matches.
        (
            r#"{"StringEquals":{"aws:TagKeys":"env"}}"#,
            &[("aws:TagKeys", &["env"])],
            false,
        ),
        (
            r#"{"StringNotEquals":{"aws:TagKeys":"x"}}"#,
            &[("aws:TagKeys", &["env", "team"])],
            false,
        ),
        // A single-valued key with a qualifier is a one-element set.
        (
            r#"{"ForAnyValue:StringEquals":{"aws:PrincipalTag/team":["red","blue"]}}"#,
            &[("aws:PrincipalTag/team", &["red"])],
            true,
        ),
    ]);
}

#[test]
fn policy_variables() {
    run_table(&[
        (
            r#"{"StringEquals":{"aws:PrincipalTag/owner":"${aws:username}"}}"#,
            &[("aws:PrincipalTag/owner", &["alice"])],
            true,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/owner":"${aws:username}"}}"#,
            &[("aws:PrincipalTag/owner", &["bob"])],
            false,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/owner":"${aws:username}-*"}}"#,
            &[("aws:PrincipalTag/owner", &["alice-x"])],
            true,
        ),
        // A substituted value is never re-read as a wildcard.
        (
            r#"{"StringLike":{"aws:PrincipalTag/owner":"${aws:PrincipalTag/pattern}"}}"#,
            &[
                ("aws:PrincipalTag/owner", &["anything"]),
                ("aws:PrincipalTag/pattern", &["*"]),
            ],
            false,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/owner":"${aws:PrincipalTag/pattern}"}}"#,
            &[
                ("aws:PrincipalTag/owner", &["*"]),
                ("aws:PrincipalTag/pattern", &["*"]),
            ],
            true,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/owner":"a${*}b"}}"#,
            &[("aws:PrincipalTag/owner", &["a*b"])],
            true,
        ),
        (
            r#"{"StringLike":{"aws:PrincipalTag/owner":"a${*}b"}}"#,
            &[("aws:PrincipalTag/owner", &["axb"])],
            false,
        ),
        (
            r#"{"StringEquals":{"aws:PrincipalTag/owner":"${aws:PrincipalTag/none, 'nobody'}"}}"#,
            &[("aws:PrincipalTag/owner", &["nobody"])],
            true,
        ),
        // Unresolvable variable: positive operator false, negated true.
        (
            r#"{"StringEquals":{"aws:PrincipalTag/owner":"${aws:PrincipalTag/none}"}}"#,
            &[("aws:PrincipalTag/owner", &["x"])],
            false,
        ),
        (
            r#"{"StringNotEquals":{"aws:PrincipalTag/owner":"${aws:PrincipalTag/none}"}}"#,
            &[("aws:PrincipalTag/owner", &["x"])],
            true,
        ),
        (
            r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:iam::111111111111:user/${aws:username}"}}"#,
            &[("aws:SourceArn", &["arn:aws:iam::111111111111:user/alice"])],
            true,
        ),
    ]);
}

#[test]
fn variables_are_literal_under_2008() {
    let doc = r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/owner":"${aws:username}"}}}}"#;
    let base = scenario(&user(A, "alice"), "ecr:BatchGetImage", REPO).identity(doc);
    assert_eq!(
        base.clone()
            .ctx("aws:PrincipalTag/owner", "alice")
            .decision(),
        Decision::ImplicitDeny
    );
    assert_eq!(
        base.ctx("aws:PrincipalTag/owner", "${aws:username}")
            .decision(),
        Decision::Allow
    );
}

#[test]
fn missing_context_keys_are_reported() {
    let ev = scenario(&user(A, "alice"), "ecr:BatchGetImage", REPO)
        .identity(&identity_stmt("Allow", "ecr:*", "*", r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"StringEquals":{"ecr:ResourceTag/env":"prod"}}"#))
        .evaluate();
    assert_eq!(ev.decision, Decision::ImplicitDeny);
    assert_eq!(
        ev.missing_context_keys,
        vec!["aws:SourceIp", "ecr:ResourceTag/env"]
    );
}
