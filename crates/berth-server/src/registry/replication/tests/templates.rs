use std::collections::BTreeSet;

use berth_store::{EncryptionType, TagMutability};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::{assert_invalid, assert_violation, assert_wrong_type};
use crate::registry::replication::templates::{describe_response, valid_kms_key};
use crate::registry::replication::{
    best_match, AppliedFor, CreationTemplate, TemplateInput, TemplatePrefix,
};

const T0: i64 = 1_700_000_000_123;
const T1: i64 = 1_700_000_500_000;
const KMS: &str = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[]}"#;

fn create(input: Value) -> Result<CreationTemplate, super::ConfigError> {
    CreationTemplate::from_create_request(&input, T0)
}

fn minimal(prefix: &str) -> Value {
    json!({"prefix": prefix, "appliedFor": ["REPLICATION"]})
}

/// `minimal("prod")` with `extra`'s members.
fn with(extra: Value) -> Value {
    let mut v = minimal("prod");
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn full_wire() -> Value {
    json!({
        "prefix": "prod/team",
        "description": "team repositories",
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": KMS},
        "resourceTags": [{"Key": "team", "Value": "a"}, {"Key": "cost center", "Value": "4 2"}],
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest"},
                                               {"filterType": "WILDCARD", "filter": "dev-*"}],
        "repositoryPolicy": POLICY,
        "lifecyclePolicy": "{\"rules\":[]}",
        "appliedFor": ["REPLICATION", "PULL_THROUGH_CACHE", "CREATE_ON_PUSH"],
        "customRoleArn": "arn:aws:iam::111111111111:role/ecr-templates",
    })
}

#[test]
fn a_minimal_template_takes_the_documented_defaults() {
    let t = create(minimal("prod")).unwrap();
    assert_eq!(t.prefix, TemplatePrefix::Namespace("prod".into()));
    assert_eq!(t.image_tag_mutability, TagMutability::Mutable);
    assert_eq!(t.encryption, None);
    assert!(t.resource_tags.is_empty() && t.exclusion_filters.is_empty());
    assert_eq!((t.created_at, t.updated_at), (T0, T0));
    assert_eq!(
        t.to_json(),
        json!({"prefix": "prod", "imageTagMutability": "MUTABLE", "appliedFor": ["REPLICATION"],
               "createdAt": 1_700_000_000.123, "updatedAt": 1_700_000_000.123})
    );
    assert_eq!(
        t.response("111111111111"),
        json!({"registryId": "111111111111", "repositoryCreationTemplate": t.to_json()})
    );
}

#[test]
fn a_full_template_reads_back_as_it_was_created() {
    let t = create(full_wire()).unwrap();
    let mut out = t.to_json();
    assert_eq!(out["createdAt"], json!(1_700_000_000.123));
    let obj = out.as_object_mut().unwrap();
    obj.remove("createdAt");
    obj.remove("updatedAt");
    assert_eq!(out, full_wire());
    // What it answers is a request that makes the same template.
    assert_eq!(create(t.to_json()).unwrap(), t);
}

#[test]
fn empty_texts_are_none_and_left_out() {
    let t = create(with(json!({"description": "", "repositoryPolicy": "", "lifecyclePolicy": "",
        "customRoleArn": "", "encryptionConfiguration": {"encryptionType": "AES256", "kmsKey": ""}})))
    .unwrap();
    assert_eq!(
        (
            &t.description,
            &t.repository_policy,
            &t.lifecycle_policy,
            &t.custom_role_arn
        ),
        (&None, &None, &None, &None)
    );
    assert_eq!(t.encryption.as_ref().unwrap().kms_key, None);
    assert_eq!(
        t.to_json()["encryptionConfiguration"],
        json!({"encryptionType": "AES256"})
    );
    assert!(t.to_json().get("description").is_none());
}

