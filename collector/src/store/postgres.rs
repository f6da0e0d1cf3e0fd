//! The sample store on PostgreSQL (`[store] url = "postgres://…"`): the
//! same [`Store`] as the embedded one, in a database several collectors
//! can share.
//!
//! Tables (schema version [`VERSION`], created at start, see [`SCHEMA`]):
//! - `samples (device, ts_us, agent, seq, received_us, body)`, primary key
//!   `(device, ts_us, agent, seq)` as the embedded store's key, so a replayed
//!   sample is a conflict and `ON CONFLICT DO NOTHING` keeps the first body
//!   and receive time. The table is partitioned by `ts_us` into UTC days
//!   (`samples_YYYYMMDD`, listed in `sample_days`), created before a sample
//!   needs one; retention drops whole days and deletes only inside the day
//!   the cut falls in.
//! - `rollups (device, start_us, rtt_*, loss_*, jitter_*)` and
//!   `rollup_links (device, start_us, link, in_*, out_*, err_*)`: the
//!   per-minute folds of [`crate::rollup`] as columns (count, lowest,
//!   highest, sum), written in the transaction that stores the samples,
//!   from the samples the insert reports as new, and merged by the server
//!   (`ON CONFLICT DO UPDATE`: adds, `LEAST`, `GREATEST`), so two
//!   collectors folding into one minute each add their part.
//! - `latest (device, kind, ts_us, body)` and `agents (id, record)`.
//!
//! `body` is the encoded [`siaga_proto::v1::Sample`] without the fields its key holds,
//! exactly as the embedded store keeps it. Ids are `text COLLATE "C"` so a
//! history reads in the byte order the embedded store uses; sequence
//! numbers are stored as `bigint` (bit for bit: an agent's numbers stay far
//! below 2^63).
//!
//! The trait is synchronous and may be called from async code. The client
//! (tokio-postgres) runs its connections on a small runtime of the store's
//! own; a call waits for its query on the calling thread, inside
//! `block_in_place` when that thread is a worker of a multi-threaded
//! runtime, so no caller's runtime is nested or starved. One connection
//! writes (one transaction per group commit: one multi-row insert of the
//! samples from arrays, no round trip per sample), one reads; both are
//! opened again when they break.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use prost::Message;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

use super::pg_connect::{PgRuntime, PgTls, connect, pg_config};
use super::{
    AgentRecord, BatchOutcome, HistoryFrom, IngestBatch, Latest, SampleRow, SamplesElsewhere,
    Store, Stored, StoredSample, decode,
};
use crate::error::StoreError;
use crate::rollup::{MINUTE_US, Minute};

/// The schema version this collector reads and writes: 1 the samples'
/// tables, 2 adds `kv`, the tickets' records (`crate::kv`).
pub const VERSION: i32 = 2;

/// Held (transaction-scoped) while the schema is created or migrated, so
/// collectors starting together do it once: the others wait, then find it
/// done. ("siaga" and the schema's number.)
const SCHEMA_LOCK: i64 = 0x5349_4147_4101;
/// Held while sample partitions are created or dropped.
const PARTITION_LOCK: i64 = 0x5349_4147_4102;

/// A UTC day, µs: the span of one sample partition.
pub const DAY_US: i64 = 86_400_000_000;

/// Schema version 1, created in one transaction.
const SCHEMA: &str = r#"
CREATE TABLE samples (
    device      text COLLATE "C" NOT NULL,
    ts_us       bigint NOT NULL,
    agent       text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    received_us bigint,
    body        bytea NOT NULL,
    PRIMARY KEY (device, ts_us, agent, seq)
) PARTITION BY RANGE (ts_us);
CREATE TABLE sample_days (
    day     bigint PRIMARY KEY,
    name    text NOT NULL UNIQUE,
    from_us bigint NOT NULL,
    to_us   bigint NOT NULL
);
CREATE TABLE rollups (
    device   text COLLATE "C" NOT NULL,
    start_us bigint NOT NULL,
    rtt_n bigint NOT NULL, rtt_min float8 NOT NULL, rtt_max float8 NOT NULL, rtt_sum float8 NOT NULL,
    loss_n bigint NOT NULL, loss_min float8 NOT NULL, loss_max float8 NOT NULL, loss_sum float8 NOT NULL,
    jitter_n bigint NOT NULL, jitter_min float8 NOT NULL, jitter_max float8 NOT NULL, jitter_sum float8 NOT NULL,
    PRIMARY KEY (device, start_us)
);
CREATE TABLE rollup_links (
    device   text COLLATE "C" NOT NULL,
    start_us bigint NOT NULL,
    link     text COLLATE "C" NOT NULL,
    in_n bigint NOT NULL, in_min float8 NOT NULL, in_max float8 NOT NULL, in_sum float8 NOT NULL,
    out_n bigint NOT NULL, out_min float8 NOT NULL, out_max float8 NOT NULL, out_sum float8 NOT NULL,
    err_n bigint NOT NULL, err_min float8 NOT NULL, err_max float8 NOT NULL, err_sum float8 NOT NULL,
    PRIMARY KEY (device, start_us, link)
);
CREATE TABLE latest (
    device text COLLATE "C" NOT NULL,
    kind   text COLLATE "C" NOT NULL,
    ts_us  bigint NOT NULL,
    body   bytea NOT NULL,
    PRIMARY KEY (device, kind)
);
CREATE TABLE agents (
    id     text COLLATE "C" PRIMARY KEY,
    record jsonb NOT NULL
);
"#;

