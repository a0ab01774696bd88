//! Encoded authorization failure messages: a denial's full explanation (decision, the
//! deciding statements, the request context) sealed with XChaCha20-Poly1305 under a server
//! key kept in the metadata store, appended to AccessDenied/DENIED messages, and opened by
//! `sts:DecodeAuthorizationMessage` for principals of the requesting account allowed to
//! read it.
//!
//! The decoded message is for the requesting account's administrators, so it holds only
//! what that account may know: for a resource of another account, neither the resource's
//! tags (`aws:ResourceTag/*`, `ecr:ResourceTag/*`, `iam:ResourceTag/*`) nor the
//! statements of its resource-based policies. What remains is the same whether that
//! resource exists or not, and whatever its tags: no existence oracle.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{json, Value};

/// How long an encoded message can be decoded.
pub const LIFETIME_SECS: i64 = 24 * 3600;
/// The longest blob appended to a message (AWS's limit for encoded messages).
const MAX_BLOB: usize = 10_240;

/// Seal a message: base64url(nonce ‖ ciphertext).
pub fn seal(key: &[u8; 32], plaintext: &[u8]) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).expect("the operating system's random number generator failed");
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), plaintext)
        .expect("XChaCha20-Poly1305 encrypts any length");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(out)
}

/// Open a sealed message (`None`: not one of ours, or tampered with).
pub fn open(key: &[u8; 32], blob: &str) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(blob.trim()).ok()?;
    if raw.len() < 24 + 16 {
        return None;
    }
    let (nonce, sealed) = raw.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().ok()?;
    XChaCha20Poly1305::new(key.into())
        .decrypt(&XNonce::from(nonce), sealed)
        .ok()
}

/// Context keys that describe the resource, not the request: another account's
/// resource keeps them to itself.
fn about_the_resource(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["aws:resourcetag/", "ecr:resourcetag/", "iam:resourcetag/"]
        .iter()
        .any(|p| k.starts_with(p))
}

/// The decoded form (as `aws sts decode-authorization-message` shows it), with the time it
/// stops being decodable and the account that may decode it (the requester's).
pub fn decoded(
    eval: &berth_iam::Evaluation,
    req: &berth_iam::Request,
    user_id: &str,
    now: i64,
) -> Value {
    // Another account's resource (or no account at all: a service or anonymous caller).
    let foreign =
        req.principal.account.is_empty() || *req.principal.account != *req.resource_account;
    let statements: Vec<Value> = eval
        .statements
        .iter()
        .filter(|m| !(foreign && m.policy_type == berth_iam::PolicyType::Resource))
        .take(20)
        .map(|m| {
            json!({
                "statementId": m.sid.as_deref().unwrap_or(""),
                "policy": &*m.policy,
                "policyType": m.policy_type.as_str(),
                "position": m.index,
                "effect": m.effect.as_str(),
            })
        })
        .collect();
    let conditions: Vec<Value> = req
        .context
        .entries()
        .iter()
        .filter(|e| !(foreign && about_the_resource(&e.key)))
        .take(50)
        .map(|e| {
            json!({"item": {
                "key": e.key,
                "values": {"items": e.values.iter().map(|v| json!({"value": v.text})).collect::<Vec<_>>()},
            }})
        })
        .collect();
    json!({
        "allowed": false,
        "explicitDeny": eval.decision == berth_iam::Decision::ExplicitDeny,
        "matchedStatements": {"items": statements},
        "failures": {"items": []},
        "reason": eval.reason,
        "context": {
            "principal": {"id": user_id, "arn": &*req.principal.arn},
            "action": &*req.action.text,
            "resource": req.resource,
            "conditions": {"items": conditions},
        },
        "expires": now + LIFETIME_SECS,
        "account": &*req.principal.account,
    })
}

/// The sealed blob of a denial, or `None` if it would be too long to send.
pub fn encode(key: &[u8; 32], decoded: &Value) -> Option<String> {
    let blob = seal(key, decoded.to_string().as_bytes());
    (blob.len() <= MAX_BLOB).then_some(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A denial by a repository policy that denies everyone, for `principal`, on a
    /// tagged repository of account 111111111111.
    fn denial(principal: &str) -> Value {
        use berth_iam::{
            Action, CompiledPolicy, Context, PolicyKind, PolicySet, Principal, Request,
        };
        let policy = std::sync::Arc::new(
            CompiledPolicy::parse(
                "repository policy",
                PolicyKind::Repository,
                r#"{"Statement":[{"Sid":"Hidden","Effect":"Deny","Principal":"*","Action":"ecr:*"}]}"#,
            )
            .unwrap(),
        );
        let mut principal = Principal::from_arn(principal).unwrap();
        let mut ctx = Context::new();
        ctx.insert("aws:SourceIp", "10.0.0.1");
        ctx.insert("aws:ResourceTag/secret", "value");
        ctx.insert("ecr:ResourceTag/secret", "value");
        principal.settle_context(&mut ctx);
        let action = Action::new("ecr:BatchGetImage");
        let req = Request {
            principal: &principal,
            action: &action,
            resource: "arn:aws:ecr:us-east-1:111111111111:repository/app",
            resource_account: "111111111111",
            context: &ctx,
        };
        let set = PolicySet {
            resource: std::slice::from_ref(&policy),
            ..PolicySet::default()
        };
        let eval = berth_iam::evaluate(&req, &set);
        decoded(&eval, &req, "AIDAEXAMPLE", 1_000)
    }

    #[test]
    fn another_accounts_resource_keeps_its_tags_and_statements() {
        let foreign = denial("arn:aws:iam::222222222222:user/bob");
        let text = foreign.to_string();
        assert!(!text.to_ascii_lowercase().contains("resourcetag"), "{text}");
        assert!(!text.contains("Hidden"), "{text}");
        assert_eq!(foreign["explicitDeny"], true);
        assert_eq!(foreign["account"], "222222222222");
        assert!(text.contains("aws:sourceip"), "{text}");
        // In the resource's own account, its administrators see all of it.
        let own = denial("arn:aws:iam::111111111111:user/alice").to_string();
        assert!(own.contains("aws:resourcetag/secret"), "{own}");
        assert!(own.contains("ecr:resourcetag/secret"), "{own}");
        assert!(own.contains("\"statementId\":\"Hidden\""), "{own}");
    }

    #[test]
    fn seal_and_open() {
        let key = [7u8; 32];
        let blob = seal(&key, b"hello");
        assert_eq!(open(&key, &blob).as_deref(), Some(&b"hello"[..]));
        assert_eq!(open(&[8u8; 32], &blob), None, "another key");
        let mut tampered = blob.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(open(&key, &String::from_utf8(tampered).unwrap()), None);
        assert_eq!(open(&key, "not base64!"), None);
        assert_ne!(seal(&key, b"hello"), blob, "a fresh nonce each time");
    }
}
