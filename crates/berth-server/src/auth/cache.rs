//! What authorization reads, cached between requests: credentials, identities with their
//! compiled policies, repositories (settings and policy) with their tags, and registry
//! policies; resource policies are compiled once per distinct text.
//!
//! Entries live for a short time (`ttl`) and are dropped at once when this node writes
//! any of it (IAM and STS writes drop everything; the ECR operations that change
//! repositories, their policies and tags, or registry policies drop only the registry's
//! entries: each part has its generation, which moves) and, with a PostgreSQL metadata
//! store, when any node does (the store's change notifications call
//! [`Caches::invalidate`] or [`Caches::invalidate_registry`]). The TTL is the backstop for a writer that notifies nothing
//! (another process on an embedded data directory). Credentials and identities are
//! cached only when found, so a key created by `berth account create` works immediately;
//! repositories and registry policies also when absent (a pull of a repository that does
//! not exist costs no store round trip either). Secret keys arrive
//! opened from the store (it keeps them sealed): each is decrypted once per cache fill,
//! not once per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_iam::{CompiledPolicy, PolicyKind};
use berth_store::{
    AccessKey, Entity, EntityKind, RegistryKey, RegistryStore, Repository, Session, Store,
    StoreError, Tag, TagTarget,
};

use super::caller::Claims;
use crate::metrics::metrics;
use crate::query::ApiError;

/// The compiled policies of a user or role.
#[derive(Debug)]
pub struct EntityPolicies {
    pub entity: Entity,
    pub identity: Vec<Arc<CompiledPolicy>>,
    pub boundary: Option<Arc<CompiledPolicy>>,
    pub tags: Vec<Tag>,
}

/// A credential found by access key id.
#[derive(Debug)]
pub enum Credential {
    Key(AccessKey),
    Session {
        session: Session,
        claims: Arc<Claims>,
        session_policy: Option<Arc<CompiledPolicy>>,
    },
}

struct Entry<T> {
    at: Instant,
    generation: u64,
    value: T,
}

type EntityId = (String, EntityKind, String);
/// A repository by account and name.
type RepositoryId = (String, String);

/// A repository as authorization reads it: the record (`None`: there is none) and its tags.
#[derive(Debug)]
pub struct RepositoryView {
    pub repository: Option<Repository>,
    pub tags: Vec<Tag>,
}

/// Bounded: a map is emptied when it reaches this many entries.
const LIMIT: usize = 65_536;

pub struct Caches {
    /// Compiled resource policies (repository, registry, trust) by kind and exact text.
    compiled: Mutex<HashMap<(PolicyKind, String), Arc<CompiledPolicy>>>,
    generation: AtomicU64,
    /// The generation of `repositories` and `registry_policies`.
    registry_generation: AtomicU64,
    ttl: Duration,
    credentials: Mutex<HashMap<String, Entry<Arc<Credential>>>>,
    entities: Mutex<HashMap<EntityId, Entry<Arc<EntityPolicies>>>>,
    /// By account and name.
    repositories: Mutex<HashMap<RepositoryId, Entry<Arc<RepositoryView>>>>,
    /// By account.
    registry_policies: Mutex<HashMap<String, Entry<Option<Arc<str>>>>>,
    /// SigV4 signing keys.
    pub signing_keys: berth_sigv4::KeyCache,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Caches {
    pub fn new(ttl: Duration) -> Caches {
        Caches {
            compiled: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            registry_generation: AtomicU64::new(0),
            ttl,
            credentials: Mutex::new(HashMap::new()),
            entities: Mutex::new(HashMap::new()),
            repositories: Mutex::new(HashMap::new()),
            registry_policies: Mutex::new(HashMap::new()),
            signing_keys: berth_sigv4::KeyCache::new(),
        }
    }

    /// How many credentials and identities are cached (entries that may be stale included).
    pub fn cached(&self) -> (usize, usize) {
        (lock(&self.credentials).len(), lock(&self.entities).len())
    }

    /// Forget everything: called after every write this node makes to what authorization
    /// reads, and when another node's write is notified.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        lock(&self.credentials).clear();
        lock(&self.entities).clear();
        self.invalidate_registry();
    }

    /// Forget the repositories and registry policies only: called after an ECR write that
    /// changes them (credentials and identities stay).
    pub fn invalidate_registry(&self) {
        self.registry_generation.fetch_add(1, Ordering::SeqCst);
        lock(&self.repositories).clear();
        lock(&self.registry_policies).clear();
    }

