//! The registry store's contract, through its trait, against every backend and with
//! several "nodes" (separate openers of one database) writing at once: a manifest commits
//! only with everything it references, a tag moves atomically, one blob pushed many times
//! is held once, a repository deleted while images are pushed into it leaves nothing
//! behind, settings changed at once are all kept, and an image an index lists is never
//! deleted under it. Every backend must pass this suite: SQLite (two openers of one file)
//! and PostgreSQL (two connection pools on one fresh database; needs
//! `BERTH_TEST_POSTGRES_URL`, see `pg_support`).

mod pg_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_store::*;

const A: &str = "111111111111";

/// One backend under test: several handles on the same database, as several nodes hold.
struct Backend {
    name: &'static str,
    nodes: Vec<Arc<dyn RegistryStore>>,
    /// The database itself, for a look at what is stored in it (a SQLite URL, or the
    /// PostgreSQL database's).
    url: String,
    /// Keeps the database alive for the test (the SQLite file's directory, the
    /// PostgreSQL database); dropped after the nodes.
    _db: Box<dyn std::any::Any + Send>,
}

fn account() -> Account {
    Account {
        id: A.into(),
        alias: None,
        created: 1,
    }
}

fn root_key() -> AccessKey {
    AccessKey {
        id: "AKIAROOT".into(),
        secret: "s".into(),
        account: A.into(),
        user: None,
        status: KeyStatus::Active,
        created: 1,
    }
}

async fn backends() -> Vec<Backend> {
    let mut all = vec![sqlite().await];
    if let Some(pg) = postgres().await {
        all.push(pg);
    }
    all
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    // Every node opens the database with the same secrets key, as nodes share it.
    let key = SecretsKey::from_bytes([7; 32]);
    let first = SqliteStore::open(&path, &key).await.unwrap();
    first.create_account(&account(), &root_key()).await.unwrap();
    let second = SqliteStore::open(&path, &key).await.unwrap();
    Backend {
        name: "sqlite",
        nodes: vec![Arc::new(first), Arc::new(second)],
        url: format!("sqlite://{}", path.display()),
        _db: Box::new(dir),
    }
}

/// `None` only when the PostgreSQL tests are skipped knowingly (`BERTH_TEST_POSTGRES=skip`).
async fn postgres() -> Option<Backend> {
    let db = pg_support::db().await?;
    let first = PgStore::connect(&db.url, &pg_support::test_key())
        .await
        .unwrap();
    first.create_account(&account(), &root_key()).await.unwrap();
    let second = PgStore::connect(&db.url, &pg_support::test_key())
        .await
        .unwrap();
    Some(Backend {
        name: "postgres",
        nodes: vec![Arc::new(first), Arc::new(second)],
        url: db.url.clone(),
        _db: Box::new(db),
    })
}

fn digest(seed: &str) -> String {
    use std::fmt::Write;
    // Not a real hash: the store keeps digests as text and never recomputes them.
    let mut hex = String::new();
    for b in seed.bytes().cycle().take(32) {
        let _ = write!(hex, "{b:02x}");
    }
    format!("sha256:{hex}")
}

fn image(seed: &str, blobs: &[String], manifests: &[String]) -> NewImage {
    let refs = blobs
        .iter()
        .map(|d| (d.clone(), RefKind::Blob))
        .chain(manifests.iter().map(|d| (d.clone(), RefKind::Manifest)))
        .collect();
    NewImage {
        digest: digest(seed),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        manifest: format!("{{\"seed\":\"{seed}\"}}").into_bytes(),
        size: 10,
        artifact_type: None,
        subject: None,
        refs,
        pushed_at: 1_000,
        replicate_to: Vec::new(),
    }
}

async fn create(s: &dyn RegistryStore, name: &str) {
    s.create_repository(&Repository::new(RegistryKey::home(A), name, 1_000), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_manifest_commits_only_with_everything_it_references() {
    for b in backends().await {
        let s = &*b.nodes[0];
        create(s, "app").await;
        let layer = digest("layer");
        let img = image("img", std::slice::from_ref(&layer), &[]);
        let e = s
            .put_image(
                RegistryKey::home(A),
                "app",
                &img,
                Some("v1"),
                TagRule::Mutable,
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            PutImageError::Missing {
                blobs: vec![layer.clone()],
                manifests: vec![]
            },
            "{}",
            b.name
        );
        assert_eq!(
            s.image(RegistryKey::home(A), "app", "v1").await.unwrap(),
            None,
            "{}",
            b.name
        );
        assert_eq!(
            s.images(RegistryKey::home(A), "app").await.unwrap(),
            vec![],
            "{}",
            b.name
        );

        s.add_repository_blob(RegistryKey::home(A), "app", &layer, 5, 1_000)
            .await
            .unwrap();
        s.put_image(
            RegistryKey::home(A),
            "app",
            &img,
            Some("v1"),
            TagRule::Mutable,
        )
        .await
        .unwrap();
        // An index needs its child manifests in the repository.
        let missing = digest("absent-child");
        let index = image("index", &[], &[img.digest.clone(), missing.clone()]);
        let e = s
            .put_image(
                RegistryKey::home(A),
                "app",
                &index,
                Some("multi"),
                TagRule::Mutable,
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            PutImageError::Missing {
                blobs: vec![],
                manifests: vec![missing]
            },
            "{}",
            b.name
        );
        assert_eq!(
            s.image(RegistryKey::home(A), "app", "multi").await.unwrap(),
            None,
            "{}",
            b.name
        );
        // Another repository's blobs do not count.
        create(s, "other").await;
        let e = s
            .put_image(RegistryKey::home(A), "other", &img, None, TagRule::Mutable)
            .await
            .unwrap_err();
        assert!(
            matches!(e, PutImageError::Missing { .. }),
            "{}: {e:?}",
            b.name
        );
    }
}

/// Two nodes move one tag back and forth at once: every image is kept, the tag names
/// exactly one of them, and the tag and the image found by it agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_move_one_tag() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        let mut tasks = Vec::new();
        for (n, node) in b.nodes.iter().enumerate() {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let img = image(&format!("n{n}-{i}"), &[], &[]);
                    node.put_image(
                        RegistryKey::home(A),
                        "app",
                        &img,
                        Some("latest"),
                        TagRule::Mutable,
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let s = &*b.nodes[1];
        let tags = s.tags_of(RegistryKey::home(A), "app").await.unwrap();
        assert_eq!(tags.len(), 1, "{}: {tags:?}", b.name);
        let (tag, tagged) = &tags[0];
        assert_eq!(tag, "latest");
        let by_tag = s
            .image(RegistryKey::home(A), "app", "latest")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&by_tag.digest, tagged, "{}", b.name);
        assert_eq!(by_tag.tags, vec!["latest".to_string()], "{}", b.name);
        let images = s.images(RegistryKey::home(A), "app").await.unwrap();
        assert_eq!(images.len(), 50, "{}", b.name);
        let tagged_images: Vec<_> = images.iter().filter(|i| !i.tags.is_empty()).collect();
        assert_eq!(tagged_images.len(), 1, "{}", b.name);
    }
}

/// Two nodes set one immutable tag to different images at once: exactly one wins, every
/// other attempt is refused as immutable, and the tag never moves afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_immutable_tag_is_set_once() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        let mut tasks = Vec::new();
        for (n, node) in b.nodes.iter().enumerate() {
            for k in 0..4 {
                let node = node.clone();
                tasks.push(tokio::spawn(async move {
                    let img = image(&format!("n{n}-k{k}"), &[], &[]);
                    node.put_image(
                        RegistryKey::home(A),
                        "app",
                        &img,
                        Some("v1"),
                        TagRule::Immutable,
                    )
                    .await
                    .map(|_| img.digest)
                }));
            }
        }
        let mut won = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(d) => won.push(d),
                Err(PutImageError::TagImmutable { tag }) => assert_eq!(tag, "v1"),
                Err(e) => panic!("{}: {e:?}", b.name),
            }
        }
        assert_eq!(won.len(), 1, "{}: {won:?}", b.name);
        let tagged = b.nodes[1]
            .image(RegistryKey::home(A), "app", "v1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tagged.digest, won[0], "{}", b.name);
    }
}

/// Many uploads of one blob into one repository, from two nodes at once: all succeed and
/// the repository holds it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_one_blob() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        let layer = digest("shared-layer");
        let mut tasks = Vec::new();
        for i in 0..16 {
            let node = b.nodes[i % b.nodes.len()].clone();
            let layer = layer.clone();
            tasks.push(tokio::spawn(async move {
                node.add_repository_blob(
                    RegistryKey::home(A),
                    "app",
                    &layer,
                    1234,
                    1_000 + i as i64,
                )
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for node in &b.nodes {
            assert_eq!(
                node.repository_blob(RegistryKey::home(A), "app", &layer)
                    .await
                    .unwrap(),
                Some(1234),
                "{}",
                b.name
            );
        }
        let img = image("uses-layer", std::slice::from_ref(&layer), &[]);
        b.nodes[1]
            .put_image(RegistryKey::home(A), "app", &img, None, TagRule::Mutable)
            .await
            .unwrap();
        assert!(
            b.nodes[0]
                .blob_referenced(RegistryKey::home(A), "app", &layer)
                .await
                .unwrap(),
            "{}",
            b.name
        );
    }
}

/// A repository deleted (with force) while another node pushes into it: each push either
/// lands before the delete (and goes with the repository) or fails cleanly; a repository
/// made again under the same name starts empty — no image, tag, blob or upload of the old
/// one survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repository_deleted_while_pushed_to_leaves_nothing_behind() {
    for b in backends().await {
        for round in 0..8 {
            let (pusher, deleter) = (b.nodes[0].clone(), b.nodes[1].clone());
            create(&*pusher, "app").await;
            let push = tokio::spawn(async move {
                let mut landed = 0;
                for i in 0..20 {
                    let layer = digest(&format!("r{round}-layer{i}"));
                    if pusher
                        .add_repository_blob(RegistryKey::home(A), "app", &layer, 7, 1_000)
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    let img = image(&format!("r{round}-img{i}"), &[layer], &[]);
                    match pusher
                        .put_image(
                            RegistryKey::home(A),
                            "app",
                            &img,
                            Some(&format!("t{i}")),
                            TagRule::Mutable,
                        )
                        .await
                    {
                        Ok(_) => landed += 1,
                        Err(PutImageError::Missing { .. })
                        | Err(PutImageError::Store(RegistryError::RepositoryNotFound { .. })) => {}
                        Err(e) => panic!("a push racing a delete failed oddly: {e:?}"),
                    }
                }
                landed
            });
            let delete = tokio::spawn(async move {
                tokio::task::yield_now().await;
                deleter
                    .delete_repository(RegistryKey::home(A), "app", true)
                    .await
            });
            let _landed = push.await.unwrap();
            delete.await.unwrap().unwrap();
            // Whatever landed after the delete (if anything) must not be visible in a new
            // repository of the same name.
            let s = &*b.nodes[0];
            if s.repository(RegistryKey::home(A), "app")
                .await
                .unwrap()
                .is_some()
            {
                panic!("{}: the repository came back without being created", b.name);
            }
            create(s, "app").await;
            assert_eq!(
                s.images(RegistryKey::home(A), "app").await.unwrap(),
                vec![],
                "{} round {round}",
                b.name
            );
            assert_eq!(
                s.tags_of(RegistryKey::home(A), "app").await.unwrap(),
                vec![],
                "{} round {round}",
                b.name
            );
            for i in 0..20 {
                let layer = digest(&format!("r{round}-layer{i}"));
                assert_eq!(
                    s.repository_blob(RegistryKey::home(A), "app", &layer)
                        .await
                        .unwrap(),
                    None,
                    "{} round {round}: blob {i} survived its repository",
                    b.name
                );
            }
            s.delete_repository(RegistryKey::home(A), "app", true)
                .await
                .unwrap();
        }
    }
}

/// An image an index of the repository lists cannot be deleted until the index is; a
/// deleted image takes its tags with it; referrers are found by subject.
#[tokio::test]
async fn deletes_respect_indexes_and_take_their_tags() {
    for b in backends().await {
        let s = &*b.nodes[0];
        create(s, "app").await;
        let child = image("child", &[], &[]);
        s.put_image(
            RegistryKey::home(A),
            "app",
            &child,
            Some("c"),
            TagRule::Mutable,
        )
        .await
        .unwrap();
        let index = image("index", &[], std::slice::from_ref(&child.digest));
        s.put_image(
            RegistryKey::home(A),
            "app",
            &index,
            Some("multi"),
            TagRule::Mutable,
        )
        .await
        .unwrap();
        let mut signature = image("signature", &[], &[]);
        signature.subject = Some(child.digest.clone());
        s.put_image(
            RegistryKey::home(A),
            "app",
            &signature,
            None,
            TagRule::Mutable,
        )
        .await
        .unwrap();
        let referrers = b.nodes[1]
            .referrers(RegistryKey::home(A), "app", &child.digest)
            .await
            .unwrap();
        assert_eq!(
            referrers.iter().map(|i| &i.digest).collect::<Vec<_>>(),
            vec![&signature.digest],
            "{}",
            b.name
        );

        let e = s
            .delete_image(RegistryKey::home(A), "app", &child.digest, &[])
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RegistryError::ImageReferencedByIndex {
                account: A.into(),
                repository: "app".into(),
                digest: child.digest.clone(),
            },
            "{}",
            b.name
        );
        assert!(
            s.image(RegistryKey::home(A), "app", "c")
                .await
                .unwrap()
                .is_some(),
            "{}",
            b.name
        );

        assert!(s
            .delete_image(RegistryKey::home(A), "app", &index.digest, &[])
            .await
            .unwrap());
        assert_eq!(
            s.image(RegistryKey::home(A), "app", "multi").await.unwrap(),
            None,
            "{}",
            b.name
        );
        assert!(s
            .delete_image(RegistryKey::home(A), "app", &child.digest, &[])
            .await
            .unwrap());
        assert_eq!(
            s.image(RegistryKey::home(A), "app", "c").await.unwrap(),
            None,
            "{}",
            b.name
        );
        assert_eq!(
            s.tags_of(RegistryKey::home(A), "app").await.unwrap(),
            vec![],
            "{}",
            b.name
        );
        assert!(!s
            .delete_image(RegistryKey::home(A), "app", &child.digest, &[])
            .await
            .unwrap());
    }
}

