//! The durable sample spool (redb), and the sink producers push samples into.
//!
//! Every sample gets a persisted, strictly increasing sequence number and is
//! committed to disk before anyone can send it. It stays until the collector
//! acknowledges it. One writer thread owns all writes and commits whatever
//! has queued up in one transaction (group commit), so the cost of an fsync
//! is shared by every sample pushed meanwhile. Readers (the uplink) use
//! redb's MVCC snapshots and never wait for the writer.
//!
//! Bounds: `max_bytes` bounds the spool *file*: the file cannot grow past it
//! (its storage backend refuses). redb's file holds more than the records
//! (its own pages, copy-on-write commits) and grows by doubling, so the
//! records get at most half of `max_bytes`, and once the file is past half
//! of `max_bytes` (a doubling would not fit) no more than they hold then:
//! from there each new record takes the place of old ones. Should the file
//! reach `max_bytes` all the same, the write fails, the records' share is
//! lowered and the spool recovers as from a full disk (below). Beyond that
//! share, or beyond `max_age` (by the sample's
//! timestamp), the oldest samples are deleted and counted in a persisted
//! `dropped` counter. The age compares a sample's time with the wall clock,
//! the only place the wall clock matters here: a host clock stepped forward
//! by more than `max_age` (7 days by default) would age out what is spooled,
//! a step back keeps samples longer.
//!
//! A sample over [`siaga_proto::MAX_SAMPLE_BYTES`] is cut before it is
//! stored (see [`crate::fit`]) and counted.
//!
//! When a write fails (a full disk, the file at `max_bytes`, any I/O
//! error) redb fails every later operation on that handle. The spool then
//! keeps new samples in memory (at most [`MEMORY_BYTES`], the oldest dropped
//! and counted beyond), still hands them to the uplink and takes their
//! acknowledgements, reports its condition, and every [`RETRY_EVERY`]
//! checks for room, reopens the file and writes what memory holds. No
//! restart is needed.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prost::Message;
use redb::backends::FileBackend;
use redb::{
    BackendError, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageBackend,
    TableDefinition,
};
use siaga_proto::v1::{Inventory, Sample, SpoolCondition, sample};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::config::SpoolConfig;
use crate::error::SpoolError;
use crate::fit::fit;
use crate::metrics::Metrics;

/// seq → 8-byte big-endian `ts_us` followed by the encoded `Sample`.
const SAMPLES: TableDefinition<u64, &[u8]> = TableDefinition::new("samples");
/// Counters that must survive a restart.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Cached blobs (the last inventory).
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");

const NEXT_SEQ: &str = "next_seq";
const DROPPED: &str = "dropped";
const BYTES: &str = "bytes";
const CUT: &str = "cut";
const INVENTORY: &str = "inventory";

/// Bytes a sequence number takes at most in an encoded sample (tag and varint).
const SEQ_ROOM: usize = 11;
/// Most commands folded into one write transaction.
const MAX_GROUP: usize = 4096;
/// Queue between producers and the writer; producers wait when it is full.
const QUEUE: usize = 8192;
/// The spool's page cache. redb's default (1 GiB) keeps the pages of the
/// whole file in memory as it is written, so the agent's memory would grow
/// with the spool during a long collector outage (to the size of the
/// spool, 256 MiB by default). A queue touches the B-tree's upper levels and
/// the pages at its two ends: 256 KiB holds them (spool_bench: as many
/// durable pushes and reads per second as with 1 MiB, and 0.8 MiB less
/// memory with 100,000 samples spooled).
const CACHE_BYTES: usize = 256 << 10;
/// Samples (encoded bytes) kept in memory while the disk cannot take them.
pub const MEMORY_BYTES: usize = 8 << 20;
/// How often a spool that cannot write looks for room again.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Least time between two warnings about a spool that still cannot write.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Free space the filesystem needs beyond what memory holds before a
/// reopen is tried (a reopen after an error repairs the file, which writes).
const ROOM_MARGIN: u64 = 1 << 20;
/// Acknowledged ranges of on-disk samples remembered while the disk cannot
/// delete them; beyond, the oldest are forgotten (sent again later, and
/// dropped as duplicates by the collector).
const MAX_ACKED_RANGES: usize = 4096;

enum Cmd {
    Push {
        /// Already cut to the size limit (its `seq` is set by the writer);
        /// boxed, as an SNMP sample is much larger than the other commands.
        sample: Box<Sample>,
        /// Whether it was cut.
        cut: bool,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    Ack {
        seqs: Vec<u64>,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    SaveInventory {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    /// A record found over the size limit by a reader, cut: stored in its
    /// place (if still there) so that it is cut and counted once.
    Replace {
        seq: u64,
        raw: Vec<u8>,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    Flush {
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    Close {
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
}

impl Cmd {
    fn reply(self, r: Result<u64, SpoolError>) {
        let tx = match self {
            Cmd::Push { reply, .. }
            | Cmd::Ack { reply, .. }
            | Cmd::SaveInventory { reply, .. }
            | Cmd::Replace { reply, .. }
            | Cmd::Flush { reply }
            | Cmd::Close { reply } => reply,
        };
        // The caller may have given up waiting (shutdown); nothing to do then.
        let _ = tx.send(r);
    }
}

/// Figures about the spool, as reported in Hello and Heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    /// Unacknowledged samples (on disk and in memory).
    pub depth: u64,
    /// Bytes of the unacknowledged samples.
    pub bytes: u64,
    /// Samples ever dropped because of the bounds (or lost with the disk).
    pub dropped: u64,
    /// Highest sequence number committed so far (0: none yet).
    pub last_seq: u64,
    /// Samples ever cut to the sample size limit.
    pub cut: u64,
    /// Samples held in memory because the disk cannot take them.
    pub in_memory: u64,
    /// Size of the spool file.
    pub file_bytes: u64,
}

/// Whether the spool writes to disk, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolHealth {
    /// The condition.
    pub condition: SpoolCondition,
    /// The storage error while not `Ok`.
    pub error: String,
}

impl Default for SpoolHealth {
    fn default() -> Self {
        SpoolHealth {
            condition: SpoolCondition::Ok,
            error: String::new(),
        }
    }
}

/// Samples that wait in memory while the disk cannot take them.
#[derive(Debug, Default)]
struct Memory {
    /// seq → raw record (as on disk).
    samples: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
    /// On-disk samples acknowledged meanwhile; deleted once the disk can.
    acked: Vec<RangeInclusive<u64>>,
    /// An inventory to cache once the disk can.
    inventory: Option<Vec<u8>>,
}

impl Memory {
    fn is_acked(acked: &[RangeInclusive<u64>], seq: u64) -> bool {
        acked.iter().any(|r| r.contains(&seq))
    }

    fn add_acked(&mut self, r: RangeInclusive<u64>) {
        self.acked.push(r);
        self.acked.sort_by_key(|r| *r.start());
        let mut merged: Vec<RangeInclusive<u64>> = Vec::with_capacity(self.acked.len());
        for r in self.acked.drain(..) {
            match merged.last_mut() {
                Some(last) if *r.start() <= last.end().saturating_add(1) => {
                    *last = *last.start()..=(*last.end()).max(*r.end());
                }
                _ => merged.push(r),
            }
        }
        if merged.len() > MAX_ACKED_RANGES {
            merged.drain(..merged.len() - MAX_ACKED_RANGES);
        }
        self.acked = merged;
    }
}

#[derive(Debug, Default)]
struct Shared {
    depth: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    cut: AtomicU64,
    in_memory: AtomicU64,
    /// Length of the spool file, kept by its storage backend.
    file_bytes: Arc<AtomicU64>,
    /// The open database; `None` while it cannot be opened.
    db: RwLock<Option<Arc<Database>>>,
    mem: Mutex<Memory>,
    health: Mutex<SpoolHealth>,
}

impl Shared {
    fn mem(&self) -> MutexGuard<'_, Memory> {
        self.mem.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn db(&self) -> Option<Arc<Database>> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_db(&self, db: Option<Arc<Database>>) -> Option<Arc<Database>> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *slot, db)
    }
}

/// Unacknowledged samples read for sending.
#[derive(Debug, Default)]
pub struct Unacked {
    /// The samples, oldest first.
    pub samples: Vec<Sample>,
    /// Every sequence number covered, including unreadable records, so that
    /// acknowledging the batch also removes those.
    pub seqs: Vec<u64>,
    /// Encoded bytes of the samples.
    pub bytes: usize,
}

/// Handle to the spool. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    committed: watch::Receiver<u64>,
    path: PathBuf,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("path", &self.path).finish()
    }
}

