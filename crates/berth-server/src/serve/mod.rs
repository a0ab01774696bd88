//! `berth serve`: one HTTP port for every API. Requests are told apart by shape: the OCI
//! registry (`/v2/…`), the ECR JSON API (`X-Amz-Target`), Access Analyzer
//! (`POST /policy/validation`), a query-protocol form (`Action=…`: IAM and STS),
//! `GET /healthz` and `GET /readyz` ([`ready`]). Connections are taken in by
//! [`connections`]; API bodies by [`intake`], after a check of the credential they name.
//! Background work runs as [`crate::jobs`] ([`cleaning`]).

pub mod accounts;
pub mod app;
pub mod cleaning;
pub mod config;
pub mod connections;
pub mod intake;
pub mod lifecycle;
pub mod metadata;
pub mod private;
pub mod ready;
pub mod secrets;
pub mod throttle;
pub mod tls;
pub mod upload_states;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use berth_store::{RegistryStore, SqliteStore};

pub use app::{App, Origin};
pub use config::Config;

use crate::audit::Audit;
use crate::auth::cache::Caches;

/// Largest request body the query front door reads (IAM policies are at most a few
/// hundred KiB once form-encoded).
pub const MAX_BODY: usize = 1 << 20;
/// Largest ECR API request (UploadLayerPart carries up to 20 MiB, base64-encoded).
pub const MAX_ECR_BODY: usize = 32 << 20;

/// Open the metadata store of a data directory (creating both if needed), private to
/// this user: the directory 0700, the database and its `-wal`/`-shm` 0600 (see
/// [`private`]); wider ones found are tightened, with a warning. Secrets are sealed with
/// the key in `key_file` (default `DATA_DIR/secrets.key`, made if the database holds no
/// sealed secrets yet; see [`secrets`]).
pub async fn open_store(
    data_dir: &Path,
    key_file: Option<&Path>,
) -> Result<Arc<SqliteStore>, String> {
    open_sqlite(data_dir, &data_dir.join("berth.db"), key_file).await
}

/// [`open_store`] with the database file at `db` (`--metadata-url sqlite://PATH`).
pub async fn open_sqlite(
    data_dir: &Path,
    db: &Path,
    key_file: Option<&Path>,
) -> Result<Arc<SqliteStore>, String> {
    let store = open_sqlite_without_secrets(data_dir, db).await?;
    let path = secrets::key_path(data_dir, key_file);
    let sealed = store
        .holds_sealed_secrets()
        .await
        .map_err(|e| e.to_string())?;
    let key = secrets::load_or_create(&path, sealed, db)?;
    let store = store.with_secrets_key(&key).await.map_err(|e| match e {
        berth_store::KeyError::WrongKey => format!(
            "the secrets key in {} is not the key the secrets in {} were sealed with: start \
             with the key file this database was used with (--secrets-key-file, or \
             secrets_key_file in the config)",
            path.display(),
            db.display()
        ),
        berth_store::KeyError::Store(e) => e.to_string(),
    })?;
    if store.holds_clear_remnants().await.unwrap_or(false) {
        private::warn(&[format!(
            "{} or its -wal may still hold secrets from before they were sealed (another \
             process kept them from being erased); the next start tries again",
            db.display()
        )]);
    }
    Ok(Arc::new(store))
}

/// [`open_store`] without the secrets key, for commands that read no secret (policy
/// analysis of a data directory): reading or writing a secret through it fails.
pub async fn open_store_without_secrets(data_dir: &Path) -> Result<SqliteStore, String> {
    open_sqlite_without_secrets(data_dir, &data_dir.join("berth.db")).await
}

async fn open_sqlite_without_secrets(data_dir: &Path, db: &Path) -> Result<SqliteStore, String> {
    private::warn(&private::prepare_data_dir(data_dir)?);
    private::create_private_file(db)?;
    let store = SqliteStore::open_without_secrets(db)
        .await
        .map_err(|e| e.to_string())?;
    private::warn(&private::tighten_database_files(db));
    Ok(store)
}

/// Build the shared state.
pub async fn app(config: Config) -> Result<Arc<App>, String> {
    Ok(app_on(config).await?.0)
}

