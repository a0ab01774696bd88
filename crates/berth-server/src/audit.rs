//! The audit log: one JSON line per request that was decided (time, request id, principal,
//! action, resource, decision, reason, source IP, HTTP status), to a file (by default
//! `DATA_DIR/audit.log`), to stdout, or nowhere.
//!
//! A file is rotated by size: when a line would take it past `max_bytes`, it becomes
//! `audit.log.1` (`.1` becomes `.2`, and so on; the oldest beyond `keep` is deleted) and
//! a new file is started, so the log never holds more than `(keep + 1) × max_bytes`.
//! Files are created readable by this user only.
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
    File(PathBuf, Rotation),
}

/// When a log file is rotated and how many rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

impl Default for Rotation {
    /// 100 MiB a file, five rotated files kept.
    fn default() -> Rotation {
        Rotation {
            max_bytes: 100 << 20,
            keep: 5,
        }
    }
}

impl AuditSink {
    /// `off`, `stdout` or a file path (rotated by default).
    pub fn parse(s: &str) -> AuditSink {
        match s {
            "off" | "none" | "" => AuditSink::Off,
            "stdout" | "-" => AuditSink::Stdout,
            path => AuditSink::File(PathBuf::from(path), Rotation::default()),
        }
    }
}

/// An append-only file rotated by size ([`Rotation`]).
struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: std::fs::File,
    size: u64,
}

fn open_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

impl RotatingFile {
    fn open(path: PathBuf, rotation: Rotation) -> std::io::Result<RotatingFile> {
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            rotation,
            file,
            size,
        })
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// `audit.log` → `.1` → `.2` …, the oldest past `keep` deleted; a new file started.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        if self.rotation.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.numbered(self.rotation.keep));
            for n in (1..self.rotation.keep).rev() {
                let from = self.numbered(n);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    /// Whole lines reach here (the writer thread writes batches of whole lines): rotate
    /// before a batch that would take the file past the limit, then write it all.
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.rotation.max_bytes {
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, path = %self.path.display(), "rotating the audit log failed: writing on");
            }
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
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
            AuditSink::File(p, rotation) => Box::new(RotatingFile::open(p.clone(), *rotation)?),
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
fn write_lines(rx: Receiver<String>, mut out: Box<dyn Write + Send>) {
    let mut buf: Vec<u8> = Vec::with_capacity(BATCH);
    while let Ok(line) = rx.recv() {
        let mut result = gather(&mut *out, &mut buf, &line);
        while let Ok(more) = rx.try_recv() {
            result = result.and(gather(&mut *out, &mut buf, &more));
        }
        let result = result
            .and_then(|_| out.write_all(&buf))
            .and_then(|_| out.flush());
        buf.clear();
        if let Err(err) = result {
            tracing::error!(error = %err, "writing the audit log failed");
        }
    }
}

/// Lines are gathered and written whole (a rotating file splits only between writes, so
/// never inside a line), at most this many bytes at a time.
const BATCH: usize = 64 << 10;

/// Add `line` to `buf`, writing what `buf` held first if it would grow past [`BATCH`].
fn gather(out: &mut dyn Write, buf: &mut Vec<u8>, line: &str) -> std::io::Result<()> {
    let mut r = Ok(());
    if !buf.is_empty() && buf.len() + line.len() > BATCH {
        r = out.write_all(buf);
        buf.clear();
    }
    buf.extend_from_slice(line.as_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_rotated_by_size_and_old_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let rotation = Rotation {
            max_bytes: 100,
            keep: 2,
        };
        let mut f = RotatingFile::open(path.clone(), rotation).unwrap();
        let line = format!("{}\n", "x".repeat(39)); // 40 bytes
        for i in 0..10 {
            f.write_all(line.replace('x', &i.to_string()).as_bytes())
                .unwrap();
        }
        f.flush().unwrap();
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        // 10 lines of 40 bytes, at most two per 100-byte file: the current and two kept.
        assert_eq!(
            read(&path),
            format!("{}\n", "8".repeat(39)) + &format!("{}\n", "9".repeat(39))
        );
        assert!(read(&dir.path().join("audit.log.1")).starts_with(&"6".repeat(39)));
        assert!(read(&dir.path().join("audit.log.2")).starts_with(&"4".repeat(39)));
        assert!(!dir.path().join("audit.log.3").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        // Reopened, it goes on counting from the file's size.
        let f = RotatingFile::open(path.clone(), rotation).unwrap();
        assert_eq!(f.size, 80);
    }
}
