//! Taking in request bodies without letting a client hold the server's memory or time:
//! every body is cut off when it stops sending ([`StallGuard`]); an API body, read whole
//! before its request is handled, must fit its front door's limit, arrive within a
//! deadline, and find room in a memory budget shared by all requests ([`Intake`]).
//!
//! Who may send an API body at all is decided before any of it is read (see
//! [`crate::auth::authenticate::precheck`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use http_body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::Config;

/// A request body that fails with [`BodyStalled`] once it has sent nothing for `stall`
/// while being read (time the handler spends elsewhere does not count), and says when
/// it has been read to its end ([`StallGuard::read_whole`]).
pub struct StallGuard<B> {
    inner: B,
    stall: Duration,
    timer: Pin<Box<Sleep>>,
    /// The timer runs: the last poll found nothing.
    waiting: bool,
    ended: Arc<AtomicBool>,
    /// Set while the socket's low-water mark is raised (see [`Pacer`]).
    pace: Option<Pace>,
    /// When the body counts as stalled, while the timer runs for the pace's fallback.
    stall_at: Option<Instant>,
}

impl<B> StallGuard<B> {
    pub fn new(inner: B, stall: Duration) -> StallGuard<B> {
        StallGuard {
            inner,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
            waiting: false,
            ended: Arc::default(),
            pace: None,
            stall_at: None,
        }
    }

    /// Lets a fast body of known length be read in larger pieces: `socket` is its
    /// connection's (see [`Pacer`]).
    pub fn paced(mut self, socket: Option<std::os::fd::OwnedFd>) -> StallGuard<B> {
        self.pace = socket.map(|socket| Pace {
            socket,
            since: Instant::now(),
            received: 0,
            lowat: 1,
        });
        self
    }

    /// Set once the body has been read to its end (it stays unset for a body dropped
    /// unread or half-read).
    pub fn read_whole(&self) -> Arc<AtomicBool> {
        self.ended.clone()
    }
}

/// A connection's socket, for raising its receive low-water mark (`SO_RCVLOWAT`) while
/// a large request body streams in. A client such as skopeo writes a layer 32–40 KiB at
/// a time, and a server that keeps up is woken, reads, and goes back to sleep for each
/// of them: about 28,000 wake-ups per GiB, each a context switch. With the mark raised
/// to what the client sends in a few milliseconds (at most [`MAX_LOWAT`]), the kernel
/// wakes the server once per that many bytes instead.
///
/// Safe because it is raised only while more than [`PACE_TAIL`] of a body of known
/// length (`Content-Length`) is still to come, so the socket is certain to receive more
/// than the mark (hyper holds at most its read buffer, ~400 KiB, of what it read); the
/// kernel also wakes the reader when the TCP window would close. A body that slows down
/// is read at the mark's fallback ([`PACE_FALLBACK`]): the mark drops to one byte, which
/// wakes the reader at once if anything is queued. The mark is back at one byte when the
/// body ends, fails or is dropped, before the connection reads anything else. HTTP/1.1
/// only: an HTTP/2 stream's flow-control window could be smaller than the mark.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    fd: std::os::fd::RawFd,
}

impl Pacer {
    /// For the connection on `socket`. Used only while that connection calls its
    /// service ([`Pacer::socket`]), when the socket is certain to be open.
    pub fn new(socket: &impl std::os::fd::AsRawFd) -> Pacer {
        Pacer {
            fd: socket.as_raw_fd(),
        }
    }

    /// The socket of a request with a body of `content_length`, if it is worth pacing:
    /// a duplicate of the descriptor, valid for as long as the body holds it whatever
    /// becomes of the connection (one more descriptor only while a large body streams).
    /// To be called only from the connection's service call, which hyper makes while it
    /// owns, and so keeps open, the socket.
    pub fn socket(&self, content_length: Option<u64>) -> Option<std::os::fd::OwnedFd> {
        if content_length? <= 2 * PACE_TAIL {
            return None;
        }
        // SAFETY: the connection's socket, open for as long as its service is called
        // (see above); the borrow ends with the duplication.
        let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        socket.try_clone_to_owned().ok()
    }
}

/// The highest low-water mark a body gets.
const MAX_LOWAT: u64 = 256 << 10;
/// Below this, the mark is not worth raising.
const MIN_LOWAT: u64 = 32 << 10;
/// How long, at the body's rate so far, a raised mark may take to fill.
const PACE_WINDOW: Duration = Duration::from_millis(4);
/// The mark is raised only while more than this is still to come, and after this much
/// has arrived (to measure the rate).
const PACE_TAIL: u64 = 2 << 20;
/// A raised mark that has not filled for this long drops back to one byte.
const PACE_FALLBACK: Duration = Duration::from_millis(25);

