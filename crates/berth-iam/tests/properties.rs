//! Invariants of the engine over random policies and requests (proptest):
//! an explicit Deny always wins; adding an Allow never turns Allow into a deny; removing
//! a Deny never turns Allow into a deny; parse → print → parse is stable.

mod common;

use berth_iam::{parse_policy, Decision, PolicyKind};
use common::*;
use proptest::prelude::*;

const ACTIONS: &[&str] = &[
    "ecr:PutImage",
    "ecr:*",
    "ecr:Get*",
    "ecr:BatchGetImage",
    "*",
    "s3:*",
    "ecr:?utImage",
];
const RESOURCES: &[&str] = &[
    "*",
    REPO,
    "arn:aws:ecr:*:111111111111:repository/*",
    "arn:aws:ecr:us-east-1:*:repository/a*",
    "arn:aws:ecr:us-east-1:111111111111:repository/${aws:username}",
    "arn:aws:s3:::bucket/*",
];
const CONDITIONS: &[&str] = &[
    r#"{"StringEquals":{"aws:PrincipalTag/team":"red"}}"#,
    r#"{"StringNotEquals":{"aws:PrincipalTag/team":["red","blue"]}}"#,
    r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
    r#"{"NotIpAddress":{"aws:SourceIp":["10.1.0.0/16","2001:db8::/32"]}}"#,
    r#"{"Null":{"aws:PrincipalTag/team":"true"}}"#,
    r#"{"ForAnyValue:StringLike":{"aws:TagKeys":["e*"]}}"#,
    r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]}}"#,
    r#"{"ForAnyValue:StringNotEqualsIfExists":{"aws:TagKeys":["cost"]}}"#,
    r#"{"ForAllValues:StringLikeIfExists":{"aws:TagKeys":["e*","t*"]}}"#,
    r#"{"StringEqualsIfExists":{"ecr:ResourceTag/env":"prod"}}"#,
    r#"{"Bool":{"aws:SecureTransport":true}}"#,
    r#"{"NumericLessThan":{"s3:max-keys":10}}"#,
    r#"{"DateGreaterThan":{"aws:CurrentTime":"2024-01-01T00:00:00Z"}}"#,
    r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111111111111:*"}}"#,
];
const PRINCIPALS: &[&str] = &[
    r#""Principal":"*""#,
    r#""Principal":{"AWS":"111111111111"}"#,
    r#""Principal":{"AWS":"arn:aws:iam::222222222222:root"}"#,
    r#""Principal":{"AWS":"arn:aws:iam::111111111111:user/alice"}"#,
    r#""Principal":{"AWS":["arn:aws:iam::111111111111:role/dev","arn:aws:iam::222222222222:user/bob"]}"#,
    r#""Principal":{"AWS":"arn:aws:sts::111111111111:assumed-role/dev/s1"}"#,
    r#""NotPrincipal":{"AWS":["arn:aws:iam::111111111111:user/alice","111111111111"]}"#,
];
const CALLERS: &[&str] = &[
    "arn:aws:iam::111111111111:user/alice",
    "arn:aws:iam::222222222222:user/bob",
    "arn:aws:sts::111111111111:assumed-role/dev/s1",
    "arn:aws:sts::222222222222:assumed-role/ci/x",
    "arn:aws:iam::111111111111:root",
    "arn:aws:iam::222222222222:root",
];
const REQUEST_ACTIONS: &[&str] = &[
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "ecr:GetAuthorizationToken",
    "s3:GetObject",
];

#[derive(Debug, Clone)]
struct Stmt {
    allow: bool,
    not_action: bool,
    actions: Vec<&'static str>,
    resources: Vec<&'static str>,
    principal: &'static str,
    condition: Option<&'static str>,
}