/// Upload sessions exist only in repositories that exist; touching one keeps it from the
/// stale list; deleting it forgets it.
#[tokio::test]
async fn upload_sessions() {
    for b in backends().await {
        let s = &*b.nodes[0];
        create(s, "app").await;
        let upload = |id: &str, repository: &str, at: i64| Upload {
            id: id.into(),
            account: A.into(),
            region: None,
            repository: repository.into(),
            principal: format!("arn:aws:iam::{A}:root"),
            created: at,
            updated: at,
        };
        let e = s
            .create_upload(&upload("u0", "absent", 1_000))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RegistryError::RepositoryNotFound {
                account: A.into(),
                name: "absent".into(),
            },
            "{}",
            b.name
        );
        assert_eq!(s.upload("u0").await.unwrap(), None, "{}", b.name);

        s.create_upload(&upload("u1", "app", 1_000)).await.unwrap();
        s.create_upload(&upload("u2", "app", 1_000)).await.unwrap();
        // The caps count a repository's sessions and its account's.
        create(s, "other").await;
        s.create_upload(&upload("u3", "other", 1_000))
            .await
            .unwrap();
        assert_eq!(
            b.nodes[1]
                .upload_counts(RegistryKey::home(A), "app")
                .await
                .unwrap(),
            (2, 3),
            "{}",
            b.name
        );
        assert_eq!(
            s.upload_counts(RegistryKey::home("999999999999"), "app")
                .await
                .unwrap(),
            (0, 0),
            "{}",
            b.name
        );
        s.delete_upload("u3").await.unwrap();
        b.nodes[1].touch_upload("u2", 5_000).await.unwrap();
        let stale: Vec<_> = s
            .stale_uploads(4_000)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(stale, vec!["u1".to_string()], "{}", b.name);
        assert_eq!(
            b.nodes[1].upload("u2").await.unwrap().map(|u| u.updated),
            Some(5_000),
            "{}",
            b.name
        );
        // The blob backend's state: none until saved; saved only by a writer that read
        // the current version, so of two nodes continuing one session only one wins.
        let fresh = UploadState {
            version: 0,
            state: None,
        };
        assert_eq!(
            s.upload_state("u2").await.unwrap(),
            Some(fresh),
            "{}",
            b.name
        );
        assert_eq!(s.upload_state("nope").await.unwrap(), None, "{}", b.name);
        assert!(s.save_upload_state("u2", 0, b"one", 6_000).await.unwrap());
        assert!(!b.nodes[1]
            .save_upload_state("u2", 0, b"two", 6_000)
            .await
            .unwrap());
        assert!(b.nodes[1]
            .save_upload_state("u2", 1, b"three", 7_000)
            .await
            .unwrap());
        assert_eq!(
            s.upload_state("u2").await.unwrap(),
            Some(UploadState {
                version: 2,
                state: Some(b"three".to_vec()),
            }),
            "{}",
            b.name
        );
        assert_eq!(
            s.upload("u2").await.unwrap().map(|u| u.updated),
            Some(7_000)
        );
        assert!(!s.save_upload_state("nope", 0, b"x", 1).await.unwrap());
        s.delete_upload("u1").await.unwrap();
        assert_eq!(s.upload("u1").await.unwrap(), None, "{}", b.name);
        // A repository's deletion takes its upload sessions.
        s.delete_repository(RegistryKey::home(A), "app", true)
            .await
            .unwrap();
        assert_eq!(s.upload("u2").await.unwrap(), None, "{}", b.name);
    }
}

/// An account's usage is the bytes of the distinct blobs its repositories hold: a blob
/// held by two of its repositories counts once; another account's do not count.
#[tokio::test]
async fn account_usage_counts_distinct_blobs() {
    for b in backends().await {
        let s = &*b.nodes[0];
        assert_eq!(s.account_usage(A).await.unwrap(), 0, "{}", b.name);
        create(s, "app").await;
        create(s, "copy").await;
        let layer = format!("sha256:{}", "1".repeat(64));
        let config = format!("sha256:{}", "2".repeat(64));
        for (repo, digest, size) in [
            ("app", &layer, 1_000),
            ("app", &config, 24),
            ("copy", &layer, 1_000),
        ] {
            s.add_repository_blob(RegistryKey::home(A), repo, digest, size, 1_000)
                .await
                .unwrap();
        }
        assert_eq!(
            b.nodes[1].account_usage(A).await.unwrap(),
            1_024,
            "{}",
            b.name
        );
        assert_eq!(
            s.account_usage("999999999999").await.unwrap(),
            0,
            "{}",
            b.name
        );
    }
}

/// A page of a repository's images: newest first (push time, then digest), after the
/// previous page's last, tagged or untagged only if asked, at most a limit; pages put
/// together are the whole listing, each image once.
#[tokio::test]
async fn images_page_pages_a_repository_newest_first() {
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        let home = RegistryKey::home(A);
        create(s, "app").await;
        create(s, "other").await;
        // Seven images; three share one push time; tags on the even ones.
        let mut pushed = Vec::new();
        for (i, at) in [5_000, 3_000, 3_000, 3_000, 2_000, 9_000, 1_000]
            .into_iter()
            .enumerate()
        {
            let mut img = image(&format!("img{i}"), &[], &[]);
            img.pushed_at = at;
            let tag = format!("t{i}");
            s.put_image(
                home,
                "app",
                &img,
                (i % 2 == 0).then_some(tag.as_str()),
                TagRule::Mutable,
            )
            .await
            .unwrap();
            pushed.push((at, img.digest.clone(), i % 2 == 0));
        }
        s.put_image(
            home,
            "other",
            &image("elsewhere", &[], &[]),
            None,
            TagRule::Mutable,
        )
        .await
        .unwrap();
        let mut expected = pushed.clone();
        expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for tagged in [None, Some(true), Some(false)] {
            let want: Vec<String> = expected
                .iter()
                .filter(|e| tagged.is_none_or(|t| t == e.2))
                .map(|e| e.1.clone())
                .collect();
            let mut got = Vec::new();
            let mut after: Option<(i64, String)> = None;
            loop {
                let page = t
                    .images_page(
                        home,
                        "app",
                        after.as_ref().map(|(a, d)| (*a, d.as_str())),
                        tagged,
                        2,
                    )
                    .await
                    .unwrap();
                assert!(page.len() <= 2, "{n}");
                for img in &page {
                    assert_eq!(
                        img.tags.is_empty(),
                        !pushed.iter().any(|p| p.1 == img.digest && p.2),
                        "{n}"
                    );
                    assert!(img.manifest.is_empty(), "{n}: pages come without manifests");
                }
                got.extend(page.iter().map(|i| i.digest.clone()));
                match page.last() {
                    Some(last) if page.len() == 2 => {
                        after = Some((last.pushed_at, last.digest.clone()))
                    }
                    _ => break,
                }
            }
            assert_eq!(got, want, "{n}: tagged {tagged:?}");
        }
    }
}

/// A page of repositories: by name in byte order after a cursor, filtered by a substring
/// of the name, at most a limit, and only the asked Region's.
#[tokio::test]
async fn repositories_after_pages_a_registry_by_name() {
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        for name in ["b/app", "a/app", "B/tool", "c/app-2", "ab"] {
            create(s, name).await;
        }
        for name in ["a/app", "z/west"] {
            s.create_repository(&Repository::new(west, name, 1_000), &[])
                .await
                .unwrap();
        }
        let page = |after: Option<&'static str>, contains: Option<&'static str>, limit, at| async move {
            t.repositories_after(at, after, contains, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        let home = RegistryKey::home(A);
        assert_eq!(
            page(None, None, 10, home).await,
            ["B/tool", "a/app", "ab", "b/app", "c/app-2"],
            "{n}"
        );
        assert_eq!(page(None, None, 2, home).await, ["B/tool", "a/app"], "{n}");
        assert_eq!(
            page(Some("a/app"), None, 2, home).await,
            ["ab", "b/app"],
            "{n}"
        );
        assert_eq!(
            page(None, Some("app"), 10, home).await,
            ["a/app", "b/app", "c/app-2"],
            "{n}"
        );
        assert_eq!(
            page(Some("a/app"), Some("app"), 10, home).await,
            ["b/app", "c/app-2"],
            "{n}"
        );
        assert_eq!(
            page(None, Some("us-west"), 10, home).await,
            Vec::<String>::new(),
            "{n}"
        );
        assert_eq!(page(None, None, 10, west).await, ["a/app", "z/west"], "{n}");
        assert_eq!(page(Some("a/app"), None, 10, west).await, ["z/west"], "{n}");
        assert_eq!(page(None, Some("west"), 10, west).await, ["z/west"], "{n}");
        assert_eq!(
            page(None, Some("us-west"), 10, west).await,
            Vec::<String>::new(),
            "{n}"
        );
    }
}

/// A repository's usage (the console's list): the bytes of the blobs it holds and its
/// images, for the names asked, in one look-up; a name that is no repository is left out,
/// and a repository of the same name in another Region is another one.
#[tokio::test]
async fn repository_usage_counts_holdings_and_images_per_repository() {
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        create(s, "app").await;
        create(s, "empty").await;
        s.create_repository(&Repository::new(west, "app", 1_000), &[])
            .await
            .unwrap();
        let (layer, config) = (digest("layer"), digest("config"));
        for (digest, size) in [(&layer, 1_000), (&config, 24)] {
            s.add_repository_blob(RegistryKey::home(A), "app", digest, size, 1_000)
                .await
                .unwrap();
        }
        s.add_repository_blob(west, "app", &layer, 1_000, 1_000)
            .await
            .unwrap();
        for seed in ["one", "two"] {
            s.put_image(
                RegistryKey::home(A),
                "app",
                &image(seed, &[layer.clone(), config.clone()], &[]),
                None,
                TagRule::Mutable,
            )
            .await
            .unwrap();
        }
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut got = t
            .repository_usage(RegistryKey::home(A), &names(&["app", "empty", "absent"]))
            .await
            .unwrap();
        got.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            got,
            vec![RepositoryUsage {
                name: "app".into(),
                bytes: 1_024,
                images: 2
            }],
            "{n}: a repository holding nothing is not listed"
        );
        assert_eq!(
            t.repository_usage(west, &names(&["app"])).await.unwrap(),
            vec![RepositoryUsage {
                name: "app".into(),
                bytes: 1_000,
                images: 0
            }],
            "{n}"
        );
        assert!(t.repository_usage(west, &[]).await.unwrap().is_empty());
    }
}

