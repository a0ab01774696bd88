//! Growing out of one machine: copy an embedded registry's metadata (a [`SqliteStore`])
//! into a PostgreSQL one (a [`PgStore`]), table by table at the SQL level, so the copy is
//! exact: every column as it is stored, sealed secrets verbatim (a sealed value is bound
//! to its table and row, not to the backend, so it opens on PostgreSQL when both stores
//! use one secrets key; [`copy_metadata`] checks that they do before it copies anything).
//!
//! The copy never overwrites: each row is inserted only if the destination has no row
//! with its key (`ON CONFLICT DO NOTHING`), so running it again copies nothing new and an
//! interrupted run resumes where it stopped. A destination row that differs from the
//! source's under the same key is left as it is and reported, and so is a source row
//! that something else at the destination keeps out (another row holding one of its
//! unique values, or its parent missing there). Tables are copied parents first, in
//! batches of bounded size, each batch one PostgreSQL transaction; the source is read in
//! one SQLite read transaction, a consistent snapshot. Left behind on purpose: upload
//! sessions (their bytes are staged on this machine), expired STS sessions, job leases.

use std::collections::HashSet;

use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::sealer::{SecretSlot, CHECK_TEXT};
use crate::{PgStore, Result, SqliteStore, StoreError};

/// How a column is stored: SQLite's value and PostgreSQL's column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    /// TEXT on both.
    Text,
    /// INTEGER on SQLite, BIGINT on PostgreSQL.
    Int,
    /// INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL.
    Bool,
    /// BLOB on SQLite, BYTEA on PostgreSQL.
    Bytes,
}

/// One stored value, typed (so a NULL binds as its column's type).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    fn is_null(&self) -> bool {
        match self {
            Value::Text(v) => v.is_none(),
            Value::Int(v) => v.is_none(),
            Value::Bool(v) => v.is_none(),
            Value::Bytes(v) => v.is_none(),
        }
    }

    /// Bytes the value holds (what a batch's memory bound counts).
    fn weight(&self) -> usize {
        match self {
            Value::Text(v) => v.as_ref().map_or(0, String::len),
            Value::Bytes(v) => v.as_ref().map_or(0, Vec::len),
            Value::Int(_) | Value::Bool(_) => 8,
        }
    }

    fn bind(&self, q: &mut QueryBuilder<Postgres>) {
        match self {
            Value::Text(v) => q.push_bind(v.clone()),
            Value::Int(v) => q.push_bind(*v),
            Value::Bool(v) => q.push_bind(*v),
            Value::Bytes(v) => q.push_bind(v.clone()),
        };
    }

    /// The value as a report shows it in a row's key.
    fn show(&self) -> String {
        match self {
            Value::Text(Some(s)) => s.clone(),
            Value::Int(Some(i)) => i.to_string(),
            Value::Bool(Some(b)) => b.to_string(),
            Value::Bytes(Some(b)) => format!("{} bytes", b.len()),
            _ => "NULL".into(),
        }
    }
}

/// The row of the table the destination's unique key of a source row must name.
struct Parent {
    table: &'static str,
    /// (column of this table, column of the parent).
    on: &'static [(&'static str, &'static str)],
}

/// A table that is copied.
struct Table {
    name: &'static str,
    /// Every column; the first `key` of them are the primary key.
    columns: &'static [(&'static str, Col)],
    key: usize,
    /// The row this table's rows reference at the destination (a foreign key there).
    parent: Option<Parent>,
    /// Source rows copied are those that satisfy this, with `?` bound to the time the
    /// copy started (seconds since the epoch); the others are counted as skipped.
    only: Option<(&'static str, &'static str)>,
}

use Col::{Bool, Bytes, Int, Text};

