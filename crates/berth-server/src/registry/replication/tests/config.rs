use proptest::prelude::*;
use serde_json::{json, Value};

use super::{assert_invalid, assert_violation, assert_wrong_type, refusal};
use crate::registry::replication::config::{
    valid_filter, valid_region, valid_registry_id, MAX_UNIQUE_DESTINATIONS,
};
use crate::registry::replication::{Destination, ReplicationConfiguration};

const ACCOUNT: &str = "111111111111";
const REGION: &str = "us-east-1";
const R1: &str = "replicationConfiguration.rules.1.member";

fn dest(region: &str, id: &str) -> Value {
    json!({"region": region, "registryId": id})
}

fn d(region: &str, id: &str) -> Destination {
    Destination {
        region: region.into(),
        registry_id: id.into(),
    }
}

/// A configuration of one rule, put on ACCOUNT in REGION.
fn one_rule(rule: Value) -> Result<ReplicationConfiguration, super::ConfigError> {
    put(json!({"rules": [rule]}))
}

fn put(config: Value) -> Result<ReplicationConfiguration, super::ConfigError> {
    ReplicationConfiguration::from_request(
        &json!({ "replicationConfiguration": config }),
        ACCOUNT,
        REGION,
    )
}

fn filters(prefixes: &[&str]) -> Value {
    prefixes
        .iter()
        .map(|p| json!({"filter": p, "filterType": "PREFIX_MATCH"}))
        .collect()
}

#[test]
fn a_configuration_reads_back_as_it_was_put() {
    let wire = json!({"rules": [
        {"destinations": [dest("us-west-2", ACCOUNT), dest("eu-west-1", "222222222222")],
         "repositoryFilters": filters(&["prod", "team-a/"]),
         "deleteReplication": {"enabled": true}},
        {"destinations": [dest("us-west-1", ACCOUNT)],
         "deleteReplication": {"enabled": false}},
        {"destinations": []},
    ]});
    let c = put(wire.clone()).unwrap();
    assert_eq!(c.rules.len(), 3);
    assert_eq!(c.rules[0].filters.len(), 2);
    assert_eq!(c.rules[0].delete_replication, Some(true));
    assert_eq!(c.rules[1].delete_replication, Some(false));
    assert_eq!(c.rules[2].delete_replication, None);
    assert_eq!(c.to_json(), wire);
    assert_eq!(ReplicationConfiguration::parse(&c.to_json()).unwrap(), c);
    assert_eq!(
        c.describe_registry_response(ACCOUNT),
        json!({"registryId": ACCOUNT, "replicationConfiguration": wire})
    );
    assert_eq!(c.put_response(), json!({"replicationConfiguration": wire}));
}

#[test]
fn no_rules_is_an_empty_configuration() {
    let c = put(json!({"rules": []})).unwrap();
    assert!(c.rules.is_empty());
    assert_eq!(c, ReplicationConfiguration::default());
    assert_eq!(c.to_json(), json!({"rules": []}));
    assert!(c.destinations_for("app").is_empty());
}

#[test]
fn null_and_undeclared_members_are_absent() {
    let c = one_rule(json!({"destinations": [dest("us-west-2", ACCOUNT)],
        "repositoryFilters": null, "deleteReplication": null, "priority": 3}))
    .unwrap();
    assert!(c.rules[0].filters.is_empty());
    assert_eq!(c.rules[0].delete_replication, None);
    assert_eq!(
        c.to_json(),
        json!({"rules": [{"destinations": [dest("us-west-2", ACCOUNT)]}]})
    );
}

