//! `siaga-collector migrate --config collector.toml --to postgres://…`:
//! moves what the embedded store holds into PostgreSQL, checks the copy,
//! then points `collector.toml` at the database (`[store] url`).
//!
//! The move runs in [`PHASES`], one after another, each with what it
//! moves: [`samples`] (samples, their per-minute rollups, the newest
//! readings and the agents' records: `collector.redb`), then [`records`]
//! (tickets, SOP trails with their hash chains, health records, events,
//! maintenance windows, measurements and frozen reports: `tickets.redb`,
//! in one transaction, checked by the trails verifying there).
//!
//! Samples go through [`Store::commit`] of the PostgreSQL store, in
//! batches of at most [`BATCH`], so the rollups are built there exactly as
//! ingest builds them (from the samples the insert reports as new). A
//! sample already there is a conflict the insert skips and folds nothing:
//! a run that was stopped half-way is simply run again, and a second full
//! run adds nothing. `collector.toml` is rewritten only after every phase
//! copied and checked its part, and never with `--dry-run`; the old files
//! are left where they are.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use siaga_proto::v1;

use crate::config::{CollectorConfig, StoreConfig};
use crate::error::{ConfigError, StoreError};
use crate::rollup::{Fold, MINUTE_US, Minute, minute_of};
use crate::safe_file;
use crate::schema::{self, SAMPLES_FILE};
use crate::store::{
    IngestBatch, PG_SCHEMA_VERSION, PgStore, RedbStore, Store, StoredSample, database_at,
};

/// Most samples read from the embedded store and committed to PostgreSQL
/// at once: what the migration holds in memory, whatever the store's size.
pub const BATCH: usize = 20_000;

/// Rollup minutes compared per read when the copy is checked.
const MINUTES_PAGE: usize = 10_000;

/// How often the copy says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What `migrate` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// collector.toml.
    pub config: PathBuf,
    /// The PostgreSQL URL to move to (`[store] url` afterwards).
    pub to: String,
    /// Check and count only: write neither to PostgreSQL nor collector.toml.
    pub dry_run: bool,
}

/// Why a migration stopped. Nothing in collector.toml has changed then.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// collector.toml cannot be read or is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The collector already keeps its samples in PostgreSQL.
    #[error(
        "{}: store.url: the samples are already in PostgreSQL at {at}: nothing to migrate \
         (to move to another database, dump and restore it with pg_dump and pg_restore)",
        file.display()
    )]
    AlreadyOnPostgres {
        /// collector.toml.
        file: PathBuf,
        /// The database it names, without the password.
        at: String,
    },
    /// `--to` is not a URL the collector can use.
    #[error("--to: {message}")]
    BadUrl {
        /// Why (never the URL itself: it may hold a password).
        message: String,
    },
    /// No embedded store to move.
    #[error(
        "{}: not there: nothing to migrate (is data_dir in {} the collector's?)",
        path.display(),
        config.display()
    )]
    NothingThere {
        /// The store file looked for.
        path: PathBuf,
        /// collector.toml.
        config: PathBuf,
    },
    /// The collector runs and holds the store.
    #[error(
        "{}: in use by another process: stop the collector first \
         (systemctl stop siaga-collector), then run migrate again",
        path.display()
    )]
    Running {
        /// The store file.
        path: PathBuf,
    },
    /// PostgreSQL does not answer.
    #[error(
        "--to: PostgreSQL at {at} does not answer as asked: {message}; check that it runs and \
         that the URL's host, port, user, password and database are right \
         (`pg_isready -h HOST -p PORT`, then `psql URL`)"
    )]
    Unreachable {
        /// The database, without the password.
        at: String,
        /// The client's error.
        message: String,
    },
    /// Reading or writing a store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tickets' records could not be moved or did not check out; the
    /// file is left in place.
    #[error("records: {message}")]
    Records {
        /// Why.
        message: String,
    },
    /// The copy does not read back as the original.
    #[error(
        "the copy in PostgreSQL at {at} differs from {}: {what}; collector.toml is unchanged: \
         run migrate again (it adds only what is missing); if it differs again, keep the \
         collector on the embedded store and report this",
        path.display()
    )]
    Differs {
        /// The database, without the password.
        at: String,
        /// The original store file.
        path: PathBuf,
        /// The first difference found.
        what: String,
    },
    /// collector.toml could not be rewritten.
    #[error("{}: cannot add [store] url: {message}", file.display())]
    Edit {
        /// collector.toml.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// collector.toml could not be written.
    #[error(transparent)]
    Write(#[from] safe_file::WriteError),
    /// The report could not be written to the terminal.
    #[error("cannot write the report: {0}")]
    Report(#[from] std::io::Error),
}

/// What the phases work on: the stores opened once, before the first.
pub struct Migration {
    /// collector.toml as loaded.
    pub config: CollectorConfig,
    /// The embedded sample store (`collector.redb`), held open: no
    /// collector can start on it meanwhile.
    pub samples: RedbStore,
    /// Where it is.
    pub samples_path: PathBuf,
    /// The PostgreSQL store; `None` in a dry run, which writes nothing
    /// there (not even the schema).
    pub target: Option<PgStore>,
    /// The database, without the password, for messages.
    pub at: String,
    /// The database's URL.
    pub url: String,
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("at", &self.at)
            .field("dry_run", &self.target.is_none())
            .finish_non_exhaustive()
    }
}

/// One step of the migration: what it moves and the function that moves
/// and checks it, returning the lines of its summary.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Its name in the output.
    pub name: &'static str,
    /// What it moves, for the output.
    pub moves: &'static str,
    /// Copies (or, in a dry run, counts) and checks.
    pub run: fn(&Migration, &mut dyn Write) -> Result<Vec<String>, MigrateError>,
}