/// Each refusal about a repository comes back as its own typed error, naming the
/// repository: a second create, a delete or change of one that is not there, an
/// unforced delete of one that holds images.
#[tokio::test]
async fn repository_refusals_are_typed() {
    for b in backends().await {
        let s = &*b.nodes[0];
        let app = || (A.to_string(), "app".to_string());
        create(s, "app").await;
        let e = s
            .create_repository(&Repository::new(RegistryKey::home(A), "app", 2_000), &[])
            .await
            .unwrap_err();
        let (account, name) = app();
        assert_eq!(
            e,
            RegistryError::RepositoryAlreadyExists { account, name },
            "{}",
            b.name
        );

        let missing = RegistryError::RepositoryNotFound {
            account: A.into(),
            name: "absent".into(),
        };
        let e = s
            .delete_repository(RegistryKey::home(A), "absent", false)
            .await
            .unwrap_err();
        assert_eq!(e, missing, "{}", b.name);
        let e = s
            .update_repository(
                RegistryKey::home(A),
                "absent",
                &RepositorySetting::ScanOnPush(true),
            )
            .await
            .unwrap_err();
        assert_eq!(e, missing, "{}", b.name);
        let e = s
            .put_image(
                RegistryKey::home(A),
                "absent",
                &image("img", &[], &[]),
                None,
                TagRule::Mutable,
            )
            .await
            .unwrap_err();
        assert_eq!(e, PutImageError::Store(missing.clone()), "{}", b.name);

        s.put_image(
            RegistryKey::home(A),
            "app",
            &image("img", &[], &[]),
            Some("v1"),
            TagRule::Mutable,
        )
        .await
        .unwrap();
        let e = s
            .delete_repository(RegistryKey::home(A), "app", false)
            .await
            .unwrap_err();
        let (account, name) = app();
        assert_eq!(
            e,
            RegistryError::RepositoryNotEmpty { account, name },
            "{}",
            b.name
        );
        assert!(
            s.repository(RegistryKey::home(A), "app")
                .await
                .unwrap()
                .is_some(),
            "{}",
            b.name
        );
        s.delete_repository(RegistryKey::home(A), "app", true)
            .await
            .unwrap();
        assert_eq!(
            s.repository(RegistryKey::home(A), "app").await.unwrap(),
            None,
            "{}",
            b.name
        );
    }
}

/// Many writers on two nodes move one mutable tag at once: every image is stored, and the
/// tag ends on the last image of one of the writers (each writer's pushes are in order,
/// so whichever committed last had just pushed its last image).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_move_one_mutable_tag() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        let mut tasks = Vec::new();
        for w in 0..12 {
            let node = b.nodes[w % b.nodes.len()].clone();
            tasks.push(tokio::spawn(async move {
                let mut pushed = Vec::new();
                for i in 0..5 {
                    let img = image(&format!("w{w}-{i}"), &[], &[]);
                    node.put_image(
                        RegistryKey::home(A),
                        "app",
                        &img,
                        Some("latest"),
                        TagRule::Mutable,
                    )
                    .await
                    .unwrap();
                    pushed.push(img.digest);
                }
                pushed
            }));
        }
        let mut pushed = std::collections::BTreeSet::new();
        let mut last_of_each = Vec::new();
        for t in tasks {
            let mine = t.await.unwrap();
            last_of_each.push(mine.last().unwrap().clone());
            pushed.extend(mine);
        }
        let s = &*b.nodes[1];
        let stored: std::collections::BTreeSet<String> = s
            .images(RegistryKey::home(A), "app")
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.digest)
            .collect();
        assert_eq!(stored, pushed, "{}", b.name);
        let tags = s.tags_of(RegistryKey::home(A), "app").await.unwrap();
        assert_eq!(tags.len(), 1, "{}: {tags:?}", b.name);
        assert!(
            last_of_each.contains(&tags[0].1),
            "{}: the tag is on {}, which no writer pushed last",
            b.name,
            tags[0].1
        );
        let by_tag = s
            .image(RegistryKey::home(A), "app", "latest")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_tag.digest, tags[0].1, "{}", b.name);
        assert_eq!(by_tag.tags, vec!["latest".to_string()], "{}", b.name);
    }
}

/// Two nodes set one immutable tag to different images at the same moment, round after
/// round: exactly one wins, the other is refused as immutable and writes nothing (its
/// image is not stored either).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_race_an_immutable_tag() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        for round in 0..10 {
            let tag = format!("v{round}");
            let racers: Vec<_> = b
                .nodes
                .iter()
                .enumerate()
                .map(|(n, node)| {
                    let (node, tag) = (node.clone(), tag.clone());
                    tokio::spawn(async move {
                        let img = image(&format!("r{round}-n{n}"), &[], &[]);
                        let r = node
                            .put_image(
                                RegistryKey::home(A),
                                "app",
                                &img,
                                Some(&tag),
                                TagRule::Immutable,
                            )
                            .await;
                        (img.digest, r)
                    })
                })
                .collect();
            let (mut won, mut lost) = (Vec::new(), Vec::new());
            for r in racers {
                match r.await.unwrap() {
                    (d, Ok(outcome)) => {
                        assert!(!outcome.existed && !outcome.tag_unchanged, "{}", b.name);
                        won.push(d)
                    }
                    (d, Err(PutImageError::TagImmutable { tag: t })) => {
                        assert_eq!(t, tag, "{}", b.name);
                        lost.push(d)
                    }
                    (_, Err(e)) => panic!("{}: {e:?}", b.name),
                }
            }
            assert_eq!((won.len(), lost.len()), (1, 1), "{} round {round}", b.name);
            let s = &*b.nodes[0];
            let tagged = s
                .image(RegistryKey::home(A), "app", &tag)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(tagged.digest, won[0], "{} round {round}", b.name);
            assert_eq!(
                s.image(RegistryKey::home(A), "app", &lost[0])
                    .await
                    .unwrap(),
                None,
                "{} round {round}: the refused image was stored",
                b.name
            );
        }
    }
}

/// One blob pushed at once into several repositories, by many writers on two nodes,
/// each adding it and then pushing an image that references it: every call succeeds,
/// each repository holds the blob (at the size first recorded) and references it, and a
/// repository nobody pushed to does not hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_blob_pushed_into_many_repositories_at_once() {
    for b in backends().await {
        let repos = ["r0", "r1", "r2", "r3"];
        for r in repos {
            create(&*b.nodes[0], r).await;
        }
        create(&*b.nodes[0], "untouched").await;
        let layer = digest("everywhere");
        let mut tasks = Vec::new();
        for (k, r) in repos.into_iter().enumerate() {
            for w in 0..4 {
                let node = b.nodes[(k + w) % b.nodes.len()].clone();
                let layer = layer.clone();
                tasks.push(tokio::spawn(async move {
                    node.add_repository_blob(RegistryKey::home(A), r, &layer, 99, 1_000 + w as i64)
                        .await
                        .unwrap();
                    let img = image(&format!("{r}-w{w}"), &[layer], &[]);
                    node.put_image(
                        RegistryKey::home(A),
                        r,
                        &img,
                        Some(&format!("w{w}")),
                        TagRule::Mutable,
                    )
                    .await
                    .unwrap();
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        for r in repos {
            for node in &b.nodes {
                assert_eq!(
                    node.repository_blob(RegistryKey::home(A), r, &layer)
                        .await
                        .unwrap(),
                    Some(99),
                    "{} {r}",
                    b.name
                );
                assert!(
                    node.blob_referenced(RegistryKey::home(A), r, &layer)
                        .await
                        .unwrap(),
                    "{} {r}",
                    b.name
                );
            }
            assert_eq!(
                b.nodes[0]
                    .images(RegistryKey::home(A), r)
                    .await
                    .unwrap()
                    .len(),
                4,
                "{} {r}",
                b.name
            );
        }
        assert_eq!(
            b.nodes[1]
                .repository_blob(RegistryKey::home(A), "untouched", &layer)
                .await
                .unwrap(),
            None,
            "{}",
            b.name
        );
    }
}

/// Whether an error of a write racing a repository's delete is the repository being gone.
fn gone(e: &RegistryError) -> bool {
    matches!(e, RegistryError::RepositoryNotFound { .. })
}

/// A forced repository delete on one node while many writers on both nodes add blobs,
/// push images and start upload sessions in it: every call either succeeds (and then it
/// started before the delete finished) or fails with `RepositoryNotFound`, and afterwards
/// nothing of the repository remains: no session, and a repository made again under the
/// name holds no image, tag or blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forced_delete_racing_many_writers_leaves_nothing() {
    use std::sync::atomic::AtomicUsize;
    for b in backends().await {
        for round in 0..6 {
            create(&*b.nodes[0], "app").await;
            let deleted = Arc::new(AtomicBool::new(false));
            let successes = Arc::new(AtomicUsize::new(0));
            let mut writers = Vec::new();
            for w in 0..6 {
                let node = b.nodes[w % b.nodes.len()].clone();
                let (deleted, successes) = (deleted.clone(), successes.clone());
                writers.push(tokio::spawn(async move {
                    // A call that succeeded although it started after the delete returned
                    // is a write the delete left behind.
                    let check = |started_after: bool, ok: bool, what: &str| {
                        if ok {
                            assert!(!started_after, "{what} succeeded after the delete");
                            successes.fetch_add(1, Ordering::SeqCst);
                        }
                    };
                    let mut uploads = Vec::new();
                    for i in 0..15 {
                        let layer = digest(&format!("r{round}-w{w}-layer{i}"));
                        let after = deleted.load(Ordering::SeqCst);
                        let r = node
                            .add_repository_blob(RegistryKey::home(A), "app", &layer, 7, 1_000)
                            .await;
                        if let Err(e) = &r {
                            assert!(gone(e), "add_repository_blob: {e:?}");
                        }
                        check(after, r.is_ok(), "add_repository_blob");
                        if r.is_ok() {
                            let img = image(&format!("r{round}-w{w}-img{i}"), &[layer], &[]);
                            let after = deleted.load(Ordering::SeqCst);
                            let r = node
                                .put_image(
                                    RegistryKey::home(A),
                                    "app",
                                    &img,
                                    Some(&format!("w{w}")),
                                    TagRule::Mutable,
                                )
                                .await;
                            match &r {
                                Ok(_) => {}
                                Err(PutImageError::Store(e)) if gone(e) => {}
                                Err(e) => panic!("put_image: {e:?}"),
                            }
                            check(after, r.is_ok(), "put_image");
                        }
                        let id = format!("r{round}-w{w}-u{i}");
                        let after = deleted.load(Ordering::SeqCst);
                        let r = node
                            .create_upload(&Upload {
                                id: id.clone(),
                                account: A.into(),
                                region: None,
                                repository: "app".into(),
                                principal: format!("arn:aws:iam::{A}:root"),
                                created: 1_000,
                                updated: 1_000,
                            })
                            .await;
                        if let Err(e) = &r {
                            assert!(gone(e), "create_upload: {e:?}");
                        }
                        check(after, r.is_ok(), "create_upload");
                        if r.is_ok() {
                            uploads.push(id);
                        }
                    }
                    uploads
                }));
            }
            let deleter = b.nodes[(round + 1) % b.nodes.len()].clone();
            // Delete once the writers are under way (some writes have landed).
            while successes.load(Ordering::SeqCst) < 6 && !writers.iter().all(|w| w.is_finished()) {
                tokio::task::yield_now().await;
            }
            deleter
                .delete_repository(RegistryKey::home(A), "app", true)
                .await
                .unwrap();
            deleted.store(true, Ordering::SeqCst);
            let mut uploads = Vec::new();
            for w in writers {
                uploads.extend(w.await.unwrap());
            }
            let s = &*b.nodes[round % b.nodes.len()];
            assert_eq!(
                s.repository(RegistryKey::home(A), "app").await.unwrap(),
                None,
                "{}",
                b.name
            );
            for id in &uploads {
                assert_eq!(
                    s.upload(id).await.unwrap(),
                    None,
                    "{} round {round}: session {id} survived its repository",
                    b.name
                );
            }
            create(s, "app").await;
            assert_eq!(
                s.images(RegistryKey::home(A), "app").await.unwrap(),
                vec![],
                "{}",
                b.name
            );
            assert_eq!(
                s.tags_of(RegistryKey::home(A), "app").await.unwrap(),
                vec![],
                "{}",
                b.name
            );
            for w in 0..6 {
                for i in 0..15 {
                    let layer = digest(&format!("r{round}-w{w}-layer{i}"));
                    assert_eq!(
                        s.repository_blob(RegistryKey::home(A), "app", &layer)
                            .await
                            .unwrap(),
                        None,
                        "{} round {round}: a blob survived its repository",
                        b.name
                    );
                }
            }
            s.delete_repository(RegistryKey::home(A), "app", true)
                .await
                .unwrap();
        }
    }
}

/// Four nodes' worth of writers each change one setting of one repository, over and
/// over, at once: no change undoes another. Each writer sees, as the repository "before"
/// its change, the value it set itself last time, and at the end every setting holds
/// its writer's last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_of_different_settings_are_all_kept() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        // Each writer: how to read its setting, and its i-th change.
        type Pick = fn(&Repository) -> String;
        type Change = fn(i64) -> RepositorySetting;
        let writers: Vec<(Pick, Change)> = vec![
            (
                |r| r.scan_on_push.to_string(),
                |i| RepositorySetting::ScanOnPush(i % 2 == 0),
            ),
            (
                |r| format!("{:?}", r.policy),
                |i| RepositorySetting::Policy(Some(format!("{{\"p\":{i}}}"))),
            ),
            (
                |r| r.tag_mutability.as_str().to_string(),
                |i| RepositorySetting::TagMutability {
                    mutability: if i % 2 == 0 {
                        TagMutability::Immutable
                    } else {
                        TagMutability::Mutable
                    },
                    filters: vec![],
                },
            ),
            (
                |r| format!("{:?}/{:?}", r.lifecycle_policy, r.lifecycle_updated),
                |i| RepositorySetting::LifecyclePolicy(Some((format!("{{\"l\":{i}}}"), i))),
            ),
        ];
        let initial = Repository::new(RegistryKey::home(A), "app", 1_000);
        let mut tasks = Vec::new();
        for (w, (pick, setting)) in writers.iter().copied().enumerate() {
            let node = b.nodes[w % b.nodes.len()].clone();
            let mut expected = Repository::new(RegistryKey::home(A), "app", 1_000);
            tasks.push(tokio::spawn(async move {
                // An odd number of changes: each ends away from the default.
                for i in 0..11 {
                    let before = node
                        .update_repository(RegistryKey::home(A), "app", &setting(i))
                        .await
                        .unwrap();
                    assert_eq!(pick(&before), pick(&expected), "writer {w} change {i}");
                    apply(&mut expected, &setting(i));
                }
                expected
            }));
        }
        let mut last = Vec::new();
        for t in tasks {
            last.push(t.await.unwrap());
        }
        let now = b.nodes[1]
            .repository(RegistryKey::home(A), "app")
            .await
            .unwrap()
            .unwrap();
        for (w, (pick, _)) in writers.iter().enumerate() {
            assert_eq!(pick(&now), pick(&last[w]), "{}: writer {w}", b.name);
            assert_ne!(pick(&now), pick(&initial), "{}: writer {w}", b.name);
        }
    }
}

/// What `update_repository` does to a repository, for the test's expectations.
fn apply(r: &mut Repository, setting: &RepositorySetting) {
    match setting {
        RepositorySetting::TagMutability {
            mutability,
            filters,
        } => {
            r.tag_mutability = *mutability;
            r.mutability_filters = filters.clone();
        }
        RepositorySetting::ScanOnPush(on) => r.scan_on_push = *on,
        RepositorySetting::Policy(p) => r.policy = p.clone(),
        RepositorySetting::LifecyclePolicy(p) => {
            r.lifecycle_policy = p.as_ref().map(|(t, _)| t.clone());
            r.lifecycle_updated = p.as_ref().map(|(_, at)| *at);
        }
    }
}

/// One node deletes an image while another pushes an index that lists it, round after
/// round: either the delete wins (and the index is refused as missing its child) or the
/// index wins (and the delete is refused as listed by an index), never both; an index
/// whose child is gone is never left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_child_while_an_index_listing_it_is_pushed() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        let (mut delete_won, mut index_won) = (0, 0);
        for round in 0..16 {
            let child = image(&format!("child{round}"), &[], &[]);
            b.nodes[0]
                .put_image(
                    RegistryKey::home(A),
                    "app",
                    &child,
                    Some(&format!("c{round}")),
                    TagRule::Mutable,
                )
                .await
                .unwrap();
            let index = image(
                &format!("index{round}"),
                &[],
                std::slice::from_ref(&child.digest),
            );
            let (deleter, pusher) = (b.nodes[round % 2].clone(), b.nodes[(round + 1) % 2].clone());
            let child_digest = child.digest.clone();
            let delete = tokio::spawn(async move {
                deleter
                    .delete_image(RegistryKey::home(A), "app", &child_digest, &[])
                    .await
            });
            let push_index = index.clone();
            let push = tokio::spawn(async move {
                pusher
                    .put_image(
                        RegistryKey::home(A),
                        "app",
                        &push_index,
                        None,
                        TagRule::Mutable,
                    )
                    .await
            });
            let (deleted, pushed) = (delete.await.unwrap(), push.await.unwrap());
            let s = &*b.nodes[0];
            let child_now = s
                .image(RegistryKey::home(A), "app", &child.digest)
                .await
                .unwrap();
            let index_now = s
                .image(RegistryKey::home(A), "app", &index.digest)
                .await
                .unwrap();
            match (deleted, pushed) {
                (Ok(true), Err(PutImageError::Missing { blobs, manifests })) => {
                    assert!(blobs.is_empty(), "{}", b.name);
                    assert_eq!(manifests, vec![child.digest.clone()], "{}", b.name);
                    assert!(child_now.is_none() && index_now.is_none(), "{}", b.name);
                    delete_won += 1;
                }
                (Err(RegistryError::ImageReferencedByIndex { digest, .. }), Ok(_)) => {
                    assert_eq!(digest, child.digest, "{}", b.name);
                    assert!(child_now.is_some() && index_now.is_some(), "{}", b.name);
                    assert!(s
                        .delete_image(RegistryKey::home(A), "app", &index.digest, &[])
                        .await
                        .unwrap());
                    assert!(s
                        .delete_image(RegistryKey::home(A), "app", &child.digest, &[])
                        .await
                        .unwrap());
                    index_won += 1;
                }
                (d, p) => panic!("{} round {round}: delete {d:?}, index push {p:?}", b.name),
            }
        }
        assert_eq!(delete_won + index_won, 16, "{}", b.name);
        assert_eq!(
            b.nodes[1]
                .images(RegistryKey::home(A), "app")
                .await
                .unwrap(),
            vec![],
            "{}",
            b.name
        );
    }
}

