//! The secrets key file: 32 random bytes, written as 64 hexadecimal digits and a newline
//! (`openssl rand -hex 32` makes one), that the metadata store seals secret access keys
//! and server secrets with. It is never written to the database: a copy of the database
//! without it holds no usable credential. `--secrets-key-file` / `secrets_key_file`
//! name it; by default it is `DATA_DIR/secrets.key`, made (0600, atomically, never over
//! an existing file) the first time a data directory is opened while its database holds
//! no sealed secrets. A database that holds sealed secrets is never given a new key.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_store::SecretsKey;

/// The key file's name in the data directory when none is configured.
pub const DEFAULT_FILE: &str = "secrets.key";

/// The key file to use: the configured one, else `DATA_DIR/secrets.key`.
pub fn key_path(data_dir: &Path, configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join(DEFAULT_FILE))
}

/// Read the key at `path`; if there is no file and `db_is_sealed` is false (a new
/// database, or one from before secrets were sealed), make one. `db` names the database
/// in errors.
pub fn load_or_create(path: &Path, db_is_sealed: bool, db: &Path) -> Result<SecretsKey, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            warn_if_open(path);
            parse(&bytes).map_err(|why| {
                format!(
                    "the secrets key file {} {why}: it must hold 64 hexadecimal digits \
                     (32 bytes, as `openssl rand -hex 32` writes them)",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if db_is_sealed {
                return Err(format!(
                    "the secrets key file {} does not exist, but {} holds secrets sealed with a \
                     secrets key: start with the key file this database was used with \
                     (--secrets-key-file, or secrets_key_file in the config). A new key could \
                     not open them, so none is made.",
                    path.display(),
                    db.display()
                ));
            }
            create(path)
        }
        Err(e) => Err(format!(
            "reading the secrets key file {}: {e}",
            path.display()
        )),
    }
}

/// The key in a file's bytes, or what is wrong with them.
fn parse(bytes: &[u8]) -> Result<SecretsKey, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "is not text".to_string())?
        .trim();
    if text.len() != 64 {
        return Err(format!("holds {} characters, not 64", text.len()));
    }
    let mut key = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).map_err(|_| "is not hexadecimal".to_string())?;
        key[i] = u8::from_str_radix(hex, 16).map_err(|_| "is not hexadecimal".to_string())?;
    }
    Ok(SecretsKey::from_bytes(key))
}

fn hex(key: &SecretsKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Make a new key file at `path`: written whole to a private temporary file, then linked
/// into place, which fails if a file appeared there meanwhile (another process made one
/// first: that one is used).
fn create(path: &Path) -> Result<SecretsKey, String> {
    let key = SecretsKey::generate().map_err(|e| e.to_string())?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all((hex(&key) + "\n").as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "creating the secrets key file {}: {e}",
            path.display()
        ));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            say(&format!(
                "created the secrets key file {}: secret access keys and server secrets are \
                 sealed with it in the database; back it up, apart from the database (without \
                 it they cannot be read)",
                path.display()
            ));
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path, true, path),
        Err(e) => Err(format!(
            "creating the secrets key file {}: {e}",
            path.display()
        )),
    }
}

/// Warn when other users may read the key file.
fn warn_if_open(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                super::private::warn(&[format!(
                    "the secrets key file {} is open to other users (mode {mode:04o}); \
                     run: chmod 600 {}",
                    path.display(),
                    path.display()
                )]);
            }
        }
    }
}

fn say(line: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::info!("{line}");
    } else {
        eprintln!("berth: {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_FILE);
        let db = dir.path().join("berth.db");
        let made = load_or_create(&path, false, &db).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65, "{text:?}");
        // read back, never replaced (even if the database says it is not sealed)
        let again = load_or_create(&path, false, &db).unwrap();
        assert_eq!(again.as_bytes(), made.as_bytes());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // no temporary file left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_key_for_a_sealed_database_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_FILE);
        let e = load_or_create(&path, true, &dir.path().join("berth.db")).unwrap_err();
        assert!(
            e.contains("does not exist") && e.contains("--secrets-key-file"),
            "{e}"
        );
        assert!(!path.exists());
    }

    #[test]
    fn bad_key_files_are_named_and_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let db = dir.path().join("berth.db");
        for (content, says) in [
            (&b"abc\n"[..], "holds 3 characters, not 64"),
            (&[b'z'; 64][..], "is not hexadecimal"),
            (&[0xff; 64][..], "is not text"),
        ] {
            std::fs::write(&path, content).unwrap();
            let e = load_or_create(&path, false, &db).unwrap_err();
            assert!(
                e.contains(says) && e.contains(&path.display().to_string()),
                "{e}"
            );
        }
        std::fs::write(&path, format!("{}\n", "0A".repeat(32))).unwrap();
        assert_eq!(
            load_or_create(&path, true, &db).unwrap().as_bytes(),
            &[10; 32]
        );
    }
}