    /// How many repositories and registry policies are cached (stale ones included).
    pub fn cached_registry(&self) -> (usize, usize) {
        (
            lock(&self.repositories).len(),
            lock(&self.registry_policies).len(),
        )
    }

    /// A repository and its tags (`repository: None` if there is none).
    pub async fn repository(
        &self,
        registry: &dyn RegistryStore,
        store: &dyn Store,
        at: RegistryKey<'_>,
        name: &str,
    ) -> Result<Arc<RepositoryView>, berth_store::RegistryError> {
        let key = (at.account.to_string(), at.stored_name(name).into_owned());
        if let Some(v) = lock(&self.repositories)
            .get(&key)
            .and_then(|e| self.fresh_as_of(e, &self.registry_generation))
        {
            metrics().cache_lookup("repository", true);
            return Ok(v);
        }
        metrics().cache_lookup("repository", false);
        let generation = self.registry_generation.load(Ordering::SeqCst);
        let since = Instant::now();
        let repository = registry.repository(at, name).await?;
        let tags = match &repository {
            Some(r) => {
                store
                    .tags(&r.account, TagTarget::Repository, &r.stored_name())
                    .await?
            }
            None => Vec::new(),
        };
        metrics().store_time("metadata", "repository", since);
        let view = Arc::new(RepositoryView { repository, tags });
        self.put(&self.repositories, key, view.clone(), generation);
        Ok(view)
    }

    /// A registry's policy, if it has one.
    pub async fn registry_policy(
        &self,
        registry: &dyn RegistryStore,
        at: RegistryKey<'_>,
    ) -> Result<Option<Arc<str>>, berth_store::RegistryError> {
        let account = at.stored_account();
        if let Some(v) = lock(&self.registry_policies)
            .get(&*account)
            .and_then(|e| self.fresh_as_of(e, &self.registry_generation))
        {
            metrics().cache_lookup("registry_policy", true);
            return Ok(v);
        }
        metrics().cache_lookup("registry_policy", false);
        let generation = self.registry_generation.load(Ordering::SeqCst);
        let since = Instant::now();
        let policy: Option<Arc<str>> = registry.registry_policy(at).await?.map(Arc::from);
        metrics().store_time("metadata", "registry_policy", since);
        self.put(
            &self.registry_policies,
            account.to_string(),
            policy.clone(),
            generation,
        );
        Ok(policy)
    }

    fn fresh<T: Clone>(&self, e: &Entry<T>) -> Option<T> {
        self.fresh_as_of(e, &self.generation)
    }

    /// An entry's value if it was read in the current `generation` and within the TTL.
    fn fresh_as_of<T: Clone>(&self, e: &Entry<T>, generation: &AtomicU64) -> Option<T> {
        (e.generation == generation.load(Ordering::SeqCst) && e.at.elapsed() < self.ttl)
            .then(|| e.value.clone())
    }

    fn put<K: std::hash::Hash + Eq, T>(
        &self,
        map: &Mutex<HashMap<K, Entry<T>>>,
        k: K,
        v: T,
        generation: u64,
    ) {
        let mut m = lock(map);
        if m.len() >= LIMIT {
            m.clear();
        }
        m.insert(
            k,
            Entry {
                at: Instant::now(),
                generation,
                value: v,
            },
        );
    }

    /// A stored resource policy, compiled once per distinct text.
    pub fn compiled(&self, kind: PolicyKind, text: &str) -> Result<Arc<CompiledPolicy>, ApiError> {
        if let Some(p) = lock(&self.compiled).get(&(kind, text.to_string())) {
            return Ok(p.clone());
        }
        let p = Arc::new(CompiledPolicy::parse(kind.name(), kind, text).map_err(|e| {
            ApiError::internal(format!(
                "{} stored here no longer compiles: {e}",
                kind.policy_noun()
            ))
        })?);
        let mut m = lock(&self.compiled);
        if m.len() >= LIMIT {
            m.clear();
        }
        m.insert((kind, text.to_string()), p.clone());
        Ok(p)
    }

