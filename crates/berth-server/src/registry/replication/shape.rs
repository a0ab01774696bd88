//! Reading an input member against the ECR model: its JSON type, whether it is required,
//! its length, pattern, enum or list size. A broken model constraint is reported as AWS
//! reports one (`ValidationException`, `1 validation error detected: Value 'x' at
//! 'a.1.member.b' failed to satisfy constraint: Member must …`, list items counted from 1);
//! a member of the wrong JSON type as a `SerializationException`. `null` is read as absent,
//! and members the model does not declare are ignored, as the JSON protocol does.

use serde_json::{Map, Value};

use super::ConfigError;

/// The path of member `name` under `at` (`at` empty: a top-level member).
pub(super) fn child(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// The path of list item `i` (from 0) under `at`, as AWS writes it (`at.1.member`).
pub(super) fn item(at: &str, i: usize) -> String {
    format!("{at}.{}.member", i + 1)
}

/// A broken model constraint on the value shown (`'text'`, `null`, or nothing at all
/// when the value is too long to repeat).
pub(super) fn violation(shown: Option<&str>, at: &str, constraint: &str) -> ConfigError {
    let value = shown.map(|s| format!(" {s}")).unwrap_or_default();
    ConfigError::Validation(format!(
        "1 validation error detected: Value{value} at '{at}' failed to satisfy constraint: {constraint}"
    ))
}

/// A string value as AWS quotes it in a validation message.
pub(super) fn quoted(s: &str) -> String {
    format!("'{s}'")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(at: &str, expected: &str, v: &Value) -> ConfigError {
    ConfigError::Serialization(format!("Expected {expected} at '{at}', found {}", kind(v)))
}

/// Member `name` of `obj`, `None` when absent or `null`.
pub(super) fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// Member `name` of `obj`, which the model requires.
pub(super) fn required<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<&'a Value, ConfigError> {
    member(obj, name)
        .ok_or_else(|| violation(Some("null"), &child(at, name), "Member must not be null"))
}

pub(super) fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| wrong_type(at, "an object", v))
}

pub(super) fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, ConfigError> {
    v.as_str().ok_or_else(|| wrong_type(at, "a string", v))
}

pub(super) fn boolean(v: &Value, at: &str) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| wrong_type(at, "a boolean", v))
}

/// A list with `min..=max` items.
pub(super) fn list<'a>(
    v: &'a Value,
    at: &str,
    min: usize,
    max: Option<usize>,
) -> Result<&'a [Value], ConfigError> {
    let items = v.as_array().ok_or_else(|| wrong_type(at, "a list", v))?;
    if items.len() < min {
        let shown = if items.is_empty() { "'[]'" } else { "" };
        return Err(violation(
            (!shown.is_empty()).then_some(shown),
            at,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if let Some(max) = max.filter(|m| items.len() > *m) {
        return Err(violation(
            None,
            at,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(items)
}

/// A string of `min..=max` characters (`max` `None`: no upper bound).
pub(super) fn length(s: &str, at: &str, min: usize, max: Option<usize>) -> Result<(), ConfigError> {
    let n = s.chars().count();
    if n < min {
        return Err(violation(
            Some(&quoted(s)),
            at,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    match max {
        Some(max) if n > max => Err(violation(
            None,
            at,
            &format!("Member must have length less than or equal to {max}"),
        )),
        _ => Ok(()),
    }
}

/// A string the model's `pattern` accepts (`ok` is the hand-written check of it).
pub(super) fn pattern(s: &str, at: &str, ok: bool, pattern: &str) -> Result<(), ConfigError> {
    if ok {
        return Ok(());
    }
    Err(violation(
        Some(&quoted(s)),
        at,
        &format!("Member must satisfy regular expression pattern: {pattern}"),
    ))
}

/// One of an enum's values, read with `parse`.
pub(super) fn one_of<T>(
    s: &str,
    at: &str,
    names: &[&str],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    parse(s).ok_or_else(|| {
        violation(
            Some(&quoted(s)),
            at,
            &format!("Member must satisfy enum value set: [{}]", names.join(", ")),
        )
    })
}

/// Whether every character of `s` is an ASCII lowercase letter, a digit or one of `extra`.
pub(super) fn lower_alnum_or(s: &str, extra: &[u8]) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
}
