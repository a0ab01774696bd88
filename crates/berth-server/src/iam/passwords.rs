//! Console passwords the IAM way: a user's login profile (`CreateLoginProfile`,
//! `GetLoginProfile`, `UpdateLoginProfile`, `DeleteLoginProfile`), a user changing its own
//! (`ChangePassword`), and the account's password policy (`UpdateAccountPasswordPolicy`,
//! `GetAccountPasswordPolicy`, `DeleteAccountPasswordPolicy`).
//!
//! Passwords are stored as argon2id hashes (a PHC string with its own random salt; the
//! OWASP parameters: 19 MiB, 2 passes, 1 lane), never in clear, and never returned. A
//! password must satisfy the account's policy, or without one IAM's default: at least 8
//! characters with at least three of uppercase letters, lowercase letters, digits and
//! symbols. The policy's expiry and reuse settings are stored and reported; they apply
//! where passwords are used (the console's sign-in).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use berth_store::{EntityKind, LoginProfile};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{existing, Target};
use crate::ids;
use crate::query::{ApiError, Call};

/// The characters IAM counts as symbols.
const SYMBOLS: &str = "!@#$%^&*()_+-=[]{}|'";

/// An account's password policy, as IAM's `PasswordPolicy` names its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PasswordPolicy {
    pub minimum_password_length: i64,
    pub require_symbols: bool,
    pub require_numbers: bool,
    pub require_uppercase_characters: bool,
    pub require_lowercase_characters: bool,
    pub allow_users_to_change_password: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_password_age: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_reuse_prevention: Option<i64>,
    #[serde(default)]
    pub hard_expiry: bool,
}

impl PasswordPolicy {
    /// The sentences saying what `password` lacks (empty: it complies).
    fn problems(&self, password: &str) -> Vec<String> {
        let mut out = Vec::new();
        if (password.chars().count() as i64) < self.minimum_password_length {
            out.push(format!(
                "it must be at least {} characters long",
                self.minimum_password_length
            ));
        }
        let checks = [
            (self.require_symbols, has_symbol(password), "a symbol"),
            (
                self.require_numbers,
                password.chars().any(|c| c.is_ascii_digit()),
                "a number",
            ),
            (
                self.require_uppercase_characters,
                password.chars().any(|c| c.is_ascii_uppercase()),
                "an uppercase letter",
            ),
            (
                self.require_lowercase_characters,
                password.chars().any(|c| c.is_ascii_lowercase()),
                "a lowercase letter",
            ),
        ];
        for (required, present, what) in checks {
            if required && !present {
                out.push(format!("it must contain {what}"));
            }
        }
        out
    }
}

fn has_symbol(p: &str) -> bool {
    p.chars().any(|c| SYMBOLS.contains(c))
}

/// What IAM asks of a password when the account has no policy: at least 8 characters
/// and at least three of the four kinds.
fn default_problems(password: &str) -> Vec<String> {
    let mut out = Vec::new();
    if password.chars().count() < 8 {
        out.push("it must be at least 8 characters long".to_string());
    }
    let kinds = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        has_symbol(password),
    ];
    if kinds.iter().filter(|k| **k).count() < 3 {
        out.push(
            "it must contain at least three of: uppercase letters, lowercase letters, numbers, symbols"
                .to_string(),
        );
    }
    out
}

/// The account's policy, if it set one.
pub async fn policy_of(call: &Call<'_>, account: &str) -> Result<Option<PasswordPolicy>, ApiError> {
    match call.app.store.password_policy(account).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            ApiError::internal(format!("the stored password policy is unreadable: {e}"))
        }),
    }
}

/// Refuse a password the account's policy (or IAM's default) does not allow.
async fn check(call: &Call<'_>, password: &str) -> Result<(), ApiError> {
    let problems = match policy_of(call, &call.caller.account).await? {
        Some(p) => p.problems(password),
        None => default_problems(password),
    };
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        400,
        "PasswordPolicyViolation",
        format!(
            "Password does not conform to the account password policy: {}.",
            problems.join("; ")
        ),
    ))
}