/// The phases, in the order they run ([`prepare`] holds `collector.redb`
/// open for the whole run: no collector starts meanwhile).
pub const PHASES: &[Phase] = &[
    Phase {
        name: "samples",
        moves: "samples, per-minute rollups, newest readings and agents' records",
        run: samples,
    },
    Phase {
        name: "records",
        moves: "tickets, SOP trails, health records, events, maintenance windows, measurements \
                and frozen reports",
        run: records,
    },
];

/// The records of `tickets.redb`, copied in one transaction (a dry run
/// rolls it back), then checked: the same tickets, every trail verifying
/// against its head in PostgreSQL. The file is kept as
/// `tickets.redb.moved`. A database already holding tickets is refused.
pub fn records(m: &Migration, _out: &mut dyn Write) -> Result<Vec<String>, MigrateError> {
    let moved = crate::kv::move_records(&m.config, &m.url, m.target.is_none())
        .map_err(|message| MigrateError::Records { message })?;
    if moved.tables.is_empty() {
        return Ok(vec!["no tickets.redb: nothing to move".into()]);
    }
    let mut lines: Vec<String> = moved
        .tables
        .iter()
        .map(|(t, n)| format!("{t}: {n} row(s)"))
        .collect();
    if let Some(kept) = &moved.kept_as {
        lines.push(format!(
            "{} trail(s) verify in PostgreSQL; the file is kept as {}",
            moved.verified,
            kept.display()
        ));
    }
    Ok(lines)
}