/// The tables copied, parents before the rows that reference them.
const TABLES: &[Table] = &[
    Table {
        name: "accounts",
        columns: &[("id", Text), ("alias", Text), ("created_at", Int)],
        key: 1,
        parent: None,
        only: None,
    },
    Table {
        name: "entities",
        columns: &[
            ("account_id", Text),
            ("kind", Text),
            ("name", Text),
            ("path", Text),
            ("unique_id", Text),
            ("created_at", Int),
            ("trust_policy", Text),
            ("description", Text),
            ("max_session_secs", Int),
            ("boundary_arn", Text),
        ],
        key: 3,
        parent: Some(Parent {
            table: "accounts",
            on: &[("account_id", "id")],
        }),
        only: None,
    },
    Table {
        name: "group_members",
        columns: &[
            ("account_id", Text),
            ("group_name", Text),
            ("user_name", Text),
        ],
        key: 3,
        parent: None,
        only: None,
    },
    Table {
        name: "inline_policies",
        columns: &[
            ("account_id", Text),
            ("kind", Text),
            ("owner_name", Text),
            ("policy_name", Text),
            ("document", Text),
        ],
        key: 4,
        parent: None,
        only: None,
    },
    Table {
        name: "managed_policies",
        columns: &[
            ("account_id", Text),
            ("name", Text),
            ("path", Text),
            ("policy_id", Text),
            ("default_version", Text),
            ("next_version", Int),
            ("description", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: 2,
        parent: None,
        only: None,
    },
    Table {
        name: "policy_versions",
        columns: &[
            ("account_id", Text),
            ("policy_name", Text),
            ("version_id", Text),
            ("document", Text),
            ("created_at", Int),
        ],
        key: 3,
        parent: None,
        only: None,
    },
    Table {
        name: "attachments",
        columns: &[
            ("account_id", Text),
            ("kind", Text),
            ("owner_name", Text),
            ("policy_arn", Text),
        ],
        key: 4,
        parent: None,
        only: None,
    },
    Table {
        name: "tags",
        columns: &[
            ("account_id", Text),
            ("kind", Text),
            ("owner_name", Text),
            ("key", Text),
            ("value", Text),
            ("position", Int),
        ],
        key: 4,
        parent: None,
        only: None,
    },
    Table {
        name: "access_keys",
        columns: &[
            ("access_key_id", Text),
            ("secret", Text),
            ("account_id", Text),
            ("user_name", Text),
            ("status", Text),
            ("created_at", Int),
        ],
        key: 1,
        parent: Some(Parent {
            table: "accounts",
            on: &[("account_id", "id")],
        }),
        only: None,
    },
    Table {
        name: "sessions",
        columns: &[
            ("access_key_id", Text),
            ("secret", Text),
            ("token", Text),
            ("account_id", Text),
            ("claims", Text),
            ("created_at", Int),
            ("expires_at", Int),
        ],
        key: 1,
        parent: None,
        only: Some(("expires_at > ?", "expired")),
    },
    Table {
        name: "repositories",
        columns: &[
            ("account_id", Text),
            ("name", Text),
            ("created_at", Int),
            ("tag_mutability", Text),
            ("mutability_exclusions", Text),
            ("scan_on_push", Bool),
            ("encryption_type", Text),
            ("kms_key", Text),
            ("policy", Text),
            ("lifecycle_policy", Text),
            ("lifecycle_updated", Int),
        ],
        key: 2,
        parent: Some(Parent {
            table: "accounts",
            on: &[("account_id", "id")],
        }),
        only: None,
    },
    Table {
        name: "registry_policies",
        columns: &[("account_id", Text), ("policy", Text)],
        key: 1,
        parent: None,
        only: None,
    },
    Table {
        name: "images",
        columns: &[
            ("account_id", Text),
            ("repository", Text),
            ("digest", Text),
            ("media_type", Text),
            ("manifest", Bytes),
            ("size", Int),
            ("artifact_type", Text),
            ("subject", Text),
            ("pushed_at", Int),
            ("last_pull", Int),
        ],
        key: 3,
        parent: Some(Parent {
            table: "repositories",
            on: &[("account_id", "account_id"), ("repository", "name")],
        }),
        only: None,
    },
    Table {
        name: "image_tags",
        columns: &[
            ("account_id", Text),
            ("repository", Text),
            ("tag", Text),
            ("digest", Text),
        ],
        key: 3,
        parent: Some(Parent {
            table: "images",
            on: &[
                ("account_id", "account_id"),
                ("repository", "repository"),
                ("digest", "digest"),
            ],
        }),
        only: None,
    },
    Table {
        name: "image_refs",
        columns: &[
            ("account_id", Text),
            ("repository", Text),
            ("digest", Text),
            ("child", Text),
            ("kind", Text),
        ],
        key: 4,
        parent: Some(Parent {
            table: "images",
            on: &[
                ("account_id", "account_id"),
                ("repository", "repository"),
                ("digest", "digest"),
            ],
        }),
        only: None,
    },
    Table {
        name: "blobs",
        columns: &[("digest", Text), ("size", Int), ("created_at", Int)],
        key: 1,
        parent: None,
        only: None,
    },
    Table {
        name: "repository_blobs",
        columns: &[
            ("account_id", Text),
            ("repository", Text),
            ("digest", Text),
            ("size", Int),
            ("added_at", Int),
            ("marked_at", Int),
        ],
        key: 3,
        parent: Some(Parent {
            table: "repositories",
            on: &[("account_id", "account_id"), ("repository", "name")],
        }),
        only: None,
    },
    Table {
        name: "server_secrets",
        columns: &[("name", Text), ("value", Text)],
        key: 1,
        parent: None,
        only: None,
    },
    Table {
        name: "login_profiles",
        columns: &[
            ("account_id", Text),
            ("user_name", Text),
            ("password_hash", Text),
            ("created_at", Int),
            ("changed_at", Int),
            ("reset_required", Bool),
        ],
        key: 2,
        parent: None,
        only: None,
    },
    Table {
        name: "password_policies",
        columns: &[("account_id", Text), ("policy", Text)],
        key: 1,
        parent: None,
        only: None,
    },
    Table {
        name: "settings",
        columns: &[("name", Text), ("value", Text)],
        key: 1,
        parent: None,
        only: None,
    },
    Table {
        name: "replication_configurations",
        columns: &[("registry", Text), ("config", Text), ("updated_at", Int)],
        key: 1,
        parent: None,
        only: None,
    },
    Table {
        name: "creation_templates",
        columns: &[("registry", Text), ("prefix", Text), ("template", Text)],
        key: 2,
        parent: None,
        only: None,
    },
    Table {
        name: "pull_through_rules",
        columns: &[("registry", Text), ("prefix", Text), ("rule", Text)],
        key: 2,
        parent: None,
        only: None,
    },
    // The secret is sealed (bound to the ARN, which is copied with it): it opens at the
    // destination, which uses the same secrets key.
    Table {
        name: "upstream_credentials",
        columns: &[
            ("registry", Text),
            ("name", Text),
            ("arn", Text),
            ("username", Text),
            ("secret", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: 2,
        parent: None,
        only: None,
    },
];

/// The source tables deliberately not copied, and why.
const LEFT_BEHIND: &[(&str, &str)] = &[
    (
        "uploads",
        "upload sessions in progress cannot move: their bytes are staged on this machine",
    ),
    (
        "leases",
        "job leases belong to the nodes that run the jobs; the new deployment takes its own",
    ),
    (
        "secrets_key_check",
        "the destination keeps its own check of the same secrets key",
    ),
    (
        "lifecycle_previews",
        "lifecycle policy previews are dry runs of the moment: start a new one at the destination",
    ),
    (
        "lifecycle_preview_results",
        "the images of those previews (see lifecycle_previews)",
    ),
    (
        "replication_backfills",
        "replication backfills are requests of the moment with their outbox rows: start them again at the destination",
    ),
    (
        "peer_uploads",
        "upload sessions open at peers belong to the deliveries of the outbox, which is not copied",
    ),
    (
        "pull_through_checks",
        "when cached tags were last checked against their upstreams: the new deployment checks each once more",
    ),
    (
        "replications",
        "the replication outbox: let the old deployment deliver what it holds before the move (berth replication status shows none pending), or backfill from the new one",
    ),
];

/// Most rows a batch holds.
pub const DEFAULT_BATCH_ROWS: usize = 500;
/// The most rows a batch may hold: a batch is one statement, and PostgreSQL takes at most
/// 65535 parameters in one (the widest table has 11 columns).
const MAX_BATCH_ROWS: usize = 5000;
/// A batch is cut once its values hold this many bytes (manifests can be megabytes), so
/// a copy holds about one batch in memory whatever the tables hold.
const BATCH_BYTES: usize = 8 << 20;
/// Most differing rows a table's report names (all are counted).
const NAMED_CONFLICTS: usize = 20;

/// How [`copy_metadata`] runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Most rows per batch (one PostgreSQL transaction each; at most 5000 are taken).
    pub batch_rows: usize,
    /// The time the copy runs at, seconds since the epoch: STS sessions that expired by
    /// then are not copied.
    pub now_secs: i64,
    /// Stop after this many batches, as an interrupted run would (the report says the copy
    /// is incomplete; running it again finishes it). `None`: copy everything.
    pub max_batches: Option<usize>,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            batch_rows: DEFAULT_BATCH_ROWS,
            now_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            max_batches: None,
        }
    }
}

/// A source row the copy did not write because of what the destination holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The row's key, `column=value` pairs.
    pub key: String,
    /// True: the destination has a row under this key with other values. False: it has
    /// none, but the row could not be inserted (another row holds one of its unique
    /// values, or the row it belongs to is not at the destination).
    pub differs: bool,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.differs {
            write!(f, "{}: the destination's row differs", self.key)
        } else {
            write!(
                f,
                "{}: not at the destination, and kept out by a row there (one with the same \
                 unique value, or its parent is missing)",
                self.key
            )
        }
    }
}