/// The argon2id hash of `password` (a PHC string with a fresh random salt).
pub fn hash(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("hashing the password: {e}")))
}

/// Whether `password` is the one `stored` (an argon2id PHC string) was made from.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A password parameter: 1 to 128 characters, as IAM takes them.
fn password_param<'p>(call: &'p Call<'_>, name: &str) -> Result<&'p str, ApiError> {
    let p = call.params.required(name)?;
    call.params.text(name, 1..=128)?;
    Ok(p)
}

fn profile_json(p: &LoginProfile) -> Value {
    json!({ "LoginProfile": {
        "UserName": p.user,
        "CreateDate": ids::iso8601(p.created),
        "PasswordResetRequired": p.reset_required,
    }})
}

pub async fn create_login_profile(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let user = existing(
        t,
        EntityKind::User,
        call.params.get("UserName").unwrap_or(""),
    )?;
    let password = password_param(call, "Password")?;
    check(call, password).await?;
    let profile = LoginProfile {
        account: user.account.clone(),
        user: user.name.clone(),
        password_hash: hash(password)?,
        created: call.origin.now,
        changed: call.origin.now,
        reset_required: call.params.bool("PasswordResetRequired")?.unwrap_or(false),
    };
    call.app.store.put_login_profile(&profile, true).await?;
    Ok(profile_json(&profile))
}

/// The login profile of the user a call names.
async fn stored(call: &Call<'_>, t: &Target) -> Result<LoginProfile, ApiError> {
    let user = existing(
        t,
        EntityKind::User,
        call.params.get("UserName").unwrap_or(""),
    )?;
    profile_of(call, user).await
}

/// `user`'s login profile; IAM's NoSuchEntity when it has none.
async fn profile_of(call: &Call<'_>, user: &berth_store::Entity) -> Result<LoginProfile, ApiError> {
    call.app
        .store
        .login_profile(&user.account, &user.name)
        .await?
        .ok_or_else(|| {
            ApiError::no_such_entity(format!(
                "Login Profile for User {} cannot be found.",
                user.name
            ))
        })
}

pub async fn get_login_profile(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    Ok(profile_json(&stored(call, t).await?))
}

pub async fn update_login_profile(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let mut profile = stored(call, t).await?;
    if call.params.get("Password").is_some() {
        let password = password_param(call, "Password")?;
        check(call, password).await?;
        profile.password_hash = hash(password)?;
        profile.changed = call.origin.now;
    }
    if let Some(reset) = call.params.bool("PasswordResetRequired")? {
        profile.reset_required = reset;
    }
    call.app.store.put_login_profile(&profile, false).await?;
    Ok(json!({}))
}

pub async fn delete_login_profile(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let user = existing(
        t,
        EntityKind::User,
        call.params.get("UserName").unwrap_or(""),
    )?;
    call.app
        .store
        .delete_login_profile(&user.account, &user.name)
        .await?;
    Ok(json!({}))
}

/// An IAM user changes its own password: the old one must be its current password; the
/// new one must satisfy the policy. Clears a pending reset.
pub async fn change_password(call: &Call<'_>, t: &Target) -> Result<Value, ApiError> {
    let Some(user) = t.entity.as_ref().filter(|e| e.kind == EntityKind::User) else {
        return Err(ApiError::new(
            400,
            "InvalidUserType",
            "Only IAM users can change their own password with ChangePassword",
        ));
    };
    let old = password_param(call, "OldPassword")?;
    let new = password_param(call, "NewPassword")?;
    let mut profile = profile_of(call, user).await?;
    if !verify(old, &profile.password_hash) {
        return Err(ApiError::access_denied(
            "The old password is not the user's current password",
        ));
    }
    check(call, new).await?;
    profile.password_hash = hash(new)?;
    profile.changed = call.origin.now;
    profile.reset_required = false;
    call.app.store.put_login_profile(&profile, false).await?;
    Ok(json!({}))
}