/// A repository's settings come back as they were written, whatever they are;
/// repositories are listed by name and tags by tag, in byte order (as SQLite compares
/// text), whatever the database's collation.
#[tokio::test]
async fn settings_round_trip_and_listings_are_in_byte_order() {
    for b in backends().await {
        let s = &*b.nodes[0];
        let repo = Repository {
            account: A.into(),
            region: None,
            name: "ab".into(),
            created: 1_234,
            tag_mutability: TagMutability::ImmutableWithExclusion,
            mutability_filters: vec![
                MutabilityFilter::new("dev-*").unwrap(),
                MutabilityFilter::new("*.tmp").unwrap(),
            ],
            scan_on_push: true,
            encryption: Encryption {
                kind: EncryptionType::Kms,
                kms_key: Some("arn:aws:kms:eu-west-1:111111111111:key/k".into()),
            },
            policy: Some("{\"Version\":\"2012-10-17\"}".into()),
            lifecycle_policy: Some("{\"rules\":[]}".into()),
            lifecycle_updated: Some(5_678),
        };
        let tags = [Tag {
            key: "team".into(),
            value: "core".into(),
        }];
        s.create_repository(&repo, &tags).await.unwrap();
        assert_eq!(
            b.nodes[1]
                .repository(RegistryKey::home(A), "ab")
                .await
                .unwrap(),
            Some(repo.clone()),
            "{}",
            b.name
        );
        for name in ["a.c", "a-z"] {
            create(s, name).await;
        }
        let names: Vec<String> = b.nodes[1]
            .repositories(RegistryKey::home(A))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["a-z", "a.c", "ab"], "{}", b.name);
        assert_eq!(
            s.repositories(RegistryKey::home("222222222222"))
                .await
                .unwrap(),
            vec![],
            "{}",
            b.name
        );

        let img = image("img", &[], &[]);
        for tag in ["v1", "V2", "latest"] {
            s.put_image(
                RegistryKey::home(A),
                "ab",
                &img,
                Some(tag),
                TagRule::Mutable,
            )
            .await
            .unwrap();
        }
        let listed: Vec<String> = s
            .tags_of(RegistryKey::home(A), "ab")
            .await
            .unwrap()
            .into_iter()
            .map(|(t, d)| {
                assert_eq!(d, img.digest);
                t
            })
            .collect();
        assert_eq!(listed, vec!["V2", "latest", "v1"], "{}", b.name);
        let stored = s
            .image(RegistryKey::home(A), "ab", "V2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.tags, listed, "{}", b.name);
        assert_eq!(stored.manifest, img.manifest, "{}", b.name);
        assert_eq!(
            (stored.size, stored.pushed_at, stored.last_pull),
            (10, 1_000, None),
            "{}",
            b.name
        );
        assert_eq!(
            s.delete_tag(RegistryKey::home(A), "ab", "V2", &[])
                .await
                .unwrap(),
            Some(img.digest)
        );
        assert_eq!(
            s.delete_tag(RegistryKey::home(A), "ab", "V2", &[])
                .await
                .unwrap(),
            None
        );
        // Made again under the name after a delete, a repository takes tags again.
        s.delete_repository(RegistryKey::home(A), "ab", true)
            .await
            .unwrap();
        s.create_repository(&Repository::new(RegistryKey::home(A), "ab", 2_000), &tags)
            .await
            .unwrap();
    }
}

/// A manifest that lists one blob twice is stored once with it, and a second push of
/// the same image only moves the tag.
#[tokio::test]
async fn a_blob_listed_twice_and_an_image_pushed_twice() {
    for b in backends().await {
        let s = &*b.nodes[0];
        create(s, "app").await;
        let layer = digest("twice");
        let img = image("twice", &[layer.clone(), layer.clone()], &[]);
        let e = s
            .put_image(RegistryKey::home(A), "app", &img, None, TagRule::Mutable)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            PutImageError::Missing {
                blobs: vec![layer.clone(), layer.clone()],
                manifests: vec![]
            },
            "{}",
            b.name
        );
        s.add_repository_blob(RegistryKey::home(A), "app", &layer, 3, 1_000)
            .await
            .unwrap();
        let first = s
            .put_image(
                RegistryKey::home(A),
                "app",
                &img,
                Some("a"),
                TagRule::Immutable,
            )
            .await
            .unwrap();
        assert_eq!(
            first,
            PutOutcome {
                existed: false,
                tag_unchanged: false
            },
            "{}",
            b.name
        );
        let again = b.nodes[1]
            .put_image(
                RegistryKey::home(A),
                "app",
                &img,
                Some("a"),
                TagRule::Immutable,
            )
            .await
            .unwrap();
        assert_eq!(
            again,
            PutOutcome {
                existed: true,
                tag_unchanged: true
            },
            "{}",
            b.name
        );
        let other_tag = b.nodes[1]
            .put_image(
                RegistryKey::home(A),
                "app",
                &img,
                Some("b"),
                TagRule::Mutable,
            )
            .await
            .unwrap();
        assert_eq!(
            other_tag,
            PutOutcome {
                existed: true,
                tag_unchanged: false
            },
            "{}",
            b.name
        );
        assert!(s
            .blob_referenced(RegistryKey::home(A), "app", &layer)
            .await
            .unwrap());
        assert!(!s
            .blob_referenced(RegistryKey::home(A), "app", &digest("unused"))
            .await
            .unwrap());
    }
}

/// A pull is recorded at most once per interval per image.
#[tokio::test]
async fn pulls_are_recorded_at_most_once_per_interval() {
    for b in backends().await {
        let s = &*b.nodes[0];
        create(s, "app").await;
        let img = image("pulled", &[], &[]);
        s.put_image(RegistryKey::home(A), "app", &img, None, TagRule::Mutable)
            .await
            .unwrap();
        let last_pull = || async {
            b.nodes[1]
                .image(RegistryKey::home(A), "app", &img.digest)
                .await
                .unwrap()
                .unwrap()
                .last_pull
        };
        s.record_pull(RegistryKey::home(A), "app", &img.digest, 10_000)
            .await
            .unwrap();
        assert_eq!(last_pull().await, Some(10_000), "{}", b.name);
        s.record_pull(
            RegistryKey::home(A),
            "app",
            &img.digest,
            10_000 + PULL_RECORD_INTERVAL - 1,
        )
        .await
        .unwrap();
        assert_eq!(last_pull().await, Some(10_000), "{}", b.name);
        s.record_pull(
            RegistryKey::home(A),
            "app",
            &img.digest,
            10_000 + PULL_RECORD_INTERVAL,
        )
        .await
        .unwrap();
        assert_eq!(
            last_pull().await,
            Some(10_000 + PULL_RECORD_INTERVAL),
            "{}",
            b.name
        );
    }
}

/// A registry policy is set, replaced and removed per account.
#[tokio::test]
async fn registry_policies() {
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        assert_eq!(
            s.registry_policy(RegistryKey::home(A)).await.unwrap(),
            None,
            "{}",
            b.name
        );
        s.set_registry_policy(RegistryKey::home(A), Some("{\"one\":1}"))
            .await
            .unwrap();
        t.set_registry_policy(RegistryKey::home(A), Some("{\"two\":2}"))
            .await
            .unwrap();
        assert_eq!(
            s.registry_policy(RegistryKey::home(A))
                .await
                .unwrap()
                .as_deref(),
            Some("{\"two\":2}"),
            "{}",
            b.name
        );
        assert_eq!(
            s.registry_policy(RegistryKey::home("222222222222"))
                .await
                .unwrap(),
            None,
            "{}",
            b.name
        );
        t.set_registry_policy(RegistryKey::home(A), None)
            .await
            .unwrap();
        assert_eq!(
            s.registry_policy(RegistryKey::home(A)).await.unwrap(),
            None,
            "{}",
            b.name
        );
    }
}