/// [`app`], and the PostgreSQL store when the metadata is there (its change
/// notifications flush the caches).
async fn app_on(config: Config) -> Result<(Arc<App>, Option<Arc<berth_store::PgStore>>), String> {
    let meta = metadata::open(&config).await?;
    let store = meta.store.clone();
    let registry = meta.registry.clone();
    // Nodes starting together on a new database: one at a time installs the built-in
    // policies and makes the default account; the others find them.
    let holder = crate::jobs::holder_id();
    let new = metadata::one_node_at_a_time(&*store, &holder, || async {
        crate::iam::aws_managed::install(&*store)
            .await
            .map_err(|e| format!("installing the AWS managed policies: {e}"))?;
        accounts::ensure_default(&*store, &config.data_dir).await
    })
    .await?;
    if let Some(new) = new {
        announce_default_account(&new, &config);
    }
    let audit = Audit::open(&config.audit).map_err(|e| format!("opening the audit log: {e}"))?;
    let default_account = store
        .accounts()
        .await
        .map_err(|e| e.to_string())?
        .first()
        .map(|a| a.id.clone())
        .ok_or("the metadata store has no account")?;
    let candidate = crate::ids::secret_access_key() + &crate::ids::secret_access_key();
    let token_key = registry
        .server_secret("registry-token-key", &candidate)
        .await
        .map_err(|e| e.to_string())?
        .into_bytes();
    let message_key = if config.encoded_denials {
        let candidate = crate::ids::secret_access_key() + &crate::ids::secret_access_key();
        let secret = registry
            .server_secret("authorization-message-key", &candidate)
            .await
            .map_err(|e| e.to_string())?;
        use sha2::Digest;
        Some(sha2::Sha256::digest(secret.as_bytes()).into())
    } else {
        None
    };
    let home_region = home_region(&*registry, &config).await?;
    let blobs = open_blobs(&config, &registry).await?;
    berth_blobs::observe_latency(|operation, seconds| {
        crate::metrics::metrics()
            .store_duration
            .get_or_create(&crate::metrics::StoreLabels {
                store: "objects",
                operation,
            })
            .observe(seconds)
    });
    berth_blobs::observe_cache(|event| crate::metrics::metrics().blob_cache_event(event));
    let app = Arc::new_cyclic(|me| App {
        store,
        registry,
        blobs,
        token_key,
        message_key,
        default_account,
        home_region,
        bound: std::sync::OnceLock::new(),
        caches: Caches::new(config.cache_ttl),
        throttle: throttle::Throttle::new(config.throttle),
        usage: Default::default(),
        pull_through: Default::default(),
        me: me.clone(),
        config,
        audit,
    });
    let spool = app.config.data_dir.join("pull-through-spool");
    app.pull_through.set_spool_dir(spool.clone()).map_err(|e| {
        format!(
            "making the pull-through cache's spool directory {}: {e}",
            spool.display()
        )
    })?;
    Ok((app, meta.postgres))
}

/// The store's home Region (see [`berth_store::RegistryKey`]): recorded the first time
/// the store is served (the default Region then), which a deployment must keep serving.
pub async fn home_region(registry: &dyn RegistryStore, config: &Config) -> Result<String, String> {
    let home = registry
        .setting("home-region", &config.region)
        .await
        .map_err(|e| e.to_string())?;
    if !config.regions.contains(&home) {
        return Err(format!(
            "this registry's repositories were first served in Region {home}: keep {home} \
             among the Regions (regions = [...] in the config, or --region), or they cannot \
             be reached"
        ));
    }
    Ok(home)
}

/// The blob store `config` names, its upload sessions' state kept in `registry`.
pub async fn open_blobs(
    config: &Config,
    registry: &Arc<dyn RegistryStore>,
) -> Result<berth_blobs::BlobStore, String> {
    Ok(match config.blob_backend()? {
        config::BlobBackend::Local(dir) => berth_blobs::BlobStore::local(&dir)
            .await
            .map_err(|e| format!("opening blob storage in {}: {e}", dir.display()))?,
        config::BlobBackend::S3(s3) => {
            let states = Arc::new(upload_states::RegistryUploadStates(registry.clone()));
            let cache = match config.blob_cache_bytes {
                0 => None,
                capacity => {
                    let dir = config
                        .blob_cache_dir
                        .clone()
                        .unwrap_or_else(|| config.data_dir.join("blob-cache"));
                    let cache = berth_blobs::BlobCache::open(&dir, capacity)
                        .await
                        .map_err(|e| format!("opening the blob cache in {}: {e}", dir.display()))?;
                    let usage = cache.usage();
                    tracing::info!(
                        dir = %dir.display(),
                        capacity,
                        blobs = usage.blobs,
                        bytes = usage.bytes,
                        "blob cache opened"
                    );
                    Some(cache)
                }
            };
            berth_blobs::BlobStore::s3_cached(&s3, states, cache)
                .map_err(|e| format!("opening blob storage in bucket {}: {e}", s3.bucket))?
        }
    })
}