impl Stmt {
    fn json(&self, with_principal: bool, with_resource: bool) -> String {
        let list = |v: &[&str]| {
            let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(","))
        };
        let mut s = format!(
            r#"{{"Effect":"{}","{}":{}"#,
            if self.allow { "Allow" } else { "Deny" },
            if self.not_action {
                "NotAction"
            } else {
                "Action"
            },
            list(&self.actions)
        );
        if with_principal {
            s.push(',');
            s.push_str(self.principal);
        }
        if with_resource {
            s.push_str(&format!(r#","Resource":{}"#, list(&self.resources)));
        }
        if let Some(c) = self.condition {
            s.push_str(&format!(r#","Condition":{c}"#));
        }
        s.push('}');
        s
    }
}

fn stmt() -> impl Strategy<Value = Stmt> {
    (
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::collection::vec(prop::sample::select(ACTIONS), 1..3),
        prop::collection::vec(prop::sample::select(RESOURCES), 1..3),
        prop::sample::select(PRINCIPALS),
        prop::option::weighted(0.5, prop::sample::select(CONDITIONS)),
    )
        .prop_map(
            |(allow, not_action, actions, resources, principal, condition)| Stmt {
                allow,
                not_action,
                actions,
                resources,
                principal,
                condition,
            },
        )
}

#[derive(Debug, Clone)]
struct World {
    identity: Vec<Vec<Stmt>>,
    resource: Option<Vec<Stmt>>,
    resource_has_resource_element: bool,
    boundary: Option<Vec<Stmt>>,
    session: Option<Vec<Stmt>>,
    caller: &'static str,
    action: &'static str,
    on_repo: bool,
    ctx: Vec<(&'static str, Vec<&'static str>)>,
}

fn doc(stmts: &[Stmt], principal: bool, resource: bool) -> String {
    let body: Vec<String> = stmts.iter().map(|s| s.json(principal, resource)).collect();
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        body.join(",")
    )
}

impl World {
    fn scenario(&self) -> Scenario {
        let resource = if self.on_repo { REPO } else { "*" };
        let mut s = scenario(self.caller, self.action, resource).resource_account(A);
        for p in &self.identity {
            s = s.identity(&doc(p, false, true));
        }
        if let Some(r) = &self.resource {
            s = s.resource_policy(&doc(r, true, self.resource_has_resource_element));
        }
        if let Some(b) = &self.boundary {
            s = s.boundary(&doc(b, false, true));
        }
        if let Some(x) = &self.session {
            s = s.session(&doc(x, false, true));
        }
        for (k, vs) in &self.ctx {
            s = if vs.len() == 1 {
                s.ctx(k, vs[0])
            } else {
                s.ctx_list(k, vs)
            };
        }
        s
    }

    fn decision(&self) -> Decision {
        self.scenario().decision()
    }
}

fn context() -> impl Strategy<Value = Vec<(&'static str, Vec<&'static str>)>> {
    let entry = prop_oneof![
        prop::sample::select(&["red", "blue", "green"][..])
            .prop_map(|v| ("aws:PrincipalTag/team", vec![v])),
        prop::sample::select(&["10.1.2.3", "10.200.0.1", "192.0.2.1", "2001:db8::5"][..])
            .prop_map(|v| ("aws:SourceIp", vec![v])),
        prop::collection::vec(prop::sample::select(&["env", "team", "cost"][..]), 0..3)
            .prop_map(|v| ("aws:TagKeys", v)),
        prop::sample::select(&["prod", "dev"][..]).prop_map(|v| ("ecr:ResourceTag/env", vec![v])),
        prop::sample::select(&["true", "false"][..]).prop_map(|v| ("aws:SecureTransport", vec![v])),
        prop::sample::select(&["2023-06-01T00:00:00Z", "2025-06-01T00:00:00Z"][..])
            .prop_map(|v| ("aws:CurrentTime", vec![v])),
    ];
    prop::collection::vec(entry, 0..5)
}

fn world() -> impl Strategy<Value = World> {
    let policy = || prop::collection::vec(stmt(), 1..4);
    (
        prop::collection::vec(policy(), 0..3),
        prop::option::of(policy()),
        any::<bool>(),
        prop::option::weighted(0.2, policy()),
        prop::option::weighted(0.2, policy()),
        prop::sample::select(CALLERS),
        prop::sample::select(REQUEST_ACTIONS),
        prop::bool::weighted(0.8),
        context(),
    )
        .prop_map(
            |(identity, resource, rr, boundary, session, caller, action, on_repo, ctx)| World {
                identity,
                resource,
                resource_has_resource_element: rr,
                boundary,
                session,
                caller,
                action,
                on_repo,
                ctx,
            },
        )
}

/// Which existing policy to touch: 0..identity, then resource, boundary, session.
fn policies_mut(w: &mut World) -> Vec<&mut Vec<Stmt>> {
    let mut v: Vec<&mut Vec<Stmt>> = w.identity.iter_mut().collect();
    v.extend(w.resource.as_mut());
    v.extend(w.boundary.as_mut());
    v.extend(w.session.as_mut());
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn explicit_deny_always_wins(mut w in world(), pick in any::<prop::sample::Index>(), unconditional in any::<bool>()) {
        let deny = Stmt {
            allow: false,
            not_action: false,
            actions: vec!["*"],
            resources: vec!["*"],
            principal: r#""Principal":"*""#,
            condition: None,
        };
        let n = policies_mut(&mut w).len();
        if n == 0 || !unconditional {
            w.identity.push(vec![deny]);
        } else {
            let i = pick.index(n);
            // A repository policy without Resource speaks only of its repository.
            if i == w.identity.len() && w.resource.is_some() && !w.resource_has_resource_element {
                w.on_repo = true;
            }
            policies_mut(&mut w)[i].push(deny);
        }
        prop_assert_eq!(w.decision(), Decision::ExplicitDeny);
    }

    #[test]
    fn adding_an_allow_never_turns_allow_into_deny(mut w in world(), extra in stmt(), pick in any::<prop::sample::Index>()) {
        let before = w.decision();
        let n = policies_mut(&mut w).len();
        prop_assume!(n > 0);
        let mut extra = extra;
        extra.allow = true;
        let i = pick.index(n);
        policies_mut(&mut w)[i].push(extra);
        let after = w.decision();
        if before == Decision::Allow {
            prop_assert_eq!(after, Decision::Allow);
        }
        // And an allow never removes an explicit deny.
        if before == Decision::ExplicitDeny {
            prop_assert_eq!(after, Decision::ExplicitDeny);
        }
    }

    #[test]
    fn removing_a_deny_never_turns_allow_into_deny(mut w in world(), pick in any::<prop::sample::Index>()) {
        let before = w.decision();
        let mut denies = Vec::new();
        for (pi, p) in policies_mut(&mut w).iter().enumerate() {
            for (si, s) in p.iter().enumerate() {
                if !s.allow && p.len() > 1 {
                    denies.push((pi, si));
                }
            }
        }
        prop_assume!(!denies.is_empty());
        let (pi, si) = denies[pick.index(denies.len())];
        policies_mut(&mut w)[pi].remove(si);
        if before == Decision::Allow {
            prop_assert_eq!(w.decision(), Decision::Allow);
        }
    }

    #[test]
    fn parse_print_parse_is_stable(stmts in prop::collection::vec(stmt(), 1..6), v2012 in any::<bool>(), id in prop::option::of("[A-Za-z0-9 -]{0,12}"), sids in prop::collection::vec(prop::option::of("[A-Za-z0-9 ]{1,8}"), 6)) {
        let body: Vec<String> = stmts.iter().zip(&sids).map(|(s, sid)| {
            let j = s.json(true, true);
            match sid {
                Some(sid) => format!(r#"{{"Sid":{sid:?},{}"#, &j[1..]),
                None => j,
            }
        }).collect();
        let mut src = String::from("{");
        if v2012 { src.push_str(r#""Version":"2012-10-17","#); }
        if let Some(id) = &id { src.push_str(&format!(r#""Id":{id:?},"#)); }
        src.push_str(&format!(r#""Statement":[{}]}}"#, body.join(",")));
        let first = parse_policy(&src, PolicyKind::Registry).expect("generated policy parses");
        let printed = first.to_json();
        let second = parse_policy(&printed, PolicyKind::Registry).expect("printed policy parses");
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(printed, second.to_json());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// A policy of more than 8 statements is searched through its action index; the same
    /// statements spread over policies of at most 8 are scanned one by one. Identity
    /// policies combine by OR (and any deny denies), so both must decide alike.
    #[test]
    fn the_action_index_finds_what_a_scan_finds(
        stmts in prop::collection::vec(stmt(), 9..30),
        caller in prop::sample::select(CALLERS),
        action in prop::sample::select(&["ecr:PutImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "s3:GetObject", "ecr:putimage", "sts:AssumeRole"][..]),
        on_repo in any::<bool>(),
        ctx in context(),
    ) {
        let resource = if on_repo { REPO } else { "*" };
        let base = || {
            let mut s = scenario(caller, action, resource).resource_account(A);
            for (k, vs) in &ctx {
                s = if vs.len() == 1 { s.ctx(k, vs[0]) } else { s.ctx_list(k, vs) };
            }
            s
        };
        let indexed = base().identity(&doc(&stmts, false, true));
        let mut scanned = base();
        for chunk in stmts.chunks(8) {
            scanned = scanned.identity(&doc(chunk, false, true));
        }
        prop_assert_eq!(indexed.decision(), scanned.decision());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// `IfExists` never changes what a `ForAnyValue:` operator answers (it needs a value
    /// either way), and makes a `ForAllValues:` one no stricter: the qualifier decides
    /// what an absent key or an empty set means, not the suffix.
    #[test]
    fn if_exists_does_not_rescue_for_any_value(
        op in prop::sample::select(&["StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "StringEqualsIgnoreCase"][..]),
        values in prop::collection::vec(prop::sample::select(&["env", "team", "e*", "cost"][..]), 1..3),
        tags in prop::option::of(prop::collection::vec(prop::sample::select(&["env", "team", "cost", "Env"][..]), 0..3)),
        deny in any::<bool>(),
    ) {
        let decision = |qualifier: &str, suffix: &str| {
            let list: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            let cond = format!(
                r#"{{"{qualifier}:{op}{suffix}":{{"aws:TagKeys":[{}]}}}}"#,
                list.join(",")
            );
            let effect = if deny { "Deny" } else { "Allow" };
            let mut s = scenario(CALLERS[0], "ecr:TagResource", REPO)
                .identity(&identity_stmt(effect, "ecr:TagResource", "*", &cond));
            if deny {
                s = s.identity(&identity_stmt("Allow", "*", "*", ""));
            }
            if let Some(t) = &tags {
                s = s.ctx_list("aws:TagKeys", t);
            }
            s.decision()
        };
        prop_assert_eq!(decision("ForAnyValue", "IfExists"), decision("ForAnyValue", ""));
        if tags.as_ref().is_none_or(|t| t.is_empty()) {
            // Nothing to compare: ForAnyValue is false, ForAllValues true, IfExists or not.
            let (holds, fails) = if deny {
                (Decision::ExplicitDeny, Decision::Allow)
            } else {
                (Decision::Allow, Decision::ImplicitDeny)
            };
            prop_assert_eq!(decision("ForAnyValue", "IfExists"), fails);
            prop_assert_eq!(decision("ForAllValues", "IfExists"), holds);
            prop_assert_eq!(decision("ForAllValues", ""), holds);
        }
    }
}

#[test]
fn denies_of_every_policy_type_are_explicit() {
    // A sanity anchor for the generator: one fixed world of each shape.
    let w = World {
        identity: vec![],
        resource: None,
        resource_has_resource_element: false,
        boundary: None,
        session: None,
        caller: CALLERS[0],
        action: "ecr:PutImage",
        on_repo: true,
        ctx: vec![],
    };
    assert_eq!(w.decision(), Decision::ImplicitDeny);
}
