//! `berth serve`: one HTTP port for every API. Requests are told apart by shape: a
//! query-protocol form (`Action=…`, IAM and STS), `GET /healthz`; the ECR JSON API
//! (`X-Amz-Target`) and the OCI registry (`/v2/`) join here next.

pub mod accounts;
pub mod app;
pub mod config;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use berth_store::{SqliteStore, Store};

pub use app::{App, Origin};
pub use config::Config;

use crate::audit::Audit;
use crate::auth::cache::Caches;

/// Largest request body the API front doors read (IAM policies are at most a few
/// hundred KiB once form-encoded).
pub const MAX_BODY: usize = 1 << 20;

/// Open the metadata store of a data directory (creating both if needed).
pub async fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating data directory {}: {e}", data_dir.display()))?;
    let store = SqliteStore::open(&data_dir.join("berth.db"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

/// Build the shared state.
pub async fn app(config: Config) -> Result<Arc<App>, String> {
    let store = open_store(&config.data_dir).await?;
    if let Some(path) = accounts::ensure_default(&*store, &config.data_dir).await? {
        tracing::info!(
            "created the default account; its root credentials are in {}",
            path.display()
        );
    }
    let audit = Audit::open(&config.audit).map_err(|e| format!("opening the audit log: {e}"))?;
    Ok(Arc::new(App {
        store,
        caches: Caches::new(config.cache_ttl),
        config,
        audit,
    }))
}

/// The HTTP routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .fallback(dispatch)
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

async fn dispatch(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    crate::query::serve(&app, peer, req).await
}

/// Run the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), String> {
    let listen = config.listen;
    let app = app(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listening on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("listening on http://{local}");

    // Forget sessions a day after they expire (until then they answer ExpiredToken).
    let cleaner = {
        let store = app.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                if let Err(e) = store
                    .delete_sessions_expired_before(crate::ids::now() - 86_400)
                    .await
                {
                    tracing::warn!(error = %e, "cleaning expired sessions failed");
                }
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