/// Version 2: the tickets' records, as `crate::kv` keeps them (a table
/// name, a key encoded to sort as the embedded store sorts it, a value),
/// and which collector runs the health engine of each OPD (`crate::lease`).
const SCHEMA_2: &str = r#"
CREATE TABLE kv (
    tbl text COLLATE "C" NOT NULL,
    k   bytea NOT NULL,
    v   bytea NOT NULL,
    PRIMARY KEY (tbl, k)
);
CREATE TABLE leases (
    opd        text COLLATE "C" PRIMARY KEY,
    holder     text NOT NULL,
    stream     boolean NOT NULL,
    expires_us bigint NOT NULL
);
"#;

/// The samples of a batch group, in arrays for one `INSERT … SELECT FROM unnest`.
const INSERT_SAMPLES: &str = "INSERT INTO samples (device, ts_us, agent, seq, received_us, body) \
     SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::int8[], $6::bytea[]) \
     ON CONFLICT DO NOTHING RETURNING device, ts_us, agent, seq";

fn pg(doing: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { doing, source }
}

/// The day index of `ts_us`.
fn day_of(ts_us: i64) -> i64 {
    ts_us.div_euclid(DAY_US)
}

/// The partition of day `day`: its name and bounds (`None`: open-ended).
fn partition(day: i64) -> (String, i64, Option<i64>) {
    let from = day.saturating_mul(DAY_US);
    let to = from.checked_add(DAY_US);
    let name = chrono::DateTime::from_timestamp_micros(from)
        .filter(|t| (1000..=9999).contains(&chrono::Datelike::year(t)))
        .map(|t| format!("samples_{}", t.format("%Y%m%d")))
        .unwrap_or_else(|| format!("samples_d{}", day).replace('-', "m"));
    (name, from, to)
}

/// Whether `e` is PostgreSQL saying no partition holds a row (another
/// collector dropped the day this one thought was there).
fn no_partition(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres { source, .. }
        if source.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION))
}

/// What [`PgStore::inspect`] found in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The schema version it holds (`None`: no Siaga schema yet).
    pub schema_version: Option<i32>,
    /// `SHOW synchronous_commit` in a session of the URL's user and
    /// database: `off` lets a crash of the server lose commits it had
    /// confirmed, i.e. samples the collector acknowledged.
    pub synchronous_commit: String,
    /// Whether the session is encrypted, as the server sees it
    /// (`pg_stat_ssl`; `None`: it would not say).
    pub encrypted: Option<bool>,
    /// The session's TLS in words: the protocol and cipher, and what was
    /// checked of the server's certificate; or why there is none.
    pub encryption: String,
}

/// The sample store in PostgreSQL.
pub struct PgStore {
    /// Runs the connections.
    pg: PgRuntime,
    /// The writing connection (commit, prune).
    writer: tokio::sync::Mutex<Option<Client>>,
    /// The reading connection, shared by concurrent readers (the client
    /// pipelines their queries).
    reader: RwLock<Option<Arc<Client>>>,
    /// Days whose partition this store knows to exist.
    days: Mutex<HashSet<i64>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("hosts", &self.pg.config.get_hosts())
            .field("dbname", &self.pg.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// Waits for `fut` on this thread, leaving a multi-threaded runtime's
/// worker to its other tasks meanwhile.
pub(crate) fn wait<T>(fut: impl std::future::Future<Output = T>) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| futures::executor::block_on(fut))
        }
        _ => futures::executor::block_on(fut),
    }
}

