//! Storing a pushed manifest, shared by `PUT /v2/<name>/manifests/<ref>` and PutImage:
//! read it, check its digest, then commit it (and move the tag) only if everything it
//! references is in the repository and the tag may move.

use berth_iam::glob::{push_lit, Glob, Tok};
use berth_oci::Reference;
use berth_store::{
    NewImage, PutImageError, PutOutcome, RefKind, Repository, TagMutability, TagRule,
};

use crate::serve::App;

/// Largest manifest accepted (ECR's limit).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// Why a manifest was not stored.
#[derive(Debug)]
pub enum PushError {
    Invalid(String),
    DigestMismatch {
        given: String,
        computed: String,
    },
    Missing {
        blobs: Vec<String>,
        manifests: Vec<String>,
    },
    TagImmutable {
        tag: String,
    },
    Store(berth_store::RegistryError),
}

/// An exclusion filter (or a lifecycle rule's tag pattern) as a glob of the IAM engine's
/// linear matcher (the project's one wildcard matcher): `*` is any run of characters;
/// everything else, `?` included, is itself (tag grammars have no other wildcard).
pub(crate) fn filter_glob(filter: &str) -> Glob {
    let mut toks = Vec::new();
    for (i, part) in filter.split('*').enumerate() {
        if i > 0 && toks.last() != Some(&Tok::Star) {
            toks.push(Tok::Star);
        }
        push_lit(&mut toks, part);
    }
    Glob::from_tokens(toks)
}

/// Whether a tag may move in a repository (its mutability and exclusion filters).
pub fn tag_rule(repo: &Repository, tag: &str) -> TagRule {
    let excluded = || {
        repo.mutability_filters
            .iter()
            .any(|f| filter_glob(&f.wildcard).matches(tag))
    };
    match repo.tag_mutability {
        TagMutability::Immutable => TagRule::Immutable,
        TagMutability::ImmutableWithExclusion if !excluded() => TagRule::Immutable,
        TagMutability::MutableWithExclusion if excluded() => TagRule::Immutable,
        _ => TagRule::Mutable,
    }
}

pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", berth_sigv4::hex(&sha2::Sha256::digest(bytes)))
}

/// A stored manifest: its digest, media type, what `put_image` did, and its subject.
pub struct Pushed {
    pub digest: String,
    pub media_type: String,
    pub outcome: PutOutcome,
    pub subject: Option<String>,
}

/// The size of an image index, as ECR reports it (its ImageDetail reference: for a
/// manifest list, `imageSizeInBytes` is the largest size among the listed manifests'
/// images): the largest size of the images it lists, each the compressed size of its config and layers (an
/// index within an index counts as its own largest image). Children the repository lacks
/// count for nothing; storing the index then fails on them anyway.
async fn largest_child(
    app: &App,
    repo: &Repository,
    refs: &[(String, Reference)],
) -> Result<i64, PushError> {
    let mut size = 0;
    for (d, kind) in refs {
        if *kind != Reference::Manifest {
            continue;
        }
        if let Some(img) = app
            .registry
            .image(repo.registry(), &repo.name, d)
            .await
            .map_err(PushError::Store)?
        {
            size = size.max(img.size);
        }
    }
    Ok(size)
}

/// A manifest to store: its bytes as sent, the media type it was sent as, the tag it
/// moves, the digest the client named, when, and where the push replicates.
pub struct ManifestPut<'a> {
    pub bytes: &'a [u8],
    pub content_type: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub expected_digest: Option<&'a str>,
    pub now: i64,
    pub replicate_to: Vec<berth_store::Replica>,
}