#[test]
fn required_members() {
    assert_violation(
        ReplicationConfiguration::from_request(&json!({}), ACCOUNT, REGION),
        "replicationConfiguration",
        "Member must not be null",
    );
    assert_violation(
        put(json!({})),
        "replicationConfiguration.rules",
        "Member must not be null",
    );
    assert_violation(
        one_rule(json!({})),
        &format!("{R1}.destinations"),
        "Member must not be null",
    );
    assert_violation(
        one_rule(json!({"destinations": [{"registryId": ACCOUNT}]})),
        &format!("{R1}.destinations.1.member.region"),
        "Member must not be null",
    );
    assert_violation(
        one_rule(json!({"destinations": [{"region": "us-west-2"}]})),
        &format!("{R1}.destinations.1.member.registryId"),
        "Member must not be null",
    );
    assert_violation(
        one_rule(
            json!({"destinations": [], "repositoryFilters": [{"filterType": "PREFIX_MATCH"}]}),
        ),
        &format!("{R1}.repositoryFilters.1.member.filter"),
        "Member must not be null",
    );
    assert_violation(
        one_rule(json!({"destinations": [], "repositoryFilters": [{"filter": "prod"}]})),
        &format!("{R1}.repositoryFilters.1.member.filterType"),
        "Member must not be null",
    );
    assert_violation(
        one_rule(json!({"destinations": [], "deleteReplication": {}})),
        &format!("{R1}.deleteReplication.enabled"),
        "Member must not be null",
    );
}

#[test]
fn wrong_json_types() {
    assert_wrong_type(
        ReplicationConfiguration::from_request(&json!([]), ACCOUNT, REGION),
        "",
    );
    assert_wrong_type(put(json!("rules")), "replicationConfiguration");
    assert_wrong_type(put(json!({"rules": {}})), "replicationConfiguration.rules");
    assert_wrong_type(put(json!({"rules": [7]})), R1);
    assert_wrong_type(
        one_rule(json!({"destinations": "us-west-2"})),
        &format!("{R1}.destinations"),
    );
    assert_wrong_type(
        one_rule(json!({"destinations": [["us-west-2"]]})),
        &format!("{R1}.destinations.1.member"),
    );
    assert_wrong_type(
        one_rule(json!({"destinations": [{"region": 1, "registryId": ACCOUNT}]})),
        &format!("{R1}.destinations.1.member.region"),
    );
    assert_wrong_type(
        one_rule(
            json!({"destinations": [{"region": "us-west-2", "registryId": 111111111111_u64}]}),
        ),
        &format!("{R1}.destinations.1.member.registryId"),
    );
    assert_wrong_type(
        one_rule(json!({"destinations": [], "repositoryFilters": "prod"})),
        &format!("{R1}.repositoryFilters"),
    );
    assert_wrong_type(
        one_rule(json!({"destinations": [], "repositoryFilters": ["prod"]})),
        &format!("{R1}.repositoryFilters.1.member"),
    );
    assert_wrong_type(
        one_rule(
            json!({"destinations": [], "repositoryFilters": [{"filter": 1, "filterType": "PREFIX_MATCH"}]}),
        ),
        &format!("{R1}.repositoryFilters.1.member.filter"),
    );
    assert_wrong_type(
        one_rule(
            json!({"destinations": [], "repositoryFilters": [{"filter": "prod", "filterType": true}]}),
        ),
        &format!("{R1}.repositoryFilters.1.member.filterType"),
    );
    assert_wrong_type(
        one_rule(json!({"destinations": [], "deleteReplication": true})),
        &format!("{R1}.deleteReplication"),
    );
    assert_wrong_type(
        one_rule(json!({"destinations": [], "deleteReplication": {"enabled": "true"}})),
        &format!("{R1}.deleteReplication.enabled"),
    );
}

#[test]
fn list_sizes() {
    // 25 rules (one destination between them, within the unique-destination quota)...
    let rule = json!({"destinations": [dest("us-west-2", ACCOUNT)]});
    assert_eq!(
        put(json!({"rules": vec![rule.clone(); 25]}))
            .unwrap()
            .rules
            .len(),
        25
    );
    // ...not 26.
    assert_violation(
        put(json!({"rules": vec![rule; 26]})),
        "replicationConfiguration.rules",
        "Member must have length less than or equal to 25",
    );
    // 100 destinations in a rule pass the model (the quota is checked apart)...
    let many: Vec<Value> = (0..100)
        .map(|i| dest("us-west-2", &format!("{:012}", 200_000_000_000_u64 + i)))
        .collect();
    let parsed =
        ReplicationConfiguration::parse(&json!({"rules": [{"destinations": many.clone()}]}))
            .unwrap();
    assert_eq!(parsed.rules[0].destinations.len(), 100);
    // ...101 do not.
    let mut too_many = many;
    too_many.push(dest("us-west-1", ACCOUNT));
    assert_violation(
        one_rule(json!({"destinations": too_many})),
        &format!("{R1}.destinations"),
        "Member must have length less than or equal to 100",
    );
    // Filters: absent, or 1 to 100.
    assert_violation(
        one_rule(json!({"destinations": [], "repositoryFilters": []})),
        &format!("{R1}.repositoryFilters"),
        "Member must have length greater than or equal to 1",
    );
    let hundred: Vec<String> = (0..100).map(|i| format!("team{i}")).collect();
    let hundred: Vec<&str> = hundred.iter().map(String::as_str).collect();
    assert_eq!(
        one_rule(json!({"destinations": [], "repositoryFilters": filters(&hundred)}))
            .unwrap()
            .rules[0]
            .filters
            .len(),
        100
    );
    let mut hundred_one = hundred.clone();
    hundred_one.push("extra");
    assert_violation(
        one_rule(json!({"destinations": [], "repositoryFilters": filters(&hundred_one)})),
        &format!("{R1}.repositoryFilters"),
        "Member must have length less than or equal to 100",
    );
}