/// Nodes asking for one server secret at once with their own candidates all get the
/// same one, a candidate one of them offered; a later ask with another candidate keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_secret_is_the_first_candidate() {
    for b in backends().await {
        let mut asks = Vec::new();
        for n in 0..8 {
            let node = b.nodes[n % b.nodes.len()].clone();
            asks.push(tokio::spawn(async move {
                node.server_secret("registry-token", &format!("candidate-{n}"))
                    .await
                    .unwrap()
            }));
        }
        let mut got = Vec::new();
        for a in asks {
            got.push(a.await.unwrap());
        }
        assert!(got.iter().all(|g| *g == got[0]), "{}: {got:?}", b.name);
        assert!(got[0].starts_with("candidate-"), "{}", b.name);
        assert_eq!(
            b.nodes[0]
                .server_secret("registry-token", "late")
                .await
                .unwrap(),
            got[0],
            "{}",
            b.name
        );
        assert_eq!(
            b.nodes[1].server_secret("other", "late").await.unwrap(),
            "late",
            "{}",
            b.name
        );
    }
}

// Garbage collection (the protocol: berth-server's registry/gc.rs).

fn holdings_of(hs: &[Holding]) -> Vec<(String, String)> {
    hs.iter()
        .map(|h| (h.repository.clone(), h.digest.clone()))
        .collect()
}

/// An object deletion that records it ran and succeeds.
fn removal(ran: &Arc<AtomicBool>) -> ObjectRemoval<'static> {
    let ran = ran.clone();
    Box::pin(async move {
        ran.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// A holding no image references is marked, kept for the grace period after the mark,
/// then released; its blob, held by nothing, is then deleted with its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_releases_unreferenced_holdings_after_the_grace_period() {
    for b in backends().await {
        let s = &*b.nodes[0];
        create(s, "app").await;
        let (used, loose) = (digest("used"), digest("loose"));
        s.add_repository_blob(RegistryKey::home(A), "app", &used, 10, 1)
            .await
            .unwrap();
        s.add_repository_blob(RegistryKey::home(A), "app", &loose, 20, 1)
            .await
            .unwrap();
        s.put_image(
            RegistryKey::home(A),
            "app",
            &image("img", std::slice::from_ref(&used), &[]),
            None,
            TagRule::Mutable,
        )
        .await
        .unwrap();
        assert_eq!(s.gc_mark(10_000).await.unwrap(), 1, "{}", b.name);
        // Marking again keeps the first mark.
        assert_eq!(s.gc_mark(11_000).await.unwrap(), 0, "{}", b.name);
        assert!(s
            .gc_holdings(9_999, None, None, 100)
            .await
            .unwrap()
            .is_empty());
        // A dry run's view counts unmarked ones as marked now.
        let dry = s.gc_holdings(9_999, Some(9_000), None, 100).await.unwrap();
        assert!(dry.is_empty(), "{}: {dry:?}", b.name);
        let due = s.gc_holdings(10_000, None, None, 100).await.unwrap();
        assert_eq!(
            holdings_of(&due),
            vec![("app".into(), loose.clone())],
            "{}",
            b.name
        );
        assert_eq!(due[0].size, 20);
        // Not yet due: nothing released.
        assert!(s.gc_sweep_holdings(&due, 9_999).await.unwrap().is_empty());
        let released = b.nodes[1].gc_sweep_holdings(&due, 10_000).await.unwrap();
        assert_eq!(released, due, "{}", b.name);
        assert_eq!(
            s.repository_blob(RegistryKey::home(A), "app", &loose)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.repository_blob(RegistryKey::home(A), "app", &used)
                .await
                .unwrap(),
            Some(10)
        );
        assert_eq!(
            s.gc_unheld_blobs("", 100).await.unwrap(),
            vec![(loose.clone(), 20)],
            "{}",
            b.name
        );
        assert_eq!(s.blob_holdings(&used).await.unwrap(), 1);
        // A held blob is never deleted, and its deletion never runs.
        let ran = Arc::new(AtomicBool::new(false));
        assert_eq!(
            s.gc_delete_blob(&used, false, removal(&ran)).await.unwrap(),
            BlobSweep::InUse
        );
        assert!(!ran.load(Ordering::SeqCst), "{}", b.name);
        // A failed deletion changes nothing.
        let failing: ObjectRemoval<'static> = Box::pin(async { Err("disk on fire".to_string()) });
        assert_eq!(
            s.gc_delete_blob(&loose, false, failing).await.unwrap(),
            BlobSweep::Failed("disk on fire".into())
        );
        assert_eq!(s.gc_unheld_blobs("", 100).await.unwrap().len(), 1);
        assert_eq!(
            s.gc_delete_blob(&loose, false, removal(&ran))
                .await
                .unwrap(),
            BlobSweep::Deleted,
            "{}",
            b.name
        );
        assert!(ran.load(Ordering::SeqCst));
        assert!(s.gc_unheld_blobs("", 100).await.unwrap().is_empty());
        let both = vec![used.clone(), loose.clone()];
        assert_eq!(s.known_blobs(&both).await.unwrap(), vec![used.clone()]);
        // An object with no row: deleted with a row made for the purpose, which goes too;
        // one whose row exists is someone's.
        let orphan = digest("orphan");
        assert_eq!(
            s.gc_delete_blob(&orphan, true, removal(&ran))
                .await
                .unwrap(),
            BlobSweep::Deleted
        );
        assert!(s.known_blobs(&[orphan]).await.unwrap().is_empty());
        let ran = Arc::new(AtomicBool::new(false));
        assert_eq!(
            s.gc_delete_blob(&used, true, removal(&ran)).await.unwrap(),
            BlobSweep::InUse
        );
        assert!(!ran.load(Ordering::SeqCst));
    }
}

/// Whatever tells a client the repository holds a blob, or references it again, clears
/// the collector's mark: a look-up, a push referencing it, an upload or a mount into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_marks_are_cleared_by_every_re_reference() {
    for b in backends().await {
        let (s, other) = (&*b.nodes[0], &*b.nodes[1]);
        create(s, "app").await;
        create(s, "copy").await;
        let layer = digest("layer");
        s.add_repository_blob(RegistryKey::home(A), "app", &layer, 7, 1)
            .await
            .unwrap();
        let due = |cutoff| async move { s.gc_holdings(cutoff, None, None, 100).await.unwrap() };
        // A look-up.
        s.gc_mark(100).await.unwrap();
        assert_eq!(due(100).await.len(), 1);
        assert_eq!(
            other
                .repository_blob(RegistryKey::home(A), "app", &layer)
                .await
                .unwrap(),
            Some(7)
        );
        assert!(due(100).await.is_empty(), "{}", b.name);
        // A push referencing it.
        s.gc_mark(200).await.unwrap();
        let img = image("img", std::slice::from_ref(&layer), &[]);
        other
            .put_image(RegistryKey::home(A), "app", &img, None, TagRule::Mutable)
            .await
            .unwrap();
        assert!(due(i64::MAX).await.is_empty(), "{}", b.name);
        assert!(other
            .delete_image(RegistryKey::home(A), "app", &img.digest, &[])
            .await
            .unwrap());
        // Marked again at 300, after the image went: the grace counts from the mark.
        s.gc_mark(300).await.unwrap();
        let candidates = due(i64::MAX).await;
        assert!(s
            .gc_sweep_holdings(&candidates, 299)
            .await
            .unwrap()
            .is_empty());
        // An upload completing into it.
        other
            .add_repository_blob(RegistryKey::home(A), "app", &layer, 7, 400)
            .await
            .unwrap();
        assert!(due(i64::MAX).await.is_empty(), "{}", b.name);
        // A mount from it: the new holding is not marked; the source's mark stays.
        s.gc_mark(500).await.unwrap();
        assert_eq!(
            other
                .mount_blob(RegistryKey::home(A), "app", "copy", &layer, 600)
                .await
                .unwrap(),
            Some(7)
        );
        assert_eq!(
            holdings_of(&due(i64::MAX).await),
            vec![("app".into(), layer.clone())]
        );
        // A mount into a repository holding it already clears its mark.
        s.gc_mark(700).await.unwrap();
        other
            .mount_blob(RegistryKey::home(A), "app", "copy", &layer, 800)
            .await
            .unwrap();
        assert_eq!(
            holdings_of(&due(i64::MAX).await),
            vec![("app".into(), layer.clone())]
        );
        // Mounting what the source does not hold, or into no repository.
        assert_eq!(
            other
                .mount_blob(RegistryKey::home(A), "copy", "app", &digest("none"), 900)
                .await
                .unwrap(),
            None
        );
        assert!(matches!(
            other
                .mount_blob(RegistryKey::home(A), "app", "gone", &layer, 900)
                .await,
            Err(RegistryError::RepositoryNotFound { .. })
        ));
        // A holding released under a pending look-up: the look-up then finds nothing.
        let candidates = due(i64::MAX).await;
        assert_eq!(
            s.gc_sweep_holdings(&candidates, i64::MAX)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            other
                .repository_blob(RegistryKey::home(A), "app", &layer)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            other
                .repository_blob(RegistryKey::home(A), "copy", &layer)
                .await
                .unwrap(),
            Some(7)
        );
    }
}

/// The sweep racing pushes that reference the holdings it is releasing, on two nodes:
/// every push either commits (and its blobs stay held) or is refused with the blob
/// missing; never an image whose blob the repository no longer holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_sweep_racing_pushes_never_leaves_an_image_without_its_blobs() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        for round in 0..40 {
            let layer = digest(&format!("layer-{round}"));
            b.nodes[0]
                .add_repository_blob(RegistryKey::home(A), "app", &layer, 5, 1)
                .await
                .unwrap();
            b.nodes[0].gc_mark(10).await.unwrap();
            let candidates = b.nodes[0].gc_holdings(10, None, None, 100).await.unwrap();
            let sweeper = b.nodes[0].clone();
            let pusher = b.nodes[1].clone();
            let img = image(&format!("img-{round}"), std::slice::from_ref(&layer), &[]);
            let sweep =
                tokio::spawn(async move { sweeper.gc_sweep_holdings(&candidates, 10).await });
            let push = tokio::spawn(async move {
                pusher
                    .put_image(RegistryKey::home(A), "app", &img, None, TagRule::Mutable)
                    .await
            });
            let released = sweep.await.unwrap().unwrap();
            let pushed = push.await.unwrap();
            let held = b.nodes[0]
                .repository_blob(RegistryKey::home(A), "app", &layer)
                .await
                .unwrap();
            match pushed {
                Ok(_) => {
                    assert!(
                        released.is_empty(),
                        "{} round {round}: released a referenced holding",
                        b.name
                    );
                    assert_eq!(held, Some(5), "{} round {round}", b.name);
                }
                Err(PutImageError::Missing { blobs, .. }) => {
                    assert_eq!(blobs, vec![layer.clone()], "{}", b.name);
                    assert_eq!(released.len(), 1, "{}", b.name);
                    assert_eq!(held, None, "{}", b.name);
                }
                Err(e) => panic!("{} round {round}: {e:?}", b.name),
            }
        }
    }
}

/// The deletion of a blob's object racing its publication (an upload of the same layer
/// into another repository), on two nodes: whenever a repository ends up holding the
/// blob, its object is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_blob_deletion_racing_a_publication_never_loses_a_held_object() {
    for b in backends().await {
        create(&*b.nodes[0], "app").await;
        for round in 0..40 {
            let layer = digest(&format!("published-{round}"));
            // A blob no repository holds, its object present.
            create(&*b.nodes[0], "doomed").await;
            b.nodes[0]
                .add_repository_blob(RegistryKey::home(A), "doomed", &layer, 5, 1)
                .await
                .unwrap();
            b.nodes[0]
                .delete_repository(RegistryKey::home(A), "doomed", true)
                .await
                .unwrap();
            let present = Arc::new(AtomicBool::new(true));
            let (publisher, deleter) = (b.nodes[1].clone(), b.nodes[0].clone());
            let (p1, p2) = (present.clone(), present.clone());
            let (l1, l2) = (layer.clone(), layer.clone());
            let publish = tokio::spawn(async move {
                let lock = publisher.lock_blob(&l1, 5, 2).await.unwrap();
                // The object is put in place (or found there) under the lock.
                p1.store(true, Ordering::SeqCst);
                tokio::task::yield_now().await;
                lock.hold(RegistryKey::home(A), "app", 2).await.unwrap();
            });
            let delete = tokio::spawn(async move {
                let remove: ObjectRemoval<'static> = Box::pin(async move {
                    p2.store(false, Ordering::SeqCst);
                    Ok(())
                });
                deleter.gc_delete_blob(&l2, false, remove).await.unwrap()
            });
            publish.await.unwrap();
            let swept = delete.await.unwrap();
            assert_eq!(
                b.nodes[0]
                    .repository_blob(RegistryKey::home(A), "app", &layer)
                    .await
                    .unwrap(),
                Some(5),
                "{}",
                b.name
            );
            assert!(
                present.load(Ordering::SeqCst),
                "{} round {round}: the object of a held blob was deleted ({swept:?})",
                b.name
            );
        }
    }
}