    /// The key or session with this access key id.
    pub async fn credential(
        &self,
        store: &dyn Store,
        id: &str,
    ) -> Result<Option<Arc<Credential>>, ApiError> {
        if let Some(c) = lock(&self.credentials).get(id).and_then(|e| self.fresh(e)) {
            metrics().cache_lookup("credential", true);
            return Ok(Some(c));
        }
        metrics().cache_lookup("credential", false);
        let generation = self.generation.load(Ordering::SeqCst);
        let since = Instant::now();
        let found = if id.starts_with("ASIA") {
            match store.session(id).await? {
                None => None,
                Some(session) => {
                    let claims: Claims = serde_json::from_str(&session.claims).map_err(|e| {
                        ApiError::internal(format!("stored session {id} is unreadable: {e}"))
                    })?;
                    let session_policy = session_policy(&claims.session_policies)?;
                    Some(Credential::Session {
                        session,
                        claims: Arc::new(claims),
                        session_policy,
                    })
                }
            }
        } else {
            store.access_key(id).await?.map(Credential::Key)
        };
        metrics().store_time("metadata", "credential", since);
        let Some(found) = found else { return Ok(None) };
        let found = Arc::new(found);
        self.put(&self.credentials, id.to_string(), found.clone(), generation);
        Ok(Some(found))
    }

    /// The compiled policies of a user or role (empty if it no longer exists).
    pub async fn entity(
        &self,
        store: &dyn Store,
        account: &str,
        kind: EntityKind,
        name: &str,
    ) -> Result<Option<Arc<EntityPolicies>>, ApiError> {
        let id = (account.to_string(), kind, name.to_ascii_lowercase());
        if let Some(p) = lock(&self.entities).get(&id).and_then(|e| self.fresh(e)) {
            metrics().cache_lookup("entity", true);
            return Ok(Some(p));
        }
        metrics().cache_lookup("entity", false);
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(entity) = store.entity(account, kind, name).await? else {
            return Ok(None);
        };
        let docs = match store.identity_documents(account, kind, name).await {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let compile = |source: &str, doc: &str, kind: PolicyKind| {
            // Documents were checked when stored; one that no longer compiles must not be
            // skipped (it might hold a Deny): the request fails instead.
            CompiledPolicy::parse(source, kind, doc)
                .map(Arc::new)
                .map_err(|e| {
                    ApiError::internal(format!("stored policy {source} no longer compiles: {e}"))
                })
        };
        let mut identity = Vec::with_capacity(docs.policies.len());
        for p in &docs.policies {
            identity.push(compile(&p.source, &p.document, PolicyKind::Identity)?);
        }
        let boundary = match (&docs.boundary, &entity.boundary) {
            (Some(b), _) => Some(compile(&b.source, &b.document, PolicyKind::Boundary)?),
            // A boundary that no longer resolves must not widen anything: fail closed
            // (unless it was just removed: the entity, read again, has none).
            (None, Some(arn)) => {
                let now = store.entity(account, kind, name).await?;
                if now.is_some_and(|e| e.boundary.is_some()) {
                    return Err(ApiError::internal(format!(
                        "the permissions boundary {arn} of {name} does not resolve to a policy"
                    )));
                }
                None
            }
            (None, None) => None,
        };
        let policies = Arc::new(EntityPolicies {
            entity,
            identity,
            boundary,
            tags: docs.tags,
        });
        self.put(&self.entities, id, policies.clone(), generation);
        Ok(Some(policies))
    }
}

/// One policy from a session's policies: a single one as it is, several joined into one
/// document (their statements side by side: a session policy grants what any of them grants).
pub fn session_policy(docs: &[String]) -> Result<Option<Arc<CompiledPolicy>>, ApiError> {
    let text = match docs {
        [] => return Ok(None),
        [one] => one.clone(),
        many => join_policies(many)?,
    };
    CompiledPolicy::parse("session", PolicyKind::Session, &text)
        .map(|p| Some(Arc::new(p)))
        .map_err(|e| ApiError::malformed_policy(e.to_string()))
}

/// Join policy documents: all statements under one `Version` (`2012-10-17` if any uses it).
pub fn join_policies(docs: &[String]) -> Result<String, ApiError> {
    let mut statements = Vec::new();
    let mut version = "2008-10-17";
    for d in docs {
        let v: serde_json::Value = serde_json::from_str(d)
            .map_err(|e| ApiError::malformed_policy(format!("Syntax errors in policy: {e}")))?;
        if v.get("Version").and_then(|v| v.as_str()) == Some("2012-10-17") {
            version = "2012-10-17";
        }
        match v.get("Statement") {
            Some(serde_json::Value::Array(a)) => statements.extend(a.iter().cloned()),
            Some(s @ serde_json::Value::Object(_)) => statements.push(s.clone()),
            _ => {}
        }
    }
    // Sids need only be unique within one document.
    for s in &mut statements {
        if let Some(o) = s.as_object_mut() {
            o.remove("Sid");
        }
    }
    Ok(serde_json::json!({"Version": version, "Statement": statements}).to_string())
}
