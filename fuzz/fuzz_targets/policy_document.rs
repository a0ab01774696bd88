//! Any bytes as a policy document of every kind: never a panic; a document that parses
//! prints to text that parses to the same document; compiled, it decides a request; the
//! linter reads it and places every finding inside the document.
#![no_main]

use std::sync::Arc;

use berth_iam::{
    decide, parse_policy, Action, CompiledPolicy, Context, PolicyKind, PolicySet, Principal,
    Request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    for kind in PolicyKind::ALL {
        for f in berth_iam::lint::lint(src, kind) {
            assert!(f.offset <= src.len(), "finding past the end: {f:?}");
            assert!(f.line >= 1 && f.column >= 1, "finding without a place: {f:?}");
        }
        let Ok(policy) = parse_policy(src, kind) else {
            continue;
        };
        let printed = policy.to_json();
        let again = parse_policy(&printed, kind).expect("printed policy parses");
        assert_eq!(
            policy, again,
            "parse -> print -> parse changed the document"
        );
        let compiled = Arc::new(CompiledPolicy::new("fuzz", kind, &policy));
        let principal =
            Principal::from_arn("arn:aws:sts::111111111111:assumed-role/dev/s1").unwrap();
        let mut ctx = Context::new();
        ctx.insert("aws:SourceIp", "10.1.2.3");
        ctx.insert("aws:PrincipalTag/team", "red");
        ctx.insert_list("aws:TagKeys", vec!["env".into(), "team".into()]);
        principal.derive_context(&mut ctx);
        let action = Action::new("ecr:PutImage");
        let req = Request {
            principal: &principal,
            action: &action,
            resource: "arn:aws:ecr:us-east-1:111111111111:repository/app",
            resource_account: "111111111111",
            context: &ctx,
        };
        let one = [compiled.clone()];
        let set = if kind.is_resource_based() {
            PolicySet {
                resource: &one,
                ..PolicySet::default()
            }
        } else {
            PolicySet {
                identity: &one,
                ..PolicySet::default()
            }
        };
        let fast = decide(&req, &set);
        assert_eq!(fast, berth_iam::evaluate(&req, &set).decision);
    }
});