fn preview(policy: &str, started: i64, results: &[(&str, &[&str], i64, i64)]) -> LifecyclePreview {
    LifecyclePreview {
        policy: policy.into(),
        started,
        results: results
            .iter()
            .map(|(seed, tags, pushed_at, rule)| PreviewResult {
                digest: digest(seed),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                pushed_at: *pushed_at,
                rule_priority: *rule,
            })
            .collect(),
    }
}

/// A lifecycle preview written by one node is read whole by another, a new one replaces
/// it entirely, it needs its repository, and it goes with the repository.
#[tokio::test]
async fn lifecycle_previews_are_shared_replaced_and_deleted_with_their_repository() {
    for b in backends().await {
        let (one, two) = (&*b.nodes[0], &*b.nodes[1]);
        create(one, "app").await;
        assert_eq!(
            two.lifecycle_preview(RegistryKey::home(A), "app")
                .await
                .unwrap(),
            None,
            "{}",
            b.name
        );
        let first = preview(
            "policy one",
            5_000,
            &[
                ("old", &["v1", "latest-1"], 1_000, 2),
                ("untagged", &[], 2_000, 1),
                ("mid", &["v2"], 1_500, 2),
            ],
        );
        one.put_lifecycle_preview(RegistryKey::home(A), "app", &first)
            .await
            .unwrap();
        let got = two
            .lifecycle_preview(RegistryKey::home(A), "app")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.policy, "policy one", "{}", b.name);
        assert_eq!(got.started, 5_000, "{}", b.name);
        // Oldest push first; tags sorted; an untagged image has none.
        let expected = preview(
            "policy one",
            5_000,
            &[
                ("old", &["latest-1", "v1"], 1_000, 2),
                ("mid", &["v2"], 1_500, 2),
                ("untagged", &[], 2_000, 1),
            ],
        );
        assert_eq!(got, expected, "{}", b.name);

        // A new preview replaces the old one whole (no result of the first is left).
        let second = preview("policy two", 6_000, &[("mid", &["v2"], 1_500, 7)]);
        two.put_lifecycle_preview(RegistryKey::home(A), "app", &second)
            .await
            .unwrap();
        assert_eq!(
            one.lifecycle_preview(RegistryKey::home(A), "app")
                .await
                .unwrap(),
            Some(second.clone()),
            "{}",
            b.name
        );
        // An empty preview is a preview.
        let none = preview("policy three", 7_000, &[]);
        one.put_lifecycle_preview(RegistryKey::home(A), "app", &none)
            .await
            .unwrap();
        assert_eq!(
            two.lifecycle_preview(RegistryKey::home(A), "app")
                .await
                .unwrap(),
            Some(none),
            "{}",
            b.name
        );

        // Only for a repository that exists.
        assert_eq!(
            one.put_lifecycle_preview(RegistryKey::home(A), "ghost", &second)
                .await,
            Err(RegistryError::RepositoryNotFound {
                account: A.into(),
                name: "ghost".into()
            }),
            "{}",
            b.name
        );
        assert_eq!(
            one.lifecycle_preview(RegistryKey::home(A), "ghost")
                .await
                .unwrap(),
            None
        );

        // Deleting the repository deletes its preview: a new one of the name has none.
        one.put_lifecycle_preview(RegistryKey::home(A), "app", &second)
            .await
            .unwrap();
        one.delete_repository(RegistryKey::home(A), "app", false)
            .await
            .unwrap();
        create(two, "app").await;
        assert_eq!(
            one.lifecycle_preview(RegistryKey::home(A), "app")
                .await
                .unwrap(),
            None,
            "{}",
            b.name
        );
    }
}

/// A run is recorded as lastEvaluatedAt only while the policy that ran is still the
/// repository's.
#[tokio::test]
async fn a_lifecycle_run_is_recorded_only_for_the_policy_that_ran() {
    for b in backends().await {
        let (one, two) = (&*b.nodes[0], &*b.nodes[1]);
        create(one, "app").await;
        // No policy: nothing recorded.
        assert!(!one
            .lifecycle_evaluated(RegistryKey::home(A), "app", "p1", 9_000)
            .await
            .unwrap());
        one.update_repository(
            RegistryKey::home(A),
            "app",
            &RepositorySetting::LifecyclePolicy(Some(("p1".into(), 2_000))),
        )
        .await
        .unwrap();
        assert!(two
            .lifecycle_evaluated(RegistryKey::home(A), "app", "p1", 9_000)
            .await
            .unwrap());
        let r = one
            .repository(RegistryKey::home(A), "app")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.lifecycle_updated, Some(9_000), "{}", b.name);
        assert_eq!(r.lifecycle_policy.as_deref(), Some("p1"), "{}", b.name);
        // Replaced meanwhile: the run of the old one is not recorded.
        one.update_repository(
            RegistryKey::home(A),
            "app",
            &RepositorySetting::LifecyclePolicy(Some(("p2".into(), 10_000))),
        )
        .await
        .unwrap();
        assert!(!two
            .lifecycle_evaluated(RegistryKey::home(A), "app", "p1", 11_000)
            .await
            .unwrap());
        let r = two
            .repository(RegistryKey::home(A), "app")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.lifecycle_updated, Some(10_000), "{}", b.name);
        // Gone repository.
        assert!(!one
            .lifecycle_evaluated(RegistryKey::home(A), "gone", "p2", 12_000)
            .await
            .unwrap());
    }
}

/// One account's registries in two Regions are apart: a repository of one name in each,
/// each with its own images, tags, blobs held, uploads and resource tags; listings,
/// look-ups, deletes and registry policies see only their own Region; what comes back
/// carries the bare name and its Region. A deployment's settings are recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registries_of_two_regions_are_apart() {
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    let east = RegistryKey::home(A);
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        for at in [east, west] {
            s.create_repository(&Repository::new(at, "team/app", 1), &[])
                .await
                .unwrap();
        }
        s.create_repository(&Repository::new(west, "west-only", 1), &[])
            .await
            .unwrap();
        let listed = |rs: Vec<Repository>| {
            rs.into_iter()
                .map(|r| (r.name, r.region))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            listed(t.repositories(east).await.unwrap()),
            vec![("team/app".to_string(), None)],
            "{n}"
        );
        assert_eq!(
            listed(t.repositories(west).await.unwrap()),
            vec![
                ("team/app".to_string(), Some("us-west-2".to_string())),
                ("west-only".to_string(), Some("us-west-2".to_string()))
            ],
            "{n}"
        );
        assert_eq!(t.account_repositories(A).await.unwrap().len(), 3, "{n}");
        let found = t.repository(west, "team/app").await.unwrap().unwrap();
        assert_eq!(
            (found.name.as_str(), found.region.as_deref()),
            ("team/app", Some("us-west-2")),
            "{n}"
        );
        assert!(
            t.repository(east, "west-only").await.unwrap().is_none(),
            "{n}"
        );
        // An image pushed in the West is not in the East.
        let layer = digest("west-layer");
        s.add_repository_blob(west, "team/app", &layer, 10, 5)
            .await
            .unwrap();
        let img = image("west", std::slice::from_ref(&layer), &[]);
        s.put_image(west, "team/app", &img, Some("v1"), TagRule::Mutable)
            .await
            .unwrap();
        assert!(
            t.image(west, "team/app", "v1").await.unwrap().is_some(),
            "{n}"
        );
        assert!(
            t.image(east, "team/app", "v1").await.unwrap().is_none(),
            "{n}"
        );
        assert_eq!(
            t.repository_blob(east, "team/app", &layer).await.unwrap(),
            None,
            "{n}"
        );
        // Not held in the East: an image there cannot reference the layer.
        let refused = s
            .put_image(east, "team/app", &img, Some("v1"), TagRule::Mutable)
            .await;
        assert!(matches!(refused, Err(PutImageError::Missing { .. })), "{n}");
        // Errors name the bare repository.
        match s.delete_repository(west, "team/app", false).await {
            Err(RegistryError::RepositoryNotEmpty { name, .. }) => assert_eq!(name, "team/app"),
            other => panic!("{n}: {other:?}"),
        }
        match s.delete_repository(east, "west-only", false).await {
            Err(RegistryError::RepositoryNotFound { name, .. }) => assert_eq!(name, "west-only"),
            other => panic!("{n}: {other:?}"),
        }
        // An upload session knows its Region.
        s.create_upload(&Upload {
            id: format!("up-{n}"),
            account: A.into(),
            region: Some("us-west-2".into()),
            repository: "west-only".into(),
            principal: "p".into(),
            created: 1,
            updated: 1,
        })
        .await
        .unwrap();
        let up = t.upload(&format!("up-{n}")).await.unwrap().unwrap();
        assert_eq!(
            (up.region.as_deref(), up.repository.as_str()),
            (Some("us-west-2"), "west-only"),
            "{n}"
        );
        // Registry policies are per Region.
        s.set_registry_policy(west, Some("{\"west\":1}"))
            .await
            .unwrap();
        assert_eq!(t.registry_policy(east).await.unwrap(), None, "{n}");
        assert_eq!(
            t.registry_policy(west).await.unwrap().as_deref(),
            Some("{\"west\":1}"),
            "{n}"
        );
        // Deleting the West's repository leaves the East's.
        s.delete_repository(west, "team/app", true).await.unwrap();
        assert!(
            t.repository(east, "team/app").await.unwrap().is_some(),
            "{n}"
        );
        assert!(
            t.repository(west, "team/app").await.unwrap().is_none(),
            "{n}"
        );
        // A setting is the first candidate, whoever asks later.
        assert_eq!(
            t.recorded_setting("home-region").await.unwrap(),
            None,
            "{n}"
        );
        assert_eq!(
            s.setting("home-region", "eu-west-1").await.unwrap(),
            "eu-west-1",
            "{n}"
        );
        assert_eq!(
            t.setting("home-region", "us-east-1").await.unwrap(),
            "eu-west-1",
            "{n}"
        );
        assert_eq!(
            t.recorded_setting("home-region").await.unwrap().as_deref(),
            Some("eu-west-1"),
            "{n}"
        );
    }
}

