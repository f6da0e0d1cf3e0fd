//! Backups of the collector's stores, taken while it serves, and restoring one.
//!
//! A backup is a tar archive: `manifest.json` first (format, when, which
//! collector; for each file its schema version, size, SHA-256 and the rows
//! of each table), then a copy of each store file (`collector.redb`,
//! `tickets.redb`) and the revocation list when there is one.
//!
//! Only the running collector can open its redb files, so the running
//! collector makes the backup (`Admin.Backup`, admin role): each file is
//! copied table by table out of one read transaction, redb's snapshot, into
//! a new redb file, while ingest and the ticket engine keep writing. Each
//! file is thus a consistent state of that file; the two files are two
//! snapshots taken one right after the other.
//!
//! Every table of a store file must be known here: a table nobody listed
//! would otherwise be left out silently, so a backup that meets an unknown
//! table fails and says which.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use redb::{
    Database, Durability, Key, MultimapTableHandle, ReadTransaction, ReadableDatabase,
    ReadableTable, ReadableTableMetadata, TableDefinition, TableError, TableHandle, Value,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::schema::{self, SAMPLES_FILE, StoreFile, TICKETS_FILE};

/// Version of the archive layout.
pub const FORMAT: u32 = 1;
/// The first member of the archive.
pub const MANIFEST: &str = "manifest.json";
/// The revocation list in the data directory (copied as it is).
pub const REVOKED: &str = "revoked.toml";
/// The CA's ledger in the data directory (copied as it is).
pub const LEDGER: &str = crate::ledger::FILE;

/// Rows copied per transaction into the backup copy.
const COPY_CHUNK: usize = 50_000;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Archive layout ([`FORMAT`]).
    pub format: u32,
    /// When the backup was taken.
    pub created_at: DateTime<Utc>,
    /// The collector that took it.
    pub collector_version: String,
    /// The files after the manifest, in archive order.
    pub files: Vec<FileEntry>,
    /// Set when the samples are not in this backup (`[store] url`): where
    /// they are and how to back them up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_elsewhere: Option<crate::store::SamplesElsewhere>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name in the data directory.
    pub name: String,
    /// Schema version of a store file (none for other files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u64>,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Rows per table of a store file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, u64>,
}

impl Manifest {
    /// The entry of `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Rows of `table` in the store file `file` (0 when absent).
    pub fn rows(&self, file: &str, table: &str) -> u64 {
        self.file(file)
            .and_then(|f| f.tables.get(table).copied())
            .unwrap_or(0)
    }
}

/// A backup or restore that failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A store file holds a table this collector does not know.
    #[error(
        "{file}: table {table:?} is not known to the backup; this collector cannot back it up completely"
    )]
    UnknownTable {
        /// The store file.
        file: String,
        /// The table.
        table: String,
    },
    /// The archive is not a backup, or a damaged one.
    #[error("{}: not a usable backup: {why}", path.display())]
    BadArchive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The backup was made by a collector with a newer store schema.
    #[error(
        "{}: {name} is schema version {found}, newer than this collector supports ({supported}); restore it with a collector of that version or newer",
        path.display()
    )]
    TooNew {
        /// The archive.
        path: PathBuf,
        /// The store file.
        name: String,
        /// Its version.
        found: u64,
        /// This collector's version.
        supported: u64,
    },
    /// The data directory is in use by a running collector.
    #[error(
        "{}: a collector is running on this data directory (pid {pid}); stop it before restoring",
        dir.display()
    )]
    Running {
        /// The data directory.
        dir: PathBuf,
        /// Its process id.
        pid: i32,
    },
    /// The data directory holds files already.
    #[error(
        "{}: not empty ({}); restore into an empty data directory, or pass --force to replace its stores",
        dir.display(),
        entries.join(", ")
    )]
    NotEmpty {
        /// The data directory.
        dir: PathBuf,
        /// Some of what is there.
        entries: Vec<String>,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |error| BackupError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Visits every table of a store file with its types.
trait Tables {
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), StoreError>;
}

/// Every table of `collector.redb` (see `store.rs`).
fn samples_tables(v: &mut impl Tables) -> Result<(), StoreError> {
    v.table(schema::META)?;
    v.table(crate::store::SAMPLES)?;
    v.table(crate::store::ROLLUPS)?;
    v.table(crate::store::MARKS)?;
    v.table(crate::store::DAYS)?;
    v.table(TableDefinition::<(&str, &str), &[u8]>::new("latest"))?;
    v.table(TableDefinition::<&str, &[u8]>::new("agents"))
}