#[test]
fn prefixes() {
    for (s, ok) in [
        ("ROOT", true),
        ("root", true),
        ("prod", true),
        ("prod/", true),
        ("prod/team-a", true),
        ("a", true),
        ("a/", true),
        ("a__b", true),
        ("a--b.c_d", true),
        ("", false),
        ("/", false),
        ("Prod", false),
        ("ROOT/", false),
        ("prod//", false),
        ("/prod", false),
        ("a___b", false),
        ("prod-", false),
        ("pr od", false),
    ] {
        assert_eq!(TemplatePrefix::new(s).is_some(), ok, "{s:?}");
    }
    assert_eq!(TemplatePrefix::new("ROOT"), Some(TemplatePrefix::Root));
    assert!(TemplatePrefix::new(&"a".repeat(256)).is_some());
    assert!(TemplatePrefix::new(&"a".repeat(257)).is_none());
    assert_eq!(
        TemplatePrefix::new("prod/").unwrap().namespace(),
        Some("prod")
    );
    assert_eq!(TemplatePrefix::Root.namespace(), None);
    assert_eq!(TemplatePrefix::new("prod/").unwrap().as_str(), "prod/");
}

#[test]
fn a_prefix_holds_its_namespace() {
    let prod = TemplatePrefix::new("prod").unwrap();
    let slash = TemplatePrefix::new("prod/").unwrap();
    for (name, held) in [
        ("prod/web", true),
        ("prod/team/web", true),
        ("prod", false),
        ("production/web", false),
        ("app/prod/web", false),
    ] {
        assert_eq!(prod.matches(name), held, "{name}");
        assert_eq!(slash.matches(name), held, "{name}");
    }
    assert!(TemplatePrefix::Root.matches("anything"));
    // `root` is a namespace like another.
    assert!(!TemplatePrefix::new("root").unwrap().matches("app"));
}

#[test]
fn prefix_member() {
    assert_violation(
        create(json!({"appliedFor": []})),
        "prefix",
        "Member must not be null",
    );
    assert_wrong_type(create(json!({"prefix": 1, "appliedFor": []})), "prefix");
    assert_violation(
        create(minimal("")),
        "prefix",
        "Member must have length greater than or equal to 1",
    );
    assert_violation(
        create(minimal(&"a".repeat(257))),
        "prefix",
        "Member must have length less than or equal to 256",
    );
    assert_violation(
        create(minimal("Prod")),
        "prefix",
        r"Member must satisfy regular expression pattern: ^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$",
    );
    // Delete and Describe read the same member.
    assert_eq!(
        TemplatePrefix::from_input(&json!({"prefix": "ROOT"})).unwrap(),
        TemplatePrefix::Root
    );
    assert_violation(
        TemplatePrefix::from_input(&json!({})),
        "prefix",
        "Member must not be null",
    );
    assert_eq!(TemplatePrefix::list_from_input(&json!({})).unwrap(), vec![]);
    assert_eq!(
        TemplatePrefix::list_from_input(&json!({"prefixes": ["ROOT", "prod/"]})).unwrap(),
        vec![
            TemplatePrefix::Root,
            TemplatePrefix::Namespace("prod/".into())
        ]
    );
    assert_violation(
        TemplatePrefix::list_from_input(&json!({"prefixes": ["prod", "Bad"]})),
        "prefixes.2.member",
        "Member must satisfy regular expression pattern",
    );
    assert_wrong_type(
        TemplatePrefix::list_from_input(&json!({"prefixes": "prod"})),
        "prefixes",
    );
}