/// Replication's records: configurations and templates per registry; the outbox rows a
/// push, a tag removal and an image deletion write in their own transactions (none for a
/// push that changes nothing), taken in order, settled, and read back as the image's
/// status per destination and as the outbox's summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_configurations_templates_and_the_outbox() {
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    let home = RegistryKey::home(A);
    let to = |account: &str, region: &str| Replica {
        account: account.into(),
        region: region.into(),
    };
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        // Configurations are per registry.
        s.set_replication_configuration(west, Some("{\"rules\":[1]}"), 5)
            .await
            .unwrap();
        assert_eq!(
            t.replication_configuration(home).await.unwrap(),
            None,
            "{n}"
        );
        assert_eq!(
            t.replication_configuration(west).await.unwrap().as_deref(),
            Some("{\"rules\":[1]}"),
            "{n}"
        );
        s.set_replication_configuration(west, None, 6)
            .await
            .unwrap();
        assert_eq!(
            t.replication_configuration(west).await.unwrap(),
            None,
            "{n}"
        );
        // Templates: create once, update only what exists, delete returns it.
        assert!(s
            .put_creation_template(home, "prod", "{\"v\":1}", TemplateWrite::Create)
            .await
            .unwrap());
        assert!(!t
            .put_creation_template(home, "prod", "{\"v\":2}", TemplateWrite::Create)
            .await
            .unwrap());
        assert!(!t
            .put_creation_template(home, "dev", "{\"v\":2}", TemplateWrite::Update)
            .await
            .unwrap());
        assert!(t
            .put_creation_template(home, "prod", "{\"v\":3}", TemplateWrite::Update)
            .await
            .unwrap());
        assert!(s
            .put_creation_template(home, "ROOT", "{\"root\":1}", TemplateWrite::Create)
            .await
            .unwrap());
        assert_eq!(
            s.creation_templates(home).await.unwrap(),
            vec!["{\"root\":1}".to_string(), "{\"v\":3}".to_string()],
            "{n}"
        );
        assert!(s.creation_templates(west).await.unwrap().is_empty(), "{n}");
        assert_eq!(
            t.delete_creation_template(home, "prod")
                .await
                .unwrap()
                .as_deref(),
            Some("{\"v\":3}"),
            "{n}"
        );
        assert_eq!(
            t.delete_creation_template(home, "prod").await.unwrap(),
            None,
            "{n}"
        );

        // The outbox.
        create(s, "src").await;
        let layer = digest("repl-layer");
        s.add_repository_blob(home, "src", &layer, 10, 1)
            .await
            .unwrap();
        let mut img = image("repl", std::slice::from_ref(&layer), &[]);
        img.replicate_to = vec![to(A, "us-west-2"), to("222222222222", "us-east-1")];
        s.put_image(home, "src", &img, Some("v1"), TagRule::Mutable)
            .await
            .unwrap();
        // The same push again changes nothing and records nothing.
        s.put_image(home, "src", &img, Some("v1"), TagRule::Mutable)
            .await
            .unwrap();
        let due = t.due_replications(i64::MAX, 100).await.unwrap();
        assert_eq!(due.len(), 2, "{n}: {due:?}");
        assert!(due.iter().all(|r| r.action == ReplicaAction::Push
            && r.tag.as_deref() == Some("v1")
            && r.repository == "src"
            && r.region.is_none()
            && r.digest == img.digest
            && r.state == ReplicaState::InProgress));
        assert!(due[0].id < due[1].id, "{n}");
        // Not due before its time.
        assert!(t.due_replications(0, 100).await.unwrap().is_empty(), "{n}");
        // Settled: one complete, one retried then failed for good.
        t.settle_replication(due[0].id, &Settlement::Complete, 10)
            .await
            .unwrap();
        t.settle_replication(
            due[1].id,
            &Settlement::Retry {
                failure_code: "UNREACHABLE".into(),
                next_at: 50,
            },
            11,
        )
        .await
        .unwrap();
        assert!(t.due_replications(49, 100).await.unwrap().is_empty(), "{n}");
        let again = t.due_replications(50, 100).await.unwrap();
        assert_eq!((again.len(), again[0].attempts), (1, 1), "{n}");
        let summary = t.replication_summary().await.unwrap();
        assert_eq!(
            (summary.pending, summary.complete, summary.failed),
            (1, 1, 0),
            "{n}"
        );
        assert_eq!(
            summary.last_failure.unwrap().failure_code.as_deref(),
            Some("UNREACHABLE"),
            "{n}"
        );
        t.settle_replication(due[1].id, &Settlement::Failed("DENIED".into()), 12)
            .await
            .unwrap();
        let status = s
            .image_replications(home, "src", &img.digest)
            .await
            .unwrap();
        let got: Vec<_> = status
            .iter()
            .map(|r| {
                (
                    r.destination.region.as_str(),
                    r.state,
                    r.failure_code.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("us-east-1", ReplicaState::Failed, Some("DENIED")),
                ("us-west-2", ReplicaState::Complete, None)
            ],
            "{n}"
        );
        // A tag removal and an image deletion record theirs.
        let west_only = [to(A, "us-west-2")];
        assert_eq!(
            s.delete_tag(home, "src", "v1", &west_only).await.unwrap(),
            Some(img.digest.clone()),
            "{n}"
        );
        assert!(s
            .delete_image(home, "src", &img.digest, &west_only)
            .await
            .unwrap());
        // Removing what is not there records nothing.
        assert_eq!(
            s.delete_tag(home, "src", "v1", &west_only).await.unwrap(),
            None
        );
        let due = t.due_replications(i64::MAX, 100).await.unwrap();
        let kinds: Vec<_> = due.iter().map(|r| (r.action, r.tag.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (ReplicaAction::DeleteTag, Some("v1".to_string())),
                (ReplicaAction::DeleteImage, None)
            ],
            "{n}"
        );
        // Backfills enqueue outside a push; a West repository's rows say their Region.
        t.enqueue_replications(
            west,
            &[NewReplication {
                repository: "w".into(),
                digest: img.digest.clone(),
                tag: None,
                action: ReplicaAction::Push,
                destination: to(A, "us-east-1"),
                backfill: Some("bf-1".into()),
            }],
            20,
        )
        .await
        .unwrap();
        let last = t
            .due_replications(i64::MAX, 100)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (
                last.region.as_deref(),
                last.repository.as_str(),
                last.backfill.as_deref()
            ),
            (Some("us-west-2"), "w", Some("bf-1")),
            "{n}"
        );
    }
}

/// Backfills: one active per destination Region and at most ten per registry, whoever
/// starts them (two nodes at once included); their replications counted and listed once
/// settled; stopping fails what is not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_backfills() {
    let home = RegistryKey::home(A);
    let backfill = |id: &str, region: &str| Backfill {
        id: id.into(),
        account: A.into(),
        region: None,
        destination: Replica {
            account: A.into(),
            region: region.into(),
        },
        status: "PREPARING".into(),
        failure_code: None,
        total: None,
        started_at: 1,
        ended_at: None,
    };
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        // Two nodes start one for the same Region at once: one wins.
        let (one, two) = (backfill("b-1", "us-west-2"), backfill("b-2", "us-west-2"));
        let (x, y) = tokio::join!(s.start_backfill(&one), t.start_backfill(&two));
        let outcomes = [x.unwrap(), y.unwrap()];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{n}: {outcomes:?}"
        );
        assert!(outcomes.contains(&Err(BackfillRefusal::InProgress)), "{n}");
        let first = s.backfills(home).await.unwrap().remove(0).id;
        // Other Regions up to the limit.
        for i in 1..MAX_ACTIVE_BACKFILLS {
            assert_eq!(
                s.start_backfill(&backfill(&format!("r-{i}"), &format!("eu-west-{i}")))
                    .await
                    .unwrap(),
                Ok(()),
                "{n}"
            );
        }
        assert_eq!(
            s.start_backfill(&backfill("one-too-many", "ap-south-1"))
                .await
                .unwrap(),
            Err(BackfillRefusal::Limit),
            "{n}"
        );
        assert_eq!(
            t.active_backfills().await.unwrap().len() as i64,
            MAX_ACTIVE_BACKFILLS
        );
        // Its replications.
        let row = |digest: &str| NewReplication {
            repository: "r".into(),
            digest: digest.into(),
            tag: None,
            action: ReplicaAction::Push,
            destination: Replica {
                account: A.into(),
                region: "us-west-2".into(),
            },
            backfill: Some(first.clone()),
        };
        s.enqueue_replications(home, &[row("d1"), row("d2"), row("d3")], 5)
            .await
            .unwrap();
        t.update_backfill(&first, "IN_PROGRESS", Some(3), None, None)
            .await
            .unwrap();
        let due = t.due_replications(i64::MAX, 10).await.unwrap();
        t.settle_replication(due[0].id, &Settlement::Complete, 6)
            .await
            .unwrap();
        t.settle_replication(due[1].id, &Settlement::Failed("NOPE".into()), 6)
            .await
            .unwrap();
        assert_eq!(
            t.backfill_progress(&first).await.unwrap(),
            BackfillProgress {
                complete: 1,
                failed: 1,
                in_progress: 1,
                failure_codes: vec!["NOPE".into()],
            },
            "{n}"
        );
        assert_eq!(
            t.stop_backfill_replications(&first, "STOPPED", 7)
                .await
                .unwrap(),
            1,
            "{n}"
        );
        t.update_backfill(&first, "STOPPED", None, None, Some(8))
            .await
            .unwrap();
        let all = t.backfill_results(&first, None, 0, 10).await.unwrap();
        assert_eq!(all.len(), 3, "{n}");
        let failed = t
            .backfill_results(&first, Some(ReplicaState::Failed), 0, 10)
            .await
            .unwrap();
        assert_eq!(failed.len(), 2, "{n}");
        assert_eq!(
            t.backfill_results(&first, None, 2, 10).await.unwrap().len(),
            1,
            "{n}"
        );
        let stopped = s
            .backfills(home)
            .await
            .unwrap()
            .into_iter()
            .find(|x| x.id == first)
            .unwrap();
        assert_eq!(
            (
                stopped.status.as_str(),
                stopped.total,
                stopped.ended_at,
                stopped.active()
            ),
            ("STOPPED", Some(3), Some(8), false),
            "{n}"
        );
        // Room for one more now.
        assert_eq!(
            s.start_backfill(&backfill("after", "us-west-2"))
                .await
                .unwrap(),
            Ok(()),
            "{n}"
        );
    }
}

/// Pruning the outbox keeps what statuses need: the latest push of a present image to
/// each destination; older settled rows, rows of deleted images and of ended backfills go,
/// and nothing in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pruning_the_outbox_keeps_the_statuses_it_answers() {
    let home = RegistryKey::home(A);
    let west = Replica {
        account: A.into(),
        region: "us-west-2".into(),
    };
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        create(s, "pruned").await;
        let layer = digest("prune-layer");
        s.add_repository_blob(home, "pruned", &layer, 10, 1)
            .await
            .unwrap();
        let mut kept = image("kept", std::slice::from_ref(&layer), &[]);
        kept.replicate_to = vec![west.clone()];
        let mut gone = image("gone", std::slice::from_ref(&layer), &[]);
        gone.replicate_to = vec![west.clone()];
        for (img, tag) in [(&kept, "a"), (&kept, "b"), (&gone, "c")] {
            s.put_image(home, "pruned", img, Some(tag), TagRule::Mutable)
                .await
                .unwrap();
        }
        let due = t.due_replications(i64::MAX, 100).await.unwrap();
        assert_eq!(due.len(), 3, "{n}");
        for r in &due {
            t.settle_replication(r.id, &Settlement::Complete, 100)
                .await
                .unwrap();
        }
        s.delete_image(home, "pruned", &gone.digest, &[])
            .await
            .unwrap();
        // One more in progress, never pruned.
        s.enqueue_replications(
            home,
            &[NewReplication {
                repository: "pruned".into(),
                digest: kept.digest.clone(),
                tag: Some("c".into()),
                action: ReplicaAction::Push,
                destination: west.clone(),
                backfill: None,
            }],
            100,
        )
        .await
        .unwrap();
        // A peer upload session remembered at 100 stays past a prune before 50.
        let upload = PeerUpload {
            peer: "eu-west-1",
            account: "222222222222",
            region: "eu-west-1",
            repository: "pruned",
            digest: &kept.digest,
        };
        t.set_peer_upload(&upload, Some("session-1"), 100)
            .await
            .unwrap();
        // Nothing settled before 50.
        assert_eq!(t.prune_replications(50).await.unwrap(), 0, "{n}");
        assert_eq!(
            t.peer_upload(&upload).await.unwrap().as_deref(),
            Some("session-1"),
            "{n}"
        );
        // Before 200: both settled pushes of `kept` (the one in progress is its latest
        // now) and the one of `gone` go.
        assert_eq!(t.prune_replications(200).await.unwrap(), 3, "{n}");
        assert_eq!(t.peer_upload(&upload).await.unwrap(), None, "{n}");
        let status = t
            .image_replications(home, "pruned", &kept.digest)
            .await
            .unwrap();
        assert_eq!(status.len(), 1, "{n}");
        assert_eq!(
            t.due_replications(i64::MAX, 100).await.unwrap().len(),
            1,
            "{n}"
        );
    }
}

/// A peer upload session is remembered by everything it uploads (peer, destination
/// registry, repository, digest), seen by every node, replaced and forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_upload_sessions_are_remembered_per_blob() {
    let d1 = digest("peer-one");
    let d2 = digest("peer-two");
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        let one = PeerUpload {
            peer: "eu-west-1",
            account: "222222222222",
            region: "eu-west-1",
            repository: "app",
            digest: &d1,
        };
        let others = [
            PeerUpload { digest: &d2, ..one },
            PeerUpload {
                repository: "other",
                ..one
            },
            PeerUpload { account: A, ..one },
            PeerUpload {
                region: "eu-west-2",
                ..one
            },
            PeerUpload {
                peer: "eu-west-2",
                ..one
            },
        ];
        assert_eq!(t.peer_upload(&one).await.unwrap(), None, "{n}");
        s.set_peer_upload(&one, Some("first"), 1).await.unwrap();
        assert_eq!(
            t.peer_upload(&one).await.unwrap().as_deref(),
            Some("first"),
            "{n}"
        );
        for o in &others {
            assert_eq!(t.peer_upload(o).await.unwrap(), None, "{n}: {o:?}");
        }
        t.set_peer_upload(&one, Some("second"), 2).await.unwrap();
        assert_eq!(
            s.peer_upload(&one).await.unwrap().as_deref(),
            Some("second"),
            "{n}"
        );
        s.set_peer_upload(&others[0], Some("third"), 3)
            .await
            .unwrap();
        s.set_peer_upload(&one, None, 4).await.unwrap();
        assert_eq!(t.peer_upload(&one).await.unwrap(), None, "{n}");
        assert_eq!(
            t.peer_upload(&others[0]).await.unwrap().as_deref(),
            Some("third"),
            "{n}"
        );
        // Forgetting what is not remembered is no error.
        s.set_peer_upload(&one, None, 5).await.unwrap();
    }
}

