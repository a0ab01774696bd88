//! The schema check every backend shares: the migrations applied are exactly those this
//! build knows.

use sqlx::migrate::Migrator;

use crate::{Result, StoreError};

/// One applied migration as `_sqlx_migrations` has it: version, checksum, success.
pub(crate) type Applied = (i64, Vec<u8>, bool);

/// `Ok` if `applied` is exactly `known`, else a `Conflict` naming each difference.
pub(crate) fn check(known: &Migrator, applied: &[Applied]) -> Result<()> {
    let mut problems = Vec::new();
    for (version, checksum, success) in applied {
        match known.iter().find(|m| m.version == *version) {
            None => problems.push(unknown(*version)),
            Some(_) if !success => problems.push(format!("migration {version} failed part-way")),
            Some(m) if *m.checksum != checksum[..] => problems.push(format!(
                "migration {version} was applied from different SQL than this build's"
            )),
            Some(_) => {}
        }
    }
    for m in known.iter() {
        if !applied.iter().any(|(v, _, _)| *v == m.version) {
            problems.push(format!("migration {} is not applied", m.version));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "schema not current: {}",
            problems.join("; ")
        )))
    }
}

/// What is wrong with a database that has a migration this build does not know.
pub(crate) fn unknown(version: i64) -> String {
    format!(
        "migration {version} is applied but this build does not know it (a newer berth migrated the database)"
    )
}