/// Every table of `tickets.redb` (see `sop/store.rs`, `ticket/store.rs`,
/// `measure/store.rs`, `report/store.rs`).
fn tickets_tables(v: &mut impl Tables) -> Result<(), StoreError> {
    v.table(schema::META)?;
    v.table(TableDefinition::<&str, &[u8]>::new("sop_tickets"))?;
    v.table(TableDefinition::<(&str, u64), &[u8]>::new("sop_audit"))?;
    v.table(TableDefinition::<&str, &[u8]>::new("sop_heads"))?;
    v.table(TableDefinition::<&str, &str>::new("sop_texts"))?;
    v.table(TableDefinition::<u32, u32>::new("sop_ticket_numbers"))?;
    v.table(TableDefinition::<(&str, &str), &str>::new("sop_letters"))?;
    v.table(TableDefinition::<&str, &[u8]>::new("health_tickets"))?;
    v.table(TableDefinition::<&str, &[u8]>::new("health_open_incidents"))?;
    v.table(TableDefinition::<&str, u64>::new("health_counters"))?;
    v.table(TableDefinition::<(i64, u64), &[u8]>::new("health_events"))?;
    v.table(TableDefinition::<u64, &[u8]>::new("health_maintenance"))?;
    v.table(TableDefinition::<&str, &[u8]>::new("measurements"))?;
    v.table(TableDefinition::<&str, u64>::new("measurement_counter"))?;
    v.table(TableDefinition::<(&str, &str), u64>::new(
        "measurements_open",
    ))?;
    v.table(TableDefinition::<(&str, &str), &[u8]>::new("report_frozen"))
}

fn visit(file: StoreFile, v: &mut impl Tables) -> Result<(), StoreError> {
    if file == SAMPLES_FILE {
        samples_tables(v)
    } else {
        tickets_tables(v)
    }
}

/// Collects the table names.
#[derive(Default)]
struct Names(BTreeSet<String>);

impl Tables for Names {
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        self.0.insert(def.name().to_string());
        Ok(())
    }
}

/// Copies each table out of one read transaction into another database.
struct Copier<'a> {
    src: &'a ReadTransaction,
    dst: &'a Database,
    rows: BTreeMap<String, u64>,
}

impl Tables for Copier<'_> {
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        let from = match self.src.open_table(def) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut rows = from.iter()?;
        let mut n = 0u64;
        loop {
            // The copy becomes durable with the final commit of `copy`.
            let mut tx = self.dst.begin_write()?;
            tx.set_durability(Durability::None)
                .map_err(|e| StoreError::Decode {
                    what: "backup",
                    message: e.to_string(),
                })?;
            let mut done = false;
            {
                let mut to = tx.open_table(def)?;
                for _ in 0..COPY_CHUNK {
                    match rows.next() {
                        Some(row) => {
                            let (k, v) = row?;
                            to.insert(k.value(), v.value())?;
                            n += 1;
                        }
                        None => {
                            done = true;
                            break;
                        }
                    }
                }
            }
            tx.commit()?;
            if done {
                break;
            }
        }
        self.rows.insert(def.name().to_string(), n);
        Ok(())
    }
}

/// Counts the rows of each table.
struct Counter<'a> {
    src: &'a ReadTransaction,
    rows: BTreeMap<String, u64>,
}