/// Checks everything that can refuse the migration, in the order an
/// operator fixes them, and opens the stores.
pub fn prepare(options: &Options) -> Result<Migration, MigrateError> {
    let config = CollectorConfig::load(&options.config)?;
    if let Some(url) = &config.store.url {
        return Err(MigrateError::AlreadyOnPostgres {
            file: options.config.clone(),
            at: at_of(url),
        });
    }
    StoreConfig {
        url: Some(options.to.clone()),
    }
    .check()
    .map_err(|message| MigrateError::BadUrl { message })?;
    let at = at_of(&options.to);
    let samples_path = config.data_dir.join(SAMPLES_FILE.name);
    if !samples_path.exists() {
        return Err(MigrateError::NothingThere {
            path: samples_path,
            config: options.config.clone(),
        });
    }
    let samples = RedbStore::open(&config.data_dir).map_err(|e| match e {
        StoreError::Open { path, message } if message == schema::IN_USE => {
            MigrateError::Running { path }
        }
        other => other.into(),
    })?;
    let found = PgStore::inspect(&options.to).map_err(|e| MigrateError::Unreachable {
        at: at.clone(),
        message: e.to_string(),
    })?;
    if let Some(v) = found.schema_version.filter(|v| *v > PG_SCHEMA_VERSION) {
        return Err(StoreError::PostgresTooNew {
            found: v,
            supported: PG_SCHEMA_VERSION,
        }
        .into());
    }
    let target = if options.dry_run {
        None
    } else {
        Some(PgStore::open(&options.to)?)
    };
    Ok(Migration {
        config,
        samples,
        samples_path,
        target,
        at,
        url: options.to.clone(),
    })
}

/// Runs `migrate`: [`prepare`], every phase, then (unless a dry run)
/// collector.toml gets `[store] url`. Writes what it does to `out`.
pub fn run(options: &Options, out: &mut dyn Write) -> Result<(), MigrateError> {
    let m = prepare(options)?;
    let verb = if options.dry_run {
        "would move"
    } else {
        "moving"
    };
    writeln!(out, "{verb} to PostgreSQL at {}:", m.at)?;
    for phase in PHASES {
        writeln!(out, "{}: {}", phase.name, phase.moves)?;
        for line in (phase.run)(&m, out)? {
            writeln!(out, "  {line}")?;
        }
    }
    if options.dry_run {
        writeln!(
            out,
            "dry run: nothing written to PostgreSQL, {} unchanged",
            options.config.display()
        )?;
        return Ok(());
    }
    let samples_path = m.samples_path.clone();
    let tickets = m.config.data_dir.join(schema::TICKETS_FILE.name);
    // The embedded store stays locked until the config names PostgreSQL:
    // no collector starts on it in between.
    point_at(&options.config, &options.to)?;
    drop(m);
    writeln!(
        out,
        "{}: [store] url added: the next start of the collector runs on PostgreSQL",
        options.config.display()
    )?;
    let password = options
        .to
        .parse::<tokio_postgres::Config>()
        .is_ok_and(|c| c.get_password().is_some());
    if password && readable_by_others(&options.config) {
        writeln!(
            out,
            "warning: {} is readable by every user and now holds the database's password: \
             `chmod o-r` it (the collector needs only its own user or group to read it)",
            options.config.display()
        )?;
    }
    writeln!(
        out,
        "{} is left in place and no longer read: remove it once the collector runs on \
         PostgreSQL; `backup` now names the pg_dump command for all of it, and the records \
         of {} are in PostgreSQL too",
        samples_path.display(),
        tickets.display()
    )?;
    Ok(())
}

/// The database `url` names, without the password.
fn at_of(url: &str) -> String {
    url.parse::<tokio_postgres::Config>()
        .map(|c| database_at(&c))
        .unwrap_or_else(|_| "?".into())
}

/// Samples of one device as counted on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    samples: u64,
    first_us: i64,
    last_us: i64,
}

impl Span {
    fn of(ts_us: i64) -> Span {
        Span {
            samples: 1,
            first_us: ts_us,
            last_us: ts_us,
        }
    }

    fn add(&mut self, ts_us: i64) {
        self.samples += 1;
        self.first_us = self.first_us.min(ts_us);
        self.last_us = self.last_us.max(ts_us);
    }
}