impl PgStore {
    /// Connects to `url`, creates the schema or checks its version, and
    /// creates the partitions of today and tomorrow.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let store = PgStore {
            pg: PgRuntime::new(url, "store-postgres")?,
            writer: tokio::sync::Mutex::new(None),
            reader: RwLock::new(None),
            days: Mutex::new(HashSet::new()),
        };
        wait(async {
            let mut w = store.writer.lock().await;
            let client = store.write_client(&mut w).await?;
            migrate(client).await?;
            let now = chrono::Utc::now().timestamp_micros();
            store
                .ensure_days(client, [day_of(now), day_of(now) + 1].into_iter())
                .await
        })?;
        Ok(store)
    }

    /// The schema version the database holds (`None`: no Siaga schema yet),
    /// without changing anything.
    pub fn schema_version(url: &str) -> Result<Option<i32>, StoreError> {
        Ok(Self::inspect(url)?.schema_version)
    }

    /// What `validate` checks, read without changing anything: the schema
    /// version and the settings the collector's sessions would run with.
    pub fn inspect(url: &str) -> Result<Inspection, StoreError> {
        let config = pg_config(url)?;
        let tls = PgTls::from_url(url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(StoreError::Runtime)?;
        let asking = rt.spawn(async move {
            let doing = "reading the schema version";
            let client = connect(&config, &tls).await?;
            // As this user in this database, with the URL's options: what
            // the collector's own sessions get.
            let synchronous_commit: String = client
                .query_one("SHOW synchronous_commit", &[])
                .await
                .map_err(pg("reading synchronous_commit"))?
                .get(0);
            let exists: bool = client
                .query_one("SELECT to_regclass('siaga_schema') IS NOT NULL", &[])
                .await
                .map_err(pg(doing))?
                .get(0);
            let schema_version = if exists {
                client
                    .query_opt("SELECT version FROM siaga_schema", &[])
                    .await
                    .map_err(pg(doing))?
                    .map(|r| r.get(0))
            } else {
                None
            };
            // The server's word, not the client's intent: `prefer` may
            // have ended up plain.
            let seen = client
                .query_opt(
                    "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await;
            let (encrypted, encryption) = match seen {
                Ok(Some(r)) if r.get::<_, bool>(0) => (
                    Some(true),
                    format!(
                        "encrypted ({}, {}; {})",
                        r.get::<_, Option<String>>(1).unwrap_or_default(),
                        r.get::<_, Option<String>>(2).unwrap_or_default(),
                        tls.checks()
                    ),
                ),
                Ok(Some(_)) if stays_on_this_host(&config) => (
                    Some(false),
                    format!(
                        "not encrypted (sslmode={}; it stays on this host)",
                        tls.mode()
                    ),
                ),
                Ok(Some(_)) => (
                    Some(false),
                    format!(
                        "not encrypted (sslmode={}): a listener on the way reads the samples \
                         and the password; set sslmode=verify-full and sslrootcert=PATH unless \
                         it runs on this host",
                        tls.mode()
                    ),
                ),
                Ok(None) => (None, "encryption unknown (pg_stat_ssl has no row)".into()),
                Err(e) => (
                    None,
                    format!(
                        "encryption unknown (pg_stat_ssl: {})",
                        crate::error::pg_message(&e)
                    ),
                ),
            };
            Ok(Inspection {
                schema_version,
                synchronous_commit,
                encrypted,
                encryption,
            })
        });
        let result = wait(asking).map_err(|e| StoreError::Runtime(std::io::Error::other(e)));
        rt.shutdown_background();
        result?
    }

    /// A new connection, driven on the store's runtime.
    async fn connect(&self) -> Result<Client, StoreError> {
        self.pg.connect().await
    }

    /// The writing connection, opened again if it broke.
    async fn write_client<'a>(
        &self,
        slot: &'a mut Option<Client>,
    ) -> Result<&'a mut Client, StoreError> {
        if let Some(c) = slot.take().filter(|c| !c.is_closed()) {
            return Ok(slot.insert(c));
        }
        Ok(slot.insert(self.connect().await?))
    }

    /// The reading connection, opened again if it broke.
    async fn read_client(&self) -> Result<Arc<Client>, StoreError> {
        if let Some(c) = self
            .reader
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|c| !c.is_closed())
        {
            return Ok(c.clone());
        }
        let c = Arc::new(self.connect().await?);
        *self.reader.write().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Creates the partitions of `days` this store does not know to exist.
    async fn ensure_days(
        &self,
        client: &mut Client,
        days: impl Iterator<Item = i64>,
    ) -> Result<(), StoreError> {
        let missing: Vec<i64> = {
            let known = self.days.lock().unwrap_or_else(|p| p.into_inner());
            let mut m: Vec<i64> = days.filter(|d| !known.contains(d)).collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        if missing.is_empty() {
            return Ok(());
        }
        let tx = client
            .transaction()
            .await
            .map_err(pg("creating partitions"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .await
            .map_err(pg("creating partitions"))?;
        for &day in &missing {
            let (name, from, to) = partition(day);
            let to = to.map_or("MAXVALUE".to_string(), |t| t.to_string());
            let from_sql = if day == day_of(i64::MIN) {
                "MINVALUE".to_string()
            } else {
                from.to_string()
            };
            // Identifiers cannot be parameters; the name is ours (digits).
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF samples \
                 FOR VALUES FROM ({from_sql}) TO ({to})"
            );
            tx.batch_execute(&sql)
                .await
                .map_err(pg("creating partitions"))?;
            tx.execute(
                "INSERT INTO sample_days (day, name, from_us, to_us) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (day) DO NOTHING",
                &[&day, &name, &from, &from.saturating_add(DAY_US)],
            )
            .await
            .map_err(pg("creating partitions"))?;
        }
        tx.commit().await.map_err(pg("creating partitions"))?;
        self.days
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(missing);
        Ok(())
    }

    async fn commit_async(
        &self,
        batches: &[IngestBatch],
        agents: &[AgentRecord],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let mut slot = self.writer.lock().await;
        let client = self.write_client(&mut slot).await?;
        let days = batches
            .iter()
            .flat_map(|b| b.samples.iter().map(|s| day_of(s.ts_us)));
        let now = chrono::Utc::now().timestamp_micros();
        self.ensure_days(client, days.chain([day_of(now), day_of(now) + 1]))
            .await?;

        let n: usize = batches.iter().map(|b| b.samples.len()).sum();
        let mut devices = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        let mut agent_ids = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        let mut received: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut bodies: Vec<&[u8]> = Vec::with_capacity(n);
        for b in batches {
            for (s, (_, value)) in b.samples.iter().zip(b.rows.iter()) {
                devices.push(s.device.as_str());
                ts.push(s.ts_us);
                agent_ids.push(b.agent.as_str());
                seqs.push(s.seq as i64);
                // The embedded store's value: the receive time (unknown
                // only in samples `migrate` copies from before schema 2),
                // then the body.
                let (at, body) = SampleRow::value(value)?;
                received.push(at);
                bodies.push(body);
            }
        }

        let tx = client.transaction().await.map_err(pg("storing samples"))?;
        let rows = tx
            .query(
                INSERT_SAMPLES,
                &[&devices, &ts, &agent_ids, &seqs, &received, &bodies],
            )
            .await
            .map_err(pg("storing samples"))?;
        // All stored (the usual case): no need to know which.
        let all_new = rows.len() == n;
        let mut new: HashSet<(&str, i64, &str, i64)> = if all_new {
            HashSet::new()
        } else {
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect()
        };

        let mut outcomes = Vec::with_capacity(batches.len());
        let mut stored = Stored::default();
        for b in batches {
            let mut out = BatchOutcome::default();
            for s in b.samples.iter() {
                // The first occurrence of a key the insert reports as new
                // is the stored one; any other is a duplicate.
                let key = (s.device.as_str(), s.ts_us, b.agent.as_str(), s.seq as i64);
                if !all_new && !new.remove(&key) {
                    out.duplicates += 1;
                    continue;
                }
                out.stored += 1;
                stored.add(s);
            }
            outcomes.push(out);
        }

        if !stored.minutes.is_empty() {
            merge_minutes(&tx, stored.minutes).await?;
        }
        let newest = stored.newest;
        if !newest.is_empty() {
            let mut d = Vec::with_capacity(newest.len());
            let mut k = Vec::with_capacity(newest.len());
            let mut t = Vec::with_capacity(newest.len());
            let mut body = Vec::with_capacity(newest.len());
            for ((device, kind), s) in newest {
                d.push(device);
                k.push(kind);
                t.push(s.ts_us);
                body.push(s.encode_to_vec());
            }
            tx.execute(
                "INSERT INTO latest (device, kind, ts_us, body) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[]) \
                 ON CONFLICT (device, kind) DO UPDATE \
                 SET ts_us = EXCLUDED.ts_us, body = EXCLUDED.body \
                 WHERE latest.ts_us <= EXCLUDED.ts_us",
                &[&d, &k, &t, &body],
            )
            .await
            .map_err(pg("storing the latest readings"))?;
        }
        if !agents.is_empty() {
            // One row per agent: the last record given wins.
            let mut by_id: BTreeMap<&str, String> = BTreeMap::new();
            for a in agents {
                let json = serde_json::to_string(a).map_err(|e| StoreError::Decode {
                    what: "agent",
                    message: e.to_string(),
                })?;
                by_id.insert(a.id.as_str(), json);
            }
            let (ids, records): (Vec<&str>, Vec<String>) = by_id.into_iter().unzip();
            tx.execute(
                "INSERT INTO agents (id, record) \
                 SELECT u.id, u.record::jsonb FROM unnest($1::text[], $2::text[]) AS u(id, record) \
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                &[&ids, &records],
            )
            .await
            .map_err(pg("storing agents"))?;
        }
        tx.commit().await.map_err(pg("committing"))?;
        Ok(outcomes)
    }

    async fn prune_async(&self, before_us: i64) -> Result<u64, StoreError> {
        let mut slot = self.writer.lock().await;
        let client = self.write_client(&mut slot).await?;
        let tx = client.transaction().await.map_err(pg("pruning"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .await
            .map_err(pg("pruning"))?;
        let whole = tx
            .query(
                "SELECT day, name FROM sample_days WHERE to_us <= $1 ORDER BY day",
                &[&before_us],
            )
            .await
            .map_err(pg("pruning"))?;
        let mut removed = 0u64;
        let mut dropped = Vec::new();
        for row in &whole {
            let (day, name): (i64, String) = (row.get(0), row.get(1));
            let n: i64 = tx
                .query_one(&format!("SELECT count(*) FROM {name}"), &[])
                .await
                .map_err(pg("pruning"))?
                .get(0);
            removed += n as u64;
            tx.batch_execute(&format!("DROP TABLE {name}"))
                .await
                .map_err(pg("pruning"))?;
            tx.execute("DELETE FROM sample_days WHERE day = $1", &[&day])
                .await
                .map_err(pg("pruning"))?;
            dropped.push(day);
        }
        // The day the cut falls in.
        removed += tx
            .execute("DELETE FROM samples WHERE ts_us < $1", &[&before_us])
            .await
            .map_err(pg("pruning"))?;
        // A minute still holding a kept sample stays.
        let ended = before_us.saturating_sub(MINUTE_US - 1);
        for table in ["rollups", "rollup_links"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE start_us < $1"),
                &[&ended],
            )
            .await
            .map_err(pg("pruning"))?;
        }
        tx.commit().await.map_err(pg("pruning"))?;
        let mut known = self.days.lock().unwrap_or_else(|p| p.into_inner());
        for d in dropped {
            known.remove(&d);
        }
        Ok(removed)
    }

    /// Puts newest readings (device, kind, encoded [`siaga_proto::v1::Sample`]) where
    /// none is newer: what `migrate` copies beside the samples.
    pub(crate) fn put_latest(&self, rows: &[(String, String, Vec<u8>)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut d = Vec::with_capacity(rows.len());
        let mut k = Vec::with_capacity(rows.len());
        let mut t = Vec::with_capacity(rows.len());
        let mut body = Vec::with_capacity(rows.len());
        for (device, kind, bytes) in rows {
            d.push(device.as_str());
            k.push(kind.as_str());
            t.push(decode(bytes)?.ts_us);
            body.push(bytes.as_slice());
        }
        wait(async {
            let mut slot = self.writer.lock().await;
            let client = self.write_client(&mut slot).await?;
            client
                .execute(
                    "INSERT INTO latest (device, kind, ts_us, body) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[]) \
                     ON CONFLICT (device, kind) DO UPDATE \
                     SET ts_us = EXCLUDED.ts_us, body = EXCLUDED.body \
                     WHERE latest.ts_us <= EXCLUDED.ts_us",
                    &[&d, &k, &t, &body],
                )
                .await
                .map_err(pg("storing the latest readings"))?;
            Ok(())
        })
    }

    /// Per device: how many samples, the first and the last time (µs), in
    /// device order.
    pub(crate) fn device_spans(&self) -> Result<Vec<(String, u64, i64, i64)>, StoreError> {
        wait(async {
            let c = self.read_client().await?;
            let rows = c
                .query(
                    "SELECT device, count(*), min(ts_us), max(ts_us) FROM samples \
                     GROUP BY device ORDER BY device",
                    &[],
                )
                .await
                .map_err(pg("counting samples"))?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get(2), r.get(3)))
                .collect())
        })
    }

    /// The names of the sample partitions, oldest first.
    pub fn partitions(&self) -> Result<Vec<String>, StoreError> {
        wait(async {
            let c = self.read_client().await?;
            let rows = c
                .query(
                    "SELECT c.relname::text FROM pg_inherits i \
                     JOIN pg_class c ON c.oid = i.inhrelid \
                     WHERE i.inhparent = 'samples'::regclass ORDER BY 1",
                    &[],
                )
                .await
                .map_err(pg("listing partitions"))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}

/// The folds of a minute's device readings and of its links, as columns.
const DEVICE_FOLDS: [&str; 3] = ["rtt", "loss", "jitter"];
const LINK_FOLDS: [&str; 3] = ["in", "out", "err"];

/// `p_n, p_min, p_max, p_sum` for each prefix.
fn fold_columns(prefixes: &[&str]) -> Vec<String> {
    prefixes
        .iter()
        .flat_map(|p| ["n", "min", "max", "sum"].map(|c| format!("{p}_{c}")))
        .collect()
}

/// The `ON CONFLICT … DO UPDATE` of fold columns: the server adds what a
/// commit folded to what is stored, under the row's lock, so two
/// collectors folding into one minute each add their part.
fn fold_merge(table: &str, prefixes: &[&str]) -> String {
    prefixes
        .iter()
        .flat_map(|p| {
            [
                format!("{p}_n = {table}.{p}_n + EXCLUDED.{p}_n"),
                format!("{p}_min = LEAST({table}.{p}_min, EXCLUDED.{p}_min)"),
                format!("{p}_max = GREATEST({table}.{p}_max, EXCLUDED.{p}_max)"),
                format!("{p}_sum = {table}.{p}_sum + EXCLUDED.{p}_sum"),
            ]
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Folds as arrays, one element per row.
#[derive(Default)]
struct FoldArrays {
    n: Vec<i64>,
    min: Vec<f64>,
    max: Vec<f64>,
    sum: Vec<f64>,
}

impl FoldArrays {
    fn push(&mut self, f: &crate::rollup::Fold) {
        self.n.push(i64::from(f.n));
        self.min.push(f.min);
        self.max.push(f.max);
        self.sum.push(f.sum);
    }
}

/// The fold read from `row` at column `at` (n, min, max, sum).
fn fold_at(row: &tokio_postgres::Row, at: usize) -> crate::rollup::Fold {
    crate::rollup::Fold {
        n: u32::try_from(row.get::<_, i64>(at)).unwrap_or(u32::MAX),
        min: row.get(at + 1),
        max: row.get(at + 2),
        sum: row.get(at + 3),
    }
}

/// An upsert of `keys` key columns (arrays `key_types`) and the fold
/// columns of `prefixes` into `table`.
fn upsert_folds(table: &str, keys: &[(&str, &str)], prefixes: &[&str]) -> String {
    let folds = fold_columns(prefixes);
    let columns: Vec<&str> = keys
        .iter()
        .map(|k| k.0)
        .chain(folds.iter().map(String::as_str))
        .collect();
    let mut types: Vec<&str> = keys.iter().map(|k| k.1).collect();
    for _ in prefixes {
        types.extend(["int8[]", "float8[]", "float8[]", "float8[]"]);
    }
    let params: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}", i + 1))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM unnest({}) ON CONFLICT ({}) DO UPDATE SET {}",
        columns.join(", "),
        params.join(", "),
        keys.iter().map(|k| k.0).collect::<Vec<_>>().join(", "),
        fold_merge(table, prefixes)
    )
}

/// Adds `folded` to the stored minutes: one upsert for the devices' folds,
/// one for their links'.
async fn merge_minutes(
    tx: &tokio_postgres::Transaction<'_>,
    folded: BTreeMap<(&str, i64), Minute>,
) -> Result<(), StoreError> {
    use tokio_postgres::types::ToSql;
    let doing = "storing rollups";
    let devices: Vec<&str> = folded.keys().map(|k| k.0).collect();
    let starts: Vec<i64> = folded.keys().map(|k| k.1).collect();
    let mut device_folds: [FoldArrays; 3] = Default::default();
    let (mut l_dev, mut l_start, mut l_name) = (Vec::new(), Vec::new(), Vec::new());
    let mut link_folds: [FoldArrays; 3] = Default::default();
    for ((device, start), m) in &folded {
        for (a, f) in device_folds.iter_mut().zip([&m.rtt, &m.loss, &m.jitter]) {
            a.push(f);
        }
        for l in &m.links {
            l_dev.push(*device);
            l_start.push(*start);
            l_name.push(l.name.as_str());
            for (a, f) in link_folds
                .iter_mut()
                .zip([&l.util_in, &l.util_out, &l.errors])
            {
                a.push(f);
            }
        }
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&devices, &starts];
    for a in &device_folds {
        params.extend([&a.n as &(dyn ToSql + Sync), &a.min, &a.max, &a.sum]);
    }
    let sql = upsert_folds(
        "rollups",
        &[("device", "text[]"), ("start_us", "int8[]")],
        &DEVICE_FOLDS,
    );
    tx.execute(&sql, &params).await.map_err(pg(doing))?;
    if !l_dev.is_empty() {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&l_dev, &l_start, &l_name];
        for a in &link_folds {
            params.extend([&a.n as &(dyn ToSql + Sync), &a.min, &a.max, &a.sum]);
        }
        let sql = upsert_folds(
            "rollup_links",
            &[
                ("device", "text[]"),
                ("start_us", "int8[]"),
                ("link", "text[]"),
            ],
            &LINK_FOLDS,
        );
        tx.execute(&sql, &params).await.map_err(pg(doing))?;
    }
    Ok(())
}

/// Creates the schema, or checks the one there, under [`SCHEMA_LOCK`].
pub(crate) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let doing = "creating the schema";
    let tx = client.transaction().await.map_err(pg(doing))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(pg(doing))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS siaga_schema (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             version integer NOT NULL
         )",
    )
    .await
    .map_err(pg(doing))?;
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM siaga_schema", &[])
        .await
        .map_err(pg(doing))?
        .map(|r| r.get(0));
    match found {
        None => {
            tx.batch_execute(SCHEMA).await.map_err(pg(doing))?;
            tx.batch_execute(SCHEMA_2).await.map_err(pg(doing))?;
            tx.execute(
                "INSERT INTO siaga_schema (version) VALUES ($1)",
                &[&VERSION],
            )
            .await
            .map_err(pg(doing))?;
            tracing::info!(
                version = VERSION,
                "created the store's schema in PostgreSQL"
            );
        }
        Some(v) if v > VERSION => {
            return Err(StoreError::PostgresTooNew {
                found: v,
                supported: VERSION,
            });
        }
        Some(v) => {
            // One step at a time, in this transaction.
            if v < 2 {
                tx.batch_execute(SCHEMA_2).await.map_err(pg(doing))?;
            }
            if v < VERSION {
                tx.execute("UPDATE siaga_schema SET version = $1", &[&VERSION])
                    .await
                    .map_err(pg(doing))?;
                tracing::info!(
                    from = v,
                    to = VERSION,
                    "migrated the store's schema in PostgreSQL"
                );
            }
        }
    }
    tx.commit().await.map_err(pg(doing))
}

fn stored_sample(row: &tokio_postgres::Row) -> Result<StoredSample, StoreError> {
    let mut sample = decode(row.get::<_, &[u8]>(5))?;
    sample.device = row.get(0);
    sample.ts_us = row.get(1);
    sample.seq = row.get::<_, i64>(3) as u64;
    Ok(StoredSample {
        agent: row.get(2),
        received_us: row.get(4),
        sample,
    })
}

const SAMPLE_COLUMNS: &str = "device, ts_us, agent, seq, received_us, body";

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Whether every host of `config` is this machine: a unix socket or a
/// loopback address (`localhost` included), where a plain connection
/// crosses no network.
fn stays_on_this_host(config: &Config) -> bool {
    !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
}

/// The database `config` names, without its password:
/// `user@host:port/dbname` (the first host and port).
pub fn database_at(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// The `pg_dump` command that dumps the database `config` names into
/// `siaga.dump` (custom format, for `pg_restore`), every host and
/// port as libpq lists them, never the password.
pub fn pg_dump_command(config: &Config) -> String {
    // Each value as one shell word; a NUL cannot be in one: shown as it is.
    let word = |v: &str| shlex::try_quote(v).map_or_else(|_| v.to_string(), |q| q.into_owned());
    let mut args = vec!["pg_dump".to_string()];
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        args.push(format!("--host={}", word(&hosts.join(","))));
    }
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        args.push(format!("--port={}", ports.join(",")));
    }
    if let Some(user) = config.get_user() {
        args.push(format!("--username={}", word(user)));
    }
    args.push("--format=custom".into());
    args.push("--file=siaga.dump".into());
    if let Some(db) = config.get_dbname() {
        args.push(format!("--dbname={}", word(db)));
    }
    args.join(" ")
}