#[test]
fn destination_region_and_registry() {
    let at = format!("{R1}.destinations.1.member");
    let with = |region: &str, id: &str| one_rule(json!({"destinations": [dest(region, id)]}));
    assert!(with("ap-southeast-2", ACCOUNT).is_ok());
    assert!(with("eu-central-1", "000000000000").is_ok());
    assert_violation(
        with("a", ACCOUNT),
        &format!("{at}.region"),
        "Member must have length greater than or equal to 2",
    );
    assert_violation(
        with(&"a".repeat(26), ACCOUNT),
        &format!("{at}.region"),
        "Member must have length less than or equal to 25",
    );
    assert_violation(
        with("US-WEST-2", ACCOUNT),
        &format!("{at}.region"),
        "Member must satisfy regular expression pattern: [0-9a-z-]{2,25}",
    );
    assert_violation(
        with("us_west_2", ACCOUNT),
        &format!("{at}.region"),
        "Member must satisfy regular expression pattern: [0-9a-z-]{2,25}",
    );
    for id in ["11111111111", "1111111111111", "11111111111a", ""] {
        assert_violation(
            with("us-west-2", id),
            &format!("{at}.registryId"),
            "Member must satisfy regular expression pattern: [0-9]{12}",
        );
    }
    let (_, message) = refusal(with("US-WEST-2", ACCOUNT));
    assert!(message.contains("Value 'US-WEST-2' at"), "{message}");
}

#[test]
fn filter_value_and_type() {
    let at = format!("{R1}.repositoryFilters.1.member");
    let with = |f: Value| one_rule(json!({"destinations": [], "repositoryFilters": [f]}));
    let prefix = |p: &str| with(json!({"filter": p, "filterType": "PREFIX_MATCH"}));
    for ok in ["prod", "prod/", "team-a/web", "a.b_c-d", "ab", "a-", "x/y-"] {
        assert!(prefix(ok).is_ok(), "{ok}");
    }
    assert_violation(
        prefix("a"),
        &format!("{at}.filter"),
        "Member must have length greater than or equal to 2",
    );
    assert_violation(
        prefix(&"a".repeat(257)),
        &format!("{at}.filter"),
        "Member must have length less than or equal to 256",
    );
    assert!(prefix(&"a".repeat(256)).is_ok());
    for bad in ["Prod", "/prod", "a//b", "-a/b", "prod*", "pr od"] {
        assert_violation(
            prefix(bad),
            &format!("{at}.filter"),
            "Member must satisfy regular expression pattern: ^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$",
        );
    }
    assert_violation(
        with(json!({"filter": "prod", "filterType": "WILDCARD"})),
        &format!("{at}.filterType"),
        "Member must satisfy enum value set: [PREFIX_MATCH]",
    );
}

#[test]
fn the_hand_written_patterns() {
    for (s, ok) in [
        ("us-east-1", true),
        ("ab", true),
        ("a", false),
        ("us-east-1a-very-long-region", false),
        ("Us-east-1", false),
    ] {
        assert_eq!(valid_region(s), ok, "{s}");
    }
    for (s, ok) in [
        ("123456789012", true),
        ("12345678901", false),
        ("12345678901x", false),
    ] {
        assert_eq!(valid_registry_id(s), ok, "{s}");
    }
    // The last segment may start with a separator or be empty; earlier ones may not.
    for (s, ok) in [
        ("-a", true),
        ("", true),
        ("a/", true),
        ("a.-_/b", true),
        ("-a/b", false),
        ("/", false),
        ("a/B", false),
    ] {
        assert_eq!(valid_filter(s), ok, "{s:?}");
    }
}