#[test]
fn applied_for() {
    assert_violation(
        create(json!({"prefix": "prod"})),
        "appliedFor",
        "Member must not be null",
    );
    let t = create(
        json!({"prefix": "prod", "appliedFor": ["CREATE_ON_PUSH", "REPLICATION", "REPLICATION"]}),
    )
    .unwrap();
    assert_eq!(
        t.applied_for,
        BTreeSet::from([AppliedFor::Replication, AppliedFor::CreateOnPush])
    );
    assert_eq!(
        t.to_json()["appliedFor"],
        json!(["REPLICATION", "CREATE_ON_PUSH"])
    );
    assert_eq!(
        super::refusal(create(json!({"prefix": "prod", "appliedFor": ["REPLICATION", "PUSH"]}))).1,
        "1 validation error detected: Value '[REPLICATION, PUSH]' at 'appliedFor' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH]]"
    );
    assert_wrong_type(
        create(json!({"prefix": "prod", "appliedFor": "REPLICATION"})),
        "appliedFor",
    );
    assert_wrong_type(
        create(json!({"prefix": "prod", "appliedFor": [1]})),
        "appliedFor.1.member",
    );
    // Not required on Update.
    assert_eq!(
        TemplateInput::parse_update(&json!({"prefix": "prod"}))
            .unwrap()
            .applied_for,
        None
    );
}

#[test]
fn text_lengths() {
    for (member, max) in [
        ("description", 256),
        ("repositoryPolicy", 10_240),
        ("lifecyclePolicy", 30_720),
        ("customRoleArn", 2048),
    ] {
        assert!(
            create(with(json!({ member: "x".repeat(max) }))).is_ok(),
            "{member}"
        );
        assert_violation(
            create(with(json!({ member: "x".repeat(max + 1) }))),
            member,
            &format!("Member must have length less than or equal to {max}"),
        );
        assert_wrong_type(create(with(json!({ member: 5 }))), member);
    }
}

#[test]
fn encryption_configuration() {
    let enc = |e: Value| create(with(json!({ "encryptionConfiguration": e })));
    let t = enc(json!({"encryptionType": "KMS_DSSE", "kmsKey": KMS})).unwrap();
    let e = t.encryption.unwrap();
    assert_eq!(
        (e.kind, e.kms_key.as_deref()),
        (EncryptionType::KmsDsse, Some(KMS))
    );
    assert_eq!(
        enc(json!({"encryptionType": "KMS"}))
            .unwrap()
            .encryption
            .unwrap()
            .kms_key,
        None
    );
    assert_violation(
        enc(json!({"kmsKey": KMS})),
        "encryptionConfiguration.encryptionType",
        "Member must not be null",
    );
    assert_violation(
        enc(json!({"encryptionType": "RSA"})),
        "encryptionConfiguration.encryptionType",
        "Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]",
    );
    assert_violation(
        enc(json!({"encryptionType": "KMS", "kmsKey": "alias/mine"})),
        "encryptionConfiguration.kmsKey",
        "Member must satisfy regular expression pattern: ^$|arn:aws",
    );
    assert_violation(
        enc(json!({"encryptionType": "KMS", "kmsKey": "k".repeat(2049)})),
        "encryptionConfiguration.kmsKey",
        "Member must have length less than or equal to 2048",
    );
    assert_invalid(
        enc(json!({"encryptionType": "AES256", "kmsKey": KMS})),
        "a KMS key can only be given with encryptionType KMS or KMS_DSSE, not AES256",
    );
    assert_wrong_type(enc(json!("KMS")), "encryptionConfiguration");
}

#[test]
fn kms_key_pattern() {
    for (s, ok) in [
        ("", true),
        (KMS, true),
        (
            "arn:aws-us-gov:kms:us-gov-west-1:111111111111:key/abc",
            true,
        ),
        ("arn:aws:kms:us-east-1:111111111111:alias/abc", false),
        ("arn:aws:kms:us-east-1:11111111111:key/abc", false),
        ("arn:aws:kms::111111111111:key/abc", false),
        ("arn:aws:kms:us-east-1:111111111111:key/", false),
        ("arn:aws:kms:us-east-1:111111111111:key/ABC", false),
        ("arn:azure:kms:us-east-1:111111111111:key/abc", false),
        ("arn:aws:kms:us-east-1:111111111111:key/abc:extra", false),
    ] {
        assert_eq!(valid_kms_key(s), ok, "{s}");
    }
}