/// What the copy did with one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    /// Rows written to the destination.
    pub copied: u64,
    /// Rows the destination already held, identical.
    pub present: u64,
    /// Rows not written because the destination holds something else (see [`Conflict`]).
    pub conflicting: u64,
    /// The first conflicting rows (at most 20).
    pub conflicts: Vec<Conflict>,
    /// Source rows not copied on purpose, and why.
    pub skipped: u64,
    pub skipped_why: Option<&'static str>,
    /// A table none of whose rows are copied (upload sessions, leases).
    pub left_behind: bool,
}

impl TableReport {
    fn new(table: &'static str) -> TableReport {
        TableReport {
            table,
            copied: 0,
            present: 0,
            conflicting: 0,
            conflicts: Vec::new(),
            skipped: 0,
            skipped_why: None,
            left_behind: false,
        }
    }
}

/// What [`copy_metadata`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataReport {
    /// One per source table, in the order copied; the tables left behind last.
    pub tables: Vec<TableReport>,
    /// False when the copy stopped early ([`CopyOptions::max_batches`]).
    pub complete: bool,
}

impl MetadataReport {
    pub fn copied(&self) -> u64 {
        self.tables.iter().map(|t| t.copied).sum()
    }
    pub fn present(&self) -> u64 {
        self.tables.iter().map(|t| t.present).sum()
    }
    pub fn conflicting(&self) -> u64 {
        self.tables.iter().map(|t| t.conflicting).sum()
    }
}

