//! The collector's store: samples, the latest reading per device, and agents.
//!
//! [`Store`] is the seam where a shared database replaces the embedded one;
//! [`RedbStore`] is the embedded implementation (redb, one file in the
//! data directory, fsync on every commit), [`PgStore`] the one on
//! PostgreSQL (`[store] url`, `store/postgres.rs`). One behaviour suite
//! runs on both (`tests/tests/store_backends.rs`).
//!
//! Samples are keyed `(device, ts, agent, seq)`, so one device's history in
//! time order is a single range scan. Since schema 3 the key and the value
//! are bytes ([`SampleRow`]) that order as that tuple: redb compares them
//! with one `memcmp` instead of decoding four fields at each step of a
//! descent, and the batch encodes them before it reaches the writer thread,
//! which only inserts. The same key drops duplicates: an agent
//! replays what it has not seen acknowledged, a replayed sample carries the
//! same sequence number (never reused by the agent) and therefore the same
//! key, and the insert reports it as already there. One B-tree insert per
//! sample keeps the write volume (the limit on a small disk) low.
//!
//! Each sample is stored with the time the collector received it beside the
//! agent's own time of the measurement: an agent whose clock is wrong or
//! jumped still shows when its samples really arrived. Samples stored before
//! schema 2 have no receive time (`None`); the migration does not invent one.
//!
//! Beside the samples, [`ROLLUPS`] holds each device's readings folded per
//! minute ([`crate::rollup`]), written in the same transaction as the
//! samples from the samples newly stored (a resend is not folded twice; a
//! late sample joins its own minute). Charts over a day or a week read
//! them. Schema 4 added the table; the migration builds it from the raw
//! samples already there.
//!
//! All writes go through one [`Writer`] thread that group-commits whatever
//! batches are waiting in one transaction and answers each batch only after
//! that transaction is durable: the acknowledgement an agent receives means
//! "on disk".

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use siaga_proto::v1;
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::rollup::{Minute, minute_of};
use crate::schema::{self, SAMPLES_FILE};

pub mod pg_connect;
pub mod postgres;
pub use pg_connect::{PgTls, SslMode as PgSslMode, pg_config};
pub use postgres::{
    Inspection as PgInspection, PgStore, VERSION as PG_SCHEMA_VERSION, database_at,
};

/// The key of a sample up to schema 2: `(device, ts_us, agent, seq)`.
type SampleKey = (&'static str, i64, &'static str, u64);

/// `(device, ts_us, agent, seq)` → (receive time at the collector, µs, `None`
/// for samples stored before schema 2; encoded [`v1::Sample`] without the
/// fields the key holds), both as bytes: see [`SampleRow`].
pub(crate) const SAMPLES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("samples");
/// Schema 2 of the same table, with redb's tuple types. Read only by the
/// migration.
const SAMPLES_V2: TableDefinition<SampleKey, (Option<i64>, &[u8])> =
    TableDefinition::new("samples");
/// Schema 1 of the same table: no receive time. Read only by the migration.
const SAMPLES_V1: TableDefinition<SampleKey, &[u8]> = TableDefinition::new("samples");
/// Where the migration to schema 2 puts the samples before the table takes
/// the name `samples` again.
const SAMPLES_MIGRATING: TableDefinition<SampleKey, (Option<i64>, &[u8])> =
    TableDefinition::new("samples_migrating_to_2");
/// The same for the migration to schema 3.
const SAMPLES_MIGRATING_3: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("samples_migrating_to_3");

/// The byte encoding of a sample's key and value in [`SAMPLES`].
///
/// Key: the device, `00 01`, the time as 8 big-endian bytes with the sign
/// bit flipped, the agent, `00 01`, the sequence number as 8 big-endian
/// bytes. A `00` inside an id is written `00 FF`. Byte order is then the
/// order of `(device, ts_us, agent, seq)`: a string ends below any longer
/// one that shares its start, times and numbers compare as numbers.
///
/// Value: `00` (receive time unknown: stored before schema 2) or `01` and
/// the receive time as 8 little-endian bytes; then the encoded
/// [`v1::Sample`] without the fields the key holds.
pub(crate) struct SampleRow;

impl SampleRow {
    /// The stored sample of one row.
    pub(crate) fn stored(key: &[u8], value: &[u8]) -> Result<StoredSample, StoreError> {
        let (device, ts_us, agent, seq) = Self::key(key)?;
        let (received_us, body) = Self::value(value)?;
        let mut sample = decode(body)?;
        sample.device = device;
        sample.ts_us = ts_us;
        sample.seq = seq;
        Ok(StoredSample {
            agent,
            received_us,
            sample,
        })
    }

    fn push_id(out: &mut Vec<u8>, id: &str) {
        for part in id.as_bytes().split(|b| *b == 0).enumerate() {
            if part.0 > 0 {
                out.extend_from_slice(&[0, 0xFF]);
            }
            out.extend_from_slice(part.1);
        }
        out.extend_from_slice(&[0, 1]);
    }

    fn ts_bytes(ts_us: i64) -> [u8; 8] {
        ((ts_us as u64) ^ (1 << 63)).to_be_bytes()
    }

    /// The start of every key of `device`.
    pub(crate) fn device_prefix(device: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(device.len() + 2);
        Self::push_id(&mut out, device);
        out
    }

    /// The smallest key of `device` at time `ts_us`.
    pub(crate) fn device_at(device: &str, ts_us: i64) -> Vec<u8> {
        let mut out = Self::device_prefix(device);
        out.extend_from_slice(&Self::ts_bytes(ts_us));
        out
    }

    /// Appends the key of a sample to `out`.
    pub(crate) fn push_key(out: &mut Vec<u8>, device: &str, ts_us: i64, agent: &str, seq: u64) {
        Self::push_id(out, device);
        out.extend_from_slice(&Self::ts_bytes(ts_us));
        Self::push_id(out, agent);
        out.extend_from_slice(&seq.to_be_bytes());
    }

    /// Appends the value of a sample to `out`: its receive time and `body`.
    pub(crate) fn push_value(out: &mut Vec<u8>, received_us: Option<i64>, body: &[u8]) {
        match received_us {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(body);
    }

    fn bad(message: &str) -> StoreError {
        StoreError::Decode {
            what: "sample key",
            message: message.into(),
        }
    }

    /// Reads an id up to its `00 01`; returns it and the rest.
    fn id(bytes: &[u8]) -> Result<(String, &[u8]), StoreError> {
        let mut raw = Vec::new();
        let mut i = 0;
        loop {
            let Some(&b) = bytes.get(i) else {
                return Err(Self::bad("an id without its end"));
            };
            if b == 0 {
                match bytes.get(i + 1) {
                    Some(1) => break,
                    Some(0xFF) => {
                        raw.push(0);
                        i += 2;
                        continue;
                    }
                    _ => return Err(Self::bad("a bad escape in an id")),
                }
            }
            raw.push(b);
            i += 1;
        }
        let id = String::from_utf8(raw).map_err(|_| Self::bad("an id that is not UTF-8"))?;
        Ok((id, &bytes[i + 2..]))
    }

    fn u64_at(bytes: &[u8]) -> Result<(u64, &[u8]), StoreError> {
        let (head, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| Self::bad("too short"))?;
        Ok((u64::from_be_bytes(*head), rest))
    }

    /// `(device, ts_us, agent, seq)` of a key.
    pub(crate) fn key(bytes: &[u8]) -> Result<(String, i64, String, u64), StoreError> {
        let (device, rest) = Self::id(bytes)?;
        let (ts, rest) = Self::u64_at(rest)?;
        let (agent, rest) = Self::id(rest)?;
        let (seq, rest) = Self::u64_at(rest)?;
        if !rest.is_empty() {
            return Err(Self::bad("bytes after the sequence number"));
        }
        Ok((device, (ts ^ (1 << 63)) as i64, agent, seq))
    }

    /// The receive time and the body of a value.
    pub(crate) fn value(bytes: &[u8]) -> Result<(Option<i64>, &[u8]), StoreError> {
        match bytes.split_first() {
            Some((0, body)) => Ok((None, body)),
            Some((1, rest)) => {
                let (t, body) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| Self::bad("a receive time cut short"))?;
                Ok((Some(i64::from_le_bytes(*t)), body))
            }
            _ => Err(Self::bad("a value of an unknown form")),
        }
    }
}