#[test]
fn resource_tags() {
    let tags = |t: Value| create(with(json!({ "resourceTags": t })));
    let t = tags(
        json!([{"Key": "a", "Value": "1"}, {"Key": "b", "Value": ""}, {"Key": "a", "Value": "2"}]),
    )
    .unwrap();
    let kv: Vec<(&str, &str)> = t
        .resource_tags
        .iter()
        .map(|x| (x.key.as_str(), x.value.as_str()))
        .collect();
    assert_eq!(kv, vec![("b", ""), ("a", "2")]);
    assert_violation(
        tags(json!([{"Value": "1"}])),
        "resourceTags.1.member.Key",
        "Member must not be null",
    );
    assert_violation(
        tags(json!([{"Key": "a"}])),
        "resourceTags.1.member.Value",
        "Member must not be null",
    );
    assert_wrong_type(
        tags(json!([{"Key": "a", "Value": 1}])),
        "resourceTags.1.member.Value",
    );
    assert_wrong_type(tags(json!({"Key": "a"})), "resourceTags");
    for bad in [
        json!([{"Key": "", "Value": "1"}]),
        json!([{"Key": "k".repeat(129), "Value": "1"}]),
        json!([{"Key": "a", "Value": "v".repeat(257)}]),
        json!([{"Key": "a#b", "Value": "1"}]),
    ] {
        assert_invalid(tags(bad), "is not valid: keys have 1 to 128 characters");
    }
    assert_invalid(tags(json!([{"Key": "AWS:team", "Value": "1"}])), "reserved");
    let fifty_one: Vec<Value> = (0..51)
        .map(|i| json!({"Key": format!("k{i}"), "Value": ""}))
        .collect();
    assert_invalid(tags(json!(fifty_one)), "at most 50 tags, not 51");
    let fifty: Vec<Value> = (0..50)
        .map(|i| json!({"Key": format!("k{i}"), "Value": ""}))
        .collect();
    assert_eq!(tags(json!(fifty)).unwrap().resource_tags.len(), 50);
}

#[test]
fn tag_mutability_and_exclusion_filters() {
    let filter = |f: &str| json!({"filterType": "WILDCARD", "filter": f});
    assert_violation(
        create(with(json!({"imageTagMutability": "FROZEN"}))),
        "imageTagMutability",
        "Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]",
    );
    let m = |f: Value| {
        create(with(json!({"imageTagMutability": "MUTABLE_WITH_EXCLUSION",
                           "imageTagMutabilityExclusionFilters": f})))
    };
    let t = m(json!([filter("v*"), filter("v*"), filter("rc")])).unwrap();
    assert_eq!(t.image_tag_mutability, TagMutability::MutableWithExclusion);
    assert_eq!(
        t.exclusion_filters.len(),
        2,
        "a repeated filter counts once"
    );
    assert_violation(
        m(json!([])),
        "imageTagMutabilityExclusionFilters",
        "Member must have length greater than or equal to 1",
    );
    assert_violation(
        m(json!(["a", "b", "c", "d", "e", "f"].map(filter))),
        "imageTagMutabilityExclusionFilters",
        "Member must have length less than or equal to 5",
    );
    assert_violation(
        m(json!([{"filterType": "PREFIX", "filter": "v"}])),
        "imageTagMutabilityExclusionFilters.1.member.filterType",
        "Member must satisfy enum value set: [WILDCARD]",
    );
    assert_violation(
        m(json!([{"filterType": "WILDCARD"}])),
        "imageTagMutabilityExclusionFilters.1.member.filter",
        "Member must not be null",
    );
    assert_violation(
        m(json!([filter("v 1")])),
        "imageTagMutabilityExclusionFilters.1.member.filter",
        "Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}$",
    );
    assert_violation(
        m(json!([filter(&"v".repeat(129))])),
        "imageTagMutabilityExclusionFilters.1.member.filter",
        "Member must have length less than or equal to 128",
    );
    assert_invalid(
        create(with(json!({"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"}))),
        "ImageTagMutabilityExclusionFilters can't be null when imageTagMutability is set as IMMUTABLE_WITH_EXCLUSION",
    );
    assert_invalid(
        create(with(json!({"imageTagMutability": "IMMUTABLE",
                           "imageTagMutabilityExclusionFilters": [filter("v")]}))),
        "can only be given with a *_WITH_EXCLUSION mutability, not IMMUTABLE",
    );
    // No mutability given is MUTABLE, which takes no filters.
    assert_invalid(
        create(with(
            json!({"imageTagMutabilityExclusionFilters": [filter("v")]}),
        )),
        "not MUTABLE",
    );
}

