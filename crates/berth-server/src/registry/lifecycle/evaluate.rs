//! Which images of a repository a lifecycle policy expires: a pure function of the
//! policy, the images and the time.
//!
//! # Semantics (ECR's "lifecycle policy evaluation rules", written down)
//!
//! Rules are applied one at a time, lowest `rulePriority` first. For each rule:
//!
//! 1. **Selection.** The rule *selects* the images its tag status admits: `untagged`
//!    images without tags; `tagged` images with at least one tag that satisfy its list
//!    (every entry of `tagPrefixList` is a prefix of, or every pattern of
//!    `tagPatternList` matches, at least one of the image's tags: `["prod", "v"]`
//!    selects an image tagged `prod-1` and `v1`, not one tagged only `prod-1`); `any`
//!    every image. Selection ignores what earlier rules did.
//! 2. **Identification.** Among the selected images, the rule *identifies*:
//!    - `imageCountMoreThan N`: all but the N most recently pushed (ties broken by
//!      digest, so the result does not depend on listing order);
//!    - `sinceImagePushed N days`: those pushed more than N days before `now`;
//!    - `sinceImagePulled N days`: those whose last recorded pull was more than N days
//!      before `now`; an image never pulled counts from its push (Berth records a pull
//!      at most once a day, as ECR does, so this is exact to a day).
//! 3. **Marking.** An identified image is expired by this rule unless an earlier rule
//!    expired it already, or an earlier rule *selected* it (an image that matches the
//!    tagging requirements of a higher-priority rule cannot be expired by a lower one).
//!
//! Consequences: an image is expired by at most one rule; images kept (or expired) by
//! an earlier rule still take their place in a later rule's count (after a rule that
//! keeps every `prod*` image, "`any`, keep the 3 newest" expires every non-`prod` image
//! when the 3 newest images are `prod` ones, and never a `prod` one); and `any`, which
//! must be the last rule, only expires what no other rule selected.
//!
//! Times are milliseconds since the Unix epoch. Images referenced by an index are
//! evaluated like any other: the run refuses to delete them while the index lists them
//! (see [`super::run`]).

use std::collections::{HashMap, HashSet};

use super::policy::{Count, LifecyclePolicy, Rule, TagSelection};

const DAY_MS: i64 = 86_400_000;

/// What the evaluator needs to know of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    pub digest: String,
    pub tags: Vec<String>,
    /// Milliseconds since the epoch.
    pub pushed_at: i64,
    /// Milliseconds since the epoch; `None` when never pulled.
    pub last_pull: Option<i64>,
}

impl From<&berth_store::Image> for ImageFacts {
    fn from(i: &berth_store::Image) -> ImageFacts {
        ImageFacts {
            digest: i.digest.clone(),
            tags: i.tags.clone(),
            pushed_at: i.pushed_at,
            last_pull: i.last_pull,
        }
    }
}

/// An image a policy expires, and the rule that expires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub image: ImageFacts,
    /// The `rulePriority` of the rule that expires it.
    pub rule: i64,
}

impl Rule {
    pub(crate) fn selects(&self, image: &ImageFacts) -> bool {
        match &self.tags {
            TagSelection::Any => true,
            TagSelection::Untagged => image.tags.is_empty(),
            TagSelection::Tagged(list) => !image.tags.is_empty() && list.matches(&image.tags),
        }
    }
}

impl LifecyclePolicy {
    /// The images this policy expires at `now`, oldest push first (see the module
    /// documentation for the rules).
    pub fn evaluate(&self, images: &[ImageFacts], now: i64) -> Vec<Expiry> {
        // Expired so far: image index → rule priority.
        let mut expired: HashMap<usize, i64> = HashMap::new();
        // Selected by an earlier rule: no later rule may expire these.
        let mut claimed: HashSet<usize> = HashSet::new();
        for rule in &self.rules {
            let mut selected: Vec<usize> = (0..images.len())
                .filter(|&i| rule.selects(&images[i]))
                .collect();
            let identified: Vec<usize> = match rule.count {
                Count::MoreThan(n) => {
                    // Newest first; the first n are kept.
                    selected.sort_by(|&a, &b| {
                        let (a, b) = (&images[a], &images[b]);
                        b.pushed_at
                            .cmp(&a.pushed_at)
                            .then_with(|| a.digest.cmp(&b.digest))
                    });
                    selected.iter().skip(n as usize).copied().collect()
                }
                Count::SincePushedDays(d) => selected
                    .iter()
                    .copied()
                    .filter(|&i| older_than(images[i].pushed_at, d, now))
                    .collect(),
                Count::SincePulledDays(d) => selected
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let img = &images[i];
                        older_than(img.last_pull.unwrap_or(img.pushed_at), d, now)
                    })
                    .collect(),
            };
            for i in identified {
                if !claimed.contains(&i) {
                    expired.entry(i).or_insert(rule.priority);
                }
            }
            claimed.extend(selected);
        }
        let mut out: Vec<Expiry> = expired
            .into_iter()
            .map(|(i, rule)| Expiry {
                image: images[i].clone(),
                rule,
            })
            .collect();
        out.sort_by(|a, b| {
            a.image
                .pushed_at
                .cmp(&b.image.pushed_at)
                .then_with(|| a.image.digest.cmp(&b.image.digest))
        });
        out
    }
}

/// Whether `at` is more than `days` days before `now`.
fn older_than(at: i64, days: u32, now: i64) -> bool {
    now.saturating_sub(at) > i64::from(days) * DAY_MS
}