fn sqlite_err(e: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("reading the SQLite store: {e}"))
}

fn pg_err(e: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("writing the PostgreSQL store: {e}"))
}

/// Copy the metadata of `from` into `to` (see the module's documentation), calling
/// `progress` with each table's report as it is done. Refused, before anything is copied,
/// when the two stores were not opened with the same secrets key, or when either's tables
/// do not have the columns this build copies.
pub async fn copy_metadata(
    from: &SqliteStore,
    to: &PgStore,
    options: &CopyOptions,
    progress: &mut (dyn FnMut(&TableReport) + Send),
) -> Result<MetadataReport> {
    check_same_key(from, to).await?;
    check_columns(from, to).await?;
    let batch_rows = options.batch_rows.clamp(1, MAX_BATCH_ROWS);
    let mut batches = 0usize;
    let mut report = MetadataReport {
        tables: Vec::new(),
        complete: true,
    };
    // One read transaction: every table is read from the same snapshot of the source.
    let mut src = from.pool.begin().await.map_err(sqlite_err)?;
    'tables: for table in TABLES {
        let mut t = TableReport::new(table.name);
        if let Some((only, why)) = table.only {
            t.skipped = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {} WHERE NOT ({only})",
                table.name
            )))
            .bind(options.now_secs)
            .fetch_one(&mut *src)
            .await
            .map_err(sqlite_err)? as u64;
            t.skipped_why = Some(why);
        }
        let select = source_select(table, batch_rows);
        let mut after = i64::MIN;
        loop {
            let mut rows: Vec<Vec<Value>> = Vec::new();
            let mut weight = 0usize;
            {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(select.clone())).bind(after);
                if table.only.is_some() {
                    q = q.bind(options.now_secs);
                }
                let mut stream = q.fetch(&mut *src);
                while let Some(row) = stream.try_next().await.map_err(sqlite_err)? {
                    after = row.try_get(0).map_err(sqlite_err)?;
                    let values = source_values(table, &row)?;
                    weight += values.iter().map(Value::weight).sum::<usize>();
                    rows.push(values);
                    if weight >= BATCH_BYTES {
                        break;
                    }
                }
            }
            if rows.is_empty() {
                break;
            }
            if options.max_batches.is_some_and(|m| batches >= m) {
                report.complete = false;
                progress(&t);
                report.tables.push(t);
                break 'tables;
            }
            copy_batch(to, table, &rows, &mut t).await?;
            batches += 1;
        }
        progress(&t);
        report.tables.push(t);
    }
    if report.complete {
        for (name, why) in LEFT_BEHIND {
            let mut t = TableReport::new(name);
            t.skipped = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {name}"
            )))
            .fetch_one(&mut *src)
            .await
            .map_err(sqlite_err)? as u64;
            t.skipped_why = Some(why);
            t.left_behind = true;
            progress(&t);
            report.tables.push(t);
        }
    }
    src.rollback().await.map_err(sqlite_err)?;
    Ok(report)
}