fn update(t: &mut CreationTemplate, input: Value) -> Result<(), super::ConfigError> {
    let mut request = json!({"prefix": t.prefix.as_str()});
    for (k, v) in input.as_object().unwrap() {
        request[k] = v.clone();
    }
    t.apply_update(&TemplateInput::parse_update(&request)?, T1)
}

#[test]
fn an_update_changes_only_what_it_gives() {
    let original = create(full_wire()).unwrap();
    let mut t = original.clone();
    update(&mut t, json!({"description": "new words"})).unwrap();
    assert_eq!(t.description.as_deref(), Some("new words"));
    assert_eq!((t.created_at, t.updated_at), (T0, T1));
    let unchanged = |a: &CreationTemplate| CreationTemplate {
        description: None,
        updated_at: 0,
        ..a.clone()
    };
    assert_eq!(unchanged(&t), unchanged(&original));

    // Empty texts remove; lists replace whole.
    update(
        &mut t,
        json!({"repositoryPolicy": "", "customRoleArn": "", "resourceTags": [],
                          "appliedFor": ["PULL_THROUGH_CACHE"]}),
    )
    .unwrap();
    assert_eq!(
        (t.repository_policy.as_ref(), t.custom_role_arn.as_ref()),
        (None, None)
    );
    assert!(t.resource_tags.is_empty());
    assert_eq!(
        t.applied_for,
        BTreeSet::from([AppliedFor::PullThroughCache])
    );
    assert_eq!(
        t.lifecycle_policy, original.lifecycle_policy,
        "not given: kept"
    );
    assert_eq!(t.encryption, original.encryption);

    update(
        &mut t,
        json!({"encryptionConfiguration": {"encryptionType": "AES256"}, "lifecyclePolicy": "x"}),
    )
    .unwrap();
    assert_eq!(t.encryption.as_ref().unwrap().kind, EncryptionType::Aes256);
    assert_eq!(t.lifecycle_policy.as_deref(), Some("x"));
}

#[test]
fn an_update_keeps_mutability_and_filters_consistent() {
    let filter = |f: &str| json!({"filterType": "WILDCARD", "filter": f});
    let mut t = create(full_wire()).unwrap();
    // Filters alone, the template taking filters: replaced.
    update(
        &mut t,
        json!({"imageTagMutabilityExclusionFilters": [filter("stable")]}),
    )
    .unwrap();
    assert_eq!(
        t.image_tag_mutability,
        TagMutability::ImmutableWithExclusion
    );
    assert_eq!(t.exclusion_filters.len(), 1);
    // A mutability without exclusions drops the filters.
    update(&mut t, json!({"imageTagMutability": "IMMUTABLE"})).unwrap();
    assert_eq!(t.image_tag_mutability, TagMutability::Immutable);
    assert!(t.exclusion_filters.is_empty());
    // Refusals leave the template as it was.
    let before = t.clone();
    assert_invalid(
        update(
            &mut t,
            json!({"imageTagMutabilityExclusionFilters": [filter("v")],
                              "description": "lost"}),
        ),
        "not IMMUTABLE",
    );
    assert_invalid(
        update(
            &mut t,
            json!({"imageTagMutability": "MUTABLE_WITH_EXCLUSION"}),
        ),
        "can't be null when imageTagMutability is set as MUTABLE_WITH_EXCLUSION",
    );
    assert_eq!(t, before);
    // An update's members are checked as a create's are.
    assert_violation(
        update(&mut t, json!({"description": "d".repeat(257)})),
        "description",
        "Member must have length less than or equal to 256",
    );
    assert_eq!(t, before);
}

