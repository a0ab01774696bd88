//! Secrets at rest: what a backend stores of a secret (a secret access key, a server
//! secret) is sealed with XChaCha20-Poly1305 under a key kept outside the database, and
//! bound to the row it belongs to (the associated data names the table and the row's id),
//! so a sealed value copied into another row does not open. Stored text:
//! base64url(24-byte nonce ‖ ciphertext ‖ 16-byte tag), no padding.
//!
//! The backend seals on write and opens on read: callers of the store traits see
//! plaintext and cannot forget to seal. Where the key comes from (a file) is the
//! caller's business; the store only ever holds it in memory.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::{Result, StoreError};

/// The 32-byte key secrets are sealed with. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretsKey([u8; 32]);

impl SecretsKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SecretsKey {
        SecretsKey(bytes)
    }

    /// A new random key.
    pub fn generate() -> Result<SecretsKey> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| {
            StoreError::Backend(format!(
                "the operating system's random number generator failed: {e}"
            ))
        })?;
        Ok(SecretsKey(k))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

/// What a sealed value belongs to: the associated data it is bound to.
#[derive(Debug, Clone, Copy)]
pub enum SecretSlot<'a> {
    /// `access_keys.secret` of this access key id.
    AccessKey(&'a str),
    /// `sessions.secret` of this temporary access key id.
    Session(&'a str),
    /// `server_secrets.value` of this name.
    ServerSecret(&'a str),
    /// `upstream_credentials.secret` of this ARN.
    UpstreamCredential(&'a str),
    /// The check value that tells the right key from a wrong one.
    Check,
}

impl SecretSlot<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let (what, id) = match self {
            SecretSlot::AccessKey(id) => ("access_keys.secret", *id),
            SecretSlot::Session(id) => ("sessions.secret", *id),
            SecretSlot::ServerSecret(name) => ("server_secrets.value", *name),
            SecretSlot::UpstreamCredential(arn) => ("upstream_credentials.secret", *arn),
            SecretSlot::Check => ("secrets_key_check", ""),
        };
        format!("berth sealed secret v1\0{what}\0{id}").into_bytes()
    }

    fn describe(&self) -> String {
        match self {
            SecretSlot::AccessKey(id) => format!("the secret of access key {id}"),
            SecretSlot::Session(id) => format!("the secret of temporary access key {id}"),
            SecretSlot::ServerSecret(name) => format!("the server secret {name}"),
            SecretSlot::UpstreamCredential(arn) => format!("the upstream credential {arn}"),
            SecretSlot::Check => "the secrets key check value".into(),
        }
    }
}

/// The known text sealed as the check value.
pub(crate) const CHECK_TEXT: &str = "berth secrets key check";

/// Seals and opens secrets with one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: &SecretsKey) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(key.as_bytes().into()),
        }
    }

    /// Seal `plaintext` for `slot`.
    pub fn seal(&self, slot: SecretSlot<'_>, plaintext: &str) -> Result<String> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| {
            StoreError::Backend(format!(
                "the operating system's random number generator failed: {e}"
            ))
        })?;
        let aad = slot.associated_data();
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Backend(format!("sealing {} failed", slot.describe())))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Open what was sealed for `slot`; an error if it was sealed with another key, for
    /// another row, altered, or never sealed.
    pub fn open(&self, slot: SecretSlot<'_>, stored: &str) -> Result<String> {
        let fail = || {
            StoreError::Backend(format!(
                "{} does not open with the secrets key: it was sealed with another key, for another row, or altered",
                slot.describe()
            ))
        };
        let raw = URL_SAFE_NO_PAD.decode(stored).map_err(|_| fail())?;
        if raw.len() < 24 + 16 {
            return Err(fail());
        }
        let (nonce, sealed) = raw.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| fail())?;
        let aad = slot.associated_data();
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain).map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let key = SecretsKey::from_bytes([7; 32]);
        let s = Sealer::new(&key);
        let sealed = s.seal(SecretSlot::AccessKey("AKIA1"), "secret").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(
            s.open(SecretSlot::AccessKey("AKIA1"), &sealed).unwrap(),
            "secret"
        );
        // another row, another kind of row, another key: refused
        assert!(s.open(SecretSlot::AccessKey("AKIA2"), &sealed).is_err());
        assert!(s.open(SecretSlot::Session("AKIA1"), &sealed).is_err());
        let other = Sealer::new(&SecretsKey::from_bytes([8; 32]));
        assert!(other.open(SecretSlot::AccessKey("AKIA1"), &sealed).is_err());
        // plaintext and garbage are not sealed values
        assert!(s.open(SecretSlot::AccessKey("AKIA1"), "secret").is_err());
        assert!(s.open(SecretSlot::AccessKey("AKIA1"), "").is_err());
        // a fresh nonce each time
        assert_ne!(
            s.seal(SecretSlot::AccessKey("AKIA1"), "secret").unwrap(),
            sealed
        );
        assert_eq!(format!("{key:?}"), "SecretsKey(..)");
    }
}