/// The blobs the source's repositories hold: each digest once, with its size, in digest
/// order (what a copy of the blobs must bring along).
pub async fn referenced_blobs(from: &SqliteStore) -> Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT digest, MAX(size) FROM repository_blobs GROUP BY digest ORDER BY digest")
        .fetch_all(&from.pool)
        .await
        .map_err(sqlite_err)
}

/// Both stores seal secrets with one key: the source's key check value opens with the
/// destination's key.
async fn check_same_key(from: &SqliteStore, to: &PgStore) -> Result<()> {
    from.sealer()?;
    let check: Option<String> =
        sqlx::query_scalar("SELECT sealed FROM secrets_key_check WHERE only_row = 1")
            .fetch_optional(&from.pool)
            .await
            .map_err(sqlite_err)?;
    let same = check
        .as_deref()
        .and_then(|c| to.sealer().open(SecretSlot::Check, c).ok())
        .is_some_and(|text| text == CHECK_TEXT);
    if same {
        Ok(())
    } else {
        Err(StoreError::Conflict(
            "the SQLite and PostgreSQL stores' secrets are sealed with different secrets keys: \
             sealed secrets are copied as they are, so both must use the same key"
                .into(),
        ))
    }
}

/// Each copied table has exactly the columns this build copies, on both sides (a schema
/// change that forgot the copy is caught before anything is written).
async fn check_columns(from: &SqliteStore, to: &PgStore) -> Result<()> {
    let mut problems = Vec::new();
    for table in TABLES {
        let want: HashSet<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let sqlite: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(table.name)
                .fetch_all(&from.pool)
                .await
                .map_err(sqlite_err)?;
        let pg: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table.name)
        .fetch_all(&to.pool)
        .await
        .map_err(pg_err)?;
        for (side, have) in [("SQLite", sqlite), ("PostgreSQL", pg)] {
            let have: HashSet<&str> = have.iter().map(String::as_str).collect();
            if have != want {
                let mut extra: Vec<&str> = have.difference(&want).copied().collect();
                let mut missing: Vec<&str> = want.difference(&have).copied().collect();
                extra.sort_unstable();
                missing.sort_unstable();
                problems.push(format!(
                    "{side} table {} has columns {extra:?} this build does not copy and lacks {missing:?}",
                    table.name
                ));
            }
        }
    }
    let sqlite_tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%' ORDER BY name",
    )
    .fetch_all(&from.pool)
    .await
    .map_err(sqlite_err)?;
    for name in sqlite_tables {
        let known =
            TABLES.iter().any(|t| t.name == name) || LEFT_BEHIND.iter().any(|(t, _)| *t == name);
        if !known {
            problems.push(format!("SQLite table {name} is not one this build copies"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "refusing to copy: the schemas are not the ones this build knows: {}",
            problems.join("; ")
        )))
    }
}

