//! Authentication failures (a wrong registry password, a bad signature, an unknown or
//! inactive key, an expired token): counted by reason in [`crate::metrics`], logged with
//! the client's address and the reason, and — those that could be guesses — charged to
//! the address's failure budget in [`crate::serve::throttle`], which refuses an address
//! that keeps failing for a while. A request without credentials at all, or with a
//! credential that was once good (an expired token or password, a password of another
//! Region, a request signed too long ago), guesses nothing and is not charged: a CI job
//! with a stale token must not lock its neighbours behind the same address out.
//!
//! The log is rate-limited: at most [`LOG_BURST`] lines, refilled at [`LOG_PER_SEC`] a
//! second; the lines left out are counted and said in the next line written, so a flood
//! of bad requests cannot flood the log, and nothing goes unmentioned.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::serve::App;

/// Lines the failure log may write at once.
pub const LOG_BURST: f64 = 20.0;
/// Lines a second it refills at.
pub const LOG_PER_SEC: f64 = 2.0;

struct LogBudget {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

static LOG: Mutex<Option<LogBudget>> = Mutex::new(None);

/// Whether a line may be written now; if so, how many were left out before it.
fn may_log(budget: &Mutex<Option<LogBudget>>, now: Instant) -> Option<u64> {
    let mut g = budget.lock().unwrap_or_else(|p| p.into_inner());
    let b = g.get_or_insert(LogBudget {
        tokens: LOG_BURST,
        at: now,
        suppressed: 0,
    });
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    b.tokens = (b.tokens + elapsed * LOG_PER_SEC).min(LOG_BURST);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Some(std::mem::take(&mut b.suppressed))
    } else {
        b.suppressed += 1;
        None
    }
}

/// The reasons that are not guesses (see the module's doc).
const NOT_GUESSES: &[&str] = &[
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "expired_token",
    "wrong_region",
    "InvalidRegion",
];

/// Whether a failure for `reason` is charged to the address's budget.
pub fn charged(reason: &str) -> bool {
    !NOT_GUESSES.contains(&reason)
}

/// Record one authentication failure from `client`: `reason` is a short fixed word
/// (the metric's label), `message` what the client was told.
pub fn record(app: &App, client: IpAddr, reason: &'static str, message: &str) {
    crate::metrics::metrics()
        .authentication_failures
        .get_or_create(&crate::metrics::ReasonLabels { reason })
        .inc();
    if charged(reason) {
        app.throttle.failed(client);
    }
    if let Some(left_out) = may_log(&LOG, Instant::now()) {
        if left_out > 0 {
            tracing::warn!(client = %client, reason, left_out, "authentication failed: {message} ({left_out} more failures not logged)");
        } else {
            tracing::warn!(client = %client, reason, "authentication failed: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_could_be_a_guess_is_charged() {
        for guess in [
            "bad_password",
            "SignatureDoesNotMatch",
            "InvalidClientTokenId",
            "malformed",
        ] {
            assert!(charged(guess), "{guess}");
        }
        for not in [
            "expired_token",
            "ExpiredToken",
            "wrong_region",
            "MissingAuthenticationToken",
        ] {
            assert!(!charged(not), "{not}");
        }
    }

    #[test]
    fn the_log_is_rate_limited_and_says_what_it_left_out() {
        let log = Mutex::new(None);
        let t0 = Instant::now();
        let logged = (0..100).filter(|_| may_log(&log, t0).is_some()).count();
        assert!(logged <= LOG_BURST as usize, "{logged}");
        // A second later, two more lines, the first saying how many were left out.
        let later = t0 + std::time::Duration::from_secs(1);
        let said = may_log(&log, later).expect("refilled");
        assert_eq!(said, 100 - LOG_BURST as u64);
        assert_eq!(may_log(&log, later), Some(0));
    }
}
