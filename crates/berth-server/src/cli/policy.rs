//! `berth policy check | simulate | decide`.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use berth_iam::json;
use berth_iam::lines::Decider;
use berth_iam::policy::parse::check_size;
use berth_iam::{
    evaluate, Action, CompiledPolicy, Context, Evaluation, PolicyKind, PolicySet, Principal,
    Request,
};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate and lint policy documents: `FILE: PATH: message` for invalid ones and
    /// `FILE:LINE:COLUMN: TYPE CODE: details (path)` findings; exit 1 if Berth would refuse one.
    Check(CheckArgs),
    /// Decide one request against policies and explain the decision.
    Simulate(SimulateArgs),
    /// Decide JSON-lines requests from stdin, one answer line per request line.
    Decide,
    /// Repositories anyone can read or write (policy files, a data directory, or a running server).
    Public(super::public::PublicArgs),
    /// Every principal allowed an action on a repository (a data directory, a running server, or policy files).
    WhoCan(super::whocan::WhoCanArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy kind: identity, repository, registry, trust, session or boundary.
    /// Default: repository when the document names principals, else identity.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<PolicyKind>,
    /// Only validate: skip the lint findings (Access Analyzer-style, printed by default:
    /// ERROR, SECURITY_WARNING, WARNING, SUGGESTION, one
    /// `FILE:LINE:COLUMN: TYPE CODE: details (path)` line each).
    #[arg(long, conflicts_with = "strict")]
    no_lint: bool,
    /// Fail on every ERROR finding. By default the check fails on what Berth refuses to
    /// store: invalid documents and ERROR findings other than unknown action names.
    #[arg(long)]
    strict: bool,
    /// Lint and fail on every ERROR finding: the same as --strict (kept for scripts
    /// written when linting was optional).
    #[arg(long, hide = true, conflicts_with = "no_lint")]
    lint: bool,
    /// Policy files.
    #[arg(required = true)]
    files: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Identity-based policy files of the principal.
    #[arg(long = "identity-policy", num_args = 1..)]
    identity_policies: Vec<String>,
    /// Resource-based policy file (repository or registry policy).
    #[arg(long = "resource-policy")]
    resource_policy: Option<String>,
    /// Permissions boundary file.
    #[arg(long = "permissions-boundary")]
    permissions_boundary: Option<String>,
    /// Session policy file.
    #[arg(long = "session-policy")]
    session_policy: Option<String>,
    /// The caller: arn:aws:iam::ACCOUNT:user/NAME, :root, arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION, ...
    #[arg(long)]
    principal: String,
    /// The action, e.g. ecr:PutImage.
    #[arg(long)]
    action: String,
    /// The resource ARN, or * for actions without resource-level permissions.
    #[arg(long)]
    resource: String,
    /// The account owning the resource (default: the resource ARN's account).
    #[arg(long = "resource-account")]
    resource_account: Option<String>,
    /// Context keys, KEY=VALUE; repeat a key for a multivalued key.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_kind(s: &str) -> Result<PolicyKind, String> {
    PolicyKind::from_name(s).ok_or_else(|| {
        format!("unknown policy kind {s:?}: use identity, repository, registry, trust, session or boundary")
    })
}