impl Tables for Counter<'_> {
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        match self.src.open_table(def) {
            Ok(t) => {
                self.rows.insert(def.name().to_string(), t.len()?);
                Ok(())
            }
            Err(TableError::TableDoesNotExist(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Fails on a table of `src` that [`visit`] does not list.
fn check_known(file: StoreFile, src: &ReadTransaction) -> Result<(), BackupError> {
    let mut names = Names::default();
    visit(file, &mut names)?;
    let unknown = src
        .list_tables()
        .map_err(StoreError::from)?
        .map(|t| t.name().to_string())
        .chain(
            src.list_multimap_tables()
                .map_err(StoreError::from)?
                .map(|t| t.name().to_string()),
        )
        .find(|n| !names.0.contains(n));
    match unknown {
        Some(table) => Err(BackupError::UnknownTable {
            file: file.name.to_string(),
            table,
        }),
        None => Ok(()),
    }
}

/// Copies the store file `file`, open as `src`, into a new redb file at
/// `dst` from one read transaction (while others keep writing to `src`);
/// returns its manifest entry.
pub fn copy_store(src: &Database, file: StoreFile, dst: &Path) -> Result<FileEntry, BackupError> {
    let r = src.begin_read().map_err(StoreError::from)?;
    check_known(file, &r)?;
    let rows = {
        let out = Database::create(dst).map_err(|e| StoreError::Open {
            path: dst.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut copier = Copier {
            src: &r,
            dst: &out,
            rows: BTreeMap::new(),
        };
        visit(file, &mut copier)?;
        // One durable commit for everything copied.
        let tx = out.begin_write().map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        copier.rows
    };
    drop(r);
    let version = {
        let db = Database::open(dst).map_err(|e| StoreError::Open {
            path: dst.to_path_buf(),
            message: e.to_string(),
        })?;
        schema::version(&db)?
    };
    let (bytes, sha256) = hash_file(dst)?;
    Ok(FileEntry {
        name: file.name.to_string(),
        schema_version: version,
        bytes,
        sha256,
        tables: rows,
    })
}

/// Rows per table of a store file.
pub fn count_rows(db: &Database, file: StoreFile) -> Result<BTreeMap<String, u64>, StoreError> {
    let r = db.begin_read()?;
    let mut c = Counter {
        src: &r,
        rows: BTreeMap::new(),
    };
    visit(file, &mut c)?;
    Ok(c.rows)
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// What [`write`] backs up: the open store files and the data directory.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// `collector.redb`, or where the samples are instead (a shared
    /// database the backup names but does not copy).
    pub samples: Samples<'a>,
    /// `tickets.redb`; `None` when the tickets' records are in the
    /// PostgreSQL database that [`Samples::Elsewhere`] names (its dump
    /// holds both).
    pub tickets: Option<&'a Database>,
    /// The data directory (the copies are made in a temporary directory
    /// inside it, which is removed afterwards).
    pub data_dir: &'a Path,
}

/// The samples a backup copies, or names.
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    /// In the data directory: copied.
    Here(&'a Database),
    /// In a shared database: named in the manifest with the command that
    /// backs them up.
    Elsewhere(&'a crate::store::SamplesElsewhere),
}

fn append(
    tar: &mut tar::Builder<impl Write>,
    name: &str,
    bytes: u64,
    data: impl Read,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes);
    h.set_mode(0o600);
    h.set_mtime(u64::try_from(Utc::now().timestamp()).unwrap_or(0));
    h.set_cksum();
    tar.append_data(&mut h, name, data)
}

/// Writes a backup of `src` as a tar archive to `out`; returns its manifest.
pub fn write(src: Sources<'_>, out: impl Write) -> Result<Manifest, BackupError> {
    let tmp = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(src.data_dir)
        .map_err(io(src.data_dir))?;
    let mut files = Vec::new();
    let mut samples_elsewhere = None;
    match src.samples {
        Samples::Here(db) => files.push(copy_store(
            db,
            SAMPLES_FILE,
            &tmp.path().join(SAMPLES_FILE.name),
        )?),
        Samples::Elsewhere(e) => samples_elsewhere = Some(e.clone()),
    }
    if let Some(tickets) = src.tickets {
        files.push(copy_store(
            tickets,
            TICKETS_FILE,
            &tmp.path().join(TICKETS_FILE.name),
        )?);
    }
    for name in [REVOKED, LEDGER] {
        let from = src.data_dir.join(name);
        match std::fs::copy(&from, tmp.path().join(name)) {
            Ok(_) => {
                let (bytes, sha256) = hash_file(&tmp.path().join(name))?;
                files.push(FileEntry {
                    name: name.into(),
                    schema_version: None,
                    bytes,
                    sha256,
                    tables: BTreeMap::new(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&from)(e)),
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at: Utc::now(),
        collector_version: env!("CARGO_PKG_VERSION").into(),
        files,
        samples_elsewhere,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::Decode {
        what: "manifest",
        message: e.to_string(),
    })?;
    let archive = Path::new("backup archive");
    let mut tar = tar::Builder::new(out);
    append(&mut tar, MANIFEST, text.len() as u64, text.as_slice()).map_err(io(archive))?;
    for f in &manifest.files {
        let path = tmp.path().join(&f.name);
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        append(&mut tar, &f.name, f.bytes, file).map_err(io(archive))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io(archive))?;
    Ok(manifest)
}

/// Removes the temporary directories of backups cut short (the collector
/// died while it made one); called at start, before any backup can run.
pub fn remove_leftovers(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with(".backup-") && path.is_dir() {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(dir = %path.display(), "removed an unfinished backup"),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove an unfinished backup")
                }
            }
        }
    }
}

fn bad(path: &Path, why: impl Into<String>) -> BackupError {
    BackupError::BadArchive {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Reads an archive and checks every member against the manifest (size and
/// SHA-256) without writing anything; returns the manifest.
pub fn verify(archive: &Path) -> Result<Manifest, BackupError> {
    unpack(archive, None)
}

/// Reads an archive, checks every member against the manifest and, with
/// `into`, writes the members there; returns the manifest.
fn unpack(archive: &Path, into: Option<&Path>) -> Result<Manifest, BackupError> {
    let f = std::fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(f);
    let mut entries = tar.entries().map_err(|e| bad(archive, e.to_string()))?;
    let mut first = entries
        .next()
        .ok_or_else(|| bad(archive, "empty archive"))?
        .map_err(|e| bad(archive, e.to_string()))?;
    let name = first
        .path()
        .map_err(|e| bad(archive, e.to_string()))?
        .to_string_lossy()
        .into_owned();
    if name != MANIFEST {
        return Err(bad(
            archive,
            format!("the first member is {name:?}, not {MANIFEST}"),
        ));
    }
    let mut text = Vec::new();
    first
        .read_to_end(&mut text)
        .map_err(|e| bad(archive, e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| bad(archive, format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(
            archive,
            format!(
                "archive format {} (this collector reads {FORMAT})",
                manifest.format
            ),
        ));
    }
    for f in &manifest.files {
        let known = schema::FILES
            .iter()
            .find(|s| s.name == f.name)
            .map(|s| s.version);
        match (known, f.schema_version) {
            (Some(supported), Some(found)) if found > supported => {
                return Err(BackupError::TooNew {
                    path: archive.to_path_buf(),
                    name: f.name.clone(),
                    found,
                    supported,
                });
            }
            (None, _) if f.name != REVOKED && f.name != LEDGER => {
                return Err(bad(archive, format!("unknown member {:?}", f.name)));
            }
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(archive, e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| bad(archive, e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let Some(want) = manifest.file(&name) else {
            return Err(bad(archive, format!("{name:?} is not in the manifest")));
        };
        let mut out: Box<dyn Write> = match into {
            Some(dir) => {
                let path = dir.join(&want.name);
                // A fresh file in our own new directory, never an existing one.
                Box::new(std::fs::File::create_new(&path).map_err(io(&path))?)
            }
            None => Box::new(std::io::sink()),
        };
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0u64;
        loop {
            let k = entry
                .read(&mut buf)
                .map_err(|e| bad(archive, format!("{name}: {e}")))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            out.write_all(&buf[..k])
                .map_err(|e| bad(archive, format!("writing {name}: {e}")))?;
            n += k as u64;
        }
        out.flush()
            .map_err(|e| bad(archive, format!("writing {name}: {e}")))?;
        let sha = hex::encode(h.finalize());
        if n != want.bytes || sha != want.sha256 {
            return Err(bad(
                archive,
                format!("{name}: its content does not match the manifest (damaged archive)"),
            ));
        }
        seen.insert(name);
    }
    if let Some(missing) = manifest.files.iter().find(|f| !seen.contains(&f.name)) {
        return Err(bad(archive, format!("{} is missing", missing.name)));
    }
    Ok(manifest)
}

/// The process id in `collector.pid` if that process is alive.
fn running_collector(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("collector.pid")).ok()?;
    let pid = rustix::process::Pid::from_raw(text.trim().parse().ok()?)?;
    rustix::process::test_kill_process(pid)
        .ok()
        .map(|()| pid.as_raw_nonzero().get())
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Revoked certificates of the backup that the data directory's list did
    /// not hold yet (merged into it).
    pub revocations_added: Vec<crate::revoke::Revoked>,
    /// Certificates in the backup's ledger that the data directory's ledger
    /// did not hold yet (merged into it).
    pub certificates_added: usize,
}

/// Puts the backup `archive` into `data_dir` (the collector stopped).
/// Refuses a data directory that is not empty unless `force`, in which case
/// the store files are replaced. The revocation list is never replaced: the
/// backup's is merged into the one in `data_dir` (a certificate revoked
/// after the backup stays revoked). Every member is checked against the
/// manifest, and every store file opened and counted, before anything in
/// `data_dir` changes.
pub fn restore(archive: &Path, data_dir: &Path, force: bool) -> Result<Restored, BackupError> {
    if let Some(pid) = running_collector(data_dir) {
        return Err(BackupError::Running {
            dir: data_dir.to_path_buf(),
            pid,
        });
    }
    match std::fs::read_dir(data_dir) {
        Ok(rd) => {
            let mut entries: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !entries.is_empty() && !force {
                entries.sort();
                entries.truncate(6);
                return Err(BackupError::NotEmpty {
                    dir: data_dir.to_path_buf(),
                    entries,
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(data_dir)(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let staging = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(data_dir)
        .map_err(io(data_dir))?;
    let manifest = unpack(archive, Some(staging.path()))?;
    for f in &manifest.files {
        let Some(kind) = schema::FILES.iter().find(|s| s.name == f.name) else {
            continue;
        };
        let path = staging.path().join(&f.name);
        let db = Database::open(&path).map_err(|e| {
            bad(
                archive,
                format!("{}: cannot be opened as a store: {e}", f.name),
            )
        })?;
        let rows = count_rows(&db, *kind)?;
        if rows != f.tables {
            return Err(bad(
                archive,
                format!(
                    "{}: its tables do not hold the rows the manifest lists",
                    f.name
                ),
            ));
        }
    }
    // The files belong to whoever owns the data directory (the service user
    // of the package), not to whoever runs the restore.
    let owner = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(data_dir).map_err(io(data_dir))?;
        (m.uid(), m.gid())
    };
    // The backup's revocations, read before anything changes.
    let revoked: Vec<crate::revoke::Revoked> = if manifest.file(REVOKED).is_some() {
        crate::revoke::load(staging.path()).map_err(|e| bad(archive, format!("{REVOKED}: {e}")))?
    } else {
        Vec::new()
    };
    for f in &manifest.files {
        if f.name == REVOKED || f.name == LEDGER {
            continue;
        }
        let staged = staging.path().join(&f.name);
        std::fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(io(&staged))?;
        std::os::unix::fs::chown(&staged, Some(owner.0), Some(owner.1)).map_err(io(&staged))?;
        let to = data_dir.join(&f.name);
        std::fs::rename(&staged, &to).map_err(io(&to))?;
    }
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(data_dir))?;
    let revocations_added =
        crate::revoke::merge(data_dir, &revoked).map_err(|why| BackupError::Io {
            path: data_dir.join(REVOKED),
            error: std::io::Error::other(why),
        })?;
    if !revocations_added.is_empty() {
        let list = data_dir.join(REVOKED);
        std::os::unix::fs::chown(&list, Some(owner.0), Some(owner.1)).map_err(io(&list))?;
    }
    let certificates_added = if manifest.file(LEDGER).is_some() {
        crate::ledger::merge(data_dir, &staging.path().join(LEDGER)).map_err(|why| {
            BackupError::Io {
                path: data_dir.join(LEDGER),
                error: std::io::Error::other(why),
            }
        })?
    } else {
        0
    };
    Ok(Restored {
        manifest,
        revocations_added,
        certificates_added,
    })
}

/// One ticket whose trail a restore would shorten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLoss {
    /// The ticket.
    pub ticket: String,
    /// Records of its newest signed head.
    pub signed: u64,
    /// Records in the backup (0 when the ticket is not in it).
    pub in_backup: u64,
}

/// What restoring `archive` would roll back: every ticket whose newest
/// signed head (`<data_dir>/audit-heads.jsonl`, see `anchor.rs`, kept
/// outside the store and outside backups) counts more records than the
/// backup's trail has. Empty when nothing would be lost or nothing was
/// ever signed here.
pub fn audit_rollback(archive: &Path, data_dir: &Path) -> Result<Vec<AuditLoss>, BackupError> {
    let signed = crate::anchor::read_heads(data_dir).map_err(|e| BackupError::Io {
        path: data_dir.join(crate::anchor::HEADS_FILE),
        error: std::io::Error::other(e.to_string()),
    })?;
    if signed.is_empty() {
        return Ok(Vec::new());
    }
    let staging = tempfile::Builder::new()
        .prefix(".audit-check-")
        .tempdir_in(data_dir)
        .map_err(io(data_dir))?;
    let manifest = unpack(archive, Some(staging.path()))?;
    if manifest.samples_elsewhere.is_some() {
        // The trails are in PostgreSQL, not in this backup: restoring it
        // rolls none back (`verify` checks the database's against the
        // signed heads, also after a `pg_restore`).
        return Ok(Vec::new());
    }
    let in_backup: BTreeMap<String, u64> = if manifest.file(TICKETS_FILE.name).is_some() {
        let path = staging.path().join(TICKETS_FILE.name);
        let db = Database::open(&path)
            .map_err(|e| bad(archive, format!("{}: {e}", TICKETS_FILE.name)))?;
        crate::sop::store::heads_in(std::sync::Arc::new(db))
            .map_err(|e| bad(archive, e.to_string()))?
            .into_iter()
            .map(|(t, h)| (t, h.len))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(signed
        .values()
        .filter_map(|s| {
            let have = in_backup.get(&s.ticket).copied().unwrap_or(0);
            (have < s.len).then(|| AuditLoss {
                ticket: s.ticket.clone(),
                signed: s.len,
                in_backup: have,
            })
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{IngestBatch, RedbStore, Store};
    use siaga_proto::v1;

    fn sample(seq: u64) -> v1::Sample {
        v1::Sample {
            seq,
            ts_us: seq as i64 * 1000,
            device: "d".into(),
            kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                sent: 5,
                received: 5,
                ..Default::default()
            })),
        }
    }

    /// A data directory with every store the server opens, as it opens them.
    fn data_dir(dir: &Path) -> (RedbStore, std::sync::Arc<Database>) {
        let store = RedbStore::open(dir).unwrap();
        store
            .commit(
                &[IngestBatch::new("a", 5, (1..=10).map(sample).collect())],
                &[],
            )
            .unwrap();
        let db = std::sync::Arc::new(schema::open_tickets(dir).unwrap());
        let sop = crate::sop::store::SopStore::new(
            db.clone(),
            crate::sop::file::DEFAULT_SOP,
            Path::new("sop.toml"),
            crate::sop::Calendar::new(&crate::sop::CalendarConfig::default()).unwrap(),
        )
        .unwrap();
        sop.init().unwrap();
        crate::ticket::TicketStore::new(db.clone()).unwrap();
        crate::measure::store::MeasureStore::new(db.clone()).unwrap();
        (store, db)
    }

    #[test]
    fn a_backup_holds_every_table_and_restores_into_an_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("live");
        let (store, tickets) = data_dir(&live);
        crate::revoke::revoke_serial(&live, "aa01", "siaga://user/budi", "lost").unwrap();
        let archive = tmp.path().join("b.tar");
        let samples_db = store.database().unwrap();
        let manifest = write(
            Sources {
                samples: Samples::Here(&samples_db),
                tickets: Some(&tickets),
                data_dir: &live,
            },
            std::fs::File::create(&archive).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest.rows("collector.redb", "samples"), 10);
        assert_eq!(
            manifest.file("collector.redb").unwrap().schema_version,
            Some(SAMPLES_FILE.version)
        );
        assert_eq!(
            manifest.file("tickets.redb").unwrap().schema_version,
            Some(TICKETS_FILE.version)
        );
        assert!(manifest.file(REVOKED).is_some());
        // Nothing left behind in the live directory; what a cut-short
        // backup leaves is removed at the next start.
        let left: Vec<_> = std::fs::read_dir(&live)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 4, "{left:?}"); // the stores, the list, its lock
        std::fs::create_dir(live.join(".backup-cut")).unwrap();
        std::fs::write(live.join(".backup-cut").join("collector.redb"), "x").unwrap();
        remove_leftovers(&live);
        assert!(!live.join(".backup-cut").exists());
        assert!(live.join("collector.redb").exists());

        let restored = tmp.path().join("restored");
        assert_eq!(
            restore(&archive, &restored, false).unwrap().manifest,
            manifest
        );
        let back = RedbStore::open(&restored).unwrap();
        let h = back.history("d", 0, 100).unwrap();
        assert_eq!(h.len(), 10);
        assert_eq!(h[0].received_us, Some(5));
        assert_eq!(
            crate::revoke::load(&restored)
                .unwrap()
                .iter()
                .map(|r| r.serial.as_str())
                .collect::<Vec<_>>(),
            ["aa01"]
        );
        drop(back);
        // Not again into a directory that has data, unless forced.
        let err = restore(&archive, &restored, false).unwrap_err().to_string();
        assert!(
            err.contains("not empty (") && err.contains("--force"),
            "{err}"
        );
        restore(&archive, &restored, true).unwrap();
    }

    #[test]
    fn a_revocation_made_after_the_backup_survives_its_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("live");
        let (store, tickets) = data_dir(&live);
        crate::revoke::revoke_serial(&live, "aa01", "siaga://user/old", "").unwrap();
        let mut ledger = crate::ledger::Ledger::load(&live, &live.join("users")).unwrap();
        let agent = crate::pki::Identity::Agent {
            opd: "a".into(),
            id: "a-agent".into(),
        };
        ledger
            .record(crate::ledger::Issued::new(&agent, "cc03", Utc::now()))
            .unwrap();
        let archive = tmp.path().join("b.tar");
        let samples_db = store.database().unwrap();
        let src = Sources {
            samples: Samples::Here(&samples_db),
            tickets: Some(&tickets),
            data_dir: &live,
        };
        write(src, std::fs::File::create(&archive).unwrap()).unwrap();
        drop((samples_db, store, tickets));
        // After the backup: budi's laptop is lost; and the old entry is
        // (wrongly) edited out of the live list.
        std::fs::remove_file(live.join(REVOKED)).unwrap();
        std::fs::remove_file(live.join(LEDGER)).unwrap();
        crate::revoke::revoke_serial(&live, "bb02", "siaga://user/budi", "lost").unwrap();
        let r = restore(&archive, &live, true).unwrap();
        let serials: Vec<String> = crate::revoke::load(&live)
            .unwrap()
            .into_iter()
            .map(|r| r.serial)
            .collect();
        assert_eq!(serials, ["bb02", "aa01"], "the list only grows");
        assert_eq!(
            r.revocations_added
                .iter()
                .map(|r| r.serial.as_str())
                .collect::<Vec<_>>(),
            ["aa01"]
        );
        // The CA's ledger comes back too, merged the same way (with the
        // entry it was seeded with from the revocation list).
        assert_eq!(r.certificates_added, 2);
        let ledger = crate::ledger::Ledger::load(&live, &live.join("users")).unwrap();
        assert_eq!(ledger.by_serial("cc03").unwrap().name, "a-agent");
    }

    #[test]
    fn an_unknown_table_fails_the_backup_and_damage_fails_the_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("live");
        let (store, tickets) = data_dir(&live);
        let samples_db = store.database().unwrap();
        let src = Sources {
            samples: Samples::Here(&samples_db),
            tickets: Some(&tickets),
            data_dir: &live,
        };
        let archive = tmp.path().join("b.tar");
        write(src, std::fs::File::create(&archive).unwrap()).unwrap();

        // A byte changed inside a member.
        let mut bytes = std::fs::read(&archive).unwrap();
        let at = {
            let mut a = tar::Archive::new(std::fs::File::open(&archive).unwrap());
            let e = a
                .entries()
                .unwrap()
                .map(|e| e.unwrap())
                .find(|e| e.path().unwrap().to_str() == Some("tickets.redb"))
                .unwrap();
            (e.raw_file_position() + e.size() / 2) as usize
        };
        bytes[at] ^= 0xff;
        let damaged = tmp.path().join("damaged.tar");
        std::fs::write(&damaged, bytes).unwrap();
        let err = restore(&damaged, &tmp.path().join("r1"), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a usable backup"), "{err}");
        assert!(!tmp.path().join("r1").join("collector.redb").exists());

        let tx = tickets.begin_write().unwrap();
        tx.open_table(TableDefinition::<&str, &str>::new("someone_elses_table"))
            .unwrap();
        tx.commit().unwrap();
        let err = write(src, std::io::sink()).unwrap_err().to_string();
        assert_eq!(
            err,
            "tickets.redb: table \"someone_elses_table\" is not known to the backup; \
             this collector cannot back it up completely"
        );
    }
}
