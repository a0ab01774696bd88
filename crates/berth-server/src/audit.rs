//! The audit log: one JSON line per request that was decided (time, request id, principal,
//! action, resource, decision, reason, source IP, HTTP status), to a file, to stdout, or
//! nowhere.
//!
//! A request may be decided many times (the catalog decides every repository): the line
//! names the first denial, or the first decision when none was denied, and counts the
//! rest, so one request writes one bounded line. Lines are written by a thread of their
//! own, never by the async workers; when the disk falls behind by [`QUEUE`] lines,
//! requests wait for it rather than lose their audit.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    Off,
    Stdout,
    File(PathBuf),
}

impl AuditSink {
    /// `off`, `stdout` or a file path.
    pub fn parse(s: &str) -> AuditSink {
        match s {
            "off" | "none" | "" => AuditSink::Off,
            "stdout" | "-" => AuditSink::Stdout,
            path => AuditSink::File(PathBuf::from(path)),
        }
    }
}

/// One decision.
pub struct AuditEvent<'a> {
    pub time: i64,
    pub request_id: &'a str,
    pub principal: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub source_ip: IpAddr,
}

/// Lines waiting for the writer thread before requests wait for it.
pub const QUEUE: usize = 8192;

/// The decisions of one request so far: the one its line names, and counts.
#[derive(Debug, Default)]
struct RequestDecisions {
    /// The first denial, or the first decision while nothing was denied.
    shown: Option<serde_json::Map<String, serde_json::Value>>,
    shown_is_denial: bool,
    decisions: u64,
    denied: u64,
}

tokio::task_local! {
    static REQUEST: RefCell<RequestDecisions>;
}

pub struct Audit {
    out: Option<SyncSender<String>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Audit {
    pub fn open(sink: &AuditSink) -> std::io::Result<Audit> {
        let out: Box<dyn Write + Send> = match sink {
            AuditSink::Off => {
                return Ok(Audit {
                    out: None,
                    writer: None,
                })
            }
            AuditSink::Stdout => Box::new(std::io::stdout()),
            AuditSink::File(p) => {
                let mut o = std::fs::OpenOptions::new();
                o.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    o.mode(0o600);
                }
                Box::new(o.open(p)?)
            }
        };
        let (tx, rx) = sync_channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("berth-audit".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(Audit {
            out: Some(tx),
            writer: Some(writer),
        })
    }

    /// Write every line sent so far, then stop (a command that exits right after).
    pub fn close(mut self) {
        self.out = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }

    /// Whether decisions are written anywhere.
    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }

    /// Run a request with its decisions gathered into one line, written when it ends
    /// (with the response's status).
    pub async fn request<F>(&self, fut: F) -> axum::http::Response<axum::body::Body>
    where
        F: std::future::Future<Output = axum::http::Response<axum::body::Body>>,
    {
        if !self.enabled() {
            return fut.await;
        }
        REQUEST
            .scope(RefCell::new(RequestDecisions::default()), async {
                let response = fut.await;
                let gathered = REQUEST.with(|r| std::mem::take(&mut *r.borrow_mut()));
                if let Some(mut line) = gathered.shown {
                    line.insert("status".into(), response.status().as_u16().into());
                    if gathered.decisions > 1 {
                        line.insert("decisions".into(), gathered.decisions.into());
                        line.insert("denied".into(), gathered.denied.into());
                    }
                    self.send(serde_json::Value::Object(line).to_string());
                }
                response
            })
            .await
    }

    /// Note a decision: into its request's line, or on a line of its own outside a request.
    pub fn record(&self, e: &AuditEvent) {
        if !self.enabled() {
            return;
        }
        let denial = e.decision != "Allow";
        let taken = REQUEST.try_with(|r| {
            let mut r = r.borrow_mut();
            r.decisions += 1;
            if denial {
                r.denied += 1;
            }
            if r.shown.is_none() || (denial && !r.shown_is_denial) {
                r.shown = Some(fields(e));
                r.shown_is_denial = denial;
            }
        });
        if taken.is_err() {
            self.send(serde_json::Value::Object(fields(e)).to_string());
        }
    }

    fn send(&self, mut line: String) {
        let Some(tx) = &self.out else { return };
        line.push('\n');
        match tx.try_send(line) {
            Ok(()) => {}
            // The disk is behind: wait for it (bounded memory, no lost lines).
            Err(TrySendError::Full(line)) => {
                if tx.send(line).is_err() {
                    tracing::error!("the audit log writer has stopped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the audit log writer has stopped")
            }
        }
    }
}

fn fields(e: &AuditEvent) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("time".into(), crate::ids::iso8601(e.time).into());
    m.insert("request_id".into(), e.request_id.into());
    m.insert("principal".into(), e.principal.into());
    m.insert("action".into(), e.action.into());
    m.insert("resource".into(), e.resource.into());
    m.insert("decision".into(), e.decision.into());
    m.insert("reason".into(), e.reason.into());
    m.insert("source_ip".into(), e.source_ip.to_string().into());
    m
}

/// The writer thread: lines in order, flushed whenever the queue runs dry; ends when the
/// server drops its [`Audit`].
fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, out);
    while let Ok(line) = rx.recv() {
        let mut result = out.write_all(line.as_bytes());
        while let Ok(more) = rx.try_recv() {
            result = result.and_then(|_| out.write_all(more.as_bytes()));
        }
        if let Err(err) = result.and_then(|_| out.flush()) {
            tracing::error!(error = %err, "writing the audit log failed");
        }
    }
    let _ = out.flush();
}