/// Say on stderr, once, which account a new data directory got and how to use its root
/// credentials (the lines read the file: the secret itself never reaches a log).
fn announce_default_account(new: &accounts::DefaultAccount, config: &Config) {
    let file = std::fs::canonicalize(&new.credentials).unwrap_or_else(|_| new.credentials.clone());
    let file = file.display();
    let id = &new.id;
    eprintln!("berth: created account {id}, the default account of this data directory.");
    eprintln!("berth: its root credentials are in {file} (readable by this user only).");
    eprintln!("berth: to use them:");
    eprintln!();
    eprintln!("    export AWS_ACCESS_KEY_ID=$(jq -r .access_key_id '{file}')");
    eprintln!("    export AWS_SECRET_ACCESS_KEY=$(jq -r .secret_access_key '{file}')");
    eprintln!("    export AWS_DEFAULT_REGION={}", config.region);
    eprintln!();
}

/// The HTTP routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready::readyz))
        .route("/metrics", get(metrics))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(app.clone(), audited))
        .with_state(app)
}

/// Every request's decisions make one audit line; every request is counted
/// ([`crate::metrics::Tracker`]).
async fn audited(
    State(app): State<Arc<App>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let (tracker, req) = crate::metrics::Tracker::start(req);
    if let Err(t) = arrive(&app, &req) {
        return tracker.finish(throttled(&req, &t));
    }
    tracker.finish(app.audit.request(next.run(req)).await)
}

/// The per-address limits ([`throttle`]), for every request but the operator's own
/// probes (health, readiness, metrics).
fn arrive(app: &App, req: &Request<Body>) -> Result<(), throttle::Throttled> {
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return Ok(());
    }
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return Ok(());
    };
    let client = app.client_ip(peer.ip(), req.headers());
    app.throttle.arrive(client)
}

/// A refusal by the throttle in the words of the API the request is for.
pub fn throttled(req: &Request<Body>, t: &throttle::Throttled) -> Response<Body> {
    crate::metrics::metrics()
        .throttled
        .get_or_create(&crate::metrics::LimitLabels {
            api: crate::metrics::api_of(req),
            limit: t.limit.name(),
        })
        .inc();
    let path = req.uri().path();
    let mut r = if path == "/v2" || path.starts_with("/v2/") {
        crate::oci::throttled(t, req.method() == axum::http::Method::HEAD)
    } else {
        let door = if req.headers().contains_key("x-amz-target") {
            FrontDoor::Ecr
        } else if path == crate::analyzer::PATH {
            FrontDoor::Analyzer
        } else {
            FrontDoor::Query
        };
        let code = if door == FrontDoor::Query {
            "Throttling"
        } else {
            "ThrottlingException"
        };
        let e = crate::query::ApiError::new(400, code, t.message());
        door.error(&e, None)
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&t.retry_after_secs().to_string()) {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}

/// `GET /metrics` on the main port, unless `metrics_listen` serves it elsewhere.
async fn metrics(State(app): State<Arc<App>>) -> Response<Body> {
    if app.config.metrics_listen.is_some() {
        let mut r = Response::new(Body::from(
            "metrics are served on the metrics_listen address\n",
        ));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    metrics_now(&app).await
}

/// The metrics, with the gauges read from the store at scrape time brought up to date.
async fn metrics_now(app: &App) -> Response<Body> {
    // Deployment-wide (every node reports the same number: aggregate with max).
    if let Ok(s) = app.registry.replication_summary().await {
        crate::metrics::metrics().replication_backlog.set(s.pending);
    }
    if let Some(cache) = app.blobs.cache() {
        let usage = cache.usage();
        let m = crate::metrics::metrics();
        m.blob_cache_bytes
            .set(i64::try_from(usage.bytes).unwrap_or(i64::MAX));
        m.blob_cache_blobs
            .set(i64::try_from(usage.blobs).unwrap_or(i64::MAX));
    }
    crate::metrics::response()
}

/// The router of the `metrics_listen` address: `/metrics` only.
fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move { metrics_now(&app).await }),
        )
        .with_state(app)
}