/// The next batch of source rows after a rowid (`?` 1), with the rowid first.
fn source_select(table: &Table, batch_rows: usize) -> String {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let only = table
        .only
        .map(|(o, _)| format!(" AND ({o})"))
        .unwrap_or_default();
    format!(
        "SELECT rowid, {} FROM {} WHERE rowid > ?{only} ORDER BY rowid LIMIT {batch_rows}",
        columns.join(", "),
        table.name
    )
}

fn source_values(table: &Table, row: &SqliteRow) -> Result<Vec<Value>> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (name, col))| {
            let at = i + 1;
            let bad = |e: sqlx::Error| {
                StoreError::Backend(format!(
                    "reading {}.{name} from the SQLite store: {e}",
                    table.name
                ))
            };
            Ok(match col {
                Text => Value::Text(row.try_get(at).map_err(bad)?),
                Int => Value::Int(row.try_get(at).map_err(bad)?),
                Bool => Value::Bool(
                    row.try_get::<Option<i64>, _>(at)
                        .map_err(bad)?
                        .map(|v| v != 0),
                ),
                Bytes => Value::Bytes(row.try_get(at).map_err(bad)?),
            })
        })
        .collect()
}

/// The first `n` columns of `table` from a destination row, starting at index `first`.
fn dest_values(table: &Table, row: &PgRow, first: usize, n: usize) -> Result<Vec<Value>> {
    table.columns[..n]
        .iter()
        .enumerate()
        .map(|(i, (_, col))| {
            let at = first + i;
            Ok(match col {
                Text => Value::Text(row.try_get(at).map_err(pg_err)?),
                Int => Value::Int(row.try_get(at).map_err(pg_err)?),
                Bool => Value::Bool(row.try_get(at).map_err(pg_err)?),
                Bytes => Value::Bytes(row.try_get(at).map_err(pg_err)?),
            })
        })
        .collect()
}

