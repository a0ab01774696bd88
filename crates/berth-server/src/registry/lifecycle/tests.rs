//! The policy grammar and the evaluator, through `LifecyclePolicy::parse` and
//! `evaluate`, with every expected result written down.

use serde_json::{json, Value};

use super::*;

const DAY: i64 = 86_400_000;
/// "Now" in the tests: day 100.
const NOW: i64 = 100 * DAY;

/// An image pushed `age_days` days before NOW, never pulled.
fn img(name: &str, tags: &[&str], age_days: i64) -> ImageFacts {
    ImageFacts {
        digest: format!("sha256:{name}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        pushed_at: NOW - age_days * DAY,
        last_pull: None,
    }
}

fn pulled(mut i: ImageFacts, days_ago: i64) -> ImageFacts {
    i.last_pull = Some(NOW - days_ago * DAY);
    i
}

/// A policy of these rules (padded to ECR's 100-character minimum).
fn policy(rules: Value) -> String {
    let text = json!({ "rules": rules }).to_string();
    // Whitespace after the JSON keeps it valid and long enough.
    format!("{text:<100}")
}

fn rule(priority: i64, selection: Value) -> Value {
    json!({"rulePriority": priority, "description": format!("rule {priority}"),
           "selection": selection, "action": {"type": "expire"}})
}

fn parse(rules: Value) -> LifecyclePolicy {
    LifecyclePolicy::parse(&policy(rules)).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(rules: Value) -> String {
    match LifecyclePolicy::parse(&policy(rules)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0,
    }
}

/// (image name, rule) of what a policy expires, oldest first.
fn expired(p: &LifecyclePolicy, images: &[ImageFacts]) -> Vec<(String, i64)> {
    p.evaluate(images, NOW)
        .into_iter()
        .map(|e| (e.image.digest["sha256:".len()..].to_string(), e.rule))
        .collect()
}

fn names(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(n, r)| (n.to_string(), *r)).collect()
}

#[test]
fn image_count_keeps_the_newest_of_the_selected_images() {
    let p = parse(json!([rule(
        1,
        json!({"tagStatus": "tagged", "tagPrefixList": ["release"],
        "countType": "imageCountMoreThan", "countNumber": 2})
    )]));
    let images = [
        img("r1", &["release-1"], 40),
        img("r2", &["release-2"], 30),
        img("r3", &["release-3"], 20),
        img("r4", &["release-4"], 10),
        img("dev", &["dev-1"], 90),
        img("none", &[], 95),
    ];
    // r4 and r3 are the two newest releases; dev and the untagged image are not selected.
    assert_eq!(expired(&p, &images), names(&[("r1", 1), ("r2", 1)]));
}

#[test]
fn same_push_time_is_ordered_by_digest() {
    let p = parse(json!([rule(
        1,
        json!({"tagStatus": "any",
        "countType": "imageCountMoreThan", "countNumber": 1})
    )]));
    let images = [img("b", &[], 5), img("a", &[], 5)];
    // Tie: the smaller digest counts as newer and is kept, whatever the listing order.
    assert_eq!(expired(&p, &images), names(&[("b", 1)]));
    let reversed = [img("a", &[], 5), img("b", &[], 5)];
    assert_eq!(expired(&p, &reversed), names(&[("b", 1)]));
}

#[test]
fn since_image_pushed_expires_what_is_older_than_the_days() {
    let p = parse(json!([rule(
        1,
        json!({"tagStatus": "untagged",
        "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14})
    )]));
    let mut exactly = img("exactly14", &[], 14);
    exactly.pushed_at = NOW - 14 * DAY; // 14 days old: not *more* than 14
    let images = [
        img("old", &[], 15),
        exactly,
        img("new", &[], 1),
        img("oldtagged", &["v1"], 50),
    ];
    assert_eq!(expired(&p, &images), names(&[("old", 1)]));
}

#[test]
fn since_image_pulled_uses_the_last_pull_and_else_the_push() {
    let p = parse(json!([rule(
        1,
        json!({"tagStatus": "any",
        "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 30})
    )]));
    let images = [
        // pushed long ago, pulled recently: kept
        pulled(img("busy", &["a"], 300), 2),
        // pushed long ago, last pulled 31 days ago: expired
        pulled(img("stale", &["b"], 300), 31),
        // never pulled, pushed 40 days ago: expired (push time stands in)
        img("never-old", &["c"], 40),
        // never pulled, pushed 3 days ago: kept
        img("never-new", &[], 3),
    ];
    assert_eq!(
        expired(&p, &images),
        names(&[("stale", 1), ("never-old", 1)])
    );
}

#[test]
fn tag_lists_need_every_entry_matched_by_some_tag() {
    let prefixes = parse(json!([rule(
        1,
        json!({"tagStatus": "tagged",
        "tagPrefixList": ["prod", "v"], "countType": "imageCountMoreThan", "countNumber": 1})
    )]));
    let patterns = parse(json!([rule(
        1,
        json!({"tagStatus": "tagged",
        "tagPatternList": ["prod*", "v*.*"], "countType": "imageCountMoreThan", "countNumber": 1})
    )]));
    let images = [
        img("both-new", &["prod-a", "v1.2"], 1),
        img("both-old", &["v0.9", "prod-b"], 9),
        img("prod-only", &["prod-c"], 20),
        img("v-only", &["v3.0"], 30),
        img("one-tag-for-both", &["prodv"], 40),
    ];
    // prefixes: "prodv" starts with "prod" but not "v": not selected.
    assert_eq!(expired(&prefixes, &images), names(&[("both-old", 1)]));
    // patterns: "v0.9" matches v*.*; "v1.2" too; "prodv" has no dot.
    assert_eq!(expired(&patterns, &images), names(&[("both-old", 1)]));
    let mid = parse(json!([rule(
        1,
        json!({"tagStatus": "tagged",
        "tagPatternList": ["*-rc*"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
    )]));
    let images = [
        img("rc", &["1.0-rc1"], 5),
        img("final", &["1.0"], 5),
        img("rc-prefix", &["-rc"], 5),
    ];
    assert_eq!(
        expired(&mid, &images),
        names(&[("rc", 1), ("rc-prefix", 1)])
    );
}

#[test]
fn an_image_selected_by_an_earlier_rule_is_never_expired_by_a_later_one() {
    // Rule 1 keeps every prod image; rule 2 (any) keeps the 2 newest of all images.
    let p = parse(json!([
        rule(
            1,
            json!({"tagStatus": "tagged", "tagPatternList": ["prod*"],
            "countType": "imageCountMoreThan", "countNumber": 9999})
        ),
        rule(
            2,
            json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2})
        ),
    ]));
    let images = [
        img("prod3", &["prod-3"], 1),
        img("dev2", &["dev-2"], 2),
        img("prod2", &["prod-2"], 3),
        img("dev1", &["dev-1"], 4),
        img("prod1", &["prod-1"], 5),
        img("loose", &[], 6),
    ];
    // Rule 2 counts prod3 and dev2 as its 2 newest (prod3 although rule 1 selected it),
    // identifies the rest, and may expire only what rule 1 did not select.
    assert_eq!(expired(&p, &images), names(&[("loose", 2), ("dev1", 2)]));
}

#[test]
fn images_expired_earlier_still_count_and_are_expired_once() {
    // Rule 1 expires untagged images older than 10 days; rule 2 keeps the 3 newest of
    // every image.
    let p = parse(json!([
        rule(
            1,
            json!({"tagStatus": "untagged", "countType": "sinceImagePushed",
            "countUnit": "days", "countNumber": 10})
        ),
        rule(
            5,
            json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3})
        ),
    ]));
    let images = [
        img("t1", &["a"], 1),
        img("u-old1", &[], 11),
        img("u-old2", &[], 12),
        img("t2", &["b"], 13),
        img("u-new", &[], 2),
    ];
    // Rule 1 expires u-old1 and u-old2. Rule 2's newest three are t1, u-new, u-old1 (an
    // image rule 1 expired still holds its place), so it identifies u-old2 and t2: u-old2
    // is rule 1's already (and selected by it), t2 is expired by rule 2. u-new was
    // selected by rule 1 and kept: rule 2 may not expire it either way.
    assert_eq!(
        expired(&p, &images),
        names(&[("t2", 5), ("u-old2", 1), ("u-old1", 1)])
    );
}

#[test]
fn rules_apply_in_priority_order_not_text_order() {
    // Written last, applied first (priority 1): keeps the newest "keep" image; the
    // tagged rule 7 then cannot expire any "keep" image.
    let p = parse(json!([
        rule(
            7,
            json!({"tagStatus": "tagged", "tagPrefixList": ["k"],
            "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})
        ),
        rule(
            1,
            json!({"tagStatus": "tagged", "tagPrefixList": ["keep"],
            "countType": "imageCountMoreThan", "countNumber": 1})
        ),
    ]));
    assert_eq!(
        p.rules.iter().map(|r| r.priority).collect::<Vec<_>>(),
        [1, 7]
    );
    let images = [
        img("keep2", &["keep-2"], 2),
        img("keep1", &["keep-1"], 3),
        img("k1", &["k-1"], 4),
    ];
    assert_eq!(expired(&p, &images), names(&[("k1", 7), ("keep1", 1)]));
}

#[test]
fn nothing_selected_nothing_expired() {
    let p = parse(json!([rule(
        1,
        json!({"tagStatus": "untagged",
        "countType": "imageCountMoreThan", "countNumber": 1})
    )]));
    assert_eq!(expired(&p, &[]), names(&[]));
    assert_eq!(
        expired(&p, &[img("a", &["x"], 50), img("b", &["y"], 60)]),
        names(&[])
    );
}

#[test]
fn every_rule_type_parses_to_its_typed_form() {
    let p = parse(json!([
        rule(
            1,
            json!({"tagStatus": "tagged", "tagPrefixList": ["a"], "countType": "imageCountMoreThan", "countNumber": 3})
        ),
        rule(
            2,
            json!({"tagStatus": "tagged", "tagPatternList": ["b*"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 4, "storageClass": "standard"})
        ),
        rule(
            3,
            json!({"tagStatus": "untagged", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 5})
        ),
        rule(
            4,
            json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 6})
        ),
    ]));
    let counts: Vec<Count> = p.rules.iter().map(|r| r.count).collect();
    assert_eq!(
        counts,
        [
            Count::MoreThan(3),
            Count::SincePushedDays(4),
            Count::SincePulledDays(5),
            Count::MoreThan(6)
        ]
    );
    assert!(matches!(&p.rules[0].tags, TagSelection::Tagged(TagList::Prefixes(l)) if l == &["a"]));
    assert!(
        matches!(&p.rules[1].tags, TagSelection::Tagged(TagList::Patterns(l)) if l[0].0 == "b*")
    );
    assert!(matches!(p.rules[2].tags, TagSelection::Untagged));
    assert!(matches!(p.rules[3].tags, TagSelection::Any));
    assert_eq!(p.rules[0].description.as_deref(), Some("rule 1"));
}

#[test]
fn the_grammar_refuses_what_ecr_refuses_and_says_where() {
    let tagged = |extra: Value| {
        let mut s = json!({"tagStatus": "tagged", "tagPrefixList": ["a"],
            "countType": "imageCountMoreThan", "countNumber": 1});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                s.as_object_mut().unwrap().remove(k);
            } else {
                s[k] = v.clone();
            }
        }
        s
    };
    let any = json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1});
    let untagged =
        json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1});
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "at least one rule"),
        (
            json!([rule(0, tagged(json!({})))]),
            "rules[0].rulePriority must be an integer of at least 1",
        ),
        (
            json!([rule(1, tagged(json!({}))), rule(1, untagged.clone())]),
            "rulePriority 1 is used by more than one rule",
        ),
        (
            json!([rule(1, tagged(json!({"tagStatus": "sometimes"})))]),
            "tagStatus must be tagged, untagged or any",
        ),
        (
            json!([rule(1, tagged(json!({"tagPrefixList": null})))]),
            "tagPrefixList or tagPatternList is required when tagStatus is tagged",
        ),
        (
            json!([rule(1, tagged(json!({"tagPrefixList": []})))]),
            "tagPrefixList must be a list of at least one tag",
        ),
        (
            json!([rule(1, tagged(json!({"tagPatternList": ["x"]})))]),
            "not both",
        ),
        (
            json!([rule(
                1,
                json!({"tagStatus": "untagged", "tagPrefixList": ["a"], "countType": "imageCountMoreThan", "countNumber": 1})
            )]),
            "can only be used when tagStatus is tagged, not untagged",
        ),
        (
            json!([rule(
                1,
                tagged(json!({"tagPrefixList": null, "tagPatternList": ["a*b*c*d*e*f"]}))
            )]),
            "has 5 wildcards (*); a pattern may have at most 4",
        ),
        (
            json!([rule(1, tagged(json!({"countUnit": "days"})))]),
            "countUnit cannot be used with imageCountMoreThan",
        ),
        (
            json!([rule(1, tagged(json!({"countType": "sinceImagePushed"})))]),
            "countUnit must be days with sinceImagePushed",
        ),
        (
            json!([rule(
                1,
                tagged(json!({"countType": "sinceImagePulled", "countUnit": "hours"}))
            )]),
            "countUnit must be days with sinceImagePulled",
        ),
        (
            json!([rule(1, tagged(json!({"countNumber": 0})))]),
            "countNumber must be an integer of at least 1",
        ),
        (
            json!([rule(1, tagged(json!({"countNumber": null})))]),
            "countNumber is required",
        ),
        (
            json!([rule(
                1,
                tagged(json!({"countType": "sinceImageTransitioned", "countUnit": "days"}))
            )]),
            "sinceImageTransitioned is not supported",
        ),
        (
            json!([rule(1, tagged(json!({"storageClass": "archive"})))]),
            "storageClass archive is not supported",
        ),
        (
            json!([rule(1, tagged(json!({"tagPrefixlist": ["typo"]})))]),
            "not allowed: [\"tagPrefixlist\"]",
        ),
        (
            json!([{"rulePriority": 1, "selection": tagged(json!({})), "action": {"type": "transition", "targetStorageClass": "archive"}}]),
            "action.type transition is not supported",
        ),
        (
            json!([{"rulePriority": 1, "selection": tagged(json!({})), "action": {"type": "explode"}}]),
            "action.type must be expire",
        ),
        (
            json!([{"rulePriority": 1, "selection": tagged(json!({}))}]),
            "rules[0].action is required",
        ),
        (
            json!([rule(1, any.clone()), rule(2, tagged(json!({})))]),
            "tagStatus any (rulePriority 1) must have the highest rulePriority",
        ),
        (
            json!([rule(1, untagged.clone()), rule(2, untagged.clone())]),
            "only one rule may select untagged images",
        ),
        (
            json!([
                rule(1, tagged(json!({"tagPrefixList": ["a", "b"]}))),
                rule(2, tagged(json!({"tagPrefixList": ["b", "a"]})))
            ]),
            "rules 1 and 2 select the same tags",
        ),
    ];
    for (rules, want) in cases {
        let got = refused(rules.clone());
        assert!(got.contains(want), "{rules}\n  said: {got}\n  want: {want}");
    }
    // The text itself.
    for (text, want) in [
        ("{}".to_string(), "100 to 30720 characters, not 2"),
        (format!("{:<100}", "not json"), "not valid JSON"),
        (format!("{:<100}", "[1]"), "must be a JSON object"),
        (
            format!("{:<100}", "{\"rulez\": []}"),
            "not allowed: [\"rulez\"]",
        ),
        (format!("{:<30721}", "{}"), "not 30721"),
    ] {
        let got = LifecyclePolicy::parse(&text).unwrap_err().0;
        assert!(got.contains(want), "said: {got}\n  want: {want}");
    }
    // Four wildcards are allowed; any as the last rule is too.
    parse(json!([
        rule(
            1,
            tagged(json!({"tagPrefixList": null, "tagPatternList": ["*a*b*c*"]}))
        ),
        rule(9, any),
    ]));
}

