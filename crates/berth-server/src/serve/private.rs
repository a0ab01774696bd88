//! The data directory is private to the server's user: it holds the metadata (the SQLite
//! database and its `-wal`/`-shm`, secrets sealed in it), by default the key they are
//! sealed with (`secrets.key`), the default account's root credentials, the registry's
//! blobs and upload staging. It is created 0700 and the database 0600 whatever the umask; one found wider
//! (made by an older version, or by hand) is tightened where this user may, with a
//! warning either way.

use std::path::{Path, PathBuf};

/// Make `data_dir` (created if missing) and what the server keeps directly in it
/// private. Returns the warnings to show (what was too open, what was done).
pub fn prepare_data_dir(data_dir: &Path) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    if !data_dir.exists() {
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        match b.create(data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "creating data directory {}: {e}",
                    data_dir.display()
                ))
            }
        }
    }
    if !data_dir.is_dir() {
        return Err(format!(
            "the data directory {} is not a directory",
            data_dir.display()
        ));
    }
    tighten(data_dir, &mut warnings);
    // What lies directly in it (the database, credentials, the blob and upload folders),
    // and the upload staging files: once the directory is 0700 no one else reaches them,
    // but a copy or a later chmod should not expose them either.
    for dir in [data_dir.to_path_buf(), data_dir.join("uploads")] {
        for p in children(&dir) {
            tighten(&p, &mut warnings);
        }
    }
    tighten(&data_dir.join("blobs").join("sha256"), &mut warnings);
    Ok(warnings)
}

/// Create the database file 0600 before SQLite opens it (SQLite gives its `-wal` and
/// `-shm` the database's mode).
pub fn create_private_file(path: &Path) -> Result<(), String> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating {}: {e}", path.display())),
    }
}

/// The database's companion files, tightened once SQLite has made them.
pub fn tighten_database_files(db: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        tighten(Path::new(&p), &mut warnings);
    }
    warnings
}

fn children(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Remove group and other permission bits from a file or directory (not following
/// symlinks), saying so.
#[cfg(unix)]
fn tighten(path: &Path, warnings: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    let private = mode & 0o700;
    let what = if meta.is_dir() { "directory" } else { "file" };
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)) {
        Ok(()) => warnings.push(format!(
            "the data {what} {} was open to other users (mode {mode:04o}); changed it to {private:04o}",
            path.display()
        )),
        Err(e) => warnings.push(format!(
            "the data {what} {} is open to other users (mode {mode:04o}) and could not be changed ({e}); run: chmod go-rwx {}",
            path.display(),
            path.display()
        )),
    }
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _warnings: &mut Vec<String>) {}

/// Show warnings: in the log when one is set up (`berth serve`), else on stderr (the
/// other commands).
pub fn warn(warnings: &[String]) {
    for w in warnings {
        if tracing::dispatcher::has_been_set() {
            tracing::warn!("{w}");
        } else {
            eprintln!("warning: {w}");
        }
    }
}