async fn healthz(State(app): State<Arc<App>>) -> Response<Body> {
    match app.store.accounts().await {
        Ok(_) => Response::new(Body::from("ok\n")),
        Err(e) => {
            let mut r = Response::new(Body::from(format!("metadata store: {e}\n")));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }
}

/// The front doors whose bodies are read whole before the request is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrontDoor {
    /// The ECR JSON API (`X-Amz-Target`).
    Ecr,
    /// Access Analyzer's ValidatePolicy.
    Analyzer,
    /// The IAM and STS query API.
    Query,
}

impl FrontDoor {
    /// The signing names a credential may be scoped to here.
    fn services(self) -> &'static [&'static str] {
        match self {
            FrontDoor::Ecr => &["ecr"],
            FrontDoor::Analyzer => &["access-analyzer"],
            FrontDoor::Query => &["iam", "sts"],
        }
    }

    fn limit(self) -> usize {
        match self {
            FrontDoor::Ecr => MAX_ECR_BODY,
            FrontDoor::Analyzer | FrontDoor::Query => MAX_BODY,
        }
    }

    /// An error in this front door's wire format (`service`: the signing name the
    /// request's credential named, which picks the IAM or STS XML namespace).
    fn error(self, e: &crate::query::ApiError, service: Option<&str>) -> Response<Body> {
        let request_id = crate::ids::request_id();
        match self {
            FrontDoor::Ecr => crate::ecr::error_response(e, &request_id),
            FrontDoor::Analyzer => crate::analyzer::error(e, &request_id),
            FrontDoor::Query => {
                let service = match service {
                    Some("sts") => crate::query::Service::Sts,
                    _ => crate::query::Service::Iam,
                };
                crate::query::error_response(service, e, &request_id)
            }
        }
    }
}

/// Why a body was not taken in, as an API error (codes in the front door's dialect).
fn intake_error(e: intake::IntakeError, door: FrontDoor) -> crate::query::ApiError {
    use crate::query::ApiError;
    let json = door != FrontDoor::Query;
    let code = |query: &'static str, json_name: &'static str| if json { json_name } else { query };
    match e {
        intake::IntakeError::TooLarge(limit) => ApiError::new(
            413,
            code("RequestEntityTooLarge", "RequestEntityTooLargeException"),
            format!("The request body is larger than {limit} bytes, the most this API takes"),
        ),
        intake::IntakeError::Busy => ApiError::new(
            400,
            code("Throttling", "ThrottlingException"),
            "Rate exceeded: too many large requests are being received at once; retry after a short wait",
        ),
        intake::IntakeError::TimedOut(m) => ApiError::new(
            408,
            code("RequestTimeout", "RequestTimeoutException"),
            format!("Your socket connection to the server was not read from or written to within the timeout period: {m}"),
        ),
        intake::IntakeError::Broken(m) => ApiError::new(
            400,
            code("IncompleteBody", "SerializationException"),
            format!("The request body could not be read in full: {m}"),
        ),
    }
}

async fn dispatch(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    if crate::console::answers(&req) {
        return crate::console::serve(&app, peer, req).await;
    }
    let path = req.uri().path();
    if path == "/v2" || path.starts_with("/v2/") {
        return crate::oci::serve(&app, peer, req).await;
    }
    if path.starts_with(crate::peer::PREFIX) {
        return crate::peer::serve(&app, peer, req).await;
    }
    let intake = req
        .extensions()
        .get::<Arc<intake::Intake>>()
        .cloned()
        .unwrap_or_else(|| Arc::new(intake::Intake::new(&app.config)));
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let door = match &target {
        Some(_) => FrontDoor::Ecr,
        None if parts.uri.path() == crate::analyzer::PATH => FrontDoor::Analyzer,
        None => FrontDoor::Query,
    };
    if door == FrontDoor::Query && !crate::query::answers(&parts) {
        // No API answers here: say so without reading what was sent.
        return crate::query::serve(&app, peer, parts, axum::body::Bytes::new()).await;
    }
    // Who may make the server hold a body: only a request that names a usable
    // credential, signed for this front door, in its time window. The signature itself
    // covers the body, so it is checked once the body is in.
    let service = match crate::auth::authenticate::precheck(&app, &parts, door.services()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(code = e.code, message = %e.message, "refused before reading the body");
            if e.status < 500 {
                let client = app.client_ip(peer.ip(), &parts.headers);
                crate::auth::failures::record(&app, client, e.code, &e.message);
            }
            return door.error(&e, None);
        }
    };
    let content_length = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let taken = match intake.take(body, content_length, door.limit()).await {
        Ok(t) => t,
        Err(e) => {
            let e = intake_error(e, door);
            let mut r = door.error(&e, Some(service));
            if let Ok(s) = StatusCode::from_u16(e.status) {
                *r.status_mut() = s;
            }
            return r;
        }
    };
    let body = taken.bytes.clone();
    let response = match target {
        Some(t) => crate::ecr::serve(&app, peer, &parts, &body, &t).await,
        None if door == FrontDoor::Analyzer => {
            crate::analyzer::serve(&app, peer, &parts, &body).await
        }
        None => crate::query::serve(&app, peer, parts, body).await,
    };
    drop(taken);
    response
}