/// Where producers (ICMP scheduler, SNMP poller, trap receiver, measurements)
/// put samples. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SampleSink {
    spool: Spool,
}

impl SampleSink {
    /// Stamps the sample with the agent's wall clock, commits it to the spool
    /// and returns its sequence number once it is durable (or, while the
    /// disk cannot take it, held in memory).
    pub async fn push(&self, device: String, kind: sample::Kind) -> Result<u64, SpoolError> {
        self.spool.push(device, kind, now_us()).await
    }
}

/// Microseconds since the Unix epoch by the agent's wall clock (see [`crate::clock`]).
pub fn now_us() -> i64 {
    crate::clock::now_us()
}

impl Spool {
    /// Opens (or creates) `<dir>/spool.redb` and starts its writer thread.
    ///
    /// A file that cannot be written (a full disk) is no reason to stop:
    /// the spool starts in memory and writes once it can. Other errors (the
    /// file held by another agent, a foreign file) are returned.
    pub fn open(dir: &Path, limits: &SpoolConfig, metrics: Metrics) -> Result<Spool, SpoolError> {
        let path = dir.join("spool.redb");
        std::fs::create_dir_all(dir).map_err(|e| SpoolError::Open {
            path: path.clone(),
            source: Box::new(redb::Error::Io(e)),
        })?;
        let shared = Arc::new(Shared::default());
        let (committed_tx, committed) = watch::channel(0);
        let mut writer = Writer {
            path: path.clone(),
            dir: dir.to_path_buf(),
            state: WriterState::new(limits),
            shared: shared.clone(),
            metrics,
            committed: committed_tx,
            refused_growth: Arc::new(AtomicBool::new(false)),
            degraded: None,
            last_drop_log: None,
            dropped_since_log: 0,
        };
        match writer.open_db() {
            Ok(()) => {}
            Err(e) if is_storage_failure(&e) => writer.degrade(&e),
            Err(e) => return Err(e),
        }
        writer.publish();
        writer.metrics.samples_dropped.inc_by(writer.state.dropped);
        writer.metrics.samples_cut.inc_by(writer.state.cut);

        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| SpoolError::Open {
                path: path.clone(),
                source: Box::new(redb::Error::Io(e)),
            })?;
        Ok(Spool {
            tx,
            shared,
            committed,
            path,
        })
    }

    /// A sink for producers.
    pub fn sink(&self) -> SampleSink {
        SampleSink {
            spool: self.clone(),
        }
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<u64, SpoolError>>) -> Cmd,
    ) -> Result<u64, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SpoolError::Closed)?;
        rx.await.map_err(|_| SpoolError::Closed)?
    }

    /// Commits a sample taken at `ts_us`; returns its sequence number.
    pub async fn push(
        &self,
        device: String,
        kind: sample::Kind,
        ts_us: i64,
    ) -> Result<u64, SpoolError> {
        let mut sample = Sample {
            seq: 0,
            ts_us,
            device,
            kind: Some(kind),
        };
        // Cut here, in the producer's task, so that a huge answer is never
        // copied: room is left for the sequence number the writer sets.
        let fit = fit(&mut sample, siaga_proto::MAX_SAMPLE_BYTES - SEQ_ROOM);
        let cut = fit.changed();
        if cut {
            warn!(device = %sample.device, ?fit, "sample over the size limit cut");
        }
        self.call(|reply| Cmd::Push {
            sample: Box::new(sample),
            cut,
            reply,
        })
        .await
    }

    /// Deletes acknowledged samples; returns how many were still there.
    pub async fn ack(&self, seqs: Vec<u64>) -> Result<u64, SpoolError> {
        self.call(|reply| Cmd::Ack { seqs, reply }).await
    }

    /// Returns once everything queued before is committed.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        self.call(|reply| Cmd::Flush { reply }).await.map(|_| ())
    }

    /// Commits what is queued, stops the writer and releases the database
    /// file once this is the last handle (other handles can then only read).
    pub async fn close(self) -> Result<(), SpoolError> {
        let r = self.call(|reply| Cmd::Close { reply }).await.map(|_| ());
        drop(self);
        r
    }

    /// Caches the inventory so that probing resumes after a restart even
    /// when the collector is away.
    pub async fn save_inventory(&self, inv: &Inventory) -> Result<(), SpoolError> {
        let bytes = inv.encode_to_vec();
        self.call(|reply| Cmd::SaveInventory { bytes, reply })
            .await
            .map(|_| ())
    }

    /// The inventory cached by [`Spool::save_inventory`], if any.
    pub fn cached_inventory(&self) -> Result<Option<Inventory>, SpoolError> {
        let pending = self.shared.mem().inventory.clone();
        let bytes = match pending {
            Some(b) => b,
            None => {
                let Some(db) = self.shared.db() else {
                    return Ok(None);
                };
                let txn = db.begin_read().map_err(SpoolError::storage)?;
                let table = txn.open_table(BLOBS).map_err(SpoolError::storage)?;
                let Some(v) = table.get(INVENTORY).map_err(SpoolError::storage)? else {
                    return Ok(None);
                };
                v.value().to_vec()
            }
        };
        Inventory::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| SpoolError::Corrupt {
                seq: 0,
                message: format!("cached inventory: {e}"),
            })
    }

    /// Current figures.
    pub fn stats(&self) -> SpoolStats {
        let s = &self.shared;
        SpoolStats {
            depth: s.depth.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            last_seq: *self.committed.borrow(),
            cut: s.cut.load(Ordering::Relaxed),
            in_memory: s.in_memory.load(Ordering::Relaxed),
            file_bytes: s.file_bytes.load(Ordering::Relaxed),
        }
    }

    /// Whether the spool writes to disk.
    pub fn health(&self) -> SpoolHealth {
        self.shared
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Watches the highest committed sequence number (it changes whenever
    /// new samples are durable, or held in memory).
    pub fn watch_committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Reads up to `max_samples` unacknowledged samples with a sequence
    /// number above `after`, oldest first, as many as fit in `max_bytes`
    /// encoded (at least one).
    pub async fn read_after(
        &self,
        after: u64,
        max_samples: usize,
        max_bytes: usize,
    ) -> Result<Unacked, SpoolError> {
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || read_after(&shared, &tx, after, max_samples, max_bytes))
            .await
            .map_err(|_| SpoolError::Closed)?
    }
}

