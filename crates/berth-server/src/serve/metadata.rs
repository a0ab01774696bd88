//! The metadata store a configuration names: the embedded SQLite database (the default,
//! `DATA_DIR/berth.db`, or `sqlite://PATH`), or a PostgreSQL database that several nodes
//! share (`postgres://…`). Either way the secrets in it are sealed with the key file
//! ([`super::secrets`]): every node of one registry starts with the same key file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_store::{KeyError, PgStore, RegistryStore, Store};

use super::config::{Config, MetadataUrl};
use super::{private, secrets};

/// An open metadata store, as the traits every caller goes through.
pub struct Metadata {
    pub store: Arc<dyn Store>,
    pub registry: Arc<dyn RegistryStore>,
    /// Set for PostgreSQL: the nodes' change notifications come through it.
    pub postgres: Option<Arc<PgStore>>,
    /// What to call it in messages (a PostgreSQL URL without its password).
    pub name: String,
}

/// Open (creating or migrating as needed) the metadata store `config` names.
pub async fn open(config: &Config) -> Result<Metadata, String> {
    let key_file = config.secrets_key_file.as_deref();
    match &config.metadata {
        None => {
            sqlite(
                &config.data_dir,
                &config.data_dir.join("berth.db"),
                key_file,
            )
            .await
        }
        Some(MetadataUrl::Sqlite(db)) => sqlite(&config.data_dir, db, key_file).await,
        Some(url @ MetadataUrl::Postgres(raw)) => {
            postgres(&config.data_dir, raw, &url.redacted(), key_file).await
        }
    }
}

async fn sqlite(data_dir: &Path, db: &Path, key_file: Option<&Path>) -> Result<Metadata, String> {
    let store = super::open_sqlite(data_dir, db, key_file).await?;
    Ok(Metadata {
        store: store.clone(),
        registry: store,
        postgres: None,
        name: format!("sqlite://{}", db.display()),
    })
}

async fn postgres(
    data_dir: &Path,
    url: &str,
    name: &str,
    key_file: Option<&Path>,
) -> Result<Metadata, String> {
    // The data directory still holds this node's key file (by default), the first
    // node's root credentials and the audit log.
    private::warn(&private::prepare_data_dir(data_dir)?);
    let path = secrets::key_path(data_dir, key_file);
    let sealed = PgStore::is_sealed(url)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let key = secrets::load_or_create(&path, sealed, Path::new(name))?;
    let store = PgStore::connect(url, &key).await.map_err(|e| match e {
        KeyError::WrongKey => format!(
            "the secrets key in {} is not the key the secrets in {name} were sealed with: \
             every node of a registry starts with the same key file (--secrets-key-file, or \
             secrets_key_file in the config)",
            path.display()
        ),
        KeyError::Store(e) => format!("{name}: {e}"),
    })?;
    let store = Arc::new(store);
    Ok(Metadata {
        store: store.clone(),
        registry: store.clone(),
        postgres: Some(store),
        name: name.to_string(),
    })
}

/// How long a node waits for another that is creating the default account.
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(30);

/// Run `f` (which makes the first account of a new registry) on one node at a time:
/// nodes starting together on a new database take the `bootstrap` job's lease in turn,
/// so only the first creates the default account and the others find it.
pub async fn one_node_at_a_time<T, F, Fut>(
    store: &dyn Store,
    holder: &str,
    f: F,
) -> Result<T, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_WAIT;
    loop {
        let now = crate::ids::now_ms();
        let lease = store
            .try_lease("bootstrap", holder, now, BOOTSTRAP_WAIT.as_millis() as i64)
            .await
            .map_err(|e| e.to_string())?;
        if lease.is_some() {
            let out = f().await;
            let _ = store.release_lease("bootstrap", holder).await;
            return out;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "another node has been setting up this registry's metadata for {} s; start again once it is up",
                BOOTSTRAP_WAIT.as_secs()
            ));
        }
        // Another node is at it: it holds the lease for the few milliseconds it takes.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
