//! Criterion: the per-request security path of the server, without HTTP: SigV4
//! verification of a signed request against a stored IAM user's key (key, user and
//! policies cached, as in steady state), then authorization of `ecr:PutImage` on a
//! repository with the user's identity policy and a repository policy (seed policies).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use berth_iam::{CompiledPolicy, PolicyKind};
use berth_server::audit::{Audit, AuditSink};
use berth_server::auth::authorizer::{authorize, Authorization};
use berth_server::auth::cache::Caches;
use berth_server::auth::{authenticate, Signing};
use berth_server::serve::{App, Config, Origin};
use berth_sigv4::{
    canonical_request, format_amz_date, parse, payload_hashes, signature, signing_key,
    string_to_sign, Request,
};
use berth_store::{AccessKey, Account, Entity, EntityKind, KeyStatus, SqliteStore, Store};
use criterion::{criterion_group, criterion_main, Criterion};

/// The allocator the `berth` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACCOUNT: &str = "111111111111";
const KEY: &str = "AKIABENCHBENCHBENCH1";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REPO: &str = "arn:aws:ecr:us-east-1:111111111111:repository/my-app";

fn seed(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../examples/seeds/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn app() -> App {
    let store = SqliteStore::in_memory().await.unwrap();
    let root = AccessKey {
        id: "AKIAROOTROOTROOTROOT".into(),
        secret: SECRET.into(),
        account: ACCOUNT.into(),
        user: None,
        status: KeyStatus::Active,
        created: 0,
    };
    let account = Account {
        id: ACCOUNT.into(),
        alias: None,
        created: 0,
    };
    store.create_account(&account, &root).await.unwrap();
    let user = Entity {
        account: ACCOUNT.into(),
        kind: EntityKind::User,
        name: "ci".into(),
        path: "/".into(),
        unique_id: "AIDABENCHBENCHBENCH12".into(),
        created: 0,
        trust_policy: None,
        description: None,
        max_session_secs: None,
        boundary: None,
    };
    store.create_entity(&user, &[]).await.unwrap();
    let doc = seed("004-push-pull-identity.json");
    store
        .put_inline_policy(ACCOUNT, EntityKind::User, "ci", "push-pull", &doc)
        .await
        .unwrap();
    let key = AccessKey {
        id: KEY.into(),
        user: Some("ci".into()),
        ..root
    };
    store.create_access_key(&key, 2).await.unwrap();
    let store = Arc::new(store);
    let staging = std::env::temp_dir().join("berth-bench-staging");
    App {
        store: store.clone(),
        registry: store,
        blobs: berth_blobs::BlobStore::in_memory(&staging).await.unwrap(),
        token_key: b"bench".to_vec(),
        message_key: None,
        default_account: ACCOUNT.into(),
        home_region: "us-east-1".into(),
        bound: std::sync::OnceLock::new(),
        caches: Caches::new(Duration::from_secs(3600)),
        throttle: berth_server::serve::throttle::Throttle::new(Config::default().throttle),
        usage: Default::default(),
        pull_through: Default::default(),
        me: std::sync::Weak::new(),
        config: Config::default(),
        audit: Audit::open(&AuditSink::Off).unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(app());
    let now = berth_server::ids::now();
    let amz = format_amz_date(now);
    let date = &amz[..8];
    let body = b"Action=GetCallerIdentity&Version=2011-06-15";
    let unsigned = format!(
        "AWS4-HMAC-SHA256 Credential={KEY}/{date}/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={}",
        "0".repeat(64)
    );
    let mut headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("host", "127.0.0.1:5000"),
        ("x-amz-date", amz.as_str()),
        ("authorization", unsigned.as_str()),
    ];
    // Sign with the verifier's own primitives (tested against aws-sigv4 in berth-sigv4).
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let signed = parse(&req, &[]).unwrap();
    let hash = payload_hashes(&req, signed.form).unwrap().remove(0);
    let creq = canonical_request(&req, &signed, &hash).unwrap();
    let sig = signature(
        &signing_key(SECRET, date, "us-east-1", "sts"),
        &string_to_sign(&signed, &creq),
    );
    let auth = unsigned.replace(&"0".repeat(64), &sig);
    headers[3].1 = &auth;
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let signing = Signing {
        service: "sts",
        now,
    };
    let (caller, region) = rt.block_on(authenticate(&app, &req, &[], signing)).unwrap();
    assert_eq!(caller.arn(), "arn:aws:iam::111111111111:user/ci");

    let repo_policy = Arc::new(
        CompiledPolicy::parse(
            "repository",
            PolicyKind::Repository,
            &seed("000-allow-iam-users-push-pull.json"),
        )
        .unwrap(),
    );
    let resource_policies = [repo_policy];
    let origin = Origin {
        request_id: "bench".into(),
        source_ip: "127.0.0.1".parse().unwrap(),
        secure: false,
        now,
        region,
    };
    let put_image = Authorization {
        action: "ecr:PutImage",
        resource: REPO,
        resource_account: ACCOUNT,
        resource_policies: &resource_policies,
        context: &[],
        resource_must_allow: false,
    };
    authorize(&app, &caller, &origin, &put_image).unwrap();

    let mut g = c.benchmark_group("request");
    g.bench_function("authenticate (SigV4 verify, cached key and user)", |b| {
        b.iter(|| {
            rt.block_on(authenticate(&app, black_box(&req), &[], signing))
                .unwrap()
        })
    });
    g.bench_function(
        "authorize ecr:PutImage (identity + repository policy, audit off)",
        |b| b.iter(|| authorize(&app, black_box(&caller), &origin, &put_image).unwrap()),
    );
    g.bench_function("authenticate + authorize", |b| {
        b.iter(|| {
            let (caller, _) = rt
                .block_on(authenticate(&app, black_box(&req), &[], signing))
                .unwrap();
            authorize(&app, &caller, &origin, &put_image).unwrap()
        })
    });
    // Registry passwords: minted by GetAuthorizationToken, checked on every /v2 request.
    let key = app.token_key.clone();
    let password = berth_server::registry::token::mint(
        &key,
        &berth_server::registry::token::Envelope {
            issued: now,
            expires: now + 43_200,
            region: "us-east-1".into(),
            access_key_id: KEY.into(),
        },
    );
    g.bench_function("registry password check (HMAC-SHA256)", |b| {
        b.iter(|| berth_server::registry::token::verify(&key, black_box(&password), now).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