fn template(prefix: &str, applied: &[AppliedFor]) -> CreationTemplate {
    let names: Vec<&str> = applied.iter().map(|a| a.as_str()).collect();
    create(json!({"prefix": prefix, "appliedFor": names, "description": prefix})).unwrap()
}

#[test]
fn best_match_takes_the_longest_namespace_and_root_last() {
    use AppliedFor::*;
    let templates = vec![
        template("ROOT", &[Replication, PullThroughCache]),
        template("prod", &[Replication]),
        template("prod/team", &[Replication, CreateOnPush]),
        template("prod/cache", &[PullThroughCache]),
    ];
    let pick = |name: &str, scenario| {
        best_match(&templates, name, scenario).map(|t| t.prefix.as_str().to_string())
    };
    assert_eq!(
        pick("prod/team/web", Replication).as_deref(),
        Some("prod/team")
    );
    assert_eq!(pick("prod/web", Replication).as_deref(), Some("prod"));
    assert_eq!(
        pick("prod/teamwork/web", Replication).as_deref(),
        Some("prod")
    );
    assert_eq!(pick("production/web", Replication).as_deref(), Some("ROOT"));
    assert_eq!(pick("prod", Replication).as_deref(), Some("ROOT"));
    // Templates not applied for the scenario are passed over.
    assert_eq!(pick("prod/cache/x", Replication).as_deref(), Some("prod"));
    assert_eq!(
        pick("prod/cache/x", PullThroughCache).as_deref(),
        Some("prod/cache")
    );
    assert_eq!(
        pick("prod/team/web", PullThroughCache).as_deref(),
        Some("ROOT")
    );
    // No ROOT for the scenario: ECR's defaults.
    assert_eq!(pick("app", CreateOnPush), None);
    assert_eq!(
        pick("prod/team/web", CreateOnPush).as_deref(),
        Some("prod/team")
    );
    assert!(best_match(&[], "app", Replication).is_none());
    // Equally specific: the first given.
    let twins = vec![
        template("prod/", &[Replication]),
        template("prod", &[Replication]),
    ];
    assert_eq!(
        best_match(&twins, "prod/x", Replication)
            .unwrap()
            .prefix
            .as_str(),
        "prod/"
    );
}

#[test]
fn describe_answers_a_page() {
    let a = template("ROOT", &[AppliedFor::Replication]);
    let b = template("prod", &[AppliedFor::Replication]);
    assert_eq!(
        describe_response("111111111111", [&a, &b], Some("t1")),
        json!({"registryId": "111111111111",
               "repositoryCreationTemplates": [a.to_json(), b.to_json()], "nextToken": "t1"})
    );
    assert_eq!(
        describe_response("111111111111", [], None),
        json!({"registryId": "111111111111", "repositoryCreationTemplates": []})
    );
}

proptest! {
    #[test]
    fn any_prefix_text_is_read_or_refused(s in any::<String>()) {
        if let Some(p) = TemplatePrefix::new(&s) {
            prop_assert_eq!(p.as_str(), s.as_str());
        }
    }

    #[test]
    fn a_namespace_holds_its_subrepositories_and_not_its_siblings(
        ns in "[a-z0-9]{1,8}(-[a-z0-9]{1,8})?(/[a-z0-9]{1,8}){0,2}",
        rest in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
        slash in any::<bool>(),
    ) {
        let written = if slash { format!("{ns}/") } else { ns.clone() };
        let p = TemplatePrefix::new(&written).unwrap();
        let inside = format!("{ns}/{rest}");
        let sibling = format!("{ns}{rest}");
        prop_assert!(p.matches(&inside));
        prop_assert!(!p.matches(&sibling));
        prop_assert!(!p.matches(&ns));
    }
}
