//! The accept loop: HTTP/1.1 connections under a cap, with a deadline on request
//! headers (which also closes idle keep-alive connections), a stall guard on every
//! request body, and a graceful stop.
//!
//! At the cap, a new connection replaces the oldest connection that has no request in
//! progress (an idle keep-alive, or one still dribbling its headers), so a crowd of
//! idle or slow clients cannot lock everyone else (and `/healthz`) out. When every
//! connection has a request in progress, new ones wait in the listen backlog until one
//! finishes; the body and header deadlines bound that wait.
//!
//! With TLS ([`super::tls`]), the handshake must finish within the header timeout (a
//! connection still shaking hands counts as idle at the cap), and ALPN picks HTTP/2 or
//! HTTP/1.1. Requests carry a [`Transport`] extension saying which they came over.
//!
//! hyper does the HTTP; `axum::serve` has no header timeout and no connection cap,
//! hence this loop.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use super::intake::{Intake, StallGuard};

/// The largest request head (request line and headers) taken, in bytes.
pub const MAX_HEAD: usize = 64 << 10;

/// How a request reached the server, as an extension of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// It came over TLS (`aws:SecureTransport`, before any proxy's say).
    pub tls: bool,
}

/// What the loop enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_stall: Duration,
}

/// Raise the soft limit on open files to the hard limit (where the system allows) and
/// return the soft limit now in force, if it can be read.
pub fn raise_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            // An unlimited hard limit cannot be the soft one (Linux caps it at
            // fs.nr_open, macOS at OPEN_MAX): ask for a large finite number then.
            let target = if lim.rlim_max == libc::RLIM_INFINITY {
                1 << 20
            } else {
                lim.rlim_max
            };
            for want in [target, 1 << 16] {
                if want <= lim.rlim_cur {
                    continue;
                }
                let new = libc::rlimit {
                    rlim_cur: want,
                    rlim_max: lim.rlim_max,
                };
                // SAFETY: setrlimit reads one rlimit struct we own.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
                    lim.rlim_cur = want;
                    break;
                }
            }
        }
        // rlim_t is u64 on Linux and macOS, not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        Some(lim.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap that fits a file limit: each connection may hold its socket and
/// a blob file, and the store and listener need a few of their own.
pub fn fitting_cap(wanted: usize, file_limit: Option<u64>) -> usize {
    match file_limit {
        Some(n) => {
            let fits = (n.saturating_sub(64) / 2).max(8);
            wanted.min(usize::try_from(fits).unwrap_or(usize::MAX))
        }
        None => wanted,
    }
}

/// One open connection, as the loop sees it.
struct Entry {
    /// Requests in progress (their responses not yet fully sent).
    busy: Arc<AtomicUsize>,
    /// Told to close when replaced at the cap.
    evict: Arc<Notify>,
}