#[test]
fn a_destination_is_not_the_source_registry_in_the_source_region() {
    let e = one_rule(json!({"destinations": [dest("us-west-2", ACCOUNT), dest(REGION, ACCOUNT)]}));
    let (exception, message) = refusal(e);
    assert_eq!(exception, "InvalidParameterException");
    assert_eq!(
        message,
        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Replication destination cannot be the same as the source registry'"
    );
    // Another Region of the same registry, or the same Region of another registry: fine.
    assert!(one_rule(json!({"destinations": [dest("us-west-2", ACCOUNT)]})).is_ok());
    assert!(one_rule(json!({"destinations": [dest(REGION, "222222222222")]})).is_ok());
    // parse alone does not know the source.
    assert!(ReplicationConfiguration::parse(
        &json!({"rules": [{"destinations": [dest(REGION, ACCOUNT)]}]})
    )
    .is_ok());
}

#[test]
fn at_most_25_unique_destinations_across_all_rules() {
    let dests = |n: u64| -> Vec<Value> {
        (0..n)
            .map(|i| dest("us-west-2", &format!("{:012}", 200_000_000_000_u64 + i)))
            .collect()
    };
    // 25 distinct, named twice over two rules: fine.
    let c =
        put(json!({"rules": [{"destinations": dests(25)}, {"destinations": dests(25)}]})).unwrap();
    assert_eq!(c.unique_destinations().len(), MAX_UNIQUE_DESTINATIONS);
    // 26 distinct across two rules: refused.
    let mut second = dests(26);
    let first: Vec<Value> = second.drain(..13).collect();
    assert_invalid(
        put(json!({"rules": [{"destinations": first}, {"destinations": second}]})),
        "at most 25 unique destinations across all rules, not 26",
    );
}

#[test]
fn a_rule_without_filters_selects_every_repository() {
    let c = one_rule(json!({"destinations": [dest("us-west-2", ACCOUNT)]})).unwrap();
    for name in ["app", "prod/web", "a/b/c"] {
        assert!(c.rules[0].matches(name), "{name}");
    }
}

#[test]
fn prefix_filters_select_the_names_they_start() {
    let c =
        one_rule(json!({"destinations": [], "repositoryFilters": filters(&["prod", "team-a/"])}))
            .unwrap();
    let rule = &c.rules[0];
    for (name, selected) in [
        ("prod", true),
        ("prod/web", true),
        ("production", true),
        ("team-a/api", true),
        ("team-a", false),
        ("team-b/api", false),
        ("app/prod", false),
    ] {
        assert_eq!(rule.matches(name), selected, "{name}");
    }
}

#[test]
fn destinations_for_gathers_every_selecting_rule_once_per_destination() {
    let west = dest("us-west-2", ACCOUNT);
    let other = dest("eu-west-1", "222222222222");
    let third = dest("ap-south-1", ACCOUNT);
    let c = put(json!({"rules": [
        {"destinations": [west.clone()], "repositoryFilters": filters(&["prod"])},
        {"destinations": [other.clone(), west.clone()], "deleteReplication": {"enabled": true}},
        {"destinations": [third.clone()], "repositoryFilters": filters(&["team"]),
         "deleteReplication": {"enabled": true}},
        {"destinations": [other.clone()], "deleteReplication": {"enabled": false}},
    ]}))
    .unwrap();
    // prod/web: rules 1, 2 and 4. us-west-2 first (rule 1), deletions on because rule 2
    // names it with deleteReplication; eu-west-1 once, deletions on (rule 2).
    assert_eq!(
        c.destinations_for("prod/web"),
        vec![
            (d("us-west-2", ACCOUNT), true),
            (d("eu-west-1", "222222222222"), true),
        ]
    );
    // team/x: rules 2, 3 and 4.
    assert_eq!(
        c.destinations_for("team/x"),
        vec![
            (d("eu-west-1", "222222222222"), true),
            (d("us-west-2", ACCOUNT), true),
            (d("ap-south-1", ACCOUNT), true),
        ]
    );
    // A configuration whose only selecting rules leave deletions off.
    let quiet = put(json!({"rules": [
        {"destinations": [west.clone()], "deleteReplication": {"enabled": false}},
        {"destinations": [west], "repositoryFilters": filters(&["prod"])},
    ]}))
    .unwrap();
    assert_eq!(
        quiet.destinations_for("prod/web"),
        vec![(d("us-west-2", ACCOUNT), false)]
    );
    // Nothing selects: nowhere.
    let filtered =
        one_rule(json!({"destinations": [third], "repositoryFilters": filters(&["team"])}))
            .unwrap();
    assert!(filtered.destinations_for("app").is_empty());
}