/// The rows of one batch, encoded as [`SAMPLES`] holds them.
#[derive(Debug, Clone, Default)]
struct Rows {
    bytes: Vec<u8>,
    /// Per sample: where its key ends and where its value ends in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl Rows {
    /// `received_us` is `None` only for samples stored before schema 2,
    /// copied as they are (`migrate`).
    fn encode(agent: &str, received_us: Option<i64>, samples: &[v1::Sample]) -> Self {
        let mut rows = Rows {
            bytes: Vec::with_capacity(samples.len() * 96),
            ends: Vec::with_capacity(samples.len()),
        };
        for s in samples {
            SampleRow::push_key(&mut rows.bytes, &s.device, s.ts_us, agent, s.seq);
            let key_end = rows.bytes.len();
            match received_us {
                Some(t) => {
                    rows.bytes.push(1);
                    rows.bytes.extend_from_slice(&t.to_le_bytes());
                }
                None => rows.bytes.push(0),
            }
            // Device, time and sequence live in the key: the body is the
            // sample without them, which is its kind alone (fields at
            // their default are not encoded).
            if let Some(kind) = &s.kind {
                kind.encode(&mut rows.bytes);
            }
            rows.ends.push((key_end, rows.bytes.len()));
        }
        rows
    }

    /// (key, value) of each sample, in order.
    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(k, v)| {
            let row = (&self.bytes[start..k], &self.bytes[k..v]);
            start = v;
            row
        })
    }
}
/// `device prefix, minute start` (as [`SampleRow::device_at`]) → a
/// [`Minute`] ([`Minute::encode`]).
pub(crate) const ROLLUPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rollups");
/// `device prefix, UTC day start` (as [`SampleRow::device_at`]) → how many
/// transactions stored samples of that device and day. A replay of those
/// days cached with the marks it saw is stale once one of them changes.
pub(crate) const MARKS: TableDefinition<&[u8], u64> = TableDefinition::new("sample_marks");
/// `device prefix, local day start` → the availability replay of that day
/// (see `report::availability`), with the [`MARKS`] it was computed at.
pub(crate) const DAYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("availability_days");
/// A day, µs.
pub const DAY_US: i64 = 86_400_000_000;

/// While the migration to schema 4 builds [`ROLLUPS`]: `"done"` → the key
/// of the last sample folded.
const ROLLUPS_MIGRATING_4: TableDefinition<&str, &[u8]> =
    TableDefinition::new("rollups_migrating_to_4");

/// Samples moved per transaction by the migration: a crash in between
/// loses nothing (each transaction moves them atomically) and the next
/// start carries on.
const MIGRATE_CHUNK: usize = 100_000;
/// `(device, kind)` → encoded newest [`v1::Sample`] of that kind.
const LATEST: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("latest");
/// agent id → JSON [`AgentRecord`].
const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");

/// What the collector remembers about an agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentRecord {
    /// Agent id (from its certificate).
    pub id: String,
    /// OPD (from its certificate).
    pub opd: String,
    /// Agent software version.
    pub version: String,
    /// Host name the agent reported.
    pub hostname: String,
    /// Remote address of the last connection.
    pub address: String,
    /// Last message from the agent, µs since the epoch.
    pub last_seen_us: i64,
    /// Samples waiting in its spool.
    pub spool_depth: u64,
    /// Samples its spool dropped because it was full.
    pub dropped: u64,
    /// Samples the collector refused from it (devices outside its OPD).
    pub refused: u64,
    /// Host CPU use, percent.
    pub cpu_pct: f64,
    /// Host memory use, percent.
    pub mem_used_pct: f64,
    /// Host disk use, percent.
    pub disk_used_pct: f64,
    /// Inventory revision the agent runs with.
    pub inventory_revision: u64,
    /// Collector time minus the agent's, µs, from its latest heartbeat.
    pub clock_offset_us: Option<i64>,
    /// Samples refused because they were stamped too far in the future.
    pub future_refused: u64,
    /// What the agent last said about its spool ([`v1::SpoolCondition`]).
    pub spool_condition: i32,
    /// The agent's spool error while its condition is not ok.
    pub spool_error: String,
    /// Samples the agent cut to the sample size limit.
    pub samples_cut: u64,
    /// Samples the agent gave up after the collector refused them alone.
    pub samples_undeliverable: u64,
}

/// A stored sample with the agent that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    /// Sending agent.
    pub agent: String,
    /// When the collector received it, µs since the epoch (by the
    /// collector's clock); `None` for samples stored before schema 2.
    pub received_us: Option<i64>,
    /// The sample.
    pub sample: v1::Sample,
}

/// Samples of one agent to store together.
#[derive(Debug, Clone)]
pub struct IngestBatch {
    /// Sending agent.
    pub agent: String,
    /// When the collector received the batch, µs since the epoch.
    pub received_us: i64,
    /// Samples (already checked against the agent's OPD), shared with
    /// the health engine.
    pub samples: Arc<[v1::Sample]>,
    /// The samples as the embedded store writes them, encoded where the
    /// batch is made (on the session's task), not on the writer thread.
    rows: Rows,
}

impl IngestBatch {
    /// A batch of `agent`'s samples received at `received_us`.
    pub fn new(agent: impl Into<String>, received_us: i64, samples: Arc<[v1::Sample]>) -> Self {
        let agent = agent.into();
        let rows = Rows::encode(&agent, Some(received_us), &samples);
        Self {
            agent,
            received_us,
            samples,
            rows,
        }
    }

    /// Samples already stored elsewhere, with the receive time they were
    /// stored with (`None`: before schema 2, kept unknown rather than
    /// invented; `received_us` then reads 0): what `migrate` copies.
    pub(crate) fn stored(agent: &str, received_us: Option<i64>, samples: Vec<v1::Sample>) -> Self {
        let rows = Rows::encode(agent, received_us, &samples);
        Self {
            agent: agent.to_string(),
            received_us: received_us.unwrap_or(0),
            samples: samples.into(),
            rows,
        }
    }
}

/// What happened to one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Newly stored.
    pub stored: u32,
    /// Already stored earlier (same agent and sequence).
    pub duplicates: u32,
}

/// The newest readings of one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latest {
    /// Newest ICMP sample.
    pub icmp: Option<v1::Sample>,
    /// Newest SNMP sample.
    pub snmp: Option<v1::Sample>,
    /// Time of the newest sample of any kind, µs.
    pub last_sample_us: Option<i64>,
}

/// Where a range of a history starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryFrom {
    /// At this time (µs), inclusive.
    Since(i64),
    /// Just after this sample `(ts_us, agent, seq)`: where the last range ended.
    After(i64, String, u64),
}

