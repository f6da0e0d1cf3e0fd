//! The durable sample spool (redb), and the sink producers push samples into.
//!
//! Every sample gets a persisted, strictly increasing sequence number and is
//! committed to disk before anyone can send it. It stays until the collector
//! acknowledges it. One writer thread owns all writes and commits whatever
//! has queued up in one transaction (group commit), so the cost of an fsync
//! is shared by every sample pushed meanwhile. Readers (the uplink) use
//! redb's MVCC snapshots and never wait for the writer.
//!
//! Bounds: beyond `max_bytes` (sum of the stored records) or `max_age` (by
//! the sample's timestamp), the oldest samples are deleted and counted in a
//! persisted `dropped` counter. The age compares a sample's time with the
//! wall clock, the only place the wall clock matters here: a host clock
//! stepped forward by more than `max_age` (7 days by default) would age out
//! what is spooled, a step back keeps samples longer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use siaga_proto::v1::{Inventory, Sample, sample};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, warn};

use crate::config::SpoolConfig;
use crate::error::SpoolError;
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
const INVENTORY: &str = "inventory";

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

enum Cmd {
    Push {
        device: String,
        kind: sample::Kind,
        ts_us: i64,
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
    /// Unacknowledged samples.
    pub depth: u64,
    /// Bytes of the unacknowledged samples.
    pub bytes: u64,
    /// Samples ever dropped because of the bounds.
    pub dropped: u64,
    /// Highest sequence number committed so far (0: none yet).
    pub last_seq: u64,
}

#[derive(Debug, Default)]
struct Shared {
    depth: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
}

/// Unacknowledged samples read for sending.
#[derive(Debug, Default)]
pub struct Unacked {
    /// The samples, oldest first.
    pub samples: Vec<Sample>,
    /// Every sequence number covered, including unreadable records, so that
    /// acknowledging the batch also removes those.
    pub seqs: Vec<u64>,
}

/// Handle to the spool. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    db: Arc<Database>,
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
    /// and returns its sequence number once it is durable.
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
    pub fn open(dir: &Path, limits: &SpoolConfig, metrics: Metrics) -> Result<Spool, SpoolError> {
        let path = dir.join("spool.redb");
        let open_err = |e: redb::Error| SpoolError::Open {
            path: path.clone(),
            source: Box::new(e),
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(redb::Error::Io(e)))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_err(e.into()))?;
        let db = Arc::new(db);
        let limits = limits.clone();

        // Create the tables and enforce the bounds once, so that a spool
        // opened after a long outage is trimmed before anything is read.
        let mut state = WriterState::load(&db, &limits)?;
        {
            let txn = db.begin_write().map_err(SpoolError::storage)?;
            state.enforce(&txn, now_us())?;
            state.persist(&txn)?;
            txn.commit().map_err(SpoolError::storage)?;
        }
        let shared = Arc::new(Shared::default());
        state.publish(&shared, &metrics);
        metrics.samples_dropped.inc_by(state.dropped);

        let (tx, rx) = mpsc::channel(QUEUE);
        let (committed_tx, committed) = watch::channel(state.next_seq.saturating_sub(1));
        let writer = Writer {
            db: db.clone(),
            state,
            shared: shared.clone(),
            metrics,
            committed: committed_tx,
        };
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| open_err(redb::Error::Io(e)))?;
        Ok(Spool {
            db,
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
        self.call(|reply| Cmd::Push {
            device,
            kind,
            ts_us,
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
        let txn = self.db.begin_read().map_err(SpoolError::storage)?;
        let table = txn.open_table(BLOBS).map_err(SpoolError::storage)?;
        let Some(v) = table.get(INVENTORY).map_err(SpoolError::storage)? else {
            return Ok(None);
        };
        Inventory::decode(v.value())
            .map(Some)
            .map_err(|e| SpoolError::Corrupt {
                seq: 0,
                message: format!("cached inventory: {e}"),
            })
    }

    /// Current figures.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            depth: self.shared.depth.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            last_seq: *self.committed.borrow(),
        }
    }

    /// Watches the highest committed sequence number (it changes whenever
    /// new samples are durable).
    pub fn watch_committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Reads up to `max_samples` (and about `max_bytes`) unacknowledged
    /// samples with a sequence number above `after`, oldest first.
    pub async fn read_after(
        &self,
        after: u64,
        max_samples: usize,
        max_bytes: usize,
    ) -> Result<Unacked, SpoolError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || read_after(&db, after, max_samples, max_bytes))
            .await
            .map_err(|_| SpoolError::Closed)?
    }
}