/// Pull-through cache rules, kept as creation templates are: created once, updated only
/// when they exist, listed by prefix, deleted (returning the rule), per registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_through_rules_per_registry() {
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    let home = RegistryKey::home(A);
    let other = RegistryKey::home("222222222222");
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        assert!(s.pull_through_rules(home).await.unwrap().is_empty(), "{n}");
        assert!(s
            .put_pull_through_rule(home, "quay", "{\"q\":1}", TemplateWrite::Create)
            .await
            .unwrap());
        // Created once: a second create is refused and changes nothing.
        assert!(!t
            .put_pull_through_rule(home, "quay", "{\"q\":2}", TemplateWrite::Create)
            .await
            .unwrap());
        assert_eq!(
            t.pull_through_rules(home).await.unwrap(),
            vec!["{\"q\":1}".to_string()],
            "{n}"
        );
        // Updated only when it exists.
        assert!(!t
            .put_pull_through_rule(home, "ghcr", "{\"g\":1}", TemplateWrite::Update)
            .await
            .unwrap());
        assert!(t
            .put_pull_through_rule(home, "quay", "{\"q\":3}", TemplateWrite::Update)
            .await
            .unwrap());
        // Listed by prefix, in byte order (upper case first).
        for (prefix, rule) in [
            ("docker-hub", "{\"d\":1}"),
            ("ECR", "{\"e\":1}"),
            ("ghcr", "{\"g\":1}"),
        ] {
            assert!(s
                .put_pull_through_rule(home, prefix, rule, TemplateWrite::Create)
                .await
                .unwrap());
        }
        assert_eq!(
            t.pull_through_rules(home).await.unwrap(),
            ["{\"e\":1}", "{\"d\":1}", "{\"g\":1}", "{\"q\":3}"],
            "{n}"
        );
        // Registries (another account, another Region) are kept apart.
        assert!(t.pull_through_rules(west).await.unwrap().is_empty(), "{n}");
        assert!(t.pull_through_rules(other).await.unwrap().is_empty(), "{n}");
        assert!(s
            .put_pull_through_rule(west, "quay", "{\"west\":1}", TemplateWrite::Create)
            .await
            .unwrap());
        assert!(!s
            .put_pull_through_rule(other, "quay", "{\"other\":1}", TemplateWrite::Update)
            .await
            .unwrap());
        assert_eq!(
            t.pull_through_rules(west).await.unwrap(),
            ["{\"west\":1}"],
            "{n}"
        );
        assert_eq!(
            t.delete_pull_through_rule(other, "quay").await.unwrap(),
            None,
            "{n}"
        );
        // Deleted, returning the rule; then there is none.
        assert_eq!(
            t.delete_pull_through_rule(home, "quay")
                .await
                .unwrap()
                .as_deref(),
            Some("{\"q\":3}"),
            "{n}"
        );
        assert_eq!(
            s.delete_pull_through_rule(home, "quay").await.unwrap(),
            None,
            "{n}"
        );
        assert_eq!(
            s.pull_through_rules(home).await.unwrap(),
            ["{\"e\":1}", "{\"d\":1}", "{\"g\":1}"],
            "{n}"
        );
        assert_eq!(
            s.pull_through_rules(west).await.unwrap(),
            ["{\"west\":1}"],
            "{n}"
        );
    }
}

/// What the database holds in the `secret` column of `upstream_credentials`.
async fn stored_upstream_secrets(url: &str) -> Vec<String> {
    let select = "SELECT secret FROM upstream_credentials";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let stored = sqlx::query_scalar(select).fetch_all(&pool).await.unwrap();
        pool.close().await;
        stored
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let stored = sqlx::query_scalar(select).fetch_all(&pool).await.unwrap();
        pool.close().await;
        stored
    }
}

/// Upstream credentials: stored with their secret sealed (never in clear), listed by name
/// without it, opened on request; a credential put again under its name keeps its ARN and
/// creation time and takes the new user name and secret; deleted; per registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_credentials_per_registry_sealed() {
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    let home = RegistryKey::home(A);
    let arn = |region: &str, name: &str, suffix: &str| {
        format!("arn:aws:secretsmanager:{region}:{A}:secret:{name}-{suffix}")
    };
    let hub = "ecr-pullthroughcache/docker-hub";
    let ghcr = "ecr-pullthroughcache/ghcr";
    let hub_arn = arn("us-east-1", hub, "AAAAAA");
    let ghcr_arn = arn("us-east-1", ghcr, "BBBBBB");
    let west_hub_arn = arn("us-west-2", hub, "CCCCCC");
    let clear = ["TokenNeverInClear-hub-1", "TokenNeverInClear-hub-2"];
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        assert!(
            s.upstream_credentials(home).await.unwrap().is_empty(),
            "{n}"
        );
        assert_eq!(
            s.upstream_credential_secret(home, hub).await.unwrap(),
            None,
            "{n}"
        );
        let put = s
            .put_upstream_credential(home, hub, &hub_arn, "alice", clear[0], 100)
            .await
            .unwrap();
        let first = UpstreamCredential {
            arn: hub_arn.clone(),
            name: hub.into(),
            username: "alice".into(),
            created_at: 100,
            updated_at: 100,
        };
        assert_eq!(put, first, "{n}");
        t.put_upstream_credential(home, ghcr, &ghcr_arn, "bob", "ghcr-token", 110)
            .await
            .unwrap();
        // Listed by name, without secrets.
        assert_eq!(
            t.upstream_credentials(home)
                .await
                .unwrap()
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            [hub, ghcr],
            "{n}"
        );
        assert_eq!(t.upstream_credentials(home).await.unwrap()[0], first, "{n}");
        // The secret opens, on any node.
        assert_eq!(
            t.upstream_credential_secret(home, hub).await.unwrap(),
            Some((first.clone(), clear[0].to_string())),
            "{n}"
        );
        // Put again under its name (with another ARN offered): the ARN and creation time
        // stay, the user name, secret and update time change.
        let replaced = t
            .put_upstream_credential(
                home,
                hub,
                &arn("us-east-1", hub, "ZZZZZZ"),
                "carol",
                clear[1],
                200,
            )
            .await
            .unwrap();
        let second = UpstreamCredential {
            username: "carol".into(),
            updated_at: 200,
            ..first.clone()
        };
        assert_eq!(replaced, second, "{n}");
        assert_eq!(
            s.upstream_credential_secret(home, hub).await.unwrap(),
            Some((second.clone(), clear[1].to_string())),
            "{n}"
        );
        // Registries are kept apart: the same name in another Region is another credential.
        assert!(
            s.upstream_credentials(west).await.unwrap().is_empty(),
            "{n}"
        );
        assert_eq!(
            s.upstream_credential_secret(west, hub).await.unwrap(),
            None,
            "{n}"
        );
        s.put_upstream_credential(west, hub, &west_hub_arn, "dave", "west-token", 300)
            .await
            .unwrap();
        assert_eq!(
            t.upstream_credential_secret(west, hub)
                .await
                .unwrap()
                .map(|(c, secret)| (c.arn, c.username, secret)),
            Some((west_hub_arn.clone(), "dave".into(), "west-token".into())),
            "{n}"
        );
        assert_eq!(
            t.upstream_credential_secret(home, hub).await.unwrap(),
            Some((second.clone(), clear[1].to_string())),
            "{n}"
        );
        // Sealed at rest: no stored secret holds the clear text.
        let stored = stored_upstream_secrets(&b.url).await;
        assert_eq!(stored.len(), 3, "{n}");
        for value in &stored {
            for secret in clear.iter().chain(&["ghcr-token", "west-token"]) {
                assert!(!value.contains(secret), "{n}: {secret} is stored in clear");
            }
        }
        // Deleted: once.
        assert!(
            !t.delete_upstream_credential(west, ghcr).await.unwrap(),
            "{n}"
        );
        assert!(
            t.delete_upstream_credential(home, hub).await.unwrap(),
            "{n}"
        );
        assert!(
            !s.delete_upstream_credential(home, hub).await.unwrap(),
            "{n}"
        );
        assert_eq!(
            s.upstream_credential_secret(home, hub).await.unwrap(),
            None,
            "{n}"
        );
        assert_eq!(
            s.upstream_credentials(home)
                .await
                .unwrap()
                .iter()
                .map(|c| c.arn.as_str())
                .collect::<Vec<_>>(),
            [ghcr_arn.as_str()],
            "{n}"
        );
        assert_eq!(s.upstream_credentials(west).await.unwrap().len(), 1, "{n}");
        // Stored again after its deletion: a new credential, with the ARN offered.
        let again = s
            .put_upstream_credential(
                home,
                hub,
                &arn("us-east-1", hub, "DDDDDD"),
                "erin",
                "x",
                400,
            )
            .await
            .unwrap();
        assert_eq!(
            (again.arn, again.created_at, again.updated_at),
            (arn("us-east-1", hub, "DDDDDD"), 400, 400),
            "{n}"
        );
    }
}

/// Nodes putting one upstream credential at once (each offering its own ARN for a new
/// one, while another deletes it now and then): every put returns the credential as
/// stored, and what is left opens with its ARN.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_credentials_put_at_once() {
    let name = "ecr-pullthroughcache/hub";
    for b in backends().await {
        let n = b.name;
        let mut tasks = Vec::new();
        for (i, node) in b.nodes.iter().enumerate() {
            for w in 0..2 {
                let node = node.clone();
                tasks.push(tokio::spawn(async move {
                    let home = RegistryKey::home(A);
                    for round in 0..20 {
                        let arn = format!(
                            "arn:aws:secretsmanager:us-east-1:{A}:secret:{name}-N{i}W{w}R{round:02}"
                        );
                        let secret = format!("secret-{i}-{w}-{round}");
                        let put = node
                            .put_upstream_credential(home, name, &arn, "u", &secret, round)
                            .await
                            .unwrap();
                        assert_eq!((put.name.as_str(), put.updated_at), (name, round));
                        if w == 1 && round % 5 == 4 {
                            node.delete_upstream_credential(home, name).await.unwrap();
                        }
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let home = RegistryKey::home(A);
        let listed = b.nodes[0].upstream_credentials(home).await.unwrap();
        assert!(listed.len() <= 1, "{n}: {listed:?}");
        if let Some(c) = listed.first() {
            let (opened, secret) = b.nodes[1]
                .upstream_credential_secret(home, name)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&opened, c, "{n}");
            assert!(secret.starts_with("secret-"), "{n}: {secret}");
        }
    }
}

/// The checks of cached tags against their upstreams: a claim is won when no check is
/// recorded or the recorded one is stale, and tells the recorded time otherwise; of
/// concurrent claims (two nodes, many requests) exactly one wins; a check set back makes
/// the next claim win sooner; tags, repositories and registries are kept apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_checks_are_claimed_once_per_interval() {
    let home = RegistryKey::home(A);
    let west = RegistryKey {
        account: A,
        region: Some("us-west-2"),
    };
    for b in backends().await {
        let (s, t) = (&*b.nodes[0], &*b.nodes[1]);
        let n = b.name;
        // Nothing recorded: claimed, and recorded as made then.
        assert_eq!(
            s.claim_upstream_check(home, "hub/nginx", "latest", 1_000, 0)
                .await
                .unwrap(),
            None,
            "{n}"
        );
        // Within the interval (stale_at before the check): the other node is told when.
        assert_eq!(
            t.claim_upstream_check(home, "hub/nginx", "latest", 1_500, 500)
                .await
                .unwrap(),
            Some(1_000),
            "{n}"
        );
        // Other tags, repositories and registries have their own.
        for (reg, repo, tag) in [
            (home, "hub/nginx", "1.27"),
            (home, "hub/redis", "latest"),
            (west, "hub/nginx", "latest"),
        ] {
            assert_eq!(
                t.claim_upstream_check(reg, repo, tag, 1_500, 500)
                    .await
                    .unwrap(),
                None,
                "{n}: {repo}:{tag}"
            );
        }
        // Stale (the check made at or before stale_at): claimed again.
        assert_eq!(
            t.claim_upstream_check(home, "hub/nginx", "latest", 2_000, 1_000)
                .await
                .unwrap(),
            None,
            "{n}"
        );
        // A failed check set back: due again sooner.
        s.set_upstream_check(home, "hub/nginx", "latest", 1_200)
            .await
            .unwrap();
        assert_eq!(
            s.claim_upstream_check(home, "hub/nginx", "latest", 2_100, 1_100)
                .await
                .unwrap(),
            Some(1_200),
            "{n}"
        );
        assert_eq!(
            s.claim_upstream_check(home, "hub/nginx", "latest", 2_300, 1_300)
                .await
                .unwrap(),
            None,
            "{n}"
        );
        // Concurrent claims of a stale check, from both nodes: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let node = b.nodes[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                node.claim_upstream_check(
                    RegistryKey::home(A),
                    "hub/nginx",
                    "latest",
                    10_000 + i as i64,
                    5_000,
                )
                .await
                .unwrap()
            }));
        }
        let mut won = 0;
        for task in tasks {
            if task.await.unwrap().is_none() {
                won += 1;
            }
        }
        assert_eq!(won, 1, "{n}");
    }
}
