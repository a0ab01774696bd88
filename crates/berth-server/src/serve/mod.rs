//! `berth serve`: one HTTP port for every API. Requests are told apart by shape: the OCI
//! registry (`/v2/…`), the ECR JSON API (`X-Amz-Target`), Access Analyzer
//! (`POST /policy/validation`), a query-protocol form (`Action=…`: IAM and STS), and
//! `GET /healthz`.

pub mod accounts;
pub mod app;
pub mod config;
pub mod private;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use berth_store::{RegistryStore, SqliteStore, Store};

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
/// [`private`]); wider ones found are tightened, with a warning.
pub async fn open_store(data_dir: &Path) -> Result<Arc<SqliteStore>, String> {
    private::warn(&private::prepare_data_dir(data_dir)?);
    let db = data_dir.join("berth.db");
    private::create_private_file(&db)?;
    let store = SqliteStore::open(&db).await.map_err(|e| e.to_string())?;
    private::warn(&private::tighten_database_files(&db));
    Ok(Arc::new(store))
}

/// Build the shared state.
pub async fn app(config: Config) -> Result<Arc<App>, String> {
    let store = open_store(&config.data_dir).await?;
    crate::iam::aws_managed::install(&*store)
        .await
        .map_err(|e| format!("installing the AWS managed policies: {e}"))?;
    if let Some(new) = accounts::ensure_default(&*store, &config.data_dir).await? {
        announce_default_account(&new, &config);
    }
    let audit = Audit::open(&config.audit).map_err(|e| format!("opening the audit log: {e}"))?;
    let default_account = store
        .accounts()
        .await
        .map_err(|e| e.to_string())?
        .first()
        .map(|a| a.id.clone())
        .ok_or("the data directory has no account")?;
    let candidate = crate::ids::secret_access_key() + &crate::ids::secret_access_key();
    let token_key = store
        .server_secret("registry-token-key", &candidate)
        .await
        .map_err(|e| e.to_string())?
        .into_bytes();
    let message_key = if config.encoded_denials {
        let candidate = crate::ids::secret_access_key() + &crate::ids::secret_access_key();
        let secret = store
            .server_secret("authorization-message-key", &candidate)
            .await
            .map_err(|e| e.to_string())?;
        use sha2::Digest;
        Some(sha2::Sha256::digest(secret.as_bytes()).into())
    } else {
        None
    };
    let blobs = berth_blobs::BlobStore::local(&config.data_dir)
        .await
        .map_err(|e| format!("opening blob storage in {}: {e}", config.data_dir.display()))?;
    Ok(Arc::new(App {
        store: store.clone(),
        registry: store,
        blobs,
        token_key,
        message_key,
        default_account,
        bound: std::sync::OnceLock::new(),
        caches: Caches::new(config.cache_ttl),
        config,
        audit,
    }))
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
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(app.clone(), audited))
        .with_state(app)
}

/// Every request's decisions make one audit line.
async fn audited(
    State(app): State<Arc<App>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    app.audit.request(next.run(req)).await
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

async fn dispatch(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let path = req.uri().path();
    if path == "/v2" || path.starts_with("/v2/") {
        return crate::oci::serve(&app, peer, req).await;
    }
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limit = if target.is_some() {
        MAX_ECR_BODY
    } else {
        MAX_BODY
    };
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            let e = crate::query::ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("The request body is larger than {limit} bytes"),
            );
            let mut r = crate::query::error_response(
                crate::query::Service::Iam,
                &e,
                &crate::ids::request_id(),
            );
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return r;
        }
    };
    match target {
        Some(t) => crate::ecr::serve(&app, peer, &parts, &body, &t).await,
        None if parts.uri.path() == crate::analyzer::PATH => {
            crate::analyzer::serve(&app, peer, &parts, &body).await
        }
        None => crate::query::serve(&app, peer, parts, body).await,
    }
}

/// Run the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), String> {
    let listen = config.listen;
    // Bind first: a port that is taken must not leave a half-made data directory behind.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listening on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let app = app(config).await?;
    let _ = app.bound.set(local);
    if local.ip().is_loopback() {
        tracing::warn!(
            "{} is a loopback address: only this machine can reach the registry \
             (--listen 0.0.0.0:{} serves the network)",
            local.ip(),
            local.port()
        );
    }
    tracing::info!("listening on http://{local}");

    // Forget sessions a day after they expire (until then they answer ExpiredToken),
    // and upload sessions untouched for a day.
    let cleaner = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                clean(&app).await;
            }
        })
    };
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"));
    cleaner.abort();
    tracing::info!("stopped");
    result
}

/// Drop expired STS sessions and abandoned uploads.
pub async fn clean(app: &App) {
    let now = crate::ids::now();
    if let Err(e) = app.store.delete_sessions_expired_before(now - 86_400).await {
        tracing::warn!(error = %e, "cleaning expired sessions failed");
    }
    match app
        .registry
        .stale_uploads((now - UPLOAD_IDLE_SECS) * 1000)
        .await
    {
        Ok(stale) => {
            for u in stale {
                let _ = app.blobs.cancel(&u.id).await;
                let _ = app.registry.delete_upload(&u.id).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cleaning abandoned uploads failed"),
    }
    let idle = std::time::SystemTime::now() - Duration::from_secs(UPLOAD_IDLE_SECS as u64);
    if let Err(e) = app.blobs.expire_uploads(idle).await {
        tracing::warn!(error = %e, "cleaning staged upload files failed");
    }
}

/// How long an upload session may sit idle before it is removed.
pub const UPLOAD_IDLE_SECS: i64 = 86_400;

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