pub fn run(cmd: PolicyCommand) -> Result<ExitCode, String> {
    match cmd {
        PolicyCommand::Check(a) => check(a),
        PolicyCommand::Simulate(a) => simulate(a),
        PolicyCommand::Decide => decide(),
        PolicyCommand::Public(a) => super::public::run(a),
        PolicyCommand::WhoCan(a) => super::whocan::run(a),
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// Guess the kind of an unlabelled document: one that names principals is a repository policy.
fn guess_kind(src: &str) -> PolicyKind {
    let names_principals = json::parse(src).is_ok_and(|doc| {
        let statements = match doc.get("Statement").map(|s| &s.value) {
            Some(json::Value::Array(items)) => items.iter().collect(),
            Some(_) => doc.get("Statement").into_iter().collect(),
            None => Vec::new(),
        };
        statements
            .iter()
            .any(|s| s.get("Principal").is_some() || s.get("NotPrincipal").is_some())
    });
    if names_principals {
        PolicyKind::Repository
    } else {
        PolicyKind::Identity
    }
}

fn check(a: CheckArgs) -> Result<ExitCode, String> {
    let mut failed = false;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in &a.files {
        let src = read(file)?;
        let kind = a.kind.unwrap_or_else(|| guess_kind(&src));
        let mut problems: Vec<String> = match berth_iam::parse_policy(&src, kind) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        };
        if let Err(p) = check_size(&src, kind) {
            problems.push(p.to_string());
        }
        for p in &problems {
            writeln!(out, "{file}: {p}").map_err(|e| e.to_string())?;
        }
        failed |= !problems.is_empty();
        if !a.no_lint && problems.is_empty() {
            for f in berth_iam::lint::lint(&src, kind) {
                writeln!(out, "{file}:{f}").map_err(|e| e.to_string())?;
                failed |= if a.strict || a.lint {
                    f.finding_type == berth_iam::lint::FindingType::Error
                } else {
                    f.refuses_write()
                };
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn compile(path: &str, kind: PolicyKind) -> Result<Arc<CompiledPolicy>, String> {
    let src = read(path)?;
    CompiledPolicy::parse(path, kind, &src)
        .map(Arc::new)
        .map_err(|e| {
            e.problems
                .iter()
                .map(|p| format!("{path}: {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
}

fn simulate(a: SimulateArgs) -> Result<ExitCode, String> {
    let identity = a
        .identity_policies
        .iter()
        .map(|f| compile(f, PolicyKind::Identity))
        .collect::<Result<Vec<_>, _>>()?;
    let resource = a
        .resource_policy
        .iter()
        .map(|f| compile(f, PolicyKind::Repository))
        .collect::<Result<Vec<_>, _>>()?;
    let boundary = a
        .permissions_boundary
        .as_deref()
        .map(|f| compile(f, PolicyKind::Boundary))
        .transpose()?;
    let session = a
        .session_policy
        .as_deref()
        .map(|f| compile(f, PolicyKind::Session))
        .transpose()?;

    let mut context = Context::new();
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for kv in &a.context {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--context {kv:?}: write KEY=VALUE"))?;
        match grouped.iter_mut().find(|(g, _)| g.eq_ignore_ascii_case(k)) {
            Some((_, vs)) => vs.push(v.to_string()),
            None => grouped.push((k.to_string(), vec![v.to_string()])),
        }
    }
    for (k, vs) in grouped {
        // One value is a single-valued key; insert_list tells them apart.
        context.insert_list(&k, vs);
    }
    let mut principal = Principal::from_arn(&a.principal)?;
    principal.settle_context(&mut context);
    let resource_account = a
        .resource_account
        .clone()
        .unwrap_or_else(|| principal.resource_account(&a.resource));
    let action = Action::new(&a.action);
    let req = Request {
        principal: &principal,
        action: &action,
        resource: &a.resource,
        resource_account: &resource_account,
        context: &context,
    };
    let set = PolicySet {
        identity: &identity,
        resource: &resource,
        boundary: boundary.as_deref(),
        session: session.as_deref(),
    };
    let ev = evaluate(&req, &set);
    let text = if a.json { to_json(&ev) } else { to_text(&ev) };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn to_text(ev: &Evaluation) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Decision: {}", ev.decision);
    let _ = writeln!(s, "Reason: {}", ev.reason);
    if ev.statements.is_empty() {
        let _ = writeln!(s, "Deciding statements: none");
    } else {
        let _ = writeln!(s, "Deciding statements:");
        for m in &ev.statements {
            let sid = m
                .sid
                .as_deref()
                .map(|x| format!(" (Sid {x:?})"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} {} policy, Statement[{}]{sid}: {}",
                m.policy,
                m.policy_type.as_str(),
                m.index,
                m.effect.as_str()
            );
        }
    }
    if !ev.missing_context_keys.is_empty() {
        let _ = writeln!(
            s,
            "Missing context keys: {}",
            ev.missing_context_keys.join(", ")
        );
    }
    s
}

fn to_json(ev: &Evaluation) -> String {
    let mut s = String::from("{\"decision\":");
    json::write_string(&mut s, ev.decision.as_str());
    s.push_str(",\"reason\":");
    json::write_string(&mut s, &ev.reason);
    s.push_str(",\"statements\":[");
    for (i, m) in ev.statements.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"policy\":");
        json::write_string(&mut s, &m.policy);
        s.push_str(",\"policy_type\":");
        json::write_string(&mut s, m.policy_type.as_str());
        let _ = write!(s, ",\"index\":{},\"sid\":", m.index);
        match &m.sid {
            Some(sid) => json::write_string(&mut s, sid),
            None => s.push_str("null"),
        }
        s.push_str(",\"effect\":");
        json::write_string(&mut s, m.effect.as_str());
        s.push('}');
    }
    s.push_str("],\"missing_context_keys\":[");
    for (i, k) in ev.missing_context_keys.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json::write_string(&mut s, k);
    }
    s.push_str("]}\n");
    s
}

/// Bytes read per batch; each batch's lines are split between the worker threads.
const BATCH_BYTES: usize = 1 << 20;

type Batch = Result<Vec<u8>, String>;

/// Read stdin in batches of whole lines (the last one may lack its newline), so that
/// reading overlaps deciding.
fn read_batches(tx: std::sync::mpsc::SyncSender<Batch>) {
    use std::io::Read;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = std::mem::take(&mut carry);
        buf.reserve(BATCH_BYTES);
        let mut eof = false;
        while buf.len() < BATCH_BYTES {
            match (&mut input).take(BATCH_BYTES as u64).read_to_end(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(format!("reading stdin: {e}")));
                    return;
                }
            }
        }
        if !eof {
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => carry = buf.split_off(i + 1),
                None => {
                    carry = buf;
                    continue;
                }
            }
        }
        if !buf.is_empty() && tx.send(Ok(buf)).is_err() {
            return;
        }
        if eof {
            return;
        }
    }
}

/// Decide every line of a batch, answers appended to `out`.
fn decide_batch(decider: &mut Decider, buf: &[u8], out: &mut String) {
    // Valid UTF-8 as a whole (the usual case) is checked once, not line by line.
    let whole = std::str::from_utf8(buf).ok();
    let mut one = |start: usize, end: usize, out: &mut String| {
        let line = match whole {
            Some(text) => Ok(&text[start..end]),
            None => std::str::from_utf8(&buf[start..end]),
        };
        match line {
            Ok(text) => decider.decide_line(text.strip_suffix('\r').unwrap_or(text), out),
            Err(_) => out.push_str("{\"id\":null,\"error\":\"the line is not valid UTF-8\"}\n"),
        }
    };
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', buf) {
        one(start, nl, out);
        start = nl + 1;
    }
    // A final newline does not start another line.
    if start < buf.len() {
        one(start, buf.len(), out);
    }
}

/// A pipeline: one thread reads batches of lines, workers decide them (batch i on worker
/// i mod W, each with its own policy cache), and this thread writes the answers in order.
fn decide() -> Result<ExitCode, String> {
    use std::sync::mpsc::sync_channel;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let (batch_tx, batch_rx) = sync_channel::<Batch>(workers);
    let reader = std::thread::spawn(move || read_batches(batch_tx));
    let mut to_workers = Vec::with_capacity(workers);
    let mut from_workers = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (in_tx, in_rx) = sync_channel::<Vec<u8>>(2);
        let (out_tx, out_rx) = sync_channel::<String>(2);
        handles.push(std::thread::spawn(move || {
            let mut decider = Decider::new();
            for buf in in_rx {
                let mut out = String::with_capacity(buf.len() / 16);
                decide_batch(&mut decider, &buf, &mut out);
                if out_tx.send(out).is_err() {
                    return;
                }
            }
        }));
        to_workers.push(in_tx);
        from_workers.push(out_rx);
    }
    let stdout = std::io::stdout();
    let mut output = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut sent = 0usize;
    let mut written = 0usize;
    let mut failure = None;
    let write_next = |written: &mut usize, output: &mut dyn Write| -> Result<(), String> {
        let out = from_workers[*written % workers]
            .recv()
            .map_err(|_| "a decision worker failed".to_string())?;
        output
            .write_all(out.as_bytes())
            .map_err(|e| e.to_string())?;
        *written += 1;
        Ok(())
    };
    for batch in batch_rx {
        let buf = match batch {
            Ok(b) => b,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        // Keep at most one batch in flight per worker beyond the one it is deciding.
        if sent - written >= 2 * workers {
            write_next(&mut written, &mut output)?;
        }
        to_workers[sent % workers]
            .send(buf)
            .map_err(|_| "a decision worker failed".to_string())?;
        sent += 1;
    }
    drop(to_workers);
    while written < sent {
        write_next(&mut written, &mut output)?;
    }
    for h in handles {
        h.join()
            .map_err(|_| "a decision worker failed".to_string())?;
    }
    reader
        .join()
        .map_err(|_| "the stdin reader failed".to_string())?;
    output.flush().map_err(|e| e.to_string())?;
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