fn region() -> impl Strategy<Value = String> {
    "[a-z0-9-]{2,25}"
}

fn registry_id() -> impl Strategy<Value = String> {
    "[0-9]{12}"
}

fn configuration() -> impl Strategy<Value = Value> {
    // Mostly from a small pool, so rules share destinations.
    let pooled = (
        prop::sample::select(vec!["us-west-2", "eu-west-1", "ap-south-1"]),
        prop::sample::select(vec![ACCOUNT, "222222222222"]),
    )
        .prop_map(|(r, id)| dest(r, id));
    let random = (region(), registry_id()).prop_map(|(r, id)| dest(&r, &id));
    let destination = prop_oneof![3 => pooled, 1 => random];
    let filter = "[a-z0-9][a-z0-9._-]{1,10}(/[a-z0-9][a-z0-9._-]{0,10}){0,2}/?"
        .prop_map(|f| json!({"filter": f, "filterType": "PREFIX_MATCH"}));
    let rule = (
        prop::collection::vec(destination, 0..4),
        prop::option::of(prop::collection::vec(filter, 1..4)),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(destinations, filters, delete)| {
            let mut r = json!({"destinations": destinations});
            if let Some(f) = filters {
                r["repositoryFilters"] = json!(f);
            }
            if let Some(enabled) = delete {
                r["deleteReplication"] = json!({"enabled": enabled});
            }
            r
        });
    prop::collection::vec(rule, 0..6).prop_map(|rules| json!({"rules": rules}))
}

proptest! {
    #[test]
    fn every_valid_configuration_reads_back_as_it_was_put(wire in configuration()) {
        let c = ReplicationConfiguration::parse(&wire);
        prop_assert!(c.is_ok(), "{:?}", c);
        let c = c.unwrap();
        prop_assert_eq!(c.to_json(), wire);
        prop_assert_eq!(ReplicationConfiguration::parse(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn destinations_for_names_each_destination_once_and_only_of_selecting_rules(
        wire in configuration(),
        name in "[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,2}",
    ) {
        let c = ReplicationConfiguration::parse(&wire).unwrap();
        let found = c.destinations_for(&name);
        for (i, (dst, deletes)) in found.iter().enumerate() {
            prop_assert!(!found[..i].iter().any(|(o, _)| o == dst), "twice: {:?}", dst);
            let naming: Vec<_> = c.rules.iter()
                .filter(|r| r.matches(&name) && r.destinations.contains(dst))
                .collect();
            prop_assert!(!naming.is_empty());
            prop_assert_eq!(*deletes, naming.iter().any(|r| r.replicates_deletes()));
        }
        let expected = c.rules.iter().filter(|r| r.matches(&name))
            .flat_map(|r| &r.destinations)
            .filter(|x| found.iter().any(|(f, _)| f == *x))
            .count();
        let total = c.rules.iter().filter(|r| r.matches(&name)).map(|r| r.destinations.len()).sum::<usize>();
        prop_assert_eq!(expected, total, "a destination of a selecting rule is missing");
    }

    #[test]
    fn any_json_is_read_or_refused(v in any::<String>()) {
        let _ = ReplicationConfiguration::parse(&json!({"rules": [{"destinations": [{"region": v.clone(), "registryId": v.clone()}], "repositoryFilters": [{"filter": v, "filterType": "PREFIX_MATCH"}]}]}));
    }
}