pub async fn store_manifest(
    app: &App,
    repo: &Repository,
    put: ManifestPut<'_>,
) -> Result<Pushed, PushError> {
    let ManifestPut {
        bytes,
        content_type,
        tag,
        expected_digest,
        now,
        replicate_to,
    } = put;
    if bytes.len() > MAX_MANIFEST {
        return Err(PushError::Invalid(format!(
            "the manifest has {} bytes; at most {MAX_MANIFEST} are accepted",
            bytes.len()
        )));
    }
    let m = berth_oci::parse_manifest(bytes, content_type).map_err(|e| PushError::Invalid(e.0))?;
    let digest = digest_of(bytes);
    if let Some(given) = expected_digest {
        if given != digest {
            return Err(PushError::DigestMismatch {
                given: given.to_string(),
                computed: digest,
            });
        }
    }
    let size = if m.is_index {
        largest_child(app, repo, &m.refs).await?
    } else {
        m.size
    };
    let rule = tag.map(|t| tag_rule(repo, t)).unwrap_or(TagRule::Mutable);
    let image = NewImage {
        digest: digest.clone(),
        media_type: m.media_type.clone(),
        manifest: bytes.to_vec(),
        size,
        artifact_type: m.artifact_type,
        subject: m.subject.clone(),
        refs: m
            .refs
            .into_iter()
            .map(|(d, r)| {
                (
                    d,
                    match r {
                        Reference::Blob => RefKind::Blob,
                        Reference::Manifest => RefKind::Manifest,
                    },
                )
            })
            .collect(),
        pushed_at: now,
        replicate_to,
    };
    let outcome = app
        .registry
        .put_image(repo.registry(), &repo.name, &image, tag, rule)
        .await
        .map_err(|e| match e {
            PutImageError::Missing { blobs, manifests } => PushError::Missing { blobs, manifests },
            PutImageError::TagImmutable { tag } => PushError::TagImmutable { tag },
            PutImageError::Store(s) => PushError::Store(s),
        })?;
    Ok(Pushed {
        digest,
        media_type: m.media_type,
        outcome,
        subject: m.subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(mutability: &str, filters: &[&str]) -> Repository {
        Repository {
            account: "111111111111".into(),
            region: None,
            name: "app".into(),
            created: 0,
            tag_mutability: TagMutability::parse(mutability).unwrap(),
            mutability_filters: filters
                .iter()
                .map(|f| berth_store::MutabilityFilter {
                    wildcard: f.to_string(),
                })
                .collect(),
            scan_on_push: false,
            encryption: Default::default(),
            policy: None,
            lifecycle_policy: None,
            lifecycle_updated: None,
        }
    }

    #[test]
    fn exclusion_filters() {
        let r = repo(
            "IMMUTABLE_WITH_EXCLUSION",
            &["release-*", "a*b*c", "latest"],
        );
        for (tag, moves) in [
            ("release-1.0", true),
            ("aXXbYYc", true),
            ("abc", true),
            ("latest", true),
            ("latest2", false),
            ("dev-1", false),
            ("aXcYb", false),
        ] {
            let want = if moves {
                TagRule::Mutable
            } else {
                TagRule::Immutable
            };
            assert_eq!(tag_rule(&r, tag), want, "{tag}");
        }
        let any = repo("MUTABLE_WITH_EXCLUSION", &["*"]);
        assert_eq!(tag_rule(&any, "x"), TagRule::Immutable);
        // `?` is no wildcard in a filter
        let q = repo("MUTABLE_WITH_EXCLUSION", &["v?"]);
        assert_eq!(tag_rule(&q, "v1"), TagRule::Mutable);
        assert_eq!(tag_rule(&q, "v?"), TagRule::Immutable);
    }

    /// A filter PutImageTagMutability accepts that a backtracking matcher needs
    /// exponential time for: decided at once (the engine's matcher is linear per star).
    #[test]
    fn pathological_filter_is_fast() {
        let filter = format!("{}*b", "*a".repeat(63));
        assert!(filter.len() <= 128);
        let r = repo("IMMUTABLE_WITH_EXCLUSION", &[&filter, &filter, &filter]);
        let tag = "a".repeat(128);
        let started = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(tag_rule(&r, &tag), TagRule::Immutable);
        }
        assert_eq!(
            tag_rule(&r, &format!("{}b", "a".repeat(127))),
            TagRule::Mutable
        );
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    }
}