/// The batches one commit stores: `rows` grouped by (agent, receive time),
/// in the order each group first appears.
fn batches_of(rows: Vec<StoredSample>) -> Vec<IngestBatch> {
    let mut at: std::collections::HashMap<(String, Option<i64>), usize> = Default::default();
    let mut groups: Vec<(String, Option<i64>, Vec<v1::Sample>)> = Vec::new();
    for r in rows {
        let key = (r.agent, r.received_us);
        let i = *at.entry(key.clone()).or_insert_with(|| {
            groups.push((key.0.clone(), key.1, Vec::new()));
            groups.len() - 1
        });
        groups[i].2.push(r.sample);
    }
    groups
        .into_iter()
        .map(|(agent, received, samples)| IngestBatch::stored(&agent, received, samples))
        .collect()
}

/// The samples phase: every sample through the PostgreSQL store's commit
/// (rollups built there as ingest builds them), then the newest readings
/// and the agents' records; then the check.
pub fn samples(m: &Migration, out: &mut dyn Write) -> Result<Vec<String>, MigrateError> {
    let started = Instant::now();
    let total = m.samples.sample_count()?;
    let mut spans: BTreeMap<String, Span> = BTreeMap::new();
    let (mut read, mut new, mut there) = (0u64, 0u64, 0u64);
    let mut after: Option<Vec<u8>> = None;
    let mut said = Instant::now();
    loop {
        let (rows, last) = m.samples.samples_after(after.as_deref(), BATCH)?;
        if rows.is_empty() {
            break;
        }
        read += rows.len() as u64;
        for r in &rows {
            match spans.get_mut(&r.sample.device) {
                Some(s) => s.add(r.sample.ts_us),
                None => {
                    spans.insert(r.sample.device.clone(), Span::of(r.sample.ts_us));
                }
            }
        }
        if let Some(pg) = &m.target {
            for o in pg.commit(&batches_of(rows), &[])? {
                new += u64::from(o.stored);
                there += u64::from(o.duplicates);
            }
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            writeln!(out, "  … {read} of {total} samples")?;
            out.flush()?;
        }
        after = last;
    }
    let latest = m.samples.latest_rows()?;
    let agents = m.samples.agents()?;
    let Some(pg) = &m.target else {
        return Ok(vec![format!(
            "{} devices, {read} samples, {} newest readings, {} agents' records",
            spans.len(),
            latest.len(),
            agents.len()
        )]);
    };
    pg.put_latest(&latest)?;
    pg.commit(&[], &agents)?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = read as f64 / seconds.max(1e-6);
    let checked = Instant::now();
    check_samples(m, pg, &spans, &latest, &agents)?;
    Ok(vec![
        format!(
            "{} devices, {read} samples ({new} new, {there} already there), {} newest \
             readings, {} agents' records in {seconds:.1} s ({rate:.0} samples/s)",
            spans.len(),
            latest.len(),
            agents.len()
        ),
        format!(
            "checked in {:.1} s: per device the same number of samples, first and last time, \
             the same per-minute rollups, newest readings and agents' records",
            checked.elapsed().as_secs_f64()
        ),
    ])
}

/// The copy reads back as the original: per device the number of samples
/// and the first and last time, the rollups, the newest readings; the
/// agents' records.
fn check_samples(
    m: &Migration,
    pg: &PgStore,
    spans: &BTreeMap<String, Span>,
    latest: &[(String, String, Vec<u8>)],
    agents: &[crate::store::AgentRecord],
) -> Result<(), MigrateError> {
    let differs = |what: String| MigrateError::Differs {
        at: m.at.clone(),
        path: m.samples_path.clone(),
        what,
    };
    let there: BTreeMap<String, Span> = pg
        .device_spans()?
        .into_iter()
        .map(|(d, samples, first_us, last_us)| {
            (
                d,
                Span {
                    samples,
                    first_us,
                    last_us,
                },
            )
        })
        .collect();
    for (device, span) in spans {
        match there.get(device) {
            Some(t) if t == span => {}
            Some(t) => {
                return Err(differs(format!(
                    "device {device:?}: {} samples from {} to {} here, {} from {} to {} there",
                    span.samples, span.first_us, span.last_us, t.samples, t.first_us, t.last_us
                )));
            }
            None => return Err(differs(format!("device {device:?} has no samples there"))),
        }
        if let Some(what) = minutes_differ(&m.samples, pg, device, span.first_us)? {
            return Err(differs(format!("device {device:?}: {what}")));
        }
    }
    let mut devices: Vec<&str> = latest.iter().map(|l| l.0.as_str()).collect();
    devices.dedup();
    for device in devices {
        if m.samples.latest(device)? != pg.latest(device)? {
            return Err(differs(format!("device {device:?}: other newest readings")));
        }
    }
    let stored: BTreeMap<String, crate::store::AgentRecord> = pg
        .agents()?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    for a in agents {
        if stored.get(&a.id) != Some(a) {
            return Err(differs(format!("agent {:?}: another record", a.id)));
        }
    }
    Ok(())
}