/// Storage of the collector. Implementations must make a commit durable
/// before returning from [`Store::commit`].
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `batches` (dropping duplicates) and `agents` in one durable transaction.
    fn commit(
        &self,
        batches: &[IngestBatch],
        agents: &[AgentRecord],
    ) -> Result<Vec<BatchOutcome>, StoreError>;
    /// Samples of `device` with `ts >= since_us`, oldest first, at most `limit`.
    fn history(
        &self,
        device: &str,
        since_us: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError>;
    /// Samples of `device` from `from` on (see [`HistoryFrom`]) with
    /// `ts < until_us`, oldest first, at most `limit`: one range of a
    /// history read range by range, each in its own read transaction.
    fn history_range(
        &self,
        device: &str,
        from: &HistoryFrom,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError>;
    /// The per-minute rollups of `device` whose minute starts in
    /// `[from_us, until_us)`, oldest first, at most `limit`: read range by
    /// range as [`Store::history_range`].
    fn minutes(
        &self,
        device: &str,
        from_us: i64,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<Minute>, StoreError>;
    /// The newest readings of `device`.
    fn latest(&self, device: &str) -> Result<Latest, StoreError>;
    /// Every agent ever seen.
    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// Deletes samples older than `before_us`, and the rollups of minutes
    /// that ended by then; returns how many samples.
    fn prune(&self, before_us: i64) -> Result<u64, StoreError>;
    /// The marks of the samples of `device` of each UTC day that meets
    /// `[from_us, until_us)`, oldest first: a number that changes whenever
    /// a sample of that device and day is stored. A store without marks
    /// gives none, and keeps no [`Store::cache_days`].
    fn sample_marks(
        &self,
        _device: &str,
        _from_us: i64,
        _until_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        Ok(Vec::new())
    }
    /// The cached availability days of `device` that start in `[from_us,
    /// until_us)`: (day start, bytes), oldest first.
    fn cached_days(
        &self,
        _device: &str,
        _from_us: i64,
        _until_us: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        Ok(Vec::new())
    }
    /// Keeps availability days of `device`: (day start, bytes).
    fn cache_days(&self, _device: &str, _days: &[(i64, Vec<u8>)]) -> Result<(), StoreError> {
        Ok(())
    }
    /// The embedded database behind this store, which `backup` copies; `None`
    /// for a store that is backed up by its own means (a shared database),
    /// or while the embedded one is being reopened after a write error.
    fn redb(&self) -> Option<Arc<Database>> {
        None
    }
    /// Where the samples are when not in the data directory (a shared
    /// database), and how to back them up; `None` for the embedded store.
    fn elsewhere(&self) -> Option<SamplesElsewhere> {
        None
    }
}

/// Samples that a backup of the data directory does not hold: they are in
/// a shared database, backed up with that database's own tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplesElsewhere {
    /// The PostgreSQL database, without its password: `user@host:port/dbname`.
    pub postgresql: String,
    /// The command that dumps it; it asks for the password (or reads
    /// `~/.pgpass` or `PGPASSWORD`).
    pub pg_dump: String,
}

/// The embedded store.
///
/// redb refuses every operation after a failed write ("previous I/O
/// error") until the database is closed, so a full disk would stop the store
/// for good. A failed commit therefore marks the database for reopening; the
/// next commit drops it and opens the file again (redb recovers it as after a
/// crash), and goes on writing as soon as the disk takes writes again.
pub struct RedbStore {
    db: std::sync::RwLock<Option<Arc<Database>>>,
    path: std::path::PathBuf,
    /// A commit failed: reopen before the next one.
    broken: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

/// What a commit derives from the samples it newly stores (never from the
/// duplicates), the same for every backend: the minutes they add to, in
/// key order; the newest sample per (device, kind); the (device, UTC day)s
/// they fall in.
#[derive(Default)]
struct Stored<'a> {
    minutes: std::collections::BTreeMap<(&'a str, i64), Minute>,
    newest: HashMap<(&'a str, &'static str), &'a v1::Sample>,
    days: std::collections::BTreeSet<(&'a str, i64)>,
}

impl<'a> Stored<'a> {
    /// Counts `s`, a sample this commit stores.
    fn add(&mut self, s: &'a v1::Sample) {
        let device = s.device.as_str();
        self.days
            .insert((device, s.ts_us.div_euclid(DAY_US) * DAY_US));
        if Minute::takes(s) {
            let start = minute_of(s.ts_us);
            self.minutes
                .entry((device, start))
                .or_insert_with(|| Minute::new(start))
                .add(s);
        }
        let e = self.newest.entry((device, kind_of(s))).or_insert(s);
        if s.ts_us >= e.ts_us {
            *e = s;
        }
    }
}

fn kind_of(s: &v1::Sample) -> &'static str {
    match s.kind {
        Some(v1::sample::Kind::Icmp(_)) => "icmp",
        Some(v1::sample::Kind::Snmp(_)) => "snmp",
        Some(v1::sample::Kind::Event(_)) => "event",
        None => "none",
    }
}

fn decode(bytes: &[u8]) -> Result<v1::Sample, StoreError> {
    v1::Sample::decode(bytes).map_err(|e| StoreError::Decode {
        what: "sample",
        message: e.to_string(),
    })
}

/// Brings `collector.redb` from schema `from` to `from + 1`.
fn migrate(db: &Database, from: u64) -> Result<(), StoreError> {
    match from {
        1 => migrate_1_to_2(db, MIGRATE_CHUNK),
        2 => migrate_2_to_3(db, MIGRATE_CHUNK),
        3 => in_chunks(db, MIGRATE_CHUNK, 4, migrate_3_to_4_chunk),
        4 => migrate_4_to_5(db),
        _ => schema::no_step(db, from),
    }
}

/// Schema 4 → 5: the tables of marks and cached days, empty: a day
/// without a mark has mark 0, and nothing is cached yet.
fn migrate_4_to_5(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.open_table(MARKS)?;
    tx.open_table(DAYS)?;
    schema::stamp(&tx, 5)?;
    tx.commit()?;
    Ok(())
}

/// Schema 1 → 2: every sample gets a receive time of `None` (unknown; not
/// the sample's own time, which is the agent's clock), `chunk` samples per
/// transaction.
fn migrate_1_to_2(db: &Database, chunk: usize) -> Result<(), StoreError> {
    in_chunks(db, chunk, 2, migrate_1_to_2_chunk)
}

/// One migration transaction: how many samples it moved, and whether it
/// was the last.
type MigrationStep = fn(&Database, usize) -> Result<(u64, bool), StoreError>;

/// Runs one migration `step` of `chunk` samples per transaction until it
/// says it is done, logging the progress towards schema `to`.
fn in_chunks(db: &Database, chunk: usize, to: u64, step: MigrationStep) -> Result<(), StoreError> {
    let mut moved = 0u64;
    loop {
        let (n, done) = step(db, chunk)?;
        moved += n;
        tracing::info!(moved, done, "samples moved to schema {to}");
        if done {
            return Ok(());
        }
    }
}

/// Moves up to `chunk` samples to the new table in one transaction; the
/// transaction that empties the old table also drops it, gives the new one
/// its name and stamps version 2. Returns how many moved and whether done.
fn migrate_1_to_2_chunk(db: &Database, chunk: usize) -> Result<(u64, bool), StoreError> {
    let tx = db.begin_write()?;
    let (n, done) = {
        let mut old = tx.open_table(SAMPLES_V1)?;
        let mut new = tx.open_table(SAMPLES_MIGRATING)?;
        let mut n = 0u64;
        while n < chunk as u64 {
            let Some((k, v)) = old.pop_first()? else {
                break;
            };
            new.insert(k.value(), (None, v.value()))?;
            n += 1;
        }
        (n, old.is_empty()?)
    };
    if done {
        tx.delete_table(SAMPLES_V1)?;
        tx.rename_table(SAMPLES_MIGRATING, SAMPLES_V2)?;
        schema::stamp(&tx, 2)?;
    }
    tx.commit()?;
    Ok((n, done))
}

/// Schema 2 → 3: the same rows, key and value as bytes ([`SampleRow`]),
/// `chunk` samples per transaction.
fn migrate_2_to_3(db: &Database, chunk: usize) -> Result<(), StoreError> {
    in_chunks(db, chunk, 3, migrate_2_to_3_chunk)
}

/// As [`migrate_1_to_2_chunk`], to schema 3.
fn migrate_2_to_3_chunk(db: &Database, chunk: usize) -> Result<(u64, bool), StoreError> {
    let tx = db.begin_write()?;
    let (n, done) = {
        let mut old = tx.open_table(SAMPLES_V2)?;
        let mut new = tx.open_table(SAMPLES_MIGRATING_3)?;
        let mut n = 0u64;
        let (mut key, mut value) = (Vec::new(), Vec::new());
        while n < chunk as u64 {
            let Some((k, v)) = old.pop_first()? else {
                break;
            };
            let (device, ts_us, agent, seq) = k.value();
            let (received_us, body) = v.value();
            key.clear();
            value.clear();
            SampleRow::push_key(&mut key, device, ts_us, agent, seq);
            SampleRow::push_value(&mut value, received_us, body);
            new.insert(key.as_slice(), value.as_slice())?;
            n += 1;
        }
        (n, old.is_empty()?)
    };
    if done {
        tx.delete_table(SAMPLES_V2)?;
        tx.rename_table(SAMPLES_MIGRATING_3, SAMPLES)?;
        schema::stamp(&tx, 3)?;
    }
    tx.commit()?;
    Ok((n, done))
}

/// Adds the minutes of `folded` to those stored in `table`.
fn merge_minutes<D: AsRef<str>>(
    table: &mut redb::Table<&[u8], &[u8]>,
    folded: impl IntoIterator<Item = ((D, i64), Minute)>,
) -> Result<(), StoreError> {
    let mut value = Vec::new();
    for ((device, start), mut m) in folded {
        let key = SampleRow::device_at(device.as_ref(), start);
        if let Some(old) = table.get(key.as_slice())? {
            let old = Minute::decode(start, old.value())?;
            m.merge(&old);
        }
        value.clear();
        m.encode(&mut value);
        table.insert(key.as_slice(), value.as_slice())?;
    }
    Ok(())
}

/// Schema 3 → 4: folds `chunk` raw samples per transaction into
/// [`ROLLUPS`], in key order, keeping where it got to in the same
/// transaction; the last one drops that mark and stamps version 4.
fn migrate_3_to_4_chunk(db: &Database, chunk: usize) -> Result<(u64, bool), StoreError> {
    use std::ops::Bound;
    let tx = db.begin_write()?;
    let (n, done) = {
        let mut progress = tx.open_table(ROLLUPS_MIGRATING_4)?;
        let after = progress.get("done")?.map(|v| v.value().to_vec());
        let samples = tx.open_table(SAMPLES)?;
        let start = match &after {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let mut folded: std::collections::BTreeMap<(String, i64), Minute> = Default::default();
        let mut n = 0u64;
        let mut last = None;
        for row in samples.range::<&[u8]>((start, Bound::Unbounded))? {
            let (k, v) = row?;
            let s = SampleRow::stored(k.value(), v.value())?.sample;
            if Minute::takes(&s) {
                let start = minute_of(s.ts_us);
                folded
                    .entry((s.device.clone(), start))
                    .or_insert_with(|| Minute::new(start))
                    .add(&s);
            }
            n += 1;
            if n >= chunk as u64 {
                last = Some(k.value().to_vec());
                break;
            }
        }
        let mut rollups = tx.open_table(ROLLUPS)?;
        merge_minutes(&mut rollups, folded)?;
        if let Some(k) = &last {
            progress.insert("done", k.as_slice())?;
        }
        (n, last.is_none())
    };
    if done {
        tx.delete_table(ROLLUPS_MIGRATING_4)?;
        schema::stamp(&tx, 4)?;
    }
    tx.commit()?;
    Ok((n, done))
}

impl RedbStore {
    /// The database (for backups: readers never block the writer).
    pub fn database(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Reopening {
                path: self.path.clone(),
            })
    }

    /// Drops the database after a failed write and opens the file again.
    /// Fails while readers still hold the old handle or the file cannot be
    /// opened; the next commit tries again.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.take() {
            match Arc::try_unwrap(db) {
                Ok(db) => drop(db),
                Err(still_shared) => {
                    *slot = Some(still_shared);
                    return Err(StoreError::Reopening {
                        path: self.path.clone(),
                    });
                }
            }
        }
        let db = Database::create(&self.path).map_err(|e| StoreError::Open {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        *slot = Some(Arc::new(db));
        self.broken
            .store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(file = %self.path.display(), "store reopened after a write error");
        Ok(())
    }

    /// One attempt at [`Store::commit`].
    fn commit_once(
        &self,
        batches: &[IngestBatch],
        agents: &[AgentRecord],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let db = self.database()?;
        let tx = db.begin_write()?;
        let mut outcomes = Vec::with_capacity(batches.len());
        {
            let mut samples = tx.open_table(SAMPLES)?;
            let mut latest = tx.open_table(LATEST)?;
            let mut stored = Stored::default();
            for b in batches {
                let mut out = BatchOutcome::default();
                for (s, (key, value)) in b.samples.iter().zip(b.rows.iter()) {
                    // One descent of the tree per sample: insert, and in
                    // the rare case that the key was there (a resend) put
                    // back what was first stored. A resend is idempotent:
                    // the body first stored and the time it first arrived stay.
                    let first = samples.insert(key, value)?.map(|old| old.value().to_vec());
                    if let Some(first) = first {
                        samples.insert(key, first.as_slice())?;
                        out.duplicates += 1;
                        continue;
                    }
                    out.stored += 1;
                    stored.add(s);
                }
                outcomes.push(out);
            }
            merge_minutes(&mut tx.open_table(ROLLUPS)?, stored.minutes)?;
            let mut marks = tx.open_table(MARKS)?;
            for (device, day) in stored.days {
                let key = SampleRow::device_at(device, day);
                let old = marks.get(key.as_slice())?.map_or(0, |v| v.value());
                marks.insert(key.as_slice(), old.wrapping_add(1))?;
            }
            for ((device, kind), s) in stored.newest {
                // Replays are older than what is already there: keep the newest.
                let older = match latest.get((device, kind))? {
                    Some(old) => decode(old.value())?.ts_us <= s.ts_us,
                    None => true,
                };
                if older {
                    latest.insert((device, kind), s.encode_to_vec().as_slice())?;
                }
            }
            let mut table = tx.open_table(AGENTS)?;
            for a in agents {
                let json = serde_json::to_vec(a).map_err(|e| StoreError::Decode {
                    what: "agent",
                    message: e.to_string(),
                })?;
                table.insert(a.id.as_str(), json.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Opens (or creates) the store in `data_dir/collector.redb`, migrating
    /// an older schema and refusing a newer one.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(SAMPLES_FILE.name);
        let db = schema::open(&path, SAMPLES_FILE, &migrate)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(SAMPLES)?;
            tx.open_table(ROLLUPS)?;
            tx.open_table(MARKS)?;
            tx.open_table(DAYS)?;
            tx.open_table(LATEST)?;
            tx.open_table(AGENTS)?;
        }
        tx.commit()?;
        Ok(Self {
            db: std::sync::RwLock::new(Some(Arc::new(db))),
            path,
            broken: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// What `migrate` reads from the embedded store beside the [`Store`] trait.
impl RedbStore {
    /// How many samples the store holds.
    pub(crate) fn sample_count(&self) -> Result<u64, StoreError> {
        let tx = self.database()?.begin_read()?;
        Ok(tx.open_table(SAMPLES)?.len()?)
    }

    /// Up to `limit` samples in key order (device, time, agent, sequence)
    /// after the key `after` (from the first without), each in its own
    /// read transaction, and the key of the last one given: where the next
    /// call starts.
    pub(crate) fn samples_after(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<StoredSample>, Option<Vec<u8>>), StoreError> {
        use std::ops::Bound;
        let tx = self.database()?.begin_read()?;
        let table = tx.open_table(SAMPLES)?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        let mut last = None;
        for row in table.range::<&[u8]>((start, Bound::Unbounded))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            out.push(SampleRow::stored(k.value(), v.value())?);
            last = Some(k.value().to_vec());
        }
        Ok((out, last))
    }

    /// Every newest reading: (device, kind, encoded [`v1::Sample`]), in
    /// key order. It outlives the samples retention prunes, so it is read
    /// as it is rather than derived from them.
    pub(crate) fn latest_rows(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let tx = self.database()?.begin_read()?;
        let table = tx.open_table(LATEST)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let (device, kind) = k.value();
            out.push((device.to_string(), kind.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// The minute start of a [`ROLLUPS`] key: its last 8 bytes, as
/// [`SampleRow::device_at`] wrote them.
fn rollup_start(key: &[u8]) -> Result<i64, StoreError> {
    let (_, ts) = key
        .split_last_chunk::<8>()
        .ok_or_else(|| SampleRow::bad("a rollup key too short"))?;
    Ok((u64::from_be_bytes(*ts) ^ (1 << 63)) as i64)
}

impl Store for RedbStore {
    fn commit(
        &self,
        batches: &[IngestBatch],
        agents: &[AgentRecord],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            self.reopen()?;
        }
        let result = self.commit_once(batches, agents);
        if result.is_err() {
            self.broken
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    fn history(
        &self,
        device: &str,
        since_us: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError> {
        let tx = self.database()?.begin_read()?;
        let table = tx.open_table(SAMPLES)?;
        let mut out = Vec::new();
        let prefix = SampleRow::device_prefix(device);
        let from = SampleRow::device_at(device, since_us);
        for row in table.range(from.as_slice()..)? {
            let (k, v) = row?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(SampleRow::stored(k.value(), v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn history_range(
        &self,
        device: &str,
        from: &HistoryFrom,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError> {
        use std::ops::Bound;
        let tx = self.database()?.begin_read()?;
        let table = tx.open_table(SAMPLES)?;
        let first = match from {
            HistoryFrom::Since(t) | HistoryFrom::After(t, ..) => *t,
        };
        let mut out = Vec::new();
        if limit == 0 || first >= until_us {
            return Ok(out);
        }
        let start_key = match from {
            HistoryFrom::Since(t) => SampleRow::device_at(device, *t),
            HistoryFrom::After(t, agent, seq) => {
                let mut k = Vec::new();
                SampleRow::push_key(&mut k, device, *t, agent, *seq);
                k
            }
        };
        let start = match from {
            HistoryFrom::Since(_) => Bound::Included(start_key.as_slice()),
            HistoryFrom::After(..) => Bound::Excluded(start_key.as_slice()),
        };
        let end_key = SampleRow::device_at(device, until_us);
        let end = Bound::Excluded(end_key.as_slice());
        for row in table.range::<&[u8]>((start, end))? {
            let (k, v) = row?;
            out.push(SampleRow::stored(k.value(), v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn minutes(
        &self,
        device: &str,
        from_us: i64,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<Minute>, StoreError> {
        let tx = self.database()?.begin_read()?;
        let table = tx.open_table(ROLLUPS)?;
        let mut out = Vec::new();
        if limit == 0 || from_us >= until_us {
            return Ok(out);
        }
        let from = SampleRow::device_at(device, from_us);
        let until = SampleRow::device_at(device, until_us);
        for row in table.range(from.as_slice()..until.as_slice())? {
            let (k, v) = row?;
            let start = rollup_start(k.value())?;
            out.push(Minute::decode(start, v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn latest(&self, device: &str) -> Result<Latest, StoreError> {
        let tx = self.database()?.begin_read()?;
        let table = tx.open_table(LATEST)?;
        let mut l = Latest::default();
        for row in table.range((device, "")..=(device, "\u{10FFFF}"))? {
            let (k, v) = row?;
            let s = decode(v.value())?;
            l.last_sample_us = Some(l.last_sample_us.map_or(s.ts_us, |t| t.max(s.ts_us)));
            match k.value().1 {
                "icmp" => l.icmp = Some(s),
                "snmp" => l.snmp = Some(s),
                _ => {}
            }
        }
        Ok(l)
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let tx = self.database()?.begin_read()?;
        let table = tx.open_table(AGENTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Decode {
                    what: "agent",
                    message: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    fn sample_marks(
        &self,
        device: &str,
        from_us: i64,
        until_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        let tx = self.database()?.begin_read()?;
        let marks = tx.open_table(MARKS)?;
        let mut out = Vec::new();
        let mut day = from_us.div_euclid(DAY_US) * DAY_US;
        while day < until_us {
            let key = SampleRow::device_at(device, day);
            out.push(marks.get(key.as_slice())?.map_or(0, |v| v.value()));
            day += DAY_US;
        }
        Ok(out)
    }

    fn cached_days(
        &self,
        device: &str,
        from_us: i64,
        until_us: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let tx = self.database()?.begin_read()?;
        let days = tx.open_table(DAYS)?;
        let (from, to) = (
            SampleRow::device_at(device, from_us),
            SampleRow::device_at(device, until_us),
        );
        let mut out = Vec::new();
        for row in days.range(from.as_slice()..to.as_slice())? {
            let (k, v) = row?;
            out.push((rollup_start(k.value())?, v.value().to_vec()));
        }
        Ok(out)
    }

    fn cache_days(&self, device: &str, days: &[(i64, Vec<u8>)]) -> Result<(), StoreError> {
        if days.is_empty() {
            return Ok(());
        }
        let db = self.database()?;
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(DAYS)?;
            for (day, bytes) in days {
                t.insert(
                    SampleRow::device_at(device, *day).as_slice(),
                    bytes.as_slice(),
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn redb(&self) -> Option<Arc<Database>> {
        self.database().ok()
    }

    fn prune(&self, before_us: i64) -> Result<u64, StoreError> {
        let db = self.database()?;
        let tx = db.begin_write()?;
        let mut removed = 0u64;
        {
            let devices: Vec<String> = {
                let latest = tx.open_table(LATEST)?;
                let mut d: Vec<String> = Vec::new();
                for row in latest.iter()? {
                    let (k, _) = row?;
                    let dev = k.value().0.to_string();
                    if d.last() != Some(&dev) {
                        d.push(dev);
                    }
                }
                d
            };
            let mut samples = tx.open_table(SAMPLES)?;
            let mut rollups = tx.open_table(ROLLUPS)?;
            let mut days = tx.open_table(DAYS)?;
            for dev in &devices {
                let from = SampleRow::device_prefix(dev);
                let to = SampleRow::device_at(dev, before_us);
                samples.retain_in(from.as_slice()..to.as_slice(), |_, _| {
                    removed += 1;
                    false
                })?;
                // A minute still holding a kept sample stays.
                let ended = SampleRow::device_at(
                    dev,
                    before_us.saturating_sub(crate::rollup::MINUTE_US - 1),
                );
                rollups.retain_in(from.as_slice()..ended.as_slice(), |_, _| false)?;
                // A cached day may have read the samples just removed.
                let read = SampleRow::device_at(dev, before_us.saturating_add(DAY_US));
                days.retain_in(from.as_slice()..read.as_slice(), |_, _| false)?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }
}

/// One request to the writer.
#[derive(Debug)]
pub enum WriteOp {
    /// Store a batch; the answer comes once it is durable.
    Batch {
        /// The batch.
        batch: IngestBatch,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<BatchOutcome, String>>,
    },
    /// Persist an agent row (heartbeat, connect, disconnect).
    Agent(AgentRecord),
}

/// Handle to the single writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<WriteOp>,
}

/// Called after each commit with its duration, the number of batches and samples.
pub type CommitHook = Box<dyn Fn(Duration, usize, usize) + Send>;

/// Most samples group-committed in one transaction.
const MAX_GROUP_SAMPLES: usize = 100_000;

impl Writer {
    /// Starts the writer thread. It ends, after committing everything queued,
    /// once every [`Writer`] handle is dropped; join the returned handle to wait.
    pub fn start(
        store: Arc<dyn Store>,
        queue: usize,
        hook: CommitHook,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<WriteOp>(queue);
        let handle = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || {
                let mut pending: Vec<WriteOp> = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    pending.push(first);
                    let mut n = 0;
                    while n < MAX_GROUP_SAMPLES {
                        match rx.try_recv() {
                            Ok(op) => {
                                if let WriteOp::Batch { batch, .. } = &op {
                                    n += batch.samples.len();
                                }
                                pending.push(op);
                            }
                            Err(_) => break,
                        }
                    }
                    let mut batches = Vec::new();
                    let mut replies = Vec::new();
                    let mut agents: HashMap<String, AgentRecord> = HashMap::new();
                    for op in pending.drain(..) {
                        match op {
                            WriteOp::Batch { batch, reply } => {
                                batches.push(batch);
                                replies.push(reply);
                            }
                            WriteOp::Agent(a) => {
                                agents.insert(a.id.clone(), a);
                            }
                        }
                    }
                    let agents: Vec<AgentRecord> = agents.into_values().collect();
                    let started = Instant::now();
                    let samples: usize = batches.iter().map(|b| b.samples.len()).sum();
                    match store.commit(&batches, &agents) {
                        Ok(outcomes) => {
                            hook(started.elapsed(), batches.len(), samples);
                            for (r, o) in replies.into_iter().zip(outcomes) {
                                let _ = r.send(Ok(o));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, batches = batches.len(), "ingest commit failed");
                            for r in replies {
                                let _ = r.send(Err(e.to_string()));
                            }
                        }
                    }
                }
                tracing::debug!("ingest writer finished");
            })
            .unwrap_or_else(|e| panic!("cannot start the ingest writer thread: {e}"));
        (Writer { tx }, handle)
    }

    /// Queues a batch; resolves once it is durable. Waits when the queue is full.
    pub async fn store(
        &self,
        batch: IngestBatch,
    ) -> Result<oneshot::Receiver<Result<BatchOutcome, String>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WriteOp::Batch { batch, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// Queues an agent row update.
    pub async fn agent(&self, record: AgentRecord) -> Result<(), StoreError> {
        self.tx
            .send(WriteOp::Agent(record))
            .await
            .map_err(|_| StoreError::WriterGone)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn icmp(seq: u64, ts_us: i64, device: &str, loss: f64) -> v1::Sample {
        v1::Sample {
            seq,
            ts_us,
            device: device.into(),
            kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                sent: 4,
                received: 4,
                loss_pct: loss,
                rtt_avg_us: Some(1500),
                ..Default::default()
            })),
        }
    }

    fn batch(agent: &str, samples: Vec<v1::Sample>) -> IngestBatch {
        IngestBatch::new(agent, 1_000_000, samples.into())
    }

    #[test]
    fn duplicates_by_agent_and_seq_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        let o = s
            .commit(
                &[batch(
                    "a1",
                    vec![icmp(1, 10, "d", 0.0), icmp(2, 20, "d", 0.0)],
                )],
                &[],
            )
            .unwrap();
        assert_eq!(
            o,
            [BatchOutcome {
                stored: 2,
                duplicates: 0
            }]
        );
        // A replay of seq 2 plus a new one; the same seq from another agent is not a duplicate.
        let o = s
            .commit(
                &[
                    batch("a1", vec![icmp(2, 20, "d", 0.0), icmp(3, 30, "d", 0.0)]),
                    batch("a2", vec![icmp(2, 25, "d", 0.0)]),
                ],
                &[],
            )
            .unwrap();
        assert_eq!(
            o,
            [
                BatchOutcome {
                    stored: 1,
                    duplicates: 1
                },
                BatchOutcome {
                    stored: 1,
                    duplicates: 0
                }
            ]
        );
        let h = s.history("d", 0, 100).unwrap();
        let keys: Vec<(&str, u64)> = h.iter().map(|x| (x.agent.as_str(), x.sample.seq)).collect();
        assert_eq!(keys, [("a1", 1), ("a1", 2), ("a2", 2), ("a1", 3)]);
    }

    #[test]
    fn a_resent_sample_keeps_the_first_body_and_receive_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        s.commit(&[batch("a1", vec![icmp(1, 10, "d", 0.0)])], &[])
            .unwrap();
        // The same (agent, seq) again, later and with another body.
        let resent = IngestBatch::new("a1", 9_000_000, vec![icmp(1, 10, "d", 75.0)].into());
        let o = s.commit(&[resent], &[]).unwrap();
        assert_eq!(
            o,
            [BatchOutcome {
                stored: 0,
                duplicates: 1
            }]
        );
        let h = s.history("d", 0, 10).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].received_us, Some(1_000_000));
        match &h[0].sample.kind {
            Some(v1::sample::Kind::Icmp(i)) => assert_eq!(i.loss_pct, 0.0),
            other => panic!("{other:?}"),
        }
        let l = s.latest("d").unwrap();
        match l.icmp.and_then(|x| x.kind) {
            Some(v1::sample::Kind::Icmp(i)) => assert_eq!(i.loss_pct, 0.0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn history_is_time_ordered_per_device_and_respects_since() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        // Arrives out of order (a replay after live samples) and mixed with another device.
        s.commit(
            &[batch(
                "a",
                vec![icmp(5, 500, "x", 0.0), icmp(6, 600, "y", 0.0)],
            )],
            &[],
        )
        .unwrap();
        s.commit(
            &[batch(
                "a",
                vec![
                    icmp(1, 100, "x", 0.0),
                    icmp(2, 200, "x", 50.0),
                    icmp(3, 300, "xy", 0.0),
                ],
            )],
            &[],
        )
        .unwrap();
        let ts: Vec<i64> = s
            .history("x", 0, 100)
            .unwrap()
            .iter()
            .map(|h| h.sample.ts_us)
            .collect();
        assert_eq!(ts, [100, 200, 500]);
        let ts: Vec<i64> = s
            .history("x", 200, 100)
            .unwrap()
            .iter()
            .map(|h| h.sample.ts_us)
            .collect();
        assert_eq!(ts, [200, 500]);
        assert_eq!(s.history("x", 0, 2).unwrap().len(), 2);
        // The replayed older sample does not replace the newest reading.
        let l = s.latest("x").unwrap();
        assert_eq!(l.icmp.map(|i| i.ts_us), Some(500));
        assert_eq!(l.last_sample_us, Some(500));
        assert_eq!(s.latest("nope").unwrap(), Latest::default());
    }

    #[test]
    fn prune_removes_only_old_samples() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        s.commit(
            &[batch(
                "a",
                vec![
                    icmp(1, 100, "x", 0.0),
                    icmp(2, 200, "y", 0.0),
                    icmp(3, 300, "x", 0.0),
                ],
            )],
            &[],
        )
        .unwrap();
        assert_eq!(s.prune(250).unwrap(), 2);
        assert_eq!(s.history("x", 0, 10).unwrap().len(), 1);
        assert!(s.history("y", 0, 10).unwrap().is_empty());
        assert_eq!(s.prune(250).unwrap(), 0);
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStore::open(dir.path()).unwrap();
            let rec = AgentRecord {
                id: "a".into(),
                opd: "o".into(),
                dropped: 7,
                refused: 2,
                ..Default::default()
            };
            s.commit(&[batch("a", vec![icmp(1, 100, "x", 0.0)])], &[rec])
                .unwrap();
        }
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(s.history("x", 0, 10).unwrap().len(), 1);
        let agents = s.agents().unwrap();
        assert_eq!(
            (agents[0].id.as_str(), agents[0].dropped, agents[0].refused),
            ("a", 7, 2)
        );
        // Dedup state survives too.
        let o = s
            .commit(&[batch("a", vec![icmp(1, 100, "x", 0.0)])], &[])
            .unwrap();
        assert_eq!(o[0].duplicates, 1);
    }

    /// A `collector.redb` as schema 1 wrote it: samples without a receive
    /// time, no meta table.
    fn schema_1_store(dir: &Path, n: u64) {
        let db = Database::create(dir.join("collector.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(SAMPLES_V1).unwrap();
            for i in 0..n {
                let body = v1::Sample {
                    kind: icmp(0, 0, "", i as f64).kind,
                    ..Default::default()
                };
                let dev = if i % 2 == 0 { "x" } else { "y" };
                t.insert(
                    (dev, i as i64 * 10, "a", i + 1),
                    body.encode_to_vec().as_slice(),
                )
                .unwrap();
            }
            tx.open_table(LATEST).unwrap();
            tx.open_table(AGENTS).unwrap();
        }
        tx.commit().unwrap();
    }

    #[test]
    fn schema_1_samples_get_no_receive_time_and_new_ones_get_theirs() {
        let dir = tempfile::tempdir().unwrap();
        schema_1_store(dir.path(), 7);
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(schema::version(&s.database().unwrap()).unwrap(), Some(5));
        let x = s.history("x", 0, 100).unwrap();
        assert_eq!(
            x.iter()
                .map(|h| (h.sample.seq, h.sample.ts_us, h.received_us))
                .collect::<Vec<_>>(),
            [(1, 0, None), (3, 20, None), (5, 40, None), (7, 60, None)]
        );
        assert_eq!(s.history("y", 0, 100).unwrap().len(), 3);
        // The values survive the move.
        match &x[3].sample.kind {
            Some(v1::sample::Kind::Icmp(i)) => assert_eq!(i.loss_pct, 6.0),
            other => panic!("{other:?}"),
        }
        // A replayed old sample is still a duplicate; a new one has its receive time.
        let o = s
            .commit(
                &[batch(
                    "a",
                    vec![icmp(7, 60, "x", 6.0), icmp(8, 70, "x", 0.0)],
                )],
                &[],
            )
            .unwrap();
        assert_eq!((o[0].stored, o[0].duplicates), (1, 1));
        let last = s.history("x", 65, 10).unwrap();
        assert_eq!(last[0].received_us, Some(1_000_000));
    }

    #[test]
    fn an_interrupted_migration_carries_on_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        schema_1_store(dir.path(), 10);
        {
            // The first chunk committed, then the process died.
            let db = Database::create(dir.path().join("collector.redb")).unwrap();
            assert_eq!(migrate_1_to_2_chunk(&db, 4).unwrap(), (4, false));
            assert_eq!(schema::version(&db).unwrap(), Some(1));
        }
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(schema::version(&s.database().unwrap()).unwrap(), Some(5));
        let seqs: Vec<u64> = ["x", "y"]
            .iter()
            .flat_map(|d| s.history(d, 0, 100).unwrap())
            .map(|h| h.sample.seq)
            .collect();
        assert_eq!(seqs, [1, 3, 5, 7, 9, 2, 4, 6, 8, 10]);
    }

    #[test]
    fn every_commit_changes_the_marks_of_the_days_it_stores_samples_of() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        let day = 20_000 * DAY_US;
        let sample = |seq: u64, ts_us: i64| v1::Sample {
            seq,
            ts_us,
            device: "x".into(),
            ..Default::default()
        };
        let commit = |samples: Vec<v1::Sample>| {
            s.commit(&[IngestBatch::new("a", 0, Arc::from(samples))], &[])
                .unwrap()
        };
        let marks = || s.sample_marks("x", day - 1, day + 2 * DAY_US).unwrap();
        assert_eq!(marks(), [0, 0, 0]);
        commit(vec![sample(1, day + 5), sample(2, day + 6)]);
        assert_eq!(marks(), [0, 1, 0]);
        commit(vec![sample(3, day + DAY_US), sample(4, day - 1)]);
        assert_eq!(marks(), [1, 1, 1]);
        // A resend stores nothing and changes nothing.
        commit(vec![sample(1, day + 5)]);
        assert_eq!(marks(), [1, 1, 1]);
        assert_eq!(s.sample_marks("y", day, day + 1).unwrap(), [0]);
        // Cached days read back by their start; prune drops those that
        // may have read a removed sample.
        s.cache_days("x", &[(day, b"a".to_vec()), (day + DAY_US, b"b".to_vec())])
            .unwrap();
        assert_eq!(
            s.cached_days("x", day, day + DAY_US).unwrap(),
            [(day, b"a".to_vec())]
        );
        s.prune(day - DAY_US / 2).unwrap();
        assert_eq!(
            s.cached_days("x", i64::MIN, i64::MAX).unwrap(),
            [(day + DAY_US, b"b".to_vec())]
        );
    }

    #[test]
    fn a_store_of_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStore::open(dir.path()).unwrap();
            let db = s.database().unwrap();
            let tx = db.begin_write().unwrap();
            schema::stamp(&tx, 6).unwrap();
            tx.commit().unwrap();
        }
        let err = RedbStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(
                "collector.redb: store schema version 6 is newer than this collector supports (5)"
            ),
            "{err}"
        );
    }

    /// Ids that share a start, contain the bytes the encoding uses, or
    /// are empty; times and numbers at their ends.
    fn awkward_keys() -> Vec<(String, i64, String, u64)> {
        let ids = ["", "a", "a\0", "a\0b", "a\u{1}", "a\u{ff}", "ab", "b", "\0"];
        let times = [i64::MIN, -1, 0, 1, 1_780_000_000_000_000, i64::MAX];
        let seqs = [0, 1, u64::MAX];
        let mut out = Vec::new();
        for d in ids {
            for t in times {
                for a in ["", "a", "a\0", "ab"] {
                    for q in seqs {
                        out.push((d.to_string(), t, a.to_string(), q));
                    }
                }
            }
        }
        out.push(("x".into(), 5, ids[3].into(), 2));
        out
    }

    #[test]
    fn sample_keys_as_bytes_order_as_the_tuple_and_read_back() {
        let keys = awkward_keys();
        let bytes: Vec<Vec<u8>> = keys
            .iter()
            .map(|(d, t, a, q)| {
                let mut b = Vec::new();
                SampleRow::push_key(&mut b, d, *t, a, *q);
                b
            })
            .collect();
        for (k, b) in keys.iter().zip(&bytes) {
            assert_eq!(&SampleRow::key(b).unwrap(), k);
        }
        for i in 0..keys.len() {
            for j in 0..keys.len() {
                assert_eq!(
                    bytes[i].cmp(&bytes[j]),
                    keys[i].cmp(&keys[j]),
                    "{:?} vs {:?}",
                    keys[i],
                    keys[j]
                );
            }
        }
        let mut v = Vec::new();
        SampleRow::push_value(&mut v, Some(-7), b"body");
        assert_eq!(SampleRow::value(&v).unwrap(), (Some(-7), &b"body"[..]));
        v.clear();
        SampleRow::push_value(&mut v, None, b"");
        assert_eq!(SampleRow::value(&v).unwrap(), (None, &b""[..]));
    }

    #[test]
    fn the_stored_body_is_the_sample_without_the_key_fields() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        let sample = icmp(3, 30, "d", 25.0);
        s.commit(&[batch("a", vec![sample.clone()])], &[]).unwrap();
        let db = s.database().unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(SAMPLES).unwrap();
        let (k, v) = t.first().unwrap().unwrap();
        assert_eq!(
            SampleRow::key(k.value()).unwrap(),
            ("d".to_string(), 30, "a".to_string(), 3)
        );
        let body = v1::Sample {
            kind: sample.kind,
            ..Default::default()
        };
        assert_eq!(
            SampleRow::value(v.value()).unwrap(),
            (Some(1_000_000), body.encode_to_vec().as_slice())
        );
    }

    /// A `collector.redb` as schema 2 wrote it: tuple keys and values.
    fn schema_2_store(dir: &Path, n: u64) {
        let db = Database::create(dir.join("collector.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(SAMPLES_V2).unwrap();
            for i in 0..n {
                let body = v1::Sample {
                    kind: icmp(0, 0, "", i as f64).kind,
                    ..Default::default()
                };
                let dev = if i % 2 == 0 { "x" } else { "y" };
                // Old samples may lack a receive time.
                let received = (i % 3 != 0).then_some(5_000 + i as i64);
                t.insert(
                    (dev, i as i64 * 10, "a", i + 1),
                    (received, body.encode_to_vec().as_slice()),
                )
                .unwrap();
            }
            tx.open_table(LATEST).unwrap();
            tx.open_table(AGENTS).unwrap();
            schema::stamp(&tx, 2).unwrap();
        }
        tx.commit().unwrap();
    }

    #[test]
    fn schema_2_samples_keep_everything_in_schema_3() {
        let dir = tempfile::tempdir().unwrap();
        schema_2_store(dir.path(), 9);
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(schema::version(&s.database().unwrap()).unwrap(), Some(5));
        let x = s.history("x", 0, 100).unwrap();
        assert_eq!(
            x.iter()
                .map(|h| (
                    h.agent.as_str(),
                    h.sample.seq,
                    h.sample.ts_us,
                    h.received_us
                ))
                .collect::<Vec<_>>(),
            [
                ("a", 1, 0, None),
                ("a", 3, 20, Some(5_002)),
                ("a", 5, 40, Some(5_004)),
                ("a", 7, 60, None),
                ("a", 9, 80, Some(5_008)),
            ]
        );
        match &x[4].sample.kind {
            Some(v1::sample::Kind::Icmp(i)) => assert_eq!(i.loss_pct, 8.0),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.history("y", 30, 100).unwrap().len(), 3);
        // Dedup holds across the migration; new samples sort among the old.
        let o = s
            .commit(
                &[batch(
                    "a",
                    vec![icmp(9, 80, "x", 0.0), icmp(10, 50, "x", 0.0)],
                )],
                &[],
            )
            .unwrap();
        assert_eq!((o[0].stored, o[0].duplicates), (1, 1));
        let ts: Vec<i64> = s
            .history("x", 0, 100)
            .unwrap()
            .iter()
            .map(|h| h.sample.ts_us)
            .collect();
        assert_eq!(ts, [0, 20, 40, 50, 60, 80]);
        // Retention walks the devices with a newest reading: here "x".
        assert_eq!(s.prune(45).unwrap(), 3);
        assert_eq!(s.history("x", 0, 100).unwrap().len(), 3);
    }

    #[test]
    fn an_interrupted_migration_to_schema_3_carries_on_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        schema_2_store(dir.path(), 10);
        {
            let db = Database::create(dir.path().join("collector.redb")).unwrap();
            assert_eq!(migrate_2_to_3_chunk(&db, 4).unwrap(), (4, false));
            assert_eq!(schema::version(&db).unwrap(), Some(2));
        }
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(schema::version(&s.database().unwrap()).unwrap(), Some(5));
        let seqs: Vec<u64> = ["x", "y"]
            .iter()
            .flat_map(|d| s.history(d, 0, 100).unwrap())
            .map(|h| h.sample.seq)
            .collect();
        assert_eq!(seqs, [1, 3, 5, 7, 9, 2, 4, 6, 8, 10]);
    }

    fn rollup_of(s: &RedbStore, device: &str) -> Vec<(i64, u32, f64, f64, f64)> {
        s.minutes(device, i64::MIN, i64::MAX, 1_000)
            .unwrap()
            .iter()
            .map(|m| (m.start_us, m.loss.n, m.loss.min, m.loss.max, m.loss.sum))
            .collect()
    }

    #[test]
    fn rollups_fold_each_stored_sample_once_into_its_minute() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        let min = crate::rollup::MINUTE_US;
        s.commit(
            &[batch(
                "a",
                vec![
                    icmp(1, 10, "x", 10.0),
                    icmp(2, min + 5, "x", 20.0),
                    icmp(3, 30, "y", 50.0),
                ],
            )],
            &[],
        )
        .unwrap();
        // Later: a late sample of the first minute, a resend of seq 1 with
        // another body (dropped: not folded again), the same seq from
        // another agent (a sample of its own).
        s.commit(
            &[
                batch(
                    "a",
                    vec![icmp(4, 59_000_000, "x", 40.0), icmp(1, 10, "x", 99.0)],
                ),
                batch("b", vec![icmp(1, 20, "x", 0.0)]),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            rollup_of(&s, "x"),
            [(0, 3, 0.0, 40.0, 50.0), (min, 1, 20.0, 20.0, 20.0)]
        );
        assert_eq!(rollup_of(&s, "y"), [(0, 1, 50.0, 50.0, 50.0)]);
        // Read from a minute on, and a limited number.
        assert_eq!(s.minutes("x", 1, i64::MAX, 10).unwrap().len(), 1);
        assert_eq!(s.minutes("x", 0, min, 10).unwrap().len(), 1);
        assert_eq!(s.minutes("x", i64::MIN, i64::MAX, 1).unwrap().len(), 1);
        // Retention drops the minutes that ended before the cut, keeps the
        // one still holding a kept sample.
        assert_eq!(s.prune(min + 1).unwrap(), 4);
        assert_eq!(rollup_of(&s, "x"), [(min, 1, 20.0, 20.0, 20.0)]);
        assert_eq!(s.prune(2 * min).unwrap(), 1);
        assert!(rollup_of(&s, "x").is_empty());
    }

    /// A store of schema 3 holding what `samples` wrote: no rollups.
    fn schema_3_store(dir: &Path, samples: Vec<v1::Sample>) -> Vec<Minute> {
        let s = RedbStore::open(dir).unwrap();
        for chunk in samples.chunks(7) {
            s.commit(&[batch("a", chunk.to_vec())], &[]).unwrap();
        }
        let built = s.minutes("x", i64::MIN, i64::MAX, 1_000).unwrap();
        let db = s.database().unwrap();
        let tx = db.begin_write().unwrap();
        tx.delete_table(ROLLUPS).unwrap();
        schema::stamp(&tx, 3).unwrap();
        tx.commit().unwrap();
        built
    }

    fn minutes_of_samples() -> Vec<v1::Sample> {
        (0..40u64)
            .map(|i| icmp(i + 1, (i as i64 * 17) % 300 * 1_000_000, "x", i as f64))
            .collect()
    }

    #[test]
    fn a_schema_3_store_gets_its_rollups_built_from_its_samples() {
        let dir = tempfile::tempdir().unwrap();
        let built = schema_3_store(dir.path(), minutes_of_samples());
        assert_eq!(built.len(), 5);
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(schema::version(&s.database().unwrap()).unwrap(), Some(5));
        assert_eq!(s.minutes("x", i64::MIN, i64::MAX, 1_000).unwrap(), built);
    }

    #[test]
    fn an_interrupted_rollup_build_carries_on_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let built = schema_3_store(dir.path(), minutes_of_samples());
        {
            // Two chunks committed (cutting minutes in two), then the
            // process died.
            let db = Database::create(dir.path().join("collector.redb")).unwrap();
            assert_eq!(migrate_3_to_4_chunk(&db, 9).unwrap(), (9, false));
            assert_eq!(migrate_3_to_4_chunk(&db, 9).unwrap(), (9, false));
            assert_eq!(schema::version(&db).unwrap(), Some(3));
        }
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(schema::version(&s.database().unwrap()).unwrap(), Some(5));
        assert_eq!(s.minutes("x", i64::MIN, i64::MAX, 1_000).unwrap(), built);
    }

    #[tokio::test]
    async fn writer_answers_each_batch_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let (w, join) = Writer::start(store.clone(), 16, Box::new(|_, _, _| {}));
        let mut rx = Vec::new();
        for i in 0..10u64 {
            rx.push(
                w.store(batch(
                    "a",
                    vec![icmp(i, i as i64, "x", 0.0), icmp(i, i as i64, "x", 0.0)],
                ))
                .await
                .unwrap(),
            );
        }
        for r in rx {
            assert_eq!(
                r.await.unwrap().unwrap(),
                BatchOutcome {
                    stored: 1,
                    duplicates: 1
                }
            );
        }
        drop(w);
        tokio::task::spawn_blocking(move || join.join().unwrap())
            .await
            .unwrap();
        assert_eq!(store.history("x", 0, 100).unwrap().len(), 10);
    }
}