/// Whether the account lets its users change their own passwords without an identity
/// policy allowing `iam:ChangePassword` (`AllowUsersToChangePassword`).
pub async fn users_may_change_their_own(call: &Call<'_>) -> Result<bool, ApiError> {
    Ok(policy_of(call, &call.caller.account)
        .await?
        .is_some_and(|p| p.allow_users_to_change_password))
}

pub async fn update_password_policy(call: &Call<'_>) -> Result<Value, ApiError> {
    let p = call.params;
    let policy = PasswordPolicy {
        minimum_password_length: p.int("MinimumPasswordLength", 6..=128)?.unwrap_or(8),
        require_symbols: p.bool("RequireSymbols")?.unwrap_or(false),
        require_numbers: p.bool("RequireNumbers")?.unwrap_or(false),
        require_uppercase_characters: p.bool("RequireUppercaseCharacters")?.unwrap_or(false),
        require_lowercase_characters: p.bool("RequireLowercaseCharacters")?.unwrap_or(false),
        allow_users_to_change_password: p.bool("AllowUsersToChangePassword")?.unwrap_or(false),
        max_password_age: p.int("MaxPasswordAge", 1..=1095)?,
        password_reuse_prevention: p.int("PasswordReusePrevention", 1..=24)?,
        hard_expiry: p.bool("HardExpiry")?.unwrap_or(false),
    };
    let text = serde_json::to_string(&policy).map_err(|e| ApiError::internal(e.to_string()))?;
    call.app
        .store
        .set_password_policy(&call.caller.account, Some(&text))
        .await?;
    Ok(json!({}))
}

pub async fn get_password_policy(call: &Call<'_>) -> Result<Value, ApiError> {
    let Some(policy) = policy_of(call, &call.caller.account).await? else {
        return Err(ApiError::no_such_entity(format!(
            "The Password Policy with domain name {} cannot be found.",
            call.caller.account
        )));
    };
    let mut v = serde_json::to_value(&policy).map_err(|e| ApiError::internal(e.to_string()))?;
    v["ExpirePasswords"] = json!(policy.max_password_age.is_some());
    Ok(json!({ "PasswordPolicy": v }))
}

pub async fn delete_password_policy(call: &Call<'_>) -> Result<Value, ApiError> {
    call.app
        .store
        .set_password_policy(&call.caller.account, None)
        .await?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password_and_never_hold_it() {
        let h = hash("Correct-Horse-9").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("Correct-Horse-9"));
        assert!(verify("Correct-Horse-9", &h));
        assert!(!verify("correct-horse-9", &h));
        assert!(!verify("Correct-Horse-9", "not a hash"));
        // A fresh salt each time.
        assert_ne!(h, hash("Correct-Horse-9").unwrap());
    }

    #[test]
    fn policies_say_what_a_password_lacks() {
        assert!(default_problems("Abcdefg1").is_empty());
        assert_eq!(default_problems("abcdefgh").len(), 1);
        assert_eq!(default_problems("Ab1!").len(), 1);
        let p = PasswordPolicy {
            minimum_password_length: 12,
            require_symbols: true,
            require_numbers: true,
            require_uppercase_characters: false,
            require_lowercase_characters: true,
            allow_users_to_change_password: true,
            max_password_age: None,
            password_reuse_prevention: None,
            hard_expiry: false,
        };
        assert!(p.problems("long-enough-password-1").is_empty());
        assert_eq!(
            p.problems("Short1"),
            vec![
                "it must be at least 12 characters long".to_string(),
                "it must contain a symbol".to_string()
            ]
        );
        assert_eq!(
            p.problems("NO-LOWERCASE-HERE-1"),
            vec!["it must contain a lowercase letter".to_string()]
        );
    }
}