/// Where the rollups of `device` differ on the two sides (`None`: they
/// read back alike), minute by minute from its first sample's. That first
/// minute may hold, in the embedded store, readings of samples retention
/// has since removed (a minute stays while it holds a kept sample): there
/// the copy may hold fewer, never more.
fn minutes_differ(
    old: &RedbStore,
    new: &PgStore,
    device: &str,
    first_us: i64,
) -> Result<Option<String>, StoreError> {
    let mut from = minute_of(first_us);
    let first_minute = from;
    loop {
        let a = old.minutes(device, from, i64::MAX, MINUTES_PAGE)?;
        let b = new.minutes(device, from, i64::MAX, MINUTES_PAGE)?;
        for (i, x) in a.iter().enumerate() {
            let Some(y) = b.get(i) else {
                return Ok(Some(format!(
                    "the rollup of the minute at {} is missing",
                    x.start_us
                )));
            };
            let ok = if x.start_us == first_minute {
                y.start_us == x.start_us && holds_at_most(y, x)
            } else {
                same_minute(x, y)
            };
            if !ok {
                return Ok(Some(format!(
                    "the rollup of the minute at {} is {y:?} there, {x:?} here",
                    x.start_us
                )));
            }
        }
        if let Some(y) = b.get(a.len()) {
            return Ok(Some(format!(
                "a rollup there of the minute at {} that is not here",
                y.start_us
            )));
        }
        match a.last() {
            Some(l) if a.len() == MINUTES_PAGE => from = l.start_us + MINUTE_US,
            _ => return Ok(None),
        }
    }
}

/// The same folds. The sums are added in the order the samples are
/// folded, which the copy need not repeat: they may differ in their last
/// bits, never more.
fn same_fold(a: &Fold, b: &Fold) -> bool {
    let close = (a.sum - b.sum).abs() <= 1e-9 * a.sum.abs().max(b.sum.abs()).max(1.0);
    a.n == b.n && (a.n == 0 || (a.min == b.min && a.max == b.max && close))
}

fn same_minute(a: &Minute, b: &Minute) -> bool {
    a.start_us == b.start_us
        && same_fold(&a.rtt, &b.rtt)
        && same_fold(&a.loss, &b.loss)
        && same_fold(&a.jitter, &b.jitter)
        && a.links.len() == b.links.len()
        && a.links.iter().zip(&b.links).all(|(x, y)| {
            x.name == y.name
                && same_fold(&x.util_in, &y.util_in)
                && same_fold(&x.util_out, &y.util_out)
                && same_fold(&x.errors, &y.errors)
        })
}

/// `copy` folds no more readings than `original` in any fold.
fn holds_at_most(copy: &Minute, original: &Minute) -> bool {
    copy.rtt.n <= original.rtt.n
        && copy.loss.n <= original.loss.n
        && copy.jitter.n <= original.jitter.n
        && copy.links.iter().all(|l| {
            original.link(&l.name).is_some_and(|o| {
                l.util_in.n <= o.util_in.n
                    && l.util_out.n <= o.util_out.n
                    && l.errors.n <= o.errors.n
            })
        })
}