/// The open connections, oldest first (ids only grow).
struct Table {
    open: Mutex<BTreeMap<u64, Entry>>,
    /// Woken when a connection closes or a request ends.
    changed: Notify,
    max: usize,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Make room for connection `id`: under the cap, or by replacing the oldest
    /// connection without a request in progress. `None`: every connection is busy.
    fn admit(&self, id: u64) -> Option<(Arc<AtomicUsize>, Arc<Notify>)> {
        let mut open = self.lock();
        if open.len() >= self.max {
            let idle = open
                .iter()
                .find(|(_, e)| e.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(e) = open.remove(&idle) {
                e.evict.notify_one();
            }
        }
        let entry = Entry {
            busy: Arc::new(AtomicUsize::new(0)),
            evict: Arc::new(Notify::new()),
        };
        let handles = (entry.busy.clone(), entry.evict.clone());
        open.insert(id, entry);
        Some(handles)
    }

    fn close(&self, id: u64) {
        self.lock().remove(&id);
        self.changed.notify_waiters();
    }
}

/// Marks a request in progress on its connection until dropped (with the response body,
/// once it is sent).
struct InProgress {
    busy: Arc<AtomicUsize>,
    table: Arc<Table>,
}

impl InProgress {
    fn enter(busy: &Arc<AtomicUsize>, table: &Arc<Table>) -> InProgress {
        busy.fetch_add(1, Ordering::AcqRel);
        InProgress {
            busy: busy.clone(),
            table: table.clone(),
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.table.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted as in progress until it is sent.
struct Counted {
    inner: Body,
    _in_progress: InProgress,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serve `router` on `listener` until `stop` completes, then finish the requests in
/// progress and return.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    intake: Arc<Intake>,
    tls: Option<super::tls::Tls>,
    stop: impl std::future::Future<Output = ()>,
) {
    let table = Arc::new(Table {
        open: Mutex::new(BTreeMap::new()),
        changed: Notify::new(),
        max: limits.max_connections.max(1),
    });
    let (stopping_tx, stopping) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    let mut next_id: u64 = 0;
    let mut full_warned = false;
    'accept: loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept:
                    // wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = &mut stop => break 'accept,
                    }
                }
            },
            _ = &mut stop => break,
        };
        next_id += 1;
        let id = next_id;
        let (busy, evict) = loop {
            let changed = table.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if let Some(h) = table.admit(id) {
                break h;
            }
            if !full_warned {
                tracing::warn!(
                    max_connections = table.max,
                    "every connection has a request in progress: new connections wait"
                );
                full_warned = true;
            }
            tokio::select! {
                _ = changed => {}
                _ = &mut stop => break 'accept,
            }
        };
        if table.lock().len() < table.max / 2 {
            full_warned = false;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            id,
            stream,
            peer,
            router.clone(),
            limits.clone(),
            intake.clone(),
            table.clone(),
            (busy, evict),
            stopping.clone(),
            tls.clone(),
        ));
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    // Wait for every connection to finish what it has in progress.
    loop {
        let changed = table.changed.notified();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        if table.lock().is_empty() {
            break;
        }
        changed.await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    id: u64,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    intake: Arc<Intake>,
    table: Arc<Table>,
    (busy, evict): (Arc<AtomicUsize>, Arc<Notify>),
    mut stopping: watch::Receiver<bool>,
    tls: Option<super::tls::Tls>,
) {
    let transport = Transport { tls: tls.is_some() };
    // Raises the socket's low-water mark while a large body streams in (HTTP/1.1 only).
    let pacer = super::intake::Pacer::new(&stream);
    // `http1`: the connection speaks HTTP/1.1, where a request's body left unread ends
    // the connection (HTTP/2 streams are independent).
    let service = |http1: bool| {
        let pacer = Some(pacer).filter(|_| http1);
        let (busy, table) = (busy.clone(), table.clone());
        let (router, intake) = (router.clone(), intake.clone());
        let stall = limits.body_stall;
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_progress = InProgress::enter(&busy, &table);
            let router = router.clone();
            let intake = intake.clone();
            // Here, in the service call, while hyper holds the socket open.
            let socket =
                pacer.and_then(|p| p.socket(http_body::Body::size_hint(req.body()).exact()));
            async move {
                let sent_body = !http_body::Body::is_end_stream(req.body());
                let (parts, body) = req.into_parts();
                let guard = StallGuard::new(body, stall).paced(socket);
                let read_whole = guard.read_whole();
                let mut req = Request::from_parts(parts, Body::new(guard));
                // HTTP/2 names the host in the :authority pseudo-header, which hyper
                // puts in the URI: the handlers read `Host`, as HTTP/1.1 sends it.
                if !req.headers().contains_key(axum::http::header::HOST) {
                    let authority = req.uri().authority().map(|a| a.as_str().to_string());
                    if let Some(v) = authority.and_then(|a| a.parse().ok()) {
                        req.headers_mut().insert(axum::http::header::HOST, v);
                    }
                }
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(transport);
                req.extensions_mut().insert(intake);
                let mut response = router.call_request(req).await;
                // A response to a request whose body was not read to its end (a refusal
                // decided from the head) ends the connection: hyper closes it once the
                // response is out, and a client told so opens a new one for its next
                // request instead of sending it down a connection being closed.
                if http1 && sent_body && !read_whole.load(Ordering::Acquire) {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(response.map(|inner| Counted {
                    inner,
                    _in_progress: in_progress,
                }))
            }
        })
    };
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Request heads are at most this large (without a limit, up to hyper's read
        // buffer, ~400 KiB, which would let a full house of slow clients hold
        // gigabytes): 431 beyond it.
        .max_header_size(MAX_HEAD)
        .keep_alive(true);
    let shared = Shared {
        peer,
        busy: &busy,
        evict: &evict,
        stopping: &mut stopping,
    };
    match tls {
        None => {
            let conn = h1.serve_connection(TokioIo::new(stream), service(true));
            drive(std::pin::pin!(conn), |c| c.graceful_shutdown(), shared).await;
        }
        Some(tls) => {
            // The handshake within the header timeout; a connection replaced at the cap
            // or a server stopping does not wait for it.
            let accept = tokio::time::timeout(limits.header_timeout, tls.acceptor.accept(stream));
            let stream = tokio::select! {
                r = accept => match r {
                    Ok(Ok(s)) => Some(s),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        None
                    }
                },
                _ = evict.notified() => None,
                _ = shared.stopping.changed() => None,
            };
            if let Some(stream) = stream {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = TokioIo::new(stream);
                if h2 {
                    let mut b = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    b.timer(TokioTimer::new())
                        .max_header_list_size(MAX_HEAD as u32)
                        // Windows that grow with the bandwidth-delay product: a layer
                        // pushed over HTTP/2 is not held to 64 KiB per round trip.
                        .adaptive_window(true)
                        .max_concurrent_streams(256)
                        .keep_alive_interval(Some(limits.header_timeout))
                        .keep_alive_timeout(limits.header_timeout);
                    let conn = b.serve_connection(io, service(false));
                    drive(std::pin::pin!(conn), |c| c.graceful_shutdown(), shared).await;
                } else {
                    let conn = h1.serve_connection(io, service(true));
                    drive(std::pin::pin!(conn), |c| c.graceful_shutdown(), shared).await;
                }
            }
        }
    }
    table.close(id);
}

