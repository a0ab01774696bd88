//! The audit log: one JSON line per authorization decision (time, request id, principal,
//! action, resource, decision, reason, source IP), to a file, to stdout, or nowhere.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

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

pub struct Audit {
    out: Option<Mutex<Box<dyn Write + Send>>>,
}

impl Audit {
    pub fn open(sink: &AuditSink) -> std::io::Result<Audit> {
        let out: Option<Box<dyn Write + Send>> = match sink {
            AuditSink::Off => None,
            AuditSink::Stdout => Some(Box::new(std::io::stdout())),
            AuditSink::File(p) => {
                // Who asked for what: readable by the server's user only.
                let mut o = std::fs::OpenOptions::new();
                o.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    o.mode(0o600);
                }
                Some(Box::new(o.open(p)?))
            }
        };
        Ok(Audit {
            out: out.map(Mutex::new),
        })
    }

    /// Whether decisions are written anywhere.
    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }

    pub fn record(&self, e: &AuditEvent) {
        let Some(out) = &self.out else { return };
        let line = serde_json::json!({
            "time": crate::ids::iso8601(e.time),
            "request_id": e.request_id,
            "principal": e.principal,
            "action": e.action,
            "resource": e.resource,
            "decision": e.decision,
            "reason": e.reason,
            "source_ip": e.source_ip.to_string(),
        })
        .to_string()
            + "\n";
        let mut w = match out.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        // One write per line: lines from concurrent requests never interleave.
        if let Err(err) = w.write_all(line.as_bytes()).and_then(|_| w.flush()) {
            tracing::error!(error = %err, "writing the audit log failed");
        }
    }
}
