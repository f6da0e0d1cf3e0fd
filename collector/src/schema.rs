//! Schema versions of the collector's store files.
//!
//! Each redb file in the data directory carries the version of the layout it
//! was written in, in its `meta` table. A collector opening a file:
//!
//! - stamps a new (empty) file with the version it writes;
//! - migrates a file of an older version, step by step, before anything
//!   else reads it (a file from before versions existed counts as 1);
//! - refuses a file of a newer version, naming the file, its version and the
//!   version it supports: it cannot know what a newer layout means.
//!
//! The version goes up when a change needs existing records rewritten or
//! cannot be read by an older collector (a table's key or value type, the
//! meaning of a field). Adding a table, or a field that older records simply
//! lack (serde default), does not need a new version.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition, TableError};

use crate::error::StoreError;

/// `schema_version` → the layout version of this file.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The key of the version in [`META`].
pub const VERSION_KEY: &str = "schema_version";

/// One store file of the data directory and the schema this collector writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFile {
    /// File name in the data directory.
    pub name: &'static str,
    /// Schema version this collector writes (and reads).
    pub version: u64,
}

/// Samples, newest readings and agents. Version 2 added each sample's
/// receive time at the collector; version 3 writes a sample's key and
/// value as bytes that order as before (see `store.rs`); version 4 adds
/// per-minute rollups, built from the samples already there, which every
/// commit must keep up to date: a collector of version 3 would store
/// samples without them; version 5 adds the marks of each device's days of
/// samples that every commit must change, and the availability days
/// cached against them: a collector of version 4 would store samples
/// without changing the marks, and a cached day would not see them.
pub const SAMPLES_FILE: StoreFile = StoreFile {
    name: "collector.redb",
    version: 5,
};

/// Tickets, their SOP state and trail, health records, events, maintenance
/// windows, measurements and frozen work reports. Version 2 may hold what a
/// collector of version 1 cannot read: `report_frozen` records in the audit
/// trails, and SOP texts with `office`, `office_unit` and `freezes_report`.
/// Version 3 may hold `voided` records and tickets, and SOP texts with
/// `void_roles`.
pub const TICKETS_FILE: StoreFile = StoreFile {
    name: "tickets.redb",
    version: 3,
};

/// Every store file, in the order a backup lists them.
pub const FILES: [StoreFile; 2] = [SAMPLES_FILE, TICKETS_FILE];

/// The version stored in `db`: `None` for a new file without any table,
/// 1 for a file written before versions existed.
pub fn version(db: &Database) -> Result<Option<u64>, StoreError> {
    let r = db.begin_read()?;
    match r.open_table(META) {
        Ok(t) => {
            if let Some(v) = t.get(VERSION_KEY)? {
                return Ok(Some(v.value()));
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let any_table = r.list_tables()?.next().is_some();
    Ok(any_table.then_some(1))
}

/// Writes `version` into `db`'s meta table within `tx`.
pub fn stamp(tx: &redb::WriteTransaction, version: u64) -> Result<(), StoreError> {
    let mut t = tx.open_table(META)?;
    t.insert(VERSION_KEY, version)?;
    Ok(())
}

/// A migration step: brings the database from version `from` to `from + 1`
/// (and stamps that version in its last transaction).
pub type Step<'a> = &'a dyn Fn(&Database, u64) -> Result<(), StoreError>;

/// Opens (or creates) `path`, a store file of kind `file`: refuses a newer
/// version, migrates an older one with `step`, stamps a new one.
///
/// Every page of the file's trees is checked against its checksum first: a
/// file changed behind redb's back (a bad disk, a stray write) is refused
/// with [`StoreError::Corrupt`], never trusted until a read panics.
pub fn open(path: &Path, file: StoreFile, step: Step<'_>) -> Result<Database, StoreError> {
    let db = open_checked(path)?;
    check_and_migrate(&db, path, file, step)?;
    Ok(db)
}

/// Why [`open_checked`] refuses a file that another process holds open
/// (`StoreError::Open`): a running collector.
pub const IN_USE: &str = "in use by another process (is a collector running?)";

/// Opens (or creates) `path` with redb's integrity check of every page.
pub fn open_checked(path: &Path) -> Result<Database, StoreError> {
    let opened = std::panic::catch_unwind(|| {
        Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::Open {
            path: path.to_path_buf(),
            message: IN_USE.into(),
        }),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))) => Err(StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Ok(Err(
            e @ (redb::DatabaseError::Storage(_)
            | redb::DatabaseError::RepairAborted
            | redb::DatabaseError::UpgradeRequired(_)),
        )) => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Ok(Err(e)) => Err(StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        // The check is meant to report, not panic; should a damaged page
        // still make redb panic, it is the same verdict.
        Err(p) => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            message: p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the store could not be read".into()),
        }),
    }
}

