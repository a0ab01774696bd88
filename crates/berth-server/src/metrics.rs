//! Prometheus metrics: `GET /metrics` on the main port (and on `metrics_listen`), in the
//! OpenMetrics text format (which Prometheus scrapes natively), named and labelled in
//! the style of distribution and zot.
//!
//! Every label takes values from a fixed set (APIs, operation names from the APIs'
//! models, status codes, decision results, error codes), never a repository name, a
//! principal or anything else a client chooses, so the series stay bounded however the
//! registry is used. One set of metrics per process ([`metrics`]): each node of a
//! deployment reports its own, and Prometheus sums them.
//!
//! Requests are counted by the `audited` middleware of [`crate::serve::router`]
//! ([`Tracker`]): the front door that takes a request names its API and operation in
//! the request's [`RequestLabel`] slot; the status, the time to the response's head
//! and the body bytes both ways are recorded from there.

use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &M
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub api: &'static str,
    pub operation: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub api: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobResultLabels {
    pub job: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub api: &'static str,
    pub limit: &'static str,
}

fn latency() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn job_latency() -> Histogram {
    // 10 ms to ~3 h.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

/// Every metric Berth keeps.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    pub received_bytes: Family<ApiLabels, Counter>,
    pub sent_bytes: Family<ApiLabels, Counter>,
    pub in_flight: Gauge,
    pub authorization: Family<ResultLabels, Counter>,
    pub authentication_failures: Family<ReasonLabels, Counter>,
    pub cache: Family<CacheLabels, Counter>,
    pub throttled: Family<LimitLabels, Counter>,
    pub uploads_in_flight: Gauge,
    pub job_runs: Family<JobResultLabels, Counter>,
    pub job_duration: Family<JobLabels, Histogram, fn() -> Histogram>,
    pub job_items: Family<JobLabels, Counter>,
    pub replications: Family<ResultLabels, Counter>,
    pub replication_backlog: Gauge,
    /// Upstream fetches of the pull-through cache, by what (manifest, blob) and result.
    pub pull_through_fetches: Family<FetchLabels, Counter>,
    pub store_duration: Family<StoreLabels, Histogram, fn() -> Histogram>,
    pub connections: Gauge,
    /// Blob reads the node's blob cache answered or not (result: hit, miss).
    pub blob_cache_requests: Family<ResultLabels, Counter>,
    /// Blobs the node's blob cache took in, by where from (source: upload, download).
    pub blob_cache_fills: Family<SourceLabels, Counter>,
    pub blob_cache_evictions: Counter,
    /// Read at scrape time.
    pub blob_cache_bytes: Gauge,
    pub blob_cache_blobs: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("berth"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
            in_flight: Gauge::default(),
            authorization: Family::default(),
            authentication_failures: Family::default(),
            cache: Family::default(),
            throttled: Family::default(),
            uploads_in_flight: Gauge::default(),
            job_runs: Family::default(),
            job_duration: Family::new_with_constructor(job_latency),
            job_items: Family::default(),
            replications: Family::default(),
            replication_backlog: Gauge::default(),
            pull_through_fetches: Family::default(),
            store_duration: Family::new_with_constructor(latency),
            connections: Gauge::default(),
            blob_cache_requests: Family::default(),
            blob_cache_fills: Family::default(),
            blob_cache_evictions: Counter::default(),
            blob_cache_bytes: Gauge::default(),
            blob_cache_blobs: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "http_requests",
            "HTTP requests answered, by API (oci, ecr, iam, sts, analyzer, peer, health, metrics), operation and status code",
            m.requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response's head, by API and operation",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register_with_unit(
            "http_received",
            "Request body bytes received, by API",
            Unit::Bytes,
            m.received_bytes.clone(),
        );
        r.register_with_unit(
            "http_sent",
            "Response body bytes sent, by API",
            Unit::Bytes,
            m.sent_bytes.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "Requests being handled now",
            m.in_flight.clone(),
        );
        r.register(
            "http_connections",
            "Client connections open now",
            m.connections.clone(),
        );
        r.register(
            "authorization_decisions",
            "Authorization decisions, by result (allow, implicit_deny, explicit_deny)",
            m.authorization.clone(),
        );
        r.register(
            "authentication_failures",
            "Requests whose credentials were refused, by reason (the error code answered)",
            m.authentication_failures.clone(),
        );
        r.register(
            "cache_requests",
            "Look-ups in the authorization caches, by cache and result (hit, miss)",
            m.cache.clone(),
        );
        r.register(
            "throttled_requests",
            "Requests refused by a limit, by API and limit",
            m.throttled.clone(),
        );
        r.register(
            "upload_sessions_in_flight",
            "Blob upload requests (PATCH, PUT, UploadLayerPart) being received now on this node",
            m.uploads_in_flight.clone(),
        );
        r.register(
            "job_runs",
            "Background job runs on this node, by job and result (ok, failed)",
            m.job_runs.clone(),
        );
        r.register_with_unit(
            "job_duration",
            "How long background job runs took, by job",
            Unit::Seconds,
            m.job_duration.clone(),
        );
        r.register(
            "job_items",
            "What background jobs acted on (blobs and uploads removed, images expired), by job",
            m.job_items.clone(),
        );
        r.register(
            "replications",
            "Replications settled by this node, by result (complete, failed, retry)",
            m.replications.clone(),
        );
        r.register(
            "pull_through_fetches",
            "Requests of the pull-through cache to upstream registries, by kind (manifest, blob) and result (ok, failed)",
            m.pull_through_fetches.clone(),
        );
        r.register(
            "replication_backlog",
            "Replications recorded and not yet delivered, deployment-wide (every node reports the same number)",
            m.replication_backlog.clone(),
        );
        r.register_with_unit(
            "store_operation_duration",
            "Metadata store and object store latency, by store (metadata, objects) and operation",
            Unit::Seconds,
            m.store_duration.clone(),
        );
        r.register(
            "blob_cache_requests",
            "Blob reads this node's blob cache was asked for (s3:// blobs with blob_cache_gib), by result (hit, miss)",
            m.blob_cache_requests.clone(),
        );
        r.register(
            "blob_cache_fills",
            "Blobs this node's blob cache took in, by source (upload: received here; download: read whole from the bucket)",
            m.blob_cache_fills.clone(),
        );
        r.register(
            "blob_cache_evictions",
            "Blobs this node's blob cache dropped to make room",
            m.blob_cache_evictions.clone(),
        );
        r.register_with_unit(
            "blob_cache",
            "Bytes of blobs in this node's blob cache",
            Unit::Bytes,
            m.blob_cache_bytes.clone(),
        );
        r.register(
            "blob_cache_blobs",
            "Blobs in this node's blob cache",
            m.blob_cache_blobs.clone(),
        );
        m
    }

    /// Count what the blob cache did.
    pub fn blob_cache_event(&self, event: berth_blobs::CacheEvent) {
        use berth_blobs::CacheEvent as E;
        let (result, source) = match event {
            E::Hit => (Some("hit"), None),
            E::Miss => (Some("miss"), None),
            E::FilledFromUpload => (None, Some("upload")),
            E::FilledFromDownload => (None, Some("download")),
            E::Evicted => {
                self.blob_cache_evictions.inc();
                return;
            }
        };
        if let Some(result) = result {
            self.blob_cache_requests
                .get_or_create(&ResultLabels { result })
                .inc();
        }
        if let Some(source) = source {
            self.blob_cache_fills
                .get_or_create(&SourceLabels { source })
                .inc();
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Count an authorization decision.
    pub fn decided(&self, d: berth_iam::Decision) {
        let result = match d {
            berth_iam::Decision::Allow => "allow",
            berth_iam::Decision::ImplicitDeny => "implicit_deny",
            berth_iam::Decision::ExplicitDeny => "explicit_deny",
        };
        self.authorization
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Count a cache look-up.
    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache
            .get_or_create(&CacheLabels { cache, result })
            .inc();
    }

    /// Time one store operation.
    pub fn store_time(&self, store: &'static str, operation: &'static str, since: Instant) {
        self.store_duration
            .get_or_create(&StoreLabels { store, operation })
            .observe(since.elapsed().as_secs_f64());
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
pub fn response() -> axum::http::Response<Body> {
    let mut r = axum::http::Response::new(Body::from(metrics().encode()));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}

/// Which API and operation a request is, filled in by the front door that takes it
/// (a request extension). Until then, what its shape says.
#[derive(Debug, Clone)]
pub struct RequestLabel(Arc<Mutex<(&'static str, &'static str)>>);

impl RequestLabel {
    fn new((api, operation): (&'static str, &'static str)) -> RequestLabel {
        RequestLabel(Arc::new(Mutex::new((api, operation))))
    }

    /// Name the request's API and operation.
    pub fn set(&self, api: &'static str, operation: &'static str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (api, operation);
    }

    fn get(&self) -> (&'static str, &'static str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Name the API and operation of the request whose extensions these are (no-op when
/// the request did not come through the router, as in unit tests).
pub fn label(extensions: &axum::http::Extensions, api: &'static str, operation: &'static str) {
    if let Some(l) = extensions.get::<RequestLabel>() {
        l.set(api, operation);
    }
}

/// The API a request's shape names, before a front door says more.
pub fn api_of(req: &axum::http::Request<Body>) -> &'static str {
    labels_of(req).0
}

/// The API and operation a request's shape names (the operation `unknown` until the
/// front door names it, but for the operator's endpoints).
fn labels_of(req: &axum::http::Request<Body>) -> (&'static str, &'static str) {
    let path = req.uri().path();
    if path == "/v2" || path.starts_with("/v2/") {
        ("oci", "unknown")
    } else if req.headers().contains_key("x-amz-target") {
        ("ecr", "unknown")
    } else if path == "/console" || path.starts_with("/console/") {
        ("console", "page")
    } else if path == "/metrics" {
        ("metrics", "metrics")
    } else if path == "/healthz" {
        ("health", "healthz")
    } else if path == "/readyz" {
        ("health", "readyz")
    } else if path.starts_with(crate::peer::PREFIX) {
        ("peer", "unknown")
    } else if path == crate::analyzer::PATH {
        ("analyzer", "ValidatePolicy")
    } else {
        ("query", "unknown")
    }
}

/// One request, from its arrival: counts it when its response's head is ready, and its
/// body bytes as they pass.
pub struct Tracker {
    label: RequestLabel,
    started: Instant,
}

impl Tracker {
    /// Take a request in: label slot in its extensions, body counted.
    pub fn start(req: axum::http::Request<Body>) -> (Tracker, axum::http::Request<Body>) {
        let label = RequestLabel::new(labels_of(&req));
        metrics().in_flight.inc();
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(label.clone());
        let body = Body::new(CountedBody {
            inner: body,
            bytes: 0,
            label: label.clone(),
            received: true,
        });
        (
            Tracker {
                label,
                started: Instant::now(),
            },
            axum::http::Request::from_parts(parts, body),
        )
    }

    /// The response's head is ready: count the request; its body is counted as sent.
    pub fn finish(self, response: axum::http::Response<Body>) -> axum::http::Response<Body> {
        let m = metrics();
        m.in_flight.dec();
        let (api, operation) = self.label.get();
        let code = response.status().as_u16();
        m.requests
            .get_or_create(&RequestLabels {
                api,
                operation,
                code,
            })
            .inc();
        m.request_duration
            .get_or_create(&OperationLabels { api, operation })
            .observe(self.started.elapsed().as_secs_f64());
        response.map(|inner| {
            Body::new(CountedBody {
                inner,
                bytes: 0,
                label: self.label.clone(),
                received: false,
            })
        })
    }
}

/// A body whose bytes are added to the received or sent counter of its request's API
/// when it is dropped (the API may be known only once the handler has run).
struct CountedBody {
    inner: Body,
    bytes: u64,
    label: RequestLabel,
    received: bool,
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let api = self.label.get().0;
        let family = if self.received {
            &metrics().received_bytes
        } else {
            &metrics().sent_bytes
        };
        family.get_or_create(&ApiLabels { api }).inc_by(self.bytes);
    }
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.bytes += d.len() as u64;
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Keeps a gauge raised while alive.
pub struct Raised(&'static Gauge);

impl Raised {
    pub fn new(g: &'static Gauge) -> Raised {
        g.inc();
        Raised(g)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_the_series_counted() {
        let m = metrics();
        m.requests
            .get_or_create(&RequestLabels {
                api: "oci",
                operation: "GetManifest",
                code: 200,
            })
            .inc();
        m.decided(berth_iam::Decision::ExplicitDeny);
        m.request_duration
            .get_or_create(&OperationLabels {
                api: "oci",
                operation: "GetManifest",
            })
            .observe(0.003);
        let text = m.encode();
        assert!(
            text.contains(
                r#"berth_http_requests_total{api="oci",operation="GetManifest",code="200"}"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_authorization_decisions_total{result="explicit_deny"}"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"berth_http_request_duration_seconds_bucket{le="0.004",api="oci",operation="GetManifest"} 1"#
            ),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