fn read_after(
    db: &Database,
    after: u64,
    max_samples: usize,
    max_bytes: usize,
) -> Result<Unacked, SpoolError> {
    let txn = db.begin_read().map_err(SpoolError::storage)?;
    let table = txn.open_table(SAMPLES).map_err(SpoolError::storage)?;
    let mut out = Unacked::default();
    let mut bytes = 0usize;
    let Some(start) = after.checked_add(1) else {
        return Ok(out);
    };
    for entry in table.range(start..).map_err(SpoolError::storage)? {
        let (k, v) = entry.map_err(SpoolError::storage)?;
        let seq = k.value();
        let raw = v.value();
        out.seqs.push(seq);
        bytes += raw.len();
        match raw.get(8..).map(Sample::decode) {
            Some(Ok(s)) => out.samples.push(s),
            Some(Err(e)) => warn!(seq, error = %e, "skipping corrupt spool record"),
            None => warn!(seq, "skipping truncated spool record"),
        }
        if out.seqs.len() >= max_samples || bytes >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// State only the writer thread touches (mirrored into `Shared` after each
/// commit).
struct WriterState {
    next_seq: u64,
    dropped: u64,
    bytes: u64,
    depth: u64,
    max_bytes: u64,
    max_age_us: i64,
}

impl WriterState {
    fn load(db: &Database, limits: &SpoolConfig) -> Result<Self, SpoolError> {
        let txn = db.begin_write().map_err(SpoolError::storage)?;
        let state = {
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
            WriterState {
                // Never reuse a number, even if the meta row were lost.
                next_seq: get(NEXT_SEQ)?.max(last_key.saturating_add(1)).max(1),
                dropped: get(DROPPED)?,
                bytes: get(BYTES)?,
                depth: samples.len().map_err(SpoolError::storage)?,
                max_bytes: limits.max_bytes,
                max_age_us: i64::try_from(limits.max_age.as_micros()).unwrap_or(i64::MAX),
            }
        };
        txn.commit().map_err(SpoolError::storage)?;
        Ok(state)
    }

    /// Drops the oldest samples while over a bound.
    fn enforce(&mut self, txn: &redb::WriteTransaction, now_us: i64) -> Result<u64, SpoolError> {
        let mut samples = txn.open_table(SAMPLES).map_err(SpoolError::storage)?;
        let cutoff = now_us.saturating_sub(self.max_age_us);
        let mut dropped = 0;
        loop {
            let over_bytes = self.bytes > self.max_bytes;
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
        ] {
            meta.insert(k, v).map_err(SpoolError::storage)?;
        }
        Ok(())
    }

    fn publish(&self, shared: &Shared, metrics: &Metrics) {
        shared.depth.store(self.depth, Ordering::Relaxed);
        shared.bytes.store(self.bytes, Ordering::Relaxed);
        shared.dropped.store(self.dropped, Ordering::Relaxed);
        metrics
            .spool_depth
            .set(i64::try_from(self.depth).unwrap_or(i64::MAX));
        metrics
            .spool_bytes
            .set(i64::try_from(self.bytes).unwrap_or(i64::MAX));
    }
}

fn ts_of(raw: &[u8]) -> i64 {
    raw.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(i64::MIN, i64::from_be_bytes)
}

struct Writer {
    db: Arc<Database>,
    state: WriterState,
    shared: Arc<Shared>,
    metrics: Metrics,
    committed: watch::Sender<u64>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut closing = Vec::new();
        while let Some(first) = rx.blocking_recv() {
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
        drop(self);
        for c in closing {
            c.reply(Ok(0));
        }
    }

    fn apply(&mut self, group: Vec<Cmd>) {
        let before = (
            self.state.next_seq,
            self.state.dropped,
            self.state.bytes,
            self.state.depth,
        );
        match self.write(&group) {
            Ok(results) => {
                self.state.publish(&self.shared, &self.metrics);
                let dropped_now = self.state.dropped - before.1;
                self.metrics.samples_dropped.inc_by(dropped_now);
                if dropped_now > 0 {
                    warn!(
                        dropped = dropped_now,
                        total_dropped = self.state.dropped,
                        "spool over its bounds: oldest samples dropped"
                    );
                }
                self.committed
                    .send_replace(self.state.next_seq.saturating_sub(1));
                for (cmd, r) in group.into_iter().zip(results) {
                    cmd.reply(Ok(r));
                }
            }
            Err(e) => {
                // Nothing of the group is committed: restore the counters so
                // that sequence numbers stay dense with what is on disk.
                (
                    self.state.next_seq,
                    self.state.dropped,
                    self.state.bytes,
                    self.state.depth,
                ) = before;
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

    /// One transaction for the whole group; returns one result per command.
    fn write(&mut self, group: &[Cmd]) -> Result<Vec<u64>, SpoolError> {
        let txn = self.db.begin_write().map_err(SpoolError::storage)?;
        let mut results = Vec::with_capacity(group.len());
        let mut spooled = 0u64;
        let mut acked = 0u64;
        {
            let mut samples = txn.open_table(SAMPLES).map_err(SpoolError::storage)?;
            let mut blobs = txn.open_table(BLOBS).map_err(SpoolError::storage)?;
            for cmd in group {
                match cmd {
                    Cmd::Push {
                        device,
                        kind,
                        ts_us,
                        ..
                    } => {
                        let seq = self.state.next_seq;
                        self.state.next_seq += 1;
                        let s = Sample {
                            seq,
                            ts_us: *ts_us,
                            device: device.clone(),
                            kind: Some(kind.clone()),
                        };
                        let mut raw = Vec::with_capacity(8 + s.encoded_len());
                        raw.extend_from_slice(&ts_us.to_be_bytes());
                        s.encode(&mut raw).map_err(|e| SpoolError::Corrupt {
                            seq,
                            message: e.to_string(),
                        })?;
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

    #[tokio::test]
    async fn byte_cap_drops_oldest_and_counts_persistently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let event = |n: usize| {
            sample::Kind::Event(Event {
                kind: "test".into(),
                detail: "x".repeat(n),
                ..Default::default()
            })
        };
        let lim = limits(10_000, Duration::from_secs(3600));
        let mut seqs = vec![];
        {
            let spool = Spool::open(dir.path(), &lim, Metrics::default()).expect("open");
            for _ in 0..50 {
                seqs.push(
                    spool
                        .sink()
                        .push("d".into(), event(1000))
                        .await
                        .expect("push"),
                );
            }
            let st = spool.stats();
            assert!(st.bytes <= 10_000, "bytes {} over the cap", st.bytes);
            assert!(st.dropped > 0);
            assert_eq!(st.depth + st.dropped, 50);
            let left: Vec<u64> = all(&spool).await.iter().map(|s| s.seq).collect();
            // What is left is the newest, contiguous up to the last push.
            assert_eq!(left, seqs[seqs.len() - left.len()..].to_vec());
        }
        let spool = {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                match Spool::open(dir.path(), &lim, Metrics::default()) {
                    Ok(s) => break s,
                    Err(e) if tokio::time::Instant::now() > deadline => panic!("{e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        };
        let st = spool.stats();
        assert_eq!(st.depth + st.dropped, 50, "dropped count survives reopen");
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
