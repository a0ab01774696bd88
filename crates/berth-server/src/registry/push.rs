//! Storing a pushed manifest, shared by `PUT /v2/<name>/manifests/<ref>` and PutImage:
//! read it, check its digest, then commit it (and move the tag) only if everything it
//! references is in the repository and the tag may move.

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
    Store(berth_store::StoreError),
}

/// `*` wildcard match of a tag against an exclusion filter.
fn wildcard(pattern: &str, tag: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == tag,
        Some((head, rest)) => {
            let Some(tail) = tag.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && wildcard(rest, &tail[i..]))
        }
    }
}

/// Whether a tag may move in a repository (its mutability and exclusion filters).
pub fn tag_rule(repo: &Repository, tag: &str) -> TagRule {
    let excluded = || {
        repo.mutability_filters
            .iter()
            .any(|f| wildcard(&f.wildcard, tag))
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

pub async fn store_manifest(
    app: &App,
    repo: &Repository,
    bytes: &[u8],
    content_type: Option<&str>,
    tag: Option<&str>,
    expected_digest: Option<&str>,
    now: i64,
) -> Result<Pushed, PushError> {
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
    let rule = tag.map(|t| tag_rule(repo, t)).unwrap_or(TagRule::Mutable);
    let image = NewImage {
        digest: digest.clone(),
        media_type: m.media_type.clone(),
        manifest: bytes.to_vec(),
        size: m.size,
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
    };
    let outcome = app
        .registry
        .put_image(&repo.account, &repo.name, &image, tag, rule)
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
    use super::wildcard;

    #[test]
    fn wildcards() {
        assert!(wildcard("release-*", "release-1.0"));
        assert!(wildcard("*", "anything"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("release-*", "dev-1"));
        assert!(wildcard("latest", "latest") && !wildcard("latest", "latest2"));
    }
}
