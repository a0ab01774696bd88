//! `GET /readyz`: whether this node can serve requests now (unauthenticated, like
//! `/healthz`, which only says the process is alive). A load balancer takes a node that
//! answers 503 out of rotation; the checks run on every request, so the node is back as
//! soon as what failed is repaired, without a restart.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};

use super::App;

/// `200 ready`, or `503` with a line naming each check that failed.
pub async fn readyz(State(app): State<Arc<App>>) -> Response<Body> {
    match ready(&app).await {
        Ok(()) => Response::new(Body::from("ready\n")),
        Err(why) => {
            tracing::warn!(reason = %why, "not ready");
            let mut r = Response::new(Body::from(format!("not ready: {why}\n")));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }
}

/// The store and blob checks of `GET /readyz`, each given this long to answer.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// Whether this node can serve: the metadata store answers and its schema's migrations
/// are exactly this build's, and the blob store can be listed. `Err` names each failure.
pub async fn ready(app: &App) -> Result<(), String> {
    let mut failed = Vec::new();
    match tokio::time::timeout(READY_WITHIN, app.store.check_schema()).await {
        Ok(Ok(())) => {}
        Ok(Err(berth_store::StoreError::Backend(m))) => failed.push(format!("metadata store: {m}")),
        Ok(Err(e)) => failed.push(format!("metadata store: {e}")),
        Err(_) => failed.push(format!("metadata store: no answer within {READY_WITHIN:?}")),
    }
    match tokio::time::timeout(READY_WITHIN, app.blobs.check()).await {
        Ok(Ok(())) => {}
        Ok(Err(berth_blobs::BlobError::Io(m))) => failed.push(format!("blob store: {m}")),
        Ok(Err(e)) => failed.push(format!("blob store: {e}")),
        Err(_) => failed.push(format!("blob store: no answer within {READY_WITHIN:?}")),
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}