/// What driving a connection watches besides the connection itself.
struct Shared<'a> {
    peer: SocketAddr,
    busy: &'a AtomicUsize,
    evict: &'a Notify,
    stopping: &'a mut watch::Receiver<bool>,
}

/// Run one HTTP connection (either protocol) until it ends: replaced at the cap or
/// stopped, it finishes the requests in progress first (`graceful`).
async fn drive<C>(mut conn: Pin<&mut C>, graceful: impl Fn(Pin<&mut C>), shared: Shared<'_>)
where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    let Shared {
        peer,
        busy,
        evict,
        stopping,
    } = shared;
    let idle = |busy: &AtomicUsize| busy.load(Ordering::Acquire) == 0;
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                break;
            }
            _ = evict.notified(), if !closing => {
                if idle(busy) {
                    tracing::debug!(%peer, "connection replaced at the connection cap");
                    break;
                }
                graceful(conn.as_mut());
                closing = true;
            }
            _ = stopping.changed(), if !closing => {
                // Nothing in progress: nothing to finish. Else finish it, then close.
                if idle(busy) {
                    break;
                }
                graceful(conn.as_mut());
                closing = true;
            }
        }
    }
}

/// Calling a router on one request (the router is always ready).
trait CallRequest {
    fn call_request(
        self,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send;
}

impl CallRequest for Router {
    fn call_request(
        self,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        use tower_service::Service;
        let mut router = self;
        async move {
            match router.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_file_limit() {
        assert_eq!(fitting_cap(4096, None), 4096);
        assert_eq!(fitting_cap(4096, Some(1024)), 480);
        assert_eq!(fitting_cap(100, Some(1 << 20)), 100);
        assert_eq!(fitting_cap(4096, Some(10)), 8);
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let t = Table {
            open: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            max: 2,
        };
        let (b1, e1) = t.admit(1).unwrap();
        let (b2, _e2) = t.admit(2).unwrap();
        b1.fetch_add(1, Ordering::AcqRel);
        // 1 is busy: 2 (idle) is replaced.
        let (b3, _e3) = t.admit(3).unwrap();
        assert_eq!(t.lock().keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        b3.fetch_add(1, Ordering::AcqRel);
        // Everyone busy: no room.
        assert!(t.admit(4).is_none());
        b1.fetch_sub(1, Ordering::AcqRel);
        assert!(t.admit(4).is_some());
        assert_eq!(t.lock().keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        // The replaced connection was told.
        let told = e1.notified();
        let mut told = std::pin::pin!(told);
        assert!(told.as_mut().enable(), "a stored permit wakes at once");
        let _ = b2;
    }
}
