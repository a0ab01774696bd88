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
}

impl<B> StallGuard<B> {
    pub fn new(inner: B, stall: Duration) -> StallGuard<B> {
        StallGuard {
            inner,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
            waiting: false,
            ended: Arc::default(),
        }
    }

    /// Set once the body has been read to its end (it stays unset for a body dropped
    /// unread or half-read).
    pub fn read_whole(&self) -> Arc<AtomicBool> {
        self.ended.clone()
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.waiting = false;
                if r.is_none() || this.inner.is_end_stream() {
                    this.ended.store(true, Ordering::Release);
                }
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.stall;
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(this.stall))))),
                    Poll::Pending => Poll::Pending,
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
}