struct Pace {
    socket: std::os::fd::OwnedFd,
    since: Instant,
    received: u64,
    lowat: u64,
}

impl Pace {
    /// After `n` more bytes, with `remaining` still to come (`None`: unknown).
    fn arrived(&mut self, n: u64, remaining: Option<u64>) {
        self.received += n;
        let want = match remaining {
            Some(r) if r > PACE_TAIL && self.received >= PACE_TAIL => {
                let secs = self.since.elapsed().as_secs_f64().max(1e-3);
                let rate = self.received as f64 / secs;
                let w = ((rate * PACE_WINDOW.as_secs_f64()) as u64).min(MAX_LOWAT);
                if w < MIN_LOWAT {
                    1
                } else {
                    w
                }
            }
            _ => 1,
        };
        // A few calls per body: only a change to or from one byte, or by half or more.
        let changed = (want == 1) != (self.lowat == 1)
            || want > self.lowat.saturating_mul(3) / 2
            || want < self.lowat / 2;
        if changed {
            self.set(want);
        }
    }

    fn set(&mut self, lowat: u64) {
        use std::os::fd::AsRawFd;
        let v = lowat as libc::c_int;
        // SAFETY: a valid socket descriptor (owned here), a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // If the kernel refuses, its mark is what it was, and so is ours: a raised one is
        // still put back on drop, and the next piece tries again.
        if rc == 0 {
            self.lowat = lowat;
        }
    }
}

impl Drop for Pace {
    fn drop(&mut self) {
        if self.lowat != 1 {
            self.set(1);
        }
    }
}