/// The parser and the evaluator on generated input (the fuzzing of this parser, run with
/// the tests): any text is refused or read, never a panic; whatever parses evaluates over
/// any images with each image expired at most once, by one of the policy's rules, only
/// if that rule selects it, and never one a higher-priority rule selected.
mod generated {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::super::*;
    use super::{DAY, NOW};

    fn selection() -> impl Strategy<Value = Value> {
        let status = prop_oneof![Just("tagged"), Just("untagged"), Just("any"), Just("bogus")];
        let list = proptest::collection::vec("[a-c*]{0,3}", 0..3);
        let count = prop_oneof![
            (0i64..5).prop_map(|n| json!({"countType": "imageCountMoreThan", "countNumber": n})),
            (0i64..5).prop_map(
                |n| json!({"countType": "sinceImagePushed", "countUnit": "days", "countNumber": n})
            ),
            (0i64..5).prop_map(
                |n| json!({"countType": "sinceImagePulled", "countUnit": "days", "countNumber": n})
            ),
            Just(json!({"countType": "sinceImagePushed", "countNumber": 1})),
        ];
        (status, proptest::option::of(list), any::<bool>(), count).prop_map(
            |(s, list, prefix, count)| {
                let mut sel = count.as_object().unwrap().clone();
                sel.insert("tagStatus".into(), json!(s));
                if let Some(l) = list {
                    let key = if prefix {
                        "tagPrefixList"
                    } else {
                        "tagPatternList"
                    };
                    sel.insert(key.into(), json!(l));
                }
                Value::Object(sel)
            },
        )
    }