fn key_text(table: &Table, row: &[Value]) -> String {
    table.columns[..table.key]
        .iter()
        .zip(row)
        .map(|((c, _), v)| format!("{c}={}", v.show()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Write one batch in one transaction: insert the rows the destination lacks, then look
/// up the others there and tell identical rows from conflicting ones.
async fn copy_batch(
    to: &PgStore,
    table: &Table,
    rows: &[Vec<Value>],
    t: &mut TableReport,
) -> Result<()> {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let columns = columns.join(", ");
    let keys: Vec<&str> = table.columns[..table.key].iter().map(|(c, _)| *c).collect();
    let mut tx = to.pool.begin().await.map_err(pg_err)?;

    let mut insert = QueryBuilder::<Postgres>::new(format!(
        "INSERT INTO {} ({columns}) SELECT {columns} FROM (VALUES ",
        table.name
    ));
    for (i, row) in rows.iter().enumerate() {
        insert.push(if i == 0 { "(" } else { ", (" });
        for (j, v) in row.iter().enumerate() {
            if j > 0 {
                insert.push(", ");
            }
            v.bind(&mut insert);
        }
        insert.push(")");
    }
    insert.push(format!(") AS v ({columns})"));
    if let Some(parent) = &table.parent {
        let on: Vec<String> = parent
            .on
            .iter()
            .map(|(c, p)| format!("p.{p} = v.{c}"))
            .collect();
        insert.push(format!(
            " WHERE EXISTS (SELECT 1 FROM {} p WHERE {})",
            parent.table,
            on.join(" AND ")
        ));
    }
    insert.push(format!(
        " ON CONFLICT DO NOTHING RETURNING {}",
        keys.join(", ")
    ));
    let inserted: Vec<PgRow> = insert.build().fetch_all(&mut *tx).await.map_err(pg_err)?;
    let mut written: HashSet<Vec<Value>> = HashSet::new();
    for r in &inserted {
        written.insert(dest_values(table, r, 0, table.key)?);
    }
    // What inserted tells apart from the source rows: an inserted row's key comes back as
    // the source wrote it. Rows with a key written twice in the batch cannot be both new.
    let mut rest: Vec<&Vec<Value>> = Vec::new();
    for row in rows {
        if written.remove(&row[..table.key]) {
            t.copied += 1;
        } else {
            rest.push(row);
        }
    }
    if !rest.is_empty() {
        // Look the rest up by key, with the destination's comparison of keys (its
        // case-insensitive names included): row i of the VALUES list against its match.
        let mut lookup = QueryBuilder::<Postgres>::new("SELECT v.i");
        for (c, _) in table.columns {
            lookup.push(format!(", t.{c}"));
        }
        lookup.push(" FROM (VALUES ");
        for (i, row) in rest.iter().enumerate() {
            lookup.push(if i == 0 { "(" } else { ", (" });
            lookup.push_bind(i as i64);
            for v in &row[..table.key] {
                lookup.push(", ");
                v.bind(&mut lookup);
            }
            lookup.push(")");
        }
        let on: Vec<String> = keys.iter().map(|k| format!("t.{k} = v.{k}")).collect();
        lookup.push(format!(
            ") AS v (i, {}) LEFT JOIN {} t ON {}",
            keys.join(", "),
            table.name,
            on.join(" AND ")
        ));
        let found: Vec<PgRow> = lookup.build().fetch_all(&mut *tx).await.map_err(pg_err)?;
        let mut matched = vec![false; rest.len()];
        for r in &found {
            let i: i64 = r.try_get(0).map_err(pg_err)?;
            let Some(source) = usize::try_from(i).ok().and_then(|i| rest.get(i)) else {
                continue;
            };
            let dest = dest_values(table, r, 1, table.columns.len())?;
            let i = i as usize;
            if dest[0].is_null() {
                continue;
            }
            matched[i] = true;
            if dest == **source {
                t.present += 1;
            } else {
                t.conflicting += 1;
                if t.conflicts.len() < NAMED_CONFLICTS {
                    t.conflicts.push(Conflict {
                        key: key_text(table, source),
                        differs: true,
                    });
                }
            }
        }
        for (i, source) in rest.iter().enumerate() {
            if !matched[i] {
                t.conflicting += 1;
                if t.conflicts.len() < NAMED_CONFLICTS {
                    t.conflicts.push(Conflict {
                        key: key_text(table, source),
                        differs: false,
                    });
                }
            }
        }
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(())
}