/// The error of a body that stopped sending.
#[derive(Debug)]
pub struct BodyStalled(pub Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body sent nothing for {} seconds",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyStalled {}

/// The [`BodyStalled`] an error is, or was caused by (layers that wrap a body, such as
/// the metrics' byte counting, wrap its errors too).
pub fn stalled<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyStalled> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(s) = err.downcast_ref::<BodyStalled>() {
            return Some(s);
        }
        cur = err.source();
    }
    None
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> http_body::Body for StallGuard<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(r) => {
                    this.waiting = false;
                    let end = r.is_none() || this.inner.is_end_stream();
                    if end {
                        this.ended.store(true, Ordering::Release);
                    }
                    if let Some(pace) = &mut this.pace {
                        match &r {
                            Some(Ok(frame)) if !end => {
                                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                                pace.arrived(n, this.inner.size_hint().exact());
                            }
                            _ => this.pace = None,
                        }
                    }
                    return Poll::Ready(r.map(|f| f.map_err(Into::into)));
                }
                Poll::Pending => {
                    if !this.waiting {
                        this.waiting = true;
                        let now = Instant::now();
                        let stall_at = now + this.stall;
                        // With a raised mark the timer first runs for its fallback.
                        let paced = this.pace.as_ref().is_some_and(|p| p.lowat > 1);
                        this.stall_at = paced.then_some(stall_at);
                        let first = if paced { now + PACE_FALLBACK } else { stall_at };
                        this.timer.as_mut().reset(first);
                    }
                    match this.timer.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(()) => match this.stall_at.take() {
                            // The raised mark did not fill in time: back to one byte
                            // (the kernel then wakes the reader for what is queued),
                            // and the stall counts on from the last piece.
                            Some(stall_at) => {
                                if let Some(pace) = &mut this.pace {
                                    pace.set(1);
                                }
                                this.timer.as_mut().reset(stall_at);
                            }
                            None => {
                                return Poll::Ready(Some(Err(Box::new(BodyStalled(this.stall)))))
                            }
                        },
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The limits on API bodies read whole, shared by every request of a server.
#[derive(Debug)]
pub struct Intake {
    /// Bytes of bodies in memory (one permit per KiB).
    budget: Arc<Semaphore>,
    budget_kib: usize,
    pub deadline: Duration,
}

/// Why a body could not be taken in.
#[derive(Debug)]
pub enum IntakeError {
    /// Larger than the front door's limit (said by Content-Length, or found reading).
    TooLarge(usize),
    /// Too many bodies in memory already.
    Busy,
    /// The body stopped sending, or did not arrive in full before the deadline.
    TimedOut(String),
    /// The client went away or sent a malformed body.
    Broken(String),
}

/// An API body in memory, with its share of the budget (returned when dropped).
pub struct Taken {
    pub bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Bodies declared this small are not counted against the budget, so that everyday
/// calls go on while large bodies fill it (they are bounded by the connection cap
/// instead: at most `max_connections` × this).
pub const SMALL_BODY: usize = 64 << 10;

impl Intake {
    pub fn new(config: &Config) -> Intake {
        let budget_kib = config.api_body_memory.div_ceil(1024);
        Intake {
            budget: Arc::new(Semaphore::new(budget_kib)),
            budget_kib,
            deadline: config.api_body_deadline,
        }
    }

    /// Read a whole body of at most `limit` bytes, `content_length` being what the
    /// client declared (the budget is taken for that, or for `limit` when undeclared).
    pub async fn take(
        &self,
        body: Body,
        content_length: Option<usize>,
        limit: usize,
    ) -> Result<Taken, IntakeError> {
        if content_length.is_some_and(|n| n > limit) {
            return Err(IntakeError::TooLarge(limit));
        }
        let permit = match content_length {
            Some(n) if n <= SMALL_BODY => None,
            declared => {
                let want = declared.unwrap_or(limit).div_ceil(1024).max(1);
                let permits = u32::try_from(want.min(self.budget_kib)).unwrap_or(u32::MAX);
                let permit = self
                    .budget
                    .clone()
                    .try_acquire_many_owned(permits)
                    .map_err(|_| IntakeError::Busy)?;
                Some(permit)
            }
        };
        let read = async {
            let mut stream = body.into_data_stream();
            let mut buf = Vec::with_capacity(content_length.unwrap_or(0));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    let e = e.into_inner();
                    match stalled(&*e) {
                        Some(s) => IntakeError::TimedOut(s.to_string()),
                        None => IntakeError::Broken(e.to_string()),
                    }
                })?;
                if buf.len() + chunk.len() > limit {
                    return Err(IntakeError::TooLarge(limit));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(buf))
        };
        match tokio::time::timeout(self.deadline, read).await {
            Ok(Ok(bytes)) => Ok(Taken {
                bytes,
                _permit: permit,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(IntakeError::TimedOut(format!(
                "the request body did not arrive in full within {} seconds",
                self.deadline.as_secs_f64()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake(memory: usize, deadline_ms: u64) -> Intake {
        Intake::new(&Config {
            api_body_memory: memory,
            api_body_deadline: Duration::from_millis(deadline_ms),
            ..Config::default()
        })
    }

    /// A body that sends `first` and then nothing, ever.
    fn stalling(first: &'static [u8]) -> Body {
        let stream =
            futures_util::stream::once(async move { Ok::<_, BoxError>(Bytes::from(first)) })
                .chain(futures_util::stream::pending());
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn whole_bodies_within_limits() {
        let i = intake(1 << 20, 5_000);
        let t = i.take(Body::from("hello"), Some(5), 10).await.unwrap();
        assert_eq!(&t.bytes[..], b"hello");
        // Declared too large: refused before reading.
        assert!(matches!(
            i.take(stalling(b"x"), Some(11), 10).await,
            Err(IntakeError::TooLarge(10))
        ));
        // Undeclared and too large: refused once it goes over.
        assert!(matches!(
            i.take(Body::from("hello world"), None, 10).await,
            Err(IntakeError::TooLarge(10))
        ));
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_given_back() {
        let i = intake(256 << 10, 5_000);
        let n = 160 << 10;
        let held = i
            .take(Body::from(vec![0u8; n]), Some(n), 1 << 20)
            .await
            .unwrap();
        assert!(matches!(
            i.take(Body::from(vec![0u8; n]), Some(n), 1 << 20).await,
            Err(IntakeError::Busy)
        ));
        // Small bodies are not held back by large ones.
        i.take(Body::from("{}"), Some(2), 1 << 20).await.unwrap();
        drop(held);
        i.take(Body::from(vec![0u8; n]), Some(n), 1 << 20)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn stalled_and_slow_bodies_are_cut_off() {
        let i = intake(1 << 20, 200);
        let started = std::time::Instant::now();
        assert!(matches!(
            i.take(stalling(b"abc"), Some(100), 1000).await,
            Err(IntakeError::TimedOut(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        // The stall guard alone.
        let i = intake(1 << 20, 60_000);
        let guarded = Body::new(StallGuard::new(
            stalling(b"abc"),
            Duration::from_millis(100),
        ));
        match i.take(guarded, Some(100), 1000).await {
            Err(IntakeError::TimedOut(m)) => assert!(m.contains("sent nothing"), "{m}"),
            other => panic!("{:?}", other.map(|t| t.bytes)),
        }
    }

    /// A body of `len` bytes of known length, sent in 64 KiB frames, the first
    /// `fast` of them at once and the rest never (it stays pending).
    struct Known {
        left: u64,
        fast: u64,
    }

    impl http_body::Body for Known {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            if self.fast == 0 {
                return Poll::Pending;
            }
            let n = self.left.min(self.fast).min(64 << 10);
            self.left -= n;
            self.fast -= n;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![7u8; n as usize])))))
        }

        fn is_end_stream(&self) -> bool {
            self.left == 0
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.left)
        }
    }

    /// The receive low-water mark of a connected loopback socket's server end, with
    /// the client end (kept open) and the server end itself.
    fn lowat(socket: &std::net::TcpStream) -> libc::c_int {
        use std::os::fd::AsRawFd;
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an open socket; a c_int and its length.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        v
    }

    fn connected() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// A paced 16 MiB body on `server`'s socket, its first `fast` bytes sent at once.
    fn paced(server: &std::net::TcpStream, fast: u64, stall: Duration) -> StallGuard<Known> {
        let len = 16u64 << 20;
        StallGuard::new(Known { left: len, fast }, stall)
            .paced(Pacer::new(server).socket(Some(len)))
    }

    /// Reads 4 MiB (64 frames) of `body`; the mark is then at its highest.
    async fn read_fast_start(body: &mut StallGuard<Known>, server: &std::net::TcpStream) {
        for _ in 0..64 {
            frame(body).await.unwrap().unwrap();
        }
        assert_eq!(lowat(server) as u64, MAX_LOWAT);
    }

    async fn frame<B>(body: &mut B) -> Option<Result<Frame<Bytes>, BoxError>>
    where
        B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
    {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
    }

    #[tokio::test]
    async fn a_fast_large_body_raises_the_mark_and_puts_it_back() {
        let (_client, server) = connected();
        let pacer = Pacer::new(&server);
        assert_eq!(lowat(&server), 1);
        // Small or undeclared bodies are not paced.
        assert!(pacer.socket(Some(1 << 20)).is_none());
        assert!(pacer.socket(None).is_none());

        let len = 16u64 << 20;
        let mut body = paced(&server, len, Duration::from_secs(60));
        let mut got = 0u64;
        let mut raised = 0;
        while let Some(f) = frame(&mut body).await {
            got += f.unwrap().into_data().unwrap().len() as u64;
            let mark = lowat(&server);
            if got >= PACE_TAIL && len - got > PACE_TAIL {
                // Frames come at once: the rate is high, the mark at its highest.
                assert_eq!(mark as u64, MAX_LOWAT, "after {got} bytes");
                raised += 1;
            } else {
                // Before the rate is known, and for the last part of the body.
                assert_eq!(mark, 1, "after {got} bytes");
            }
        }
        assert_eq!(got, len);
        assert!(raised > 100, "{raised}");
        assert_eq!(lowat(&server), 1);

        // Dropped half-read: the mark is put back.
        let mut body = paced(&server, len, Duration::from_secs(60));
        read_fast_start(&mut body, &server).await;
        drop(body);
        assert_eq!(lowat(&server), 1);
    }

    #[tokio::test]
    async fn a_body_that_slows_down_falls_back_to_one_byte_then_stalls() {
        let (_client, server) = connected();
        let stall = Duration::from_millis(600);
        let mut body = paced(&server, 4 << 20, stall);
        read_fast_start(&mut body, &server).await;
        let last = Instant::now();
        // The body now sends nothing: within the fallback the mark is back at one byte
        // (the kernel would wake the reader for anything queued)...
        let waited = tokio::time::timeout(PACE_FALLBACK * 8, frame(&mut body)).await;
        assert!(waited.is_err(), "a frame arrived");
        assert_eq!(lowat(&server), 1);
        // ... and the stall still counts from the last frame.
        match frame(&mut body).await {
            Some(Err(e)) => assert!(e.to_string().contains("sent nothing"), "{e}"),
            other => panic!("{:?}", other.map(|f| f.map(|f| f.is_data()))),
        }
        let took = last.elapsed();
        assert!(took >= stall && took < stall * 3, "{took:?}");
    }
}