/// The fields of a stored [`Sample`] before its kind: decoding only these
/// skips a huge kind without allocating it.
#[derive(Clone, PartialEq, prost::Message)]
struct SampleHead {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(int64, tag = "2")]
    ts_us: i64,
    #[prost(string, tag = "3")]
    device: String,
}

/// Decodes a stored record. One over the size limit (left by an agent
/// without the limit) is not decoded whole: it becomes the small
/// `sample_too_large` marker, handed to the writer to store in its place.
fn decode(seq: u64, raw: &[u8], tx: Option<&mpsc::Sender<Cmd>>) -> Option<Sample> {
    let Some(body) = raw.get(8..) else {
        warn!(seq, "skipping truncated spool record");
        return None;
    };
    if body.len() <= siaga_proto::MAX_SAMPLE_BYTES {
        return match Sample::decode(body) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(seq, error = %e, "skipping corrupt spool record");
                None
            }
        };
    }
    let head = match SampleHead::decode(body) {
        Ok(h) => h,
        Err(e) => {
            warn!(seq, error = %e, "skipping corrupt spool record");
            return None;
        }
    };
    let mut s = Sample {
        seq: head.seq,
        ts_us: head.ts_us,
        device: head.device,
        kind: Some(sample::Kind::Event(siaga_proto::v1::Event {
            kind: crate::fit::TOO_LARGE_EVENT.into(),
            detail: format!(
                "sample of {} over the {} limit, spooled before the limit",
                crate::fit::human(body.len()),
                crate::fit::human(siaga_proto::MAX_SAMPLE_BYTES)
            ),
            source: "agent".into(),
            ..Default::default()
        })),
    };
    fit(&mut s, siaga_proto::MAX_SAMPLE_BYTES);
    warn!(seq, device = %s.device, bytes = body.len(), "spooled sample over the size limit replaced by a marker");
    if let Some(tx) = tx {
        let mut cut = Vec::with_capacity(8 + s.encoded_len());
        cut.extend_from_slice(&raw[..8]);
        s.encode_raw(&mut cut);
        let (reply, _) = oneshot::channel();
        // Best effort: if the writer is busy it is replaced next time.
        let _ = tx.try_send(Cmd::Replace {
            seq,
            raw: cut,
            reply,
        });
    }
    Some(s)
}

fn read_after(
    shared: &Shared,
    tx: &mpsc::Sender<Cmd>,
    after: u64,
    max_samples: usize,
    max_bytes: usize,
) -> Result<Unacked, SpoolError> {
    let mut out = Unacked::default();
    let Some(start) = after.checked_add(1) else {
        return Ok(out);
    };
    let full = |out: &Unacked, len: usize| {
        out.seqs.len() >= max_samples || (!out.seqs.is_empty() && out.bytes + len > max_bytes)
    };
    let acked = shared.mem().acked.clone();
    if let Some(db) = shared.db() {
        let disk = (|| -> Result<bool, SpoolError> {
            let txn = db.begin_read().map_err(SpoolError::storage)?;
            let table = txn.open_table(SAMPLES).map_err(SpoolError::storage)?;
            for entry in table.range(start..).map_err(SpoolError::storage)? {
                let (k, v) = entry.map_err(SpoolError::storage)?;
                let seq = k.value();
                if Memory::is_acked(&acked, seq) {
                    continue;
                }
                let raw = v.value();
                let len = raw
                    .len()
                    .saturating_sub(8)
                    .min(siaga_proto::MAX_SAMPLE_BYTES);
                if full(&out, len) {
                    return Ok(true);
                }
                out.seqs.push(seq);
                if let Some(s) = decode(seq, raw, Some(tx)) {
                    out.bytes += s.encoded_len();
                    out.samples.push(s);
                }
            }
            Ok(false)
        })();
        match disk {
            Ok(true) => return Ok(out),
            Ok(false) => {}
            // The writer is on it (it reopens the file); what memory holds
            // still goes out.
            Err(e) => debug!(error = %e, "spool file unreadable; sending from memory"),
        }
    }
    let after_disk = out.seqs.last().map_or(start, |s| s + 1);
    let mem = shared.mem();
    for (&seq, raw) in mem.samples.range(after_disk..) {
        let len = raw.len().saturating_sub(8);
        if full(&out, len) {
            break;
        }
        out.seqs.push(seq);
        if let Some(s) = decode(seq, raw, None) {
            out.bytes += s.encoded_len();
            out.samples.push(s);
        }
    }
    Ok(out)
}

/// The spool file: a redb file backend that refuses to grow past
/// `max_bytes`, so that the bound holds whatever redb does with its pages.
#[derive(Debug)]
struct CappedFile {
    inner: FileBackend,
    cap: u64,
    len: Arc<AtomicU64>,
    refused: Arc<AtomicBool>,
}

impl StorageBackend for CappedFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        let n = self.inner.len()?;
        self.len.store(n, Ordering::Relaxed);
        Ok(n)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if len > self.cap && len > self.len.load(Ordering::Relaxed) {
            self.refused.store(true, Ordering::Relaxed);
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "the spool file would grow to {len} bytes, over spool.max_bytes ({})",
                    self.cap
                ),
            ));
        }
        self.inner.set_len(len)?;
        self.len.store(len, Ordering::Relaxed);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// Whether `e` is the storage failing (I/O), rather than a foreign or
/// locked file: then the spool carries on in memory.
fn is_storage_failure(e: &SpoolError) -> bool {
    let redb_err = match e {
        SpoolError::Open { source, .. } | SpoolError::Storage(source) => source,
        _ => return false,
    };
    matches!(**redb_err, redb::Error::Io(_) | redb::Error::PreviousIo)
}