    fn policy_text() -> impl Strategy<Value = String> {
        proptest::collection::vec((1i64..6, selection()), 1..4).prop_map(|rules| {
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|(p, s)| json!({"rulePriority": p, "selection": s, "action": {"type": "expire"}}))
                .collect();
            format!("{:<100}", json!({ "rules": rules }))
        })
    }

    fn images() -> impl Strategy<Value = Vec<ImageFacts>> {
        proptest::collection::vec(
            (
                proptest::collection::vec("[a-c]{1,3}", 0..3),
                0i64..10,
                proptest::option::of(0i64..10),
            ),
            0..12,
        )
        .prop_map(|imgs| {
            imgs.into_iter()
                .enumerate()
                .map(|(i, (tags, age, pulled))| ImageFacts {
                    digest: format!("sha256:{i:064x}"),
                    tags,
                    pushed_at: NOW - age * DAY,
                    last_pull: pulled.map(|d| NOW - d * DAY),
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn any_text_is_read_or_refused(text in ".{0,300}") {
            let _ = LifecyclePolicy::parse(&text);
        }

        #[test]
        fn generated_policies_are_read_or_refused(v in policy_text()) {
            let _ = LifecyclePolicy::parse(&v);
        }

        #[test]
        fn evaluation_expires_each_image_once_by_a_rule_that_selects_it(
            text in policy_text(),
            imgs in images(),
        ) {
            let Ok(p) = LifecyclePolicy::parse(&text) else { return Ok(()) };
            let expired = p.evaluate(&imgs, NOW);
            let mut seen = std::collections::HashSet::new();
            for e in &expired {
                prop_assert!(seen.insert(e.image.digest.clone()), "expired twice: {}", e.image.digest);
                let rule = p.rules.iter().find(|r| r.priority == e.rule);
                prop_assert!(rule.is_some(), "no rule {}", e.rule);
                let selected_by = |r: &Rule| r.selects(&e.image);
                prop_assert!(selected_by(rule.unwrap()));
                for earlier in p.rules.iter().filter(|r| r.priority < e.rule) {
                    prop_assert!(!selected_by(earlier), "rule {} selected {} first", earlier.priority, e.image.digest);
                }
            }
        }
    }
}