/// Run the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), String> {
    let listen = config.listen;
    // Many clients need many descriptors: take what the system allows.
    let file_limit = connections::raise_file_limit();
    // Bind first: a port that is taken must not leave a half-made data directory behind.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listening on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // A certificate that does not load stops the start, before anything is made.
    let tls = match &config.tls {
        Some(files) => Some(tls::acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let (app, postgres) = app_on(config).await?;
    let _ = app.bound.set(local);
    // Other nodes' writes flush this node's caches as soon as they commit.
    let watcher = postgres.map(|pg| {
        let app = Arc::downgrade(&app);
        pg.watch_changes(move |table| {
            tracing::debug!(table, "another node changed what authorization reads");
            if let Some(app) = app.upgrade() {
                match table {
                    "repositories" | "registry_policies" => app.caches.invalidate_registry(),
                    // Anything else (`tags` holds IAM and repository tags alike; `*`: what
                    // changed is unknown) drops everything.
                    _ => app.caches.invalidate(),
                }
            }
        })
    });
    if local.ip().is_loopback() {
        tracing::warn!(
            "{} is a loopback address: only this machine can reach the registry \
             (--listen 0.0.0.0:{} serves the network)",
            local.ip(),
            local.port()
        );
    }
    let stop = shutdown_signal();
    let reloader = tls.as_ref().map(|t| t.resolver.clone().watch());
    tracing::info!(
        "listening on {}://{local}",
        if tls.is_some() { "https" } else { "http" }
    );

    // Background jobs (cleaning, lifecycle policies), each on one node of the deployment at a time.
    let holder = crate::jobs::holder_id();
    tracing::info!(holder = %holder, "background jobs run under this holder id");
    let mut jobs = cleaning::jobs(&app);
    jobs.push(lifecycle::job(&app));
    let jobs = crate::jobs::Runner::start(app.store.clone(), holder, app.config.job_lease, jobs);
    let limits = connections::Limits {
        max_connections: connections::fitting_cap(app.config.max_connections, file_limit),
        header_timeout: app.config.header_timeout,
        body_stall: app.config.body_stall,
    };
    tracing::debug!(
        max_connections = limits.max_connections,
        file_limit,
        "connection limits"
    );
    if limits.max_connections < app.config.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            file_limit,
            "the open-file limit allows fewer connections than max_connections"
        );
    }
    let metrics_server = match app.config.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("listening on {addr} (metrics_listen): {e}"))?;
            tracing::info!(
                "serving /metrics on http://{}",
                l.local_addr().map_err(|e| e.to_string())?
            );
            let app = app.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, metrics_router(app)).await {
                    tracing::warn!(error = %e, "the metrics listener stopped");
                }
            }))
        }
        None => None,
    };
    let intake = Arc::new(intake::Intake::new(&app.config));
    connections::serve(listener, router(app), limits, intake, tls, stop).await;
    if let Some(r) = reloader {
        r.abort();
    }
    if let Some(m) = metrics_server {
        m.abort();
    }
    // Release the jobs' leases so another node takes them over at once.
    jobs.stop(Duration::from_secs(5)).await;
    if let Some(w) = watcher {
        w.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed when this
/// is called (before the server says it listens), so a signal sent as soon as the
/// server is up stops it gracefully rather than killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let int = async {
                match &mut int {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            let term = async {
                match &mut term {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = int => {},
                _ = term => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}