/// The condition a storage error puts the spool in.
fn condition_of(e: &SpoolError) -> SpoolCondition {
    let redb_err = match e {
        SpoolError::Open { source, .. } | SpoolError::Storage(source) => source,
        _ => return SpoolCondition::WriteError,
    };
    match &**redb_err {
        redb::Error::Io(io)
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded =>
        {
            SpoolCondition::DiskFull
        }
        _ => SpoolCondition::WriteError,
    }
}

/// Bytes free for this process on the filesystem of `dir`, if known.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)]
    let (avail, frag) = (u64::from(st.blocks_available()), st.fragment_size());
    Some(avail.saturating_mul(frag))
}

/// State only the writer thread touches (mirrored into `Shared` after each
/// commit).
struct WriterState {
    next_seq: u64,
    dropped: u64,
    cut: u64,
    bytes: u64,
    depth: u64,
    max_bytes: u64,
    /// Most bytes of records: a share of `max_bytes`, lowered if the file
    /// reaches `max_bytes` all the same.
    budget: u64,
    max_age_us: i64,
    /// Whether the counters were ever read from the file.
    loaded: bool,
    /// Whether the budget was set by [`WriterState::settle`].
    settled: bool,
}

impl WriterState {
    fn new(limits: &SpoolConfig) -> Self {
        WriterState {
            loaded: false,
            settled: false,
            next_seq: 1,
            dropped: 0,
            cut: 0,
            bytes: 0,
            depth: 0,
            max_bytes: limits.max_bytes,
            budget: limits.max_bytes / 2,
            max_age_us: i64::try_from(limits.max_age.as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// Takes the counters from the file (creating its tables); numbers and
    /// counts already higher in memory stay.
    fn load(&mut self, txn: &redb::WriteTransaction) -> Result<(), SpoolError> {
        let samples = txn.open_table(SAMPLES).map_err(SpoolError::storage)?;
        let meta = txn.open_table(META).map_err(SpoolError::storage)?;
        txn.open_table(BLOBS).map_err(SpoolError::storage)?;
        let get = |k: &str| -> Result<u64, SpoolError> {
            Ok(meta
                .get(k)
                .map_err(SpoolError::storage)?
                .map_or(0, |v| v.value()))
        };
        let last_key = samples
            .last()
            .map_err(SpoolError::storage)?
            .map_or(0, |(k, _)| k.value());
        // Never reuse a number, even if the meta row were lost.
        self.next_seq = self
            .next_seq
            .max(get(NEXT_SEQ)?)
            .max(last_key.saturating_add(1))
            .max(1);
        self.dropped = self.dropped.max(get(DROPPED)?);
        self.cut = self.cut.max(get(CUT)?);
        self.bytes = get(BYTES)?;
        self.depth = samples.len().map_err(SpoolError::storage)?;
        self.loaded = true;
        Ok(())
    }

    /// Past half of `max_bytes` the file cannot double any more: the
    /// records keep to what they hold now, so that freed pages are reused.
    fn settle(&mut self, file_bytes: u64) {
        if !self.settled && file_bytes > self.max_bytes / 2 {
            self.settled = true;
            debug!(
                file_bytes,
                from = self.budget,
                to = self.bytes,
                "spool file past half its bound: records keep to their size"
            );
            self.budget = self.budget.min(self.bytes.max(1));
        }
    }

    /// Drops the oldest samples while over a bound.
    fn enforce(&mut self, txn: &redb::WriteTransaction, now_us: i64) -> Result<u64, SpoolError> {
        let mut samples = txn.open_table(SAMPLES).map_err(SpoolError::storage)?;
        let cutoff = now_us.saturating_sub(self.max_age_us);
        let mut dropped = 0;
        loop {
            let over_bytes = self.bytes > self.budget;
            let too_old = match samples.first().map_err(SpoolError::storage)? {
                Some((_, v)) => ts_of(v.value()) < cutoff,
                None => {
                    // Nothing left: any residue in the byte count is drift.
                    self.bytes = 0;
                    self.depth = 0;
                    break;
                }
            };
            if !over_bytes && !too_old {
                break;
            }
            if let Some((_, v)) = samples.pop_first().map_err(SpoolError::storage)? {
                self.bytes = self.bytes.saturating_sub(v.value().len() as u64);
                self.depth = self.depth.saturating_sub(1);
                dropped += 1;
            }
        }
        self.dropped += dropped;
        Ok(dropped)
    }

    fn persist(&self, txn: &redb::WriteTransaction) -> Result<(), SpoolError> {
        let mut meta = txn.open_table(META).map_err(SpoolError::storage)?;
        for (k, v) in [
            (NEXT_SEQ, self.next_seq),
            (DROPPED, self.dropped),
            (BYTES, self.bytes),
            (CUT, self.cut),
        ] {
            meta.insert(k, v).map_err(SpoolError::storage)?;
        }
        Ok(())
    }

    /// The record for a sample (already cut, `cut` says whether): 8-byte
    /// timestamp and the encoded sample with its sequence number.
    fn record(&mut self, seq: u64, sample: &Sample, cut: bool) -> Vec<u8> {
        if cut {
            self.cut += 1;
        }
        // The sample without its (default) seq, then the seq as field 1:
        // the same bytes as encoding it with the seq set, without a copy.
        let mut raw = Vec::with_capacity(8 + SEQ_ROOM + sample.encoded_len());
        raw.extend_from_slice(&sample.ts_us.to_be_bytes());
        prost::encoding::uint64::encode(1, &seq, &mut raw);
        sample.encode_raw(&mut raw);
        raw
    }
}

fn ts_of(raw: &[u8]) -> i64 {
    raw.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(i64::MIN, i64::from_be_bytes)
}

/// Since when and how the spool cannot write.
struct Degraded {
    since: Instant,
    last_try: Instant,
    last_log: Instant,
    /// Samples dropped from memory since the last warning.
    lost_since_log: u64,
    health: SpoolHealth,
}

struct Writer {
    path: PathBuf,
    dir: PathBuf,
    state: WriterState,
    shared: Arc<Shared>,
    metrics: Metrics,
    committed: watch::Sender<u64>,
    refused_growth: Arc<AtomicBool>,
    degraded: Option<Degraded>,
    /// Drops are logged at most every [`LOG_EVERY`], with their count.
    last_drop_log: Option<Instant>,
    dropped_since_log: u64,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                error!(error = %e, "spool writer cannot start its timer; it stops");
                return;
            }
        };
        let mut closing = Vec::new();
        loop {
            let first = if self.degraded.is_some() {
                match rt.block_on(async { tokio::time::timeout(RETRY_EVERY, rx.recv()).await }) {
                    Ok(c) => c,
                    Err(_) => {
                        self.maybe_recover();
                        continue;
                    }
                }
            } else {
                rx.blocking_recv()
            };
            let Some(first) = first else { break };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(c) => group.push(c),
                    Err(_) => break,
                }
            }
            let (close, group): (Vec<Cmd>, Vec<Cmd>) = group
                .into_iter()
                .partition(|c| matches!(c, Cmd::Close { .. }));
            if !group.is_empty() {
                self.apply(group);
            }
            self.maybe_recover();
            if !close.is_empty() {
                closing = close;
                break;
            }
        }
        // Refuse what is still queued, release the database file, and only
        // then tell the closers.
        rx.close();
        while let Ok(c) = rx.try_recv() {
            c.reply(Err(SpoolError::Closed));
        }
        if let Some(d) = &self.degraded {
            let mem = self.shared.mem();
            warn!(
                lost = mem.samples.len(),
                condition = ?d.health.condition,
                "stopping with samples only in memory: they are lost"
            );
        }
        self.shared.set_db(None);
        drop(self);
        for c in closing {
            c.reply(Ok(0));
        }
    }

    /// Opens the file (creating its tables), loads the counters, trims it
    /// to its bounds and shares the handle with the readers.
    fn open_db(&mut self) -> Result<(), SpoolError> {
        let open_err = |e: redb::Error| SpoolError::Open {
            path: self.path.clone(),
            source: Box::new(e),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| open_err(redb::Error::Io(e)))?;
        self.refused_growth.store(false, Ordering::Relaxed);
        let backend = CappedFile {
            inner: FileBackend::new(file).map_err(|e| open_err(e.into()))?,
            cap: self.state.max_bytes,
            len: self.shared.file_bytes.clone(),
            refused: self.refused_growth.clone(),
        };
        let mut db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| open_err(e.into()))?;
        // Create the tables and enforce the bounds once, so that a spool
        // opened after a long outage is trimmed before anything is read.
        let txn = db.begin_write().map_err(SpoolError::storage)?;
        self.state.load(&txn)?;
        self.state.enforce(&txn, now_us())?;
        self.state.persist(&txn)?;
        txn.commit().map_err(SpoolError::storage)?;
        self.state
            .settle(self.shared.file_bytes.load(Ordering::Relaxed));
        if self.shared.file_bytes.load(Ordering::Relaxed) > self.state.max_bytes {
            // A file from before the bound (or a lowered bound): give the
            // space back now that the records are within their share.
            let was = self.shared.file_bytes.load(Ordering::Relaxed);
            match db.compact() {
                Ok(_) => info!(
                    was,
                    now = self.shared.file_bytes.load(Ordering::Relaxed),
                    "spool file compacted to its bound"
                ),
                Err(e) => warn!(error = %e, "spool file over spool.max_bytes and not compacted"),
            }
        }
        self.shared.set_db(Some(Arc::new(db)));
        Ok(())
    }

    /// Lets go of the database handle and waits (briefly) for readers to
    /// let go too: redb locks the file until the last handle is gone.
    fn release_db(&self) {
        let Some(db) = self.shared.set_db(None) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut db = db;
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    drop(db);
                    return;
                }
                Err(still) if Instant::now() < deadline => {
                    db = still;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
    }

    fn publish(&self) {
        let shared = &self.shared;
        let (mem_n, mem_bytes) = {
            let mem = shared.mem();
            (mem.samples.len() as u64, mem.bytes as u64)
        };
        let depth = self.state.depth + mem_n;
        let bytes = self.state.bytes + mem_bytes;
        shared.depth.store(depth, Ordering::Relaxed);
        shared.bytes.store(bytes, Ordering::Relaxed);
        shared.dropped.store(self.state.dropped, Ordering::Relaxed);
        shared.cut.store(self.state.cut, Ordering::Relaxed);
        shared.in_memory.store(mem_n, Ordering::Relaxed);
        let m = &self.metrics;
        m.spool_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        m.spool_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        m.samples_in_memory
            .set(i64::try_from(mem_n).unwrap_or(i64::MAX));
        m.spool_file_bytes
            .set(i64::try_from(shared.file_bytes.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        m.spool_writable.set(i64::from(self.degraded.is_none()));
        self.committed
            .send_replace(self.state.next_seq.saturating_sub(1));
    }

    fn apply(&mut self, group: Vec<Cmd>) {
        if self.degraded.is_some() {
            self.apply_in_memory(group);
            return;
        }
        let before = (
            self.state.next_seq,
            self.state.dropped,
            self.state.bytes,
            self.state.depth,
            self.state.cut,
        );
        let Some(db) = self.shared.db() else {
            self.apply_in_memory(group);
            return;
        };
        match self.write(&db, &group) {
            Ok(results) => {
                self.state
                    .settle(self.shared.file_bytes.load(Ordering::Relaxed));
                let dropped_now = self.state.dropped - before.1;
                self.metrics.samples_dropped.inc_by(dropped_now);
                self.metrics.samples_cut.inc_by(self.state.cut - before.4);
                if dropped_now > 0 {
                    self.dropped_since_log += dropped_now;
                    if self.last_drop_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        warn!(
                            dropped = self.dropped_since_log,
                            total_dropped = self.state.dropped,
                            "spool over its bounds: oldest samples dropped"
                        );
                        self.last_drop_log = Some(Instant::now());
                        self.dropped_since_log = 0;
                    }
                }
                self.publish();
                for (cmd, r) in group.into_iter().zip(results) {
                    cmd.reply(Ok(r));
                }
            }
            Err(e) => {
                drop(db);
                // Nothing of the group is committed: restore the counters so
                // that sequence numbers stay dense with what is on disk.
                (
                    self.state.next_seq,
                    self.state.dropped,
                    self.state.bytes,
                    self.state.depth,
                    self.state.cut,
                ) = before;
                if is_storage_failure(&e) {
                    self.degrade(&e);
                    self.apply_in_memory(group);
                } else {
                    error!(error = %e, "spool commit failed");
                    let msg = e.to_string();
                    for cmd in group {
                        cmd.reply(Err(SpoolError::Corrupt {
                            seq: 0,
                            message: format!("commit failed: {msg}"),
                        }));
                    }
                }
            }
        }
    }

    /// The disk failed: carry on in memory, say so once, and let go of the
    /// handle (redb fails every later operation on it).
    fn degrade(&mut self, e: &SpoolError) {
        let now = Instant::now();
        let health = SpoolHealth {
            condition: condition_of(e),
            error: e.to_string(),
        };
        self.metrics.spool_write_errors.inc();
        if !self.state.loaded {
            // The file could not be read at all, so the numbers it used are
            // unknown: continue above any of them (the wall clock in µs is
            // far above a count of samples), never reusing one.
            let floor = u64::try_from(now_us()).unwrap_or(0);
            self.state.next_seq = self.state.next_seq.max(floor);
        }
        match &mut self.degraded {
            None => {
                error!(
                    condition = ?health.condition,
                    error = %health.error,
                    "spool cannot write: samples are kept in memory (at most {}) and sent from \
                     there; writing resumes by itself when the disk has room",
                    crate::fit::human(MEMORY_BYTES)
                );
                self.degraded = Some(Degraded {
                    since: now,
                    last_try: now,
                    last_log: now,
                    lost_since_log: 0,
                    health: health.clone(),
                });
            }
            Some(d) => {
                d.last_try = now;
                d.health = health.clone();
            }
        }
        if self.refused_growth.load(Ordering::Relaxed) {
            // The file reached max_bytes before the records reached their
            // share: give the records less room.
            let lowered = (self.state.bytes / 4 * 3).min(self.state.budget / 4 * 3);
            warn!(
                from = self.state.budget,
                to = lowered,
                "spool file reached spool.max_bytes: its records get less room"
            );
            self.state.budget = lowered;
        }
        *self
            .shared
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = health;
        self.release_db();
        self.publish();
    }

    fn apply_in_memory(&mut self, group: Vec<Cmd>) {
        let cut_before = self.state.cut;
        let mut lost = 0u64;
        let mut results = Vec::with_capacity(group.len());
        {
            let mut mem = self.shared.mem();
            for cmd in &group {
                match cmd {
                    Cmd::Push { sample, cut, .. } => {
                        let seq = self.state.next_seq;
                        self.state.next_seq += 1;
                        let raw = self.state.record(seq, sample, *cut);
                        mem.bytes += raw.len();
                        mem.samples.insert(seq, raw);
                        while mem.bytes > MEMORY_BYTES {
                            let Some((_, old)) = mem.samples.pop_first() else {
                                break;
                            };
                            mem.bytes = mem.bytes.saturating_sub(old.len());
                            lost += 1;
                        }
                        results.push(Ok(seq));
                    }
                    Cmd::Ack { seqs, .. } => {
                        let mut removed = 0;
                        let (mut lo, mut hi) = (u64::MAX, 0);
                        for &seq in seqs {
                            if let Some(raw) = mem.samples.remove(&seq) {
                                mem.bytes = mem.bytes.saturating_sub(raw.len());
                                removed += 1;
                            } else {
                                lo = lo.min(seq);
                                hi = hi.max(seq);
                            }
                        }
                        if lo <= hi {
                            // A batch covers consecutive records of the file:
                            // the whole span is acknowledged.
                            mem.add_acked(lo..=hi);
                        }
                        self.metrics.samples_acked.inc_by(removed);
                        results.push(Ok(removed));
                    }
                    Cmd::SaveInventory { bytes, .. } => {
                        mem.inventory = Some(bytes.clone());
                        results.push(Ok(0));
                    }
                    Cmd::Replace { .. } | Cmd::Flush { .. } | Cmd::Close { .. } => {
                        results.push(Ok(0));
                    }
                }
            }
        }
        self.metrics.samples_cut.inc_by(self.state.cut - cut_before);
        if lost > 0 {
            self.state.dropped += lost;
            self.metrics.samples_dropped.inc_by(lost);
            if let Some(d) = &mut self.degraded {
                d.lost_since_log += lost;
            }
        }
        self.publish();
        for (cmd, r) in group.into_iter().zip(results) {
            cmd.reply(r);
        }
    }

    /// While degraded: every [`RETRY_EVERY`], if the filesystem has room,
    /// reopen the file and write what memory holds. Warns at most every
    /// [`LOG_EVERY`] while it cannot.
    fn maybe_recover(&mut self) {
        let Some(d) = &mut self.degraded else { return };
        let now = Instant::now();
        if now.duration_since(d.last_log) >= LOG_EVERY {
            warn!(
                condition = ?d.health.condition,
                error = %d.health.error,
                since = %humantime::format_duration(Duration::from_secs(d.since.elapsed().as_secs())),
                in_memory = self.shared.mem().samples.len(),
                lost = d.lost_since_log,
                "spool still cannot write"
            );
            d.last_log = now;
            d.lost_since_log = 0;
        }
        if now.duration_since(d.last_try) < RETRY_EVERY {
            return;
        }
        d.last_try = now;
        let need = self.shared.mem().bytes as u64 * 2 + ROOM_MARGIN;
        if free_bytes(&self.dir).is_some_and(|free| free < need) {
            return;
        }
        let result = self.open_db().and_then(|()| self.write_memory());
        match result {
            Ok(()) => {
                let d = self.degraded.take();
                *self
                    .shared
                    .health
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = SpoolHealth::default();
                info!(
                    after = %humantime::format_duration(Duration::from_secs(
                        d.map_or(0, |d| d.since.elapsed().as_secs())
                    )),
                    depth = self.state.depth,
                    dropped = self.state.dropped,
                    "spool writes to disk again"
                );
                self.publish();
            }
            Err(e) => {
                debug!(error = %e, "spool still cannot write");
                if is_storage_failure(&e) {
                    self.degrade(&e);
                } else {
                    self.release_db();
                }
            }
        }
    }

    /// Writes what memory holds (samples, acknowledgements, the inventory)
    /// in one transaction, then forgets it.
    fn write_memory(&mut self) -> Result<(), SpoolError> {
        let Some(db) = self.shared.db() else {
            return Err(SpoolError::Closed);
        };
        let (samples, acked, inventory) = {
            let mem = self.shared.mem();
            (
                mem.samples.clone(),
                mem.acked.clone(),
                mem.inventory.clone(),
            )
        };
        let before = (self.state.bytes, self.state.depth, self.state.dropped);
        let result = (|| -> Result<(), SpoolError> {
            let txn = db.begin_write().map_err(SpoolError::storage)?;
            {
                let mut table = txn.open_table(SAMPLES).map_err(SpoolError::storage)?;
                for r in &acked {
                    let keys: Vec<u64> = table
                        .range(r.clone())
                        .map_err(SpoolError::storage)?
                        .filter_map(|e| e.ok().map(|(k, _)| k.value()))
                        .collect();
                    for k in keys {
                        if let Some(v) = table.remove(k).map_err(SpoolError::storage)? {
                            self.state.bytes =
                                self.state.bytes.saturating_sub(v.value().len() as u64);
                            self.state.depth = self.state.depth.saturating_sub(1);
                            self.metrics.samples_acked.inc();
                        }
                    }
                }
                for (seq, raw) in &samples {
                    table
                        .insert(seq, raw.as_slice())
                        .map_err(SpoolError::storage)?;
                    self.state.bytes += raw.len() as u64;
                    self.state.depth += 1;
                }
                if let Some(inv) = &inventory {
                    let mut blobs = txn.open_table(BLOBS).map_err(SpoolError::storage)?;
                    blobs
                        .insert(INVENTORY, inv.as_slice())
                        .map_err(SpoolError::storage)?;
                }
            }
            self.state.enforce(&txn, now_us())?;
            self.state.persist(&txn)?;
            txn.commit().map_err(SpoolError::storage)?;
            Ok(())
        })();
        drop(db);
        if let Err(e) = result {
            (self.state.bytes, self.state.depth, self.state.dropped) = before;
            return Err(e);
        }
        self.metrics.samples_spooled.inc_by(samples.len() as u64);
        let mut mem = self.shared.mem();
        // Acknowledgements of memory samples may have come meanwhile only
        // through this thread: what was copied is what is written.
        for seq in samples.keys() {
            if let Some(raw) = mem.samples.remove(seq) {
                mem.bytes = mem.bytes.saturating_sub(raw.len());
            }
        }
        mem.acked.clear();
        mem.inventory = None;
        Ok(())
    }

    /// One transaction for the whole group; returns one result per command.
    fn write(&mut self, db: &Database, group: &[Cmd]) -> Result<Vec<u64>, SpoolError> {
        let txn = db.begin_write().map_err(SpoolError::storage)?;
        let mut results = Vec::with_capacity(group.len());
        let mut spooled = 0u64;
        let mut acked = 0u64;
        {
            let mut samples = txn.open_table(SAMPLES).map_err(SpoolError::storage)?;
            let mut blobs = txn.open_table(BLOBS).map_err(SpoolError::storage)?;
            for cmd in group {
                match cmd {
                    Cmd::Push { sample, cut, .. } => {
                        let seq = self.state.next_seq;
                        self.state.next_seq += 1;
                        let raw = self.state.record(seq, sample, *cut);
                        samples
                            .insert(seq, raw.as_slice())
                            .map_err(SpoolError::storage)?;
                        self.state.bytes += raw.len() as u64;
                        self.state.depth += 1;
                        spooled += 1;
                        results.push(seq);
                    }
                    Cmd::Ack { seqs, .. } => {
                        let mut removed = 0;
                        for seq in seqs {
                            if let Some(v) = samples.remove(seq).map_err(SpoolError::storage)? {
                                self.state.bytes =
                                    self.state.bytes.saturating_sub(v.value().len() as u64);
                                self.state.depth = self.state.depth.saturating_sub(1);
                                removed += 1;
                            }
                        }
                        acked += removed;
                        results.push(removed);
                    }
                    Cmd::Replace { seq, raw, .. } => {
                        let old = samples
                            .get(seq)
                            .map_err(SpoolError::storage)?
                            .map(|v| v.value().len() as u64);
                        if let Some(old) = old {
                            samples
                                .insert(seq, raw.as_slice())
                                .map_err(SpoolError::storage)?;
                            self.state.bytes =
                                self.state.bytes.saturating_sub(old) + raw.len() as u64;
                            self.state.cut += 1;
                        }
                        results.push(0);
                    }
                    Cmd::SaveInventory { bytes, .. } => {
                        blobs
                            .insert(INVENTORY, bytes.as_slice())
                            .map_err(SpoolError::storage)?;
                        results.push(0);
                    }
                    Cmd::Flush { .. } | Cmd::Close { .. } => results.push(0),
                }
            }
        }
        self.state.enforce(&txn, now_us())?;
        self.state.persist(&txn)?;
        txn.commit().map_err(SpoolError::storage)?;
        self.metrics.samples_spooled.inc_by(spooled);
        self.metrics.samples_acked.inc_by(acked);
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siaga_proto::v1::{Event, IcmpResult};
    use std::time::Duration;

    fn icmp(received: u32) -> sample::Kind {
        sample::Kind::Icmp(IcmpResult {
            sent: 3,
            received,
            ..Default::default()
        })
    }

    fn limits(max_bytes: u64, max_age: Duration) -> SpoolConfig {
        SpoolConfig { max_bytes, max_age }
    }

    fn open(dir: &Path) -> Spool {
        Spool::open(dir, &SpoolConfig::default(), Metrics::default()).expect("open spool")
    }

    async fn all(spool: &Spool) -> Vec<Sample> {
        spool
            .read_after(0, usize::MAX, usize::MAX)
            .await
            .expect("read")
            .samples
    }

    #[tokio::test]
    async fn reopen_keeps_unacked_and_seq_keeps_increasing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seqs = vec![];
        {
            let spool = open(dir.path());
            let sink = spool.sink();
            for i in 0..5 {
                seqs.push(sink.push(format!("dev{i}"), icmp(i)).await.expect("push"));
            }
            spool.ack(vec![seqs[0], seqs[1]]).await.expect("ack");
        }
        // The writer thread ends when the last handle is gone; redb takes a
        // file lock, so wait for it to be released before reopening.
        let spool = reopen(dir.path()).await;
        let left = all(&spool).await;
        assert_eq!(
            left.iter().map(|s| s.seq).collect::<Vec<_>>(),
            seqs[2..].to_vec()
        );
        assert_eq!(left[0].device, "dev2");
        assert_eq!(spool.stats().depth, 3);
        let next = spool.sink().push("x".into(), icmp(1)).await.expect("push");
        assert!(next > seqs[4], "seq {next} not above {}", seqs[4]);

        // Even if everything was acknowledged, numbers are never reused.
        spool
            .ack((seqs[0]..=next).collect())
            .await
            .expect("ack all");
        drop(spool);
        let spool = reopen(dir.path()).await;
        assert_eq!(spool.stats().depth, 0);
        let after = spool.sink().push("y".into(), icmp(1)).await.expect("push");
        assert!(after > next);
    }

    async fn reopen(dir: &Path) -> Spool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Spool::open(dir, &SpoolConfig::default(), Metrics::default()) {
                Ok(s) => return s,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn ack_deletes_exactly_those() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = open(dir.path());
        let sink = spool.sink();
        let mut seqs = vec![];
        for i in 0..10 {
            seqs.push(sink.push("d".into(), icmp(i)).await.expect("push"));
        }
        let removed = spool
            .ack(vec![seqs[1], seqs[3], seqs[5], 9999])
            .await
            .expect("ack");
        assert_eq!(removed, 3);
        let left: Vec<u64> = all(&spool).await.iter().map(|s| s.seq).collect();
        let want: Vec<u64> = seqs
            .iter()
            .enumerate()
            .filter(|(i, _)| ![1, 3, 5].contains(i))
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(left, want);
        assert_eq!(spool.stats().depth, 7);
    }

    #[tokio::test]
    async fn replay_is_oldest_first_in_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = open(dir.path());
        let sink = spool.sink();
        // Concurrent producers: numbers are assigned in commit order.
        let mut tasks = vec![];
        for t in 0..4 {
            let sink = sink.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    sink.push(format!("t{t}"), icmp(i)).await.expect("push");
                }
            }));
        }
        for t in tasks {
            t.await.expect("join");
        }
        let mut cursor = 0;
        let mut got = vec![];
        loop {
            let page = spool.read_after(cursor, 7, usize::MAX).await.expect("read");
            let Some(last) = page.seqs.last() else { break };
            cursor = *last;
            got.extend(page.samples.iter().map(|s| s.seq));
        }
        assert_eq!(got.len(), 200);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "not increasing");
    }

    fn event(n: usize) -> sample::Kind {
        sample::Kind::Event(Event {
            kind: "test".into(),
            detail: "x".repeat(n),
            ..Default::default()
        })
    }

    /// Pushes `n` samples from 16 producers at once (group commits).
    async fn push_many(spool: &Spool, n: usize, size: usize) -> Vec<u64> {
        let mut tasks = vec![];
        for t in 0..16 {
            let sink = spool.sink();
            tasks.push(tokio::spawn(async move {
                let mut seqs = vec![];
                for _ in (t..n).step_by(16) {
                    seqs.push(sink.push("d".into(), event(size)).await.expect("push"));
                }
                seqs
            }));
        }
        let mut seqs = vec![];
        for t in tasks {
            seqs.extend(t.await.expect("join"));
        }
        seqs.sort_unstable();
        seqs
    }

    fn file_len(spool: &Spool) -> u64 {
        std::fs::metadata(spool.path()).expect("stat spool").len()
    }

    #[tokio::test]
    async fn byte_cap_bounds_the_file_drops_oldest_and_counts_persistently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cap = 256 * 1024;
        let lim = limits(cap, Duration::from_secs(3600));
        let mut seqs = vec![];
        {
            let spool = Spool::open(dir.path(), &lim, Metrics::default()).expect("open");
            // 2 MB of samples through a 256 KiB spool, the file checked all along.
            for _ in 0..20 {
                seqs.extend(push_many(&spool, 100, 1000).await);
                assert!(
                    file_len(&spool) <= cap,
                    "file {} over {cap}",
                    file_len(&spool)
                );
            }
            let st = spool.stats();
            assert!(st.bytes <= cap / 2, "records {} over their share", st.bytes);
            assert!(st.dropped > 0);
            assert_eq!(st.depth + st.dropped, 2000);
            assert_eq!(st.file_bytes, file_len(&spool));
            assert_eq!(spool.health(), SpoolHealth::default());
            let left: Vec<u64> = all(&spool).await.iter().map(|s| s.seq).collect();
            // What is left is the newest, contiguous up to the last push.
            assert_eq!(left, seqs[seqs.len() - left.len()..].to_vec());
        }
        let spool = reopen_with(dir.path(), &lim).await;
        let st = spool.stats();
        assert_eq!(st.depth + st.dropped, 2000, "dropped count survives reopen");
    }

    #[tokio::test]
    async fn an_oversized_file_is_brought_under_its_bound_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let big = limits(1 << 30, Duration::from_secs(3600));
            let spool = Spool::open(dir.path(), &big, Metrics::default()).expect("open");
            push_many(&spool, 3000, 1000).await;
            spool.close().await.expect("close");
        }
        let cap = 1 << 20;
        let was = std::fs::metadata(dir.path().join("spool.redb"))
            .expect("stat")
            .len();
        assert!(was > cap, "file {was} not over {cap} to begin with");
        let spool = reopen_with(dir.path(), &limits(cap, Duration::from_secs(3600))).await;
        assert!(
            file_len(&spool) <= cap,
            "file {} over {cap}",
            file_len(&spool)
        );
        let st = spool.stats();
        assert!(st.depth > 0 && st.dropped > 0, "{st:?}");
        push_many(&spool, 500, 1000).await;
        assert!(file_len(&spool) <= cap);
    }

    #[tokio::test]
    async fn a_sample_over_the_size_limit_is_cut_and_counted() {
        use siaga_proto::v1::{Interface, SnmpResult};
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::default();
        let spool =
            Spool::open(dir.path(), &SpoolConfig::default(), metrics.clone()).expect("open");
        // Issue 13: 490 interfaces with a 60 KB ifDescr each, 29 MB.
        let huge = sample::Kind::Snmp(SnmpResult {
            interfaces: (1..=490)
                .map(|i| Interface {
                    if_index: i,
                    if_descr: "d".repeat(60_000),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        spool.sink().push("big".into(), huge).await.expect("push");
        spool
            .sink()
            .push("small".into(), icmp(3))
            .await
            .expect("push");
        let page = spool.read_after(0, 10, 4 << 20).await.expect("read");
        assert_eq!(page.samples.len(), 2);
        assert!(page.samples[0].encoded_len() <= siaga_proto::MAX_SAMPLE_BYTES);
        assert!(spool.stats().bytes < 1 << 20, "{:?}", spool.stats());
        assert_eq!(spool.stats().cut, 1);
        assert_eq!(metrics.samples_cut.get(), 1);
    }

    #[tokio::test]
    async fn pages_are_bounded_by_encoded_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = open(dir.path());
        push_many(&spool, 40, 100_000).await;
        let page = spool.read_after(0, 500, 1 << 20).await.expect("read");
        // Ten samples of ~100 KB fill a 1 MiB page; the eleventh would not fit.
        assert_eq!(page.samples.len(), 10, "{} samples", page.samples.len());
        assert!(page.bytes <= 1 << 20);
        // A sample larger than the page still goes, alone.
        let page = spool.read_after(0, 500, 1000).await.expect("read");
        assert_eq!(page.samples.len(), 1);
    }

    async fn reopen_with(dir: &Path, lim: &SpoolConfig) -> Spool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Spool::open(dir, lim, Metrics::default()) {
                Ok(s) => return s,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    #[tokio::test]
    async fn age_cap_drops_old_samples() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(
            dir.path(),
            &limits(1 << 30, Duration::from_secs(60)),
            Metrics::default(),
        )
        .expect("open");
        let old = now_us() - 120_000_000;
        spool.push("old".into(), icmp(0), old).await.expect("push");
        spool
            .push("old".into(), icmp(0), old + 1)
            .await
            .expect("push");
        spool
            .push("new".into(), icmp(1), now_us())
            .await
            .expect("push");
        let left = all(&spool).await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].device, "new");
        assert_eq!(spool.stats().dropped, 2);
    }

    #[tokio::test]
    async fn inventory_cache_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spool = open(dir.path());
            assert_eq!(spool.cached_inventory().expect("read"), None);
            let inv = Inventory {
                revision: 42,
                opd: "dinkes".into(),
                ..Default::default()
            };
            spool.save_inventory(&inv).await.expect("save");
        }
        let spool = reopen(dir.path()).await;
        let inv = spool.cached_inventory().expect("read").expect("cached");
        assert_eq!(inv.revision, 42);
        assert_eq!(inv.opd, "dinkes");
    }
}