impl Store for PgStore {
    fn elsewhere(&self) -> Option<SamplesElsewhere> {
        Some(SamplesElsewhere {
            postgresql: database_at(&self.pg.config),
            pg_dump: pg_dump_command(&self.pg.config),
        })
    }

    fn commit(
        &self,
        batches: &[IngestBatch],
        agents: &[AgentRecord],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        match wait(self.commit_async(batches, agents)) {
            Err(e) if no_partition(&e) => {
                // Another collector dropped a day this one had seen: learn
                // the partitions again and retry once.
                self.days.lock().unwrap_or_else(|p| p.into_inner()).clear();
                wait(self.commit_async(batches, agents))
            }
            other => other,
        }
    }

    fn history(
        &self,
        device: &str,
        since_us: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError> {
        wait(async {
            let c = self.read_client().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {SAMPLE_COLUMNS} FROM samples WHERE device = $1 AND ts_us >= $2 \
                         ORDER BY ts_us, agent, seq LIMIT $3"
                    ),
                    &[&device, &since_us, &limit_of(limit)],
                )
                .await
                .map_err(pg("reading a history"))?;
            rows.iter().map(stored_sample).collect()
        })
    }

    fn history_range(
        &self,
        device: &str,
        from: &HistoryFrom,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError> {
        wait(async {
            let c = self.read_client().await?;
            let rows = match from {
                HistoryFrom::Since(t) => {
                    c.query(
                        &format!(
                            "SELECT {SAMPLE_COLUMNS} FROM samples WHERE device = $1 \
                             AND ts_us >= $2 AND ts_us < $3 ORDER BY ts_us, agent, seq LIMIT $4"
                        ),
                        &[&device, t, &until_us, &limit_of(limit)],
                    )
                    .await
                }
                HistoryFrom::After(t, agent, seq) => {
                    c.query(
                        &format!(
                            "SELECT {SAMPLE_COLUMNS} FROM samples WHERE device = $1 \
                             AND (ts_us, agent, seq) > ($2, $3, $4) AND ts_us < $5 \
                             ORDER BY ts_us, agent, seq LIMIT $6"
                        ),
                        &[
                            &device,
                            t,
                            agent,
                            &(*seq as i64),
                            &until_us,
                            &limit_of(limit),
                        ],
                    )
                    .await
                }
            }
            .map_err(pg("reading a history"))?;
            rows.iter().map(stored_sample).collect()
        })
    }

    fn minutes(
        &self,
        device: &str,
        from_us: i64,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<Minute>, StoreError> {
        wait(async {
            let c = self.read_client().await?;
            let doing = "reading rollups";
            let rows = c
                .query(
                    &format!(
                        "SELECT start_us, {} FROM rollups WHERE device = $1 \
                         AND start_us >= $2 AND start_us < $3 ORDER BY start_us LIMIT $4",
                        fold_columns(&DEVICE_FOLDS).join(", ")
                    ),
                    &[&device, &from_us, &until_us, &limit_of(limit)],
                )
                .await
                .map_err(pg(doing))?;
            let mut out: Vec<Minute> = rows
                .iter()
                .map(|r| Minute {
                    start_us: r.get(0),
                    rtt: fold_at(r, 1),
                    loss: fold_at(r, 5),
                    jitter: fold_at(r, 9),
                    links: Vec::new(),
                })
                .collect();
            let (Some(first), Some(last)) = (out.first(), out.last()) else {
                return Ok(out);
            };
            let links = c
                .query(
                    &format!(
                        "SELECT start_us, link, {} FROM rollup_links WHERE device = $1 \
                         AND start_us >= $2 AND start_us <= $3 ORDER BY start_us, link",
                        fold_columns(&LINK_FOLDS).join(", ")
                    ),
                    &[&device, &first.start_us, &last.start_us],
                )
                .await
                .map_err(pg(doing))?;
            let mut at = 0;
            for r in &links {
                let start: i64 = r.get(0);
                while out.get(at).is_some_and(|m| m.start_us < start) {
                    at += 1;
                }
                if let Some(m) = out.get_mut(at).filter(|m| m.start_us == start) {
                    m.links.push(crate::rollup::LinkMinute {
                        name: r.get(1),
                        util_in: fold_at(r, 2),
                        util_out: fold_at(r, 6),
                        errors: fold_at(r, 10),
                    });
                }
            }
            Ok(out)
        })
    }

    fn latest(&self, device: &str) -> Result<Latest, StoreError> {
        wait(async {
            let c = self.read_client().await?;
            let rows = c
                .query(
                    "SELECT kind, body FROM latest WHERE device = $1",
                    &[&device],
                )
                .await
                .map_err(pg("reading the latest readings"))?;
            let mut l = Latest::default();
            for r in &rows {
                let s = decode(r.get(1))?;
                l.last_sample_us = Some(l.last_sample_us.map_or(s.ts_us, |t| t.max(s.ts_us)));
                match r.get::<_, &str>(0) {
                    "icmp" => l.icmp = Some(s),
                    "snmp" => l.snmp = Some(s),
                    _ => {}
                }
            }
            Ok(l)
        })
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        wait(async {
            let c = self.read_client().await?;
            let rows = c
                .query("SELECT record::text FROM agents ORDER BY id", &[])
                .await
                .map_err(pg("reading agents"))?;
            rows.iter()
                .map(|r| {
                    serde_json::from_str(r.get(0)).map_err(|e| StoreError::Decode {
                        what: "agent",
                        message: e.to_string(),
                    })
                })
                .collect()
        })
    }

    fn prune(&self, before_us: i64) -> Result<u64, StoreError> {
        wait(self.prune_async(before_us))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_utc_days_named_by_date() {
        // 2026-12-06 00:00 UTC.
        let day0 = 1_796_515_200_000_000;
        for (ts, name, from) in [
            (day0, "samples_20261206", day0),
            (day0 + DAY_US - 1, "samples_20261206", day0),
            (day0 - 1, "samples_20261205", day0 - DAY_US),
            (0, "samples_19700101", 0),
            (-1, "samples_19691231", -DAY_US),
        ] {
            let (n, f, t) = partition(day_of(ts));
            assert_eq!(
                (n.as_str(), f, t),
                (name, from, Some(from + DAY_US)),
                "{ts}"
            );
        }
        // Times no calendar names still get a partition of their own.
        let (n, _, t) = partition(day_of(i64::MAX));
        assert!(n.starts_with("samples_d") && !n.contains('-'), "{n}");
        assert_eq!(t, None);
        let (n, _, _) = partition(day_of(i64::MIN));
        assert!(n.starts_with("samples_dm"), "{n}");
    }

    #[test]
    fn the_fold_upsert_adds_each_fold_and_keeps_its_extremes() {
        let sql = upsert_folds(
            "rollups",
            &[("device", "text[]"), ("start_us", "int8[]")],
            &["rtt"],
        );
        assert_eq!(
            sql,
            "INSERT INTO rollups (device, start_us, rtt_n, rtt_min, rtt_max, rtt_sum) \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::float8[], $5::float8[], $6::float8[]) \
             ON CONFLICT (device, start_us) DO UPDATE SET rtt_n = rollups.rtt_n + EXCLUDED.rtt_n, \
             rtt_min = LEAST(rollups.rtt_min, EXCLUDED.rtt_min), \
             rtt_max = GREATEST(rollups.rtt_max, EXCLUDED.rtt_max), \
             rtt_sum = rollups.rtt_sum + EXCLUDED.rtt_sum"
        );
    }

    #[test]
    fn the_dump_command_names_the_database_but_never_the_password() {
        for (url, at, cmd) in [
            (
                "postgres://siaga:s3cret@db.example:5433/siaga",
                "siaga@db.example:5433/siaga",
                "pg_dump --host=db.example --port=5433 --username=siaga --format=custom \
                 --file=siaga.dump --dbname=siaga",
            ),
            (
                "postgresql://siaga:s3cret@db1:5432,db2:5433/siaga?sslmode=disable",
                "siaga@db1:5432/siaga",
                "pg_dump --host='db1,db2' --port=5432,5433 --username=siaga --format=custom \
                 --file=siaga.dump --dbname=siaga",
            ),
            (
                "host=/run/postgresql user=o'brien password=s3cret dbname='my db'",
                "o'brien@/run/postgresql:5432/my db",
                "pg_dump --host=/run/postgresql --username=\"o'brien\" --format=custom \
                 --file=siaga.dump --dbname='my db'",
            ),
        ] {
            let config: Config = url.parse().unwrap();
            assert_eq!(database_at(&config), at, "{url}");
            let dump = pg_dump_command(&config);
            assert_eq!(dump, cmd, "{url}");
            assert!(!dump.contains("s3cret"), "{dump}");
        }
    }
}