/// The version checks and migrations of [`open`] on an open database.
pub fn check_and_migrate(
    db: &Database,
    path: &Path,
    file: StoreFile,
    step: Step<'_>,
) -> Result<(), StoreError> {
    match version(db)? {
        None => {
            let tx = db.begin_write()?;
            stamp(&tx, file.version)?;
            tx.commit()?;
        }
        Some(v) if v > file.version => {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: v,
                supported: file.version,
            });
        }
        Some(v) if v < file.version => {
            for from in v..file.version {
                tracing::info!(file = %path.display(), from, to = from + 1, "migrating the store");
                step(db, from).map_err(|e| StoreError::Migrate {
                    path: path.to_path_buf(),
                    from,
                    to: from + 1,
                    message: e.to_string(),
                })?;
            }
            tracing::info!(file = %path.display(), version = file.version, "store migrated");
        }
        Some(_) => {}
    }
    Ok(())
}

/// A migration step for a file that has no older layout to convert.
pub fn no_step(_db: &Database, from: u64) -> Result<(), StoreError> {
    Err(StoreError::Decode {
        what: "schema",
        message: format!("no migration from version {from}"),
    })
}

/// The migration steps of `tickets.redb`. 1 → 2 and 2 → 3 rewrite nothing:
/// each version only adds records, fields and a table that the one before
/// does not have.
pub fn migrate_tickets(db: &Database, from: u64) -> Result<(), StoreError> {
    match from {
        1 | 2 => {
            let tx = db.begin_write()?;
            stamp(&tx, from + 1)?;
            tx.commit()?;
            Ok(())
        }
        _ => no_step(db, from),
    }
}

/// Opens (or creates) `tickets.redb` in `data_dir` with its version checked.
pub fn open_tickets(data_dir: &Path) -> Result<Database, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    open(
        &data_dir.join(TICKETS_FILE.name),
        TICKETS_FILE,
        &migrate_tickets,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OTHER: TableDefinition<&str, &str> = TableDefinition::new("other");
    const FILE: StoreFile = StoreFile {
        name: "x.redb",
        version: 3,
    };

    #[test]
    fn new_file_is_stamped_old_file_is_migrated_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let steps = std::cell::RefCell::new(Vec::new());
        let step = |db: &Database, from: u64| {
            steps.borrow_mut().push(from);
            let tx = db.begin_write()?;
            stamp(&tx, from + 1)?;
            tx.commit()?;
            Ok(())
        };
        // New: stamped with the current version, no migration.
        let db = open(&path, FILE, &step).unwrap();
        assert_eq!(version(&db).unwrap(), Some(3));
        drop(db);
        assert!(steps.borrow().is_empty());

        // A file from before versions: a table but no meta. Migrated 1→2→3.
        std::fs::remove_file(&path).unwrap();
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(OTHER).unwrap().insert("k", "v").unwrap();
            tx.commit().unwrap();
        }
        let db = open(&path, FILE, &step).unwrap();
        assert_eq!(version(&db).unwrap(), Some(3));
        assert_eq!(*steps.borrow(), [1, 2]);
        // Newer than supported: refused, saying which file and which versions.
        let tx = db.begin_write().unwrap();
        stamp(&tx, 7).unwrap();
        tx.commit().unwrap();
        drop(db);
        let err = open(&path, FILE, &step).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: store schema version 7 is newer than this collector supports (3); \
                 run a collector of that version or newer, or restore a backup taken with this one",
                path.display()
            )
        );
    }

    #[test]
    fn a_failed_step_names_the_file_and_the_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(OTHER).unwrap().insert("k", "v").unwrap();
            tx.commit().unwrap();
        }
        let err = open(&path, FILE, &|db, from| no_step(db, from))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "{}: migrating the store from version 1 to 2 failed:",
                path.display()
            )),
            "{err}"
        );
    }
}
