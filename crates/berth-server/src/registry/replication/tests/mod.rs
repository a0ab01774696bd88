//! Tests of the replication model through its public surface: every validation branch
//! with the exception and message a client sees, JSON round trips, rule matching and
//! template selection.

mod config;
mod templates;

use super::ConfigError;

/// The exception and message of a refusal.
fn refusal<T: std::fmt::Debug>(r: Result<T, ConfigError>) -> (&'static str, String) {
    let e = r.expect_err("refused");
    (e.exception(), e.message().to_string())
}

/// A model violation at `at`: a `ValidationException` naming the path and the constraint.
#[track_caller]
fn assert_violation<T: std::fmt::Debug>(r: Result<T, ConfigError>, at: &str, constraint: &str) {
    let (exception, message) = refusal(r);
    assert_eq!(exception, "ValidationException", "{message}");
    assert!(
        message.starts_with("1 validation error detected: Value"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            " at '{at}' failed to satisfy constraint: {constraint}"
        )),
        "{message}"
    );
}

#[track_caller]
fn assert_wrong_type<T: std::fmt::Debug>(r: Result<T, ConfigError>, at: &str) {
    let (exception, message) = refusal(r);
    assert_eq!(exception, "SerializationException", "{message}");
    assert!(message.contains(&format!("at '{at}'")), "{message}");
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(r: Result<T, ConfigError>, needle: &str) {
    let (exception, message) = refusal(r);
    assert_eq!(exception, "InvalidParameterException", "{message}");
    assert!(message.contains(needle), "{message}");
}

#[test]
fn each_error_is_its_ecr_exception() {
    let cases = [
        (ConfigError::Validation("v".into()), "ValidationException"),
        (
            ConfigError::InvalidParameter("i".into()),
            "InvalidParameterException",
        ),
        (
            ConfigError::Serialization("s".into()),
            "SerializationException",
        ),
    ];
    for (e, name) in cases {
        assert_eq!(e.exception(), name);
        assert_eq!(e.to_string(), format!("{name}: {}", e.message()));
    }
}