/// Adds `[store] url = "<url>"` to the collector.toml at `path`, keeping
/// its comments and layout, checked as `serve` would load it, and written
/// whole or not at all.
pub fn point_at(path: &Path, url: &str) -> Result<(), MigrateError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        file: path.to_path_buf(),
        error,
    })?;
    let new = with_store_url(&text, url).map_err(|message| MigrateError::Edit {
        file: path.to_path_buf(),
        message,
    })?;
    let cfg: CollectorConfig = crate::config::parse_toml(path, &new)?;
    cfg.check(path, &new)?;
    // The mode it had: the service must still read it (a package installs
    // it root:siaga 0640, a hand-made one may rely on others reading it).
    let mode = std::fs::metadata(path).map_or(0o640, |m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    safe_file::write(path, new.as_bytes(), mode)?;
    Ok(())
}

/// Whether every user of the host may read `path`.
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// `text` with `[store] url = "<url>"`. A new `[store]` table goes at the
/// end, below the comments that end the file (the example config's
/// commented `[store]` explains it).
fn with_store_url(text: &str, url: &str) -> Result<String, String> {
    use toml_edit::{DocumentMut, Item, Table, value};
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    if !doc.contains_key("store") {
        let mut table = Table::new();
        // The comments at the end of the file stay above the new table.
        let trailing = doc.trailing().as_str().unwrap_or("").to_string();
        if !trailing.trim().is_empty() {
            table.decor_mut().set_prefix(trailing);
            doc.set_trailing("");
        }
        doc.insert("store", Item::Table(table));
    }
    let store = doc
        .get_mut("store")
        .and_then(Item::as_table_like_mut)
        .ok_or("store is not a table")?;
    store.insert("url", value(url));
    Ok(doc.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::AgentRecord;

    /// A collector.toml whose data_dir is `dir/data`, with `extra` at its end.
    fn config(dir: &Path, extra: &str) -> PathBuf {
        let path = dir.join("collector.toml");
        std::fs::write(
            &path,
            format!("listen = \"127.0.0.1:1\"\ndata_dir = \"data\"\n{extra}"),
        )
        .unwrap();
        path
    }

    fn options(config: PathBuf, to: &str) -> Options {
        Options {
            config,
            to: to.into(),
            dry_run: true,
        }
    }

    fn with_a_sample(dir: &Path) -> RedbStore {
        let s = RedbStore::open(&dir.join("data")).unwrap();
        let sample = v1::Sample {
            seq: 1,
            ts_us: 60_000_000,
            device: "d".into(),
            kind: None,
        };
        s.commit(
            &[IngestBatch::new("a", 1, vec![sample].into())],
            &[AgentRecord::default()],
        )
        .unwrap();
        s
    }

    /// An address nothing listens on (a port just released).
    fn unreachable_url() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("postgres://siaga:s3cret@127.0.0.1:{port}/siaga?connect_timeout=2")
    }

    #[test]
    fn refusals_name_the_next_step_and_never_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let good = unreachable_url();
        // Already on PostgreSQL.
        let on_pg = config(dir.path(), &format!("[store]\nurl = \"{good}\"\n"));
        let e = prepare(&options(on_pg, &good)).unwrap_err();
        assert!(matches!(e, MigrateError::AlreadyOnPostgres { .. }), "{e}");
        assert!(e.to_string().contains("nothing to migrate"), "{e}");
        let path = config(dir.path(), "");
        // A malformed URL, checked as [store] url is.
        for bad in ["mysql://x@h/d", "postgres://x@h/d?sslmode=allow"] {
            let e = prepare(&options(path.clone(), bad)).unwrap_err();
            assert!(matches!(e, MigrateError::BadUrl { .. }), "{bad}: {e}");
            assert!(e.to_string().starts_with("--to: "), "{e}");
        }
        // No store yet: nothing is created.
        let e = prepare(&options(path.clone(), &good)).unwrap_err();
        assert!(matches!(e, MigrateError::NothingThere { .. }), "{e}");
        assert!(!dir.path().join("data").join(SAMPLES_FILE.name).exists());
        // The collector runs (holds the store).
        let running = with_a_sample(dir.path());
        let e = prepare(&options(path.clone(), &good)).unwrap_err();
        assert!(matches!(e, MigrateError::Running { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("stop the collector first (systemctl stop siaga-collector)"),
            "{e}"
        );
        drop(running);
        // A database that does not answer.
        let e = prepare(&options(path.clone(), &good)).unwrap_err();
        assert!(matches!(e, MigrateError::Unreachable { .. }), "{e}");
        let said = e.to_string();
        assert!(
            !said.contains("s3cret") && said.contains("pg_isready"),
            "{said}"
        );
        // Refused every time: collector.toml as it was.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "listen = \"127.0.0.1:1\"\ndata_dir = \"data\"\n"
        );
    }

    #[test]
    fn the_store_url_is_added_with_comments_and_layout_kept() {
        let url = "postgres://siaga:pw@127.0.0.1:5432/siaga";
        let text = "# the collector\nlisten = \"127.0.0.1:1\"  # port\n\n[web]\n\
                    # where browsers come\nlisten = \"127.0.0.1:2\"\n\n\
                    # The shared store:\n# [store]\n# url = \"postgres://…\"\n";
        let new = with_store_url(text, url).unwrap();
        assert_eq!(
            new,
            format!(
                "# the collector\nlisten = \"127.0.0.1:1\"  # port\n\n[web]\n\
                 # where browsers come\nlisten = \"127.0.0.1:2\"\n\n\
                 # The shared store:\n# [store]\n# url = \"postgres://…\"\n\
                 [store]\nurl = \"{url}\"\n"
            )
        );
        // A [store] table there already gets the key.
        let new = with_store_url("listen = \"x\"\n\n[store] # shared\n", url).unwrap();
        assert_eq!(
            new,
            format!("listen = \"x\"\n\n[store] # shared\nurl = \"{url}\"\n")
        );
        // Written atomically and loadable as serve loads it.
        let dir = tempfile::tempdir().unwrap();
        let path = config(dir.path(), "");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        point_at(&path, url).unwrap();
        let cfg = CollectorConfig::load(&path).unwrap();
        assert_eq!(cfg.store.url.as_deref(), Some(url));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert!(!readable_by_others(&path));
    }

    #[test]
    fn rows_are_grouped_by_agent_and_receive_time_and_keep_an_unknown_one() {
        let s = |seq: u64| v1::Sample {
            seq,
            ts_us: seq as i64,
            device: "d".into(),
            kind: None,
        };
        let row = |agent: &str, received_us: Option<i64>, seq: u64| StoredSample {
            agent: agent.into(),
            received_us,
            sample: s(seq),
        };
        let b = batches_of(vec![
            row("a", Some(5), 1),
            row("b", Some(5), 2),
            row("a", Some(5), 3),
            row("a", None, 4),
        ]);
        let got: Vec<(&str, Vec<u64>)> = b
            .iter()
            .map(|b| {
                (
                    b.agent.as_str(),
                    b.samples.iter().map(|s| s.seq).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(got, [("a", vec![1, 3]), ("b", vec![2]), ("a", vec![4])]);
        // Stored as given: the unknown receive time stays unknown.
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store.commit(&b, &[]).unwrap();
        let h = store.history("d", 0, 10).unwrap();
        let received: Vec<Option<i64>> = h.iter().map(|s| s.received_us).collect();
        assert_eq!(received, [Some(5), Some(5), Some(5), None]);
    }

    #[test]
    fn a_copy_that_folds_in_another_order_has_the_same_minutes() {
        let mut a = Minute::new(0);
        let mut b = Minute::new(0);
        for v in [0.1, 0.2, 0.3] {
            a.loss.add(v);
        }
        for v in [0.3, 0.2, 0.1] {
            b.loss.add(v);
        }
        assert!(same_minute(&a, &b));
        b.loss.add(0.0);
        assert!(!same_minute(&a, &b));
        assert!(holds_at_most(&a, &b) && !holds_at_most(&b, &a));
    }
}
