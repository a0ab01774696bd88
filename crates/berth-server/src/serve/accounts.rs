//! Creating accounts (with their root credentials), and the default account of a new
//! data directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_store::{AccessKey, Account, KeyStatus, Store};

use crate::ids;

/// A new account and its root access key.
pub struct NewAccount {
    pub account: Account,
    pub root_key: AccessKey,
}

impl NewAccount {
    /// `{"account_id", "access_key_id", "secret_access_key"}`.
    pub fn credentials_json(&self) -> String {
        serde_json::to_string_pretty(&serde_json::json!({
            "account_id": self.account.id,
            "access_key_id": self.root_key.id,
            "secret_access_key": self.root_key.secret,
        }))
        .unwrap_or_default()
    }
}

/// Check an account id (12 digits) and alias (3..63 of a-z, 0-9, `-`, not at the ends).
pub fn check(id: Option<&str>, alias: Option<&str>) -> Result<(), String> {
    if let Some(id) = id {
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("account id {id:?} must be exactly 12 digits"));
        }
    }
    if let Some(a) = alias {
        let ok = (3..=63).contains(&a.len())
            && a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !a.starts_with('-')
            && !a.ends_with('-');
        if !ok {
            return Err(format!(
                "account alias {a:?} must be 3 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

pub async fn create(
    store: &dyn Store,
    id: Option<&str>,
    alias: Option<&str>,
) -> Result<NewAccount, String> {
    check(id, alias)?;
    let now = ids::now();
    let account = Account {
        id: id.map(str::to_string).unwrap_or_else(ids::account_id),
        alias: alias.map(str::to_string),
        created: now,
    };
    let root_key = AccessKey {
        id: ids::access_key_id(),
        secret: ids::secret_access_key(),
        account: account.id.clone(),
        user: None,
        status: KeyStatus::Active,
        created: now,
    };
    store
        .create_account(&account, &root_key)
        .await
        .map_err(|e| e.to_string())?;
    Ok(NewAccount { account, root_key })
}

/// Write a file readable by its owner only (0600), atomically.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The default account a new data directory was given, and where its root credentials are.
pub struct DefaultAccount {
    pub id: String,
    pub credentials: PathBuf,
}

/// On a data directory without accounts: create the default account and write its root
/// credentials to `DATA_DIR/root-credentials.json`. Returns both when it did.
pub async fn ensure_default(
    store: &dyn Store,
    data_dir: &Path,
) -> Result<Option<DefaultAccount>, String> {
    if !store
        .accounts()
        .await
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Ok(None);
    }
    let new = create(store, None, None).await?;
    let path = data_dir.join("root-credentials.json");
    write_private(&path, &(new.credentials_json() + "\n"))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(Some(DefaultAccount {
        id: new.account.id,
        credentials: path,
    }))
}
