//! The tickets' records in PostgreSQL: the `kv` table of the store's
//! schema (version 2, `store/postgres.rs`), read and written in
//! transactions as [`super::Tx`] describes.
//!
//! Connections come from a small pool of at most [`CONNECTIONS`]; a
//! transaction holds one until it commits or is dropped (rolled back). A
//! write transaction first takes the advisory lock [`WRITE_LOCK`], held
//! until it ends: one writer at a time across every collector on the
//! database, waiting at most [`LOCK_WAIT`] for it (then an error, never a
//! hang). A read transaction is `REPEATABLE READ READ ONLY`: one snapshot
//! for all it reads.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::error::StoreError;
use crate::store::pg_connect::PgRuntime;
use crate::store::postgres::wait;

/// Connections a collector opens for the records at most.
pub const CONNECTIONS: usize = 8;
/// Held by the write transaction in progress ("siaga" and 3).
pub const WRITE_LOCK: i64 = 0x5349_4147_4103;
/// How long a write transaction waits for the lock before giving up.
pub const LOCK_WAIT: &str = "30s";
/// Rows a range reads per query.
const PAGE: i64 = 256;

fn pg(doing: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { doing, source }
}

/// Idle connections, ready for the next transaction.
#[derive(Default)]
struct Idle(Mutex<Vec<Client>>);

impl Idle {
    fn put(&self, c: Client) {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < CONNECTIONS {
            idle.push(c);
        }
    }

    fn take(&self) -> Option<Client> {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }
}

/// The records' side of a PostgreSQL store.
pub struct PgKv {
    /// Runs the connections.
    pg: PgRuntime,
    idle: Idle,
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for PgKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKv")
            .field("hosts", &self.pg.config.get_hosts())
            .field("dbname", &self.pg.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl PgKv {
    /// Connects to `url` and creates (or migrates, or checks) the schema.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let kv = PgKv {
            pg: PgRuntime::new(url, "kv-postgres")?,
            idle: Idle::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(CONNECTIONS)),
        };
        let mut c = wait(kv.connect())?;
        wait(crate::store::postgres::migrate(&mut c))?;
        kv.idle.put(c);
        Ok(kv)
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        self.pg.connect().await
    }

    /// A connection of its own, outside the pool, for a session that must
    /// last as long as the collector (`lease.rs` holds its life lock on it).
    pub(crate) fn dedicated(&self) -> Result<Client, StoreError> {
        wait(self.connect())
    }

    /// One statement outside any transaction of this module (autocommit),
    /// on a connection of the pool: what `lease.rs` runs.
    pub fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        wait(async {
            let _permit = self
                .slots
                .acquire()
                .await
                .map_err(|e| StoreError::Runtime(std::io::Error::other(e)))?;
            let client = match self.idle.take() {
                Some(c) => c,
                None => self.connect().await?,
            };
            let rows = client.query(sql, params).await.map_err(pg("querying"))?;
            self.idle.put(client);
            Ok(rows)
        })
    }

    pub(super) fn begin(self: &Arc<Self>, write: bool) -> Result<PgTx, StoreError> {
        wait(async {
            let permit = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| StoreError::Runtime(std::io::Error::other(e)))?;
            let client = match self.idle.take() {
                Some(c) => c,
                None => self.connect().await?,
            };
            let begin = if write {
                format!(
                    "BEGIN; SET LOCAL lock_timeout = '{LOCK_WAIT}'; \
                     SELECT pg_advisory_xact_lock({WRITE_LOCK})"
                )
            } else {
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_string()
            };
            client.batch_execute(&begin).await.map_err(pg(if write {
                "waiting for the records' write lock"
            } else {
                "beginning a read"
            }))?;
            Ok(PgTx {
                client: Some(client),
                kv: self.clone(),
                _permit: permit,
            })
        })
    }
}

/// A transaction in progress on one connection.
pub struct PgTx {
    client: Option<Client>,
    /// Keeps the runtime the connection runs on.
    kv: Arc<PgKv>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            // Not committed: rolled back, and the connection reused only
            // when that worked.
            if wait(c.batch_execute("ROLLBACK")).is_ok() {
                self.kv.idle.put(c);
            }
        }
    }
}

impl PgTx {
    fn client(&self) -> Result<&Client, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Runtime(std::io::Error::other("the transaction has ended")))
    }

    pub(super) fn get(&self, tbl: &str, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.client()?;
        let row = wait(c.query_opt("SELECT v FROM kv WHERE tbl = $1 AND k = $2", &[&tbl, &k]))
            .map_err(pg("reading a record"))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(super) fn insert(&self, tbl: &str, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        let c = self.client()?;
        wait(c.execute(
            "INSERT INTO kv (tbl, k, v) VALUES ($1, $2, $3) \
             ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v",
            &[&tbl, &k, &v],
        ))
        .map_err(pg("writing a record"))?;
        Ok(())
    }

    pub(super) fn remove(&self, tbl: &str, k: &[u8]) -> Result<bool, StoreError> {
        let c = self.client()?;
        let n = wait(c.execute("DELETE FROM kv WHERE tbl = $1 AND k = $2", &[&tbl, &k]))
            .map_err(pg("removing a record"))?;
        Ok(n > 0)
    }

    pub(super) fn range<'a>(
        &'a self,
        tbl: &'static str,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
        rev: bool,
    ) -> PgRows<'a> {
        PgRows {
            tx: self,
            tbl,
            from,
            to,
            rev,
            buf: VecDeque::new(),
            done: false,
        }
    }

    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        let c = self.client.take().ok_or_else(|| {
            StoreError::Runtime(std::io::Error::other("the transaction has ended"))
        })?;
        wait(c.batch_execute("COMMIT")).map_err(pg("committing"))?;
        self.kv.idle.put(c);
        Ok(())
    }
}

/// A range read a page at a time.
pub struct PgRows<'a> {
    tx: &'a PgTx,
    tbl: &'static str,
    from: Bound<Vec<u8>>,
    to: Bound<Vec<u8>>,
    rev: bool,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl PgRows<'_> {
    fn fetch(&mut self) -> Result<(), StoreError> {
        let mut sql = String::from("SELECT k, v FROM kv WHERE tbl = $1");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.tbl];
        for (bound, inc, exc) in [(&self.from, ">=", ">"), (&self.to, "<=", "<")] {
            let (op, k) = match bound {
                Bound::Included(k) => (inc, k),
                Bound::Excluded(k) => (exc, k),
                Bound::Unbounded => continue,
            };
            params.push(k);
            sql.push_str(&format!(" AND k {op} ${}", params.len()));
        }
        let order = if self.rev { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY k {order} LIMIT {PAGE}"));
        let c = self.tx.client()?;
        let rows = wait(c.query(&sql, &params)).map_err(pg("reading records"))?;
        self.done = (rows.len() as i64) < PAGE;
        for r in rows {
            self.buf.push_back((r.get(0), r.get(1)));
        }
        if let Some((last, _)) = self.buf.back() {
            let next = Bound::Excluded(last.clone());
            if self.rev {
                self.to = next;
            } else {
                self.from = next;
            }
        }
        Ok(())
    }
}

impl Iterator for PgRows<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty()
            && !self.done
            && let Err(e) = self.fetch()
        {
            self.done = true;
            return Some(Err(e));
        }
        self.buf.pop_front().map(Ok)
    }
}
