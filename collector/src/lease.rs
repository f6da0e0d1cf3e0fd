//! Which collector runs the health engine for which OPD.
//!
//! With the embedded store there is one collector, and it holds every OPD.
//! On PostgreSQL several collectors share the records, and each OPD's
//! faults must be judged by exactly one of them: the one its agent streams
//! to, which alone sees the samples and the heartbeats. A lease per OPD in
//! the `leases` table says which (`opd`, `holder`, `stream`, `expires_us`);
//! every collector runs [`Leases::round`] each [`RENEW`]:
//!
//! - it renews the leases it holds, saying whether it has the OPD's stream;
//! - it takes a lease nobody holds, one that expired (its holder died or
//!   hangs: it renews no more), or one whose holder lacks the stream while
//!   it has it (the agent moved here).
//!
//! So an OPD follows its agent's stream; an OPD whose agent streams
//! nowhere (dead, or never enrolled) stays with whichever collector holds
//! it, which watches it for silence.
//!
//! A dead holder is known sooner than its leases expire: each collector
//! holds a session advisory lock of its own ([`LIFE_LOCK`], its holder
//! name hashed) on a connection it keeps open for its whole life. When
//! the collector dies, `kill -9` included, the kernel closes that
//! connection, PostgreSQL ends the session and the lock is free; the next
//! round of another collector sees the holder's lock free in `pg_locks`
//! and takes the lease then, not after [`TTL`]. A holder that hangs but
//! keeps its connection still loses its leases after the TTL. Two holder
//! names hashing alike only delay the early take (the TTL still holds). Times are the database's clock
//! (`clock_timestamp()`), so collectors' clocks need not agree. One
//! statement a round, the OPDs sorted so that concurrent rounds lock rows in
//! one order. A collector that stops cleanly gives its leases up at once.
//!
//! The ticket and SOP timers need no lease: an escalation is marked in the
//! transaction that finds it due (writers take turns, `kv/postgres.rs`), so
//! it is sent once whoever finds it.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::error::StoreError;
use crate::kv::postgres::PgKv;

/// How often leases are renewed and taken.
pub const RENEW: Duration = Duration::from_secs(1);
/// How long a lease lasts without renewal: a dead collector's OPDs move
/// within this (plus one round).
pub const TTL: Duration = Duration::from_secs(5);

/// First key of the session advisory lock each running collector holds
/// ("SGLF"); the second is `hashtext(holder)`.
pub const LIFE_LOCK: i32 = 0x5347_4C46;

/// One round: renew, take; the OPDs held afterwards. A lease is taken when
/// nobody holds it, it expired, its holder lacks the stream this one has,
/// or its holder's life lock is free (the holder is gone).
const ROUND: &str = "INSERT INTO leases (opd, holder, stream, expires_us) \
     SELECT o, $2, s, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + $4 \
     FROM unnest($1::text[], $3::bool[]) AS t(o, s) \
     ON CONFLICT (opd) DO UPDATE SET holder = EXCLUDED.holder, stream = EXCLUDED.stream, \
         expires_us = EXCLUDED.expires_us \
     WHERE leases.holder = EXCLUDED.holder \
        OR leases.expires_us < EXCLUDED.expires_us - $4 \
        OR (NOT leases.stream AND EXCLUDED.stream) \
        OR NOT EXISTS (SELECT 1 FROM pg_locks l \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = $5::int4::oid AND l.objid = hashtext(leases.holder)::oid) \
     RETURNING opd";

/// What a round changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// OPDs this collector holds now and did not before.
    pub gained: Vec<String>,
    /// OPDs it held before and holds no more.
    pub lost: Vec<String>,
}

impl Changed {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.gained.is_empty() && self.lost.is_empty()
    }
}

/// The leases this collector holds.
pub struct Leases {
    /// `None`: the embedded store, every OPD held.
    pg: Option<(Arc<PgKv>, String)>,
    held: RwLock<HashSet<String>>,
    /// The connection holding this collector's [`LIFE_LOCK`], once taken.
    life: Mutex<Option<tokio_postgres::Client>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("holder", &self.pg.as_ref().map(|(_, me)| me))
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// One collector alone: it holds every OPD.
    pub fn all() -> Arc<Self> {
        Arc::new(Leases {
            pg: None,
            held: RwLock::default(),
            life: Mutex::default(),
        })
    }

    /// Leases in the PostgreSQL database of `kv`, held as `me` (unique per
    /// running collector). None held until the first round.
    pub fn on_postgres(kv: Arc<PgKv>, me: String) -> Arc<Self> {
        Arc::new(Leases {
            pg: Some((kv, me)),
            held: RwLock::default(),
            life: Mutex::default(),
        })
    }

    /// Whether leases are shared (several collectors may run).
    pub fn shared(&self) -> bool {
        self.pg.is_some()
    }

    /// This collector's name in the `leases` table.
    pub fn holder(&self) -> Option<&str> {
        self.pg.as_ref().map(|(_, me)| me.as_str())
    }

    /// Whether this collector runs the health engine for `opd`.
    pub fn holds(&self, opd: &str) -> bool {
        self.pg.is_none() || self.held.read().is_ok_and(|h| h.contains(opd))
    }

    /// The OPDs held, in order.
    pub fn held(&self) -> Vec<String> {
        let h = self.held.read().map(|h| h.clone()).unwrap_or_default();
        let mut v: Vec<String> = h.into_iter().collect();
        v.sort();
        v
    }

    /// One round for `opds` (the inventory's), with `streams` the OPDs
    /// whose agent streams to this collector now. Blocking (one statement).
    /// When the database does not answer, every lease is given up here
    /// (logged): a collector that cannot renew cannot know it still holds
    /// them, and they expire for the others meanwhile.
    pub fn round(&self, opds: &[String], streams: &HashSet<String>) -> Changed {
        let Some((kv, me)) = &self.pg else {
            return Changed::default();
        };
        let sorted: BTreeSet<&String> = opds.iter().collect();
        let names: Vec<&str> = sorted.iter().map(|s| s.as_str()).collect();
        let stream: Vec<bool> = sorted.iter().map(|o| streams.contains(*o)).collect();
        let ttl_us = i64::try_from(TTL.as_micros()).unwrap_or(i64::MAX);
        // Without its life lock this collector looks dead to the others:
        // they would take its leases at once. Take it again first, or
        // give every lease up.
        if let Err(e) = self.keep_alive(kv, me) {
            let c = self.set(HashSet::new());
            tracing::warn!(error = %e, given_up = ?c.lost, "cannot hold the collector's life lock");
            return c;
        }
        match kv.query(ROUND, &[&names, me, &stream, &ttl_us, &LIFE_LOCK]) {
            Ok(rows) => self.set(rows.iter().map(|r| r.get::<_, String>(0)).collect()),
            Err(e) => {
                let c = self.set(HashSet::new());
                tracing::warn!(error = %e, given_up = ?c.lost, "cannot renew the OPD leases");
                c
            }
        }
    }

    /// Holds [`LIFE_LOCK`] for `me` on a connection of its own: taken
    /// again on a new connection when the old one closed.
    fn keep_alive(&self, kv: &PgKv, me: &str) -> Result<(), StoreError> {
        let mut life = self.life.lock().unwrap_or_else(|p| p.into_inner());
        if life.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        *life = None;
        let client = kv.dedicated()?;
        let row = crate::store::postgres::wait(client.query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&LIFE_LOCK, &me],
        ))
        .map_err(|source| StoreError::Postgres {
            doing: "taking the collector's life lock",
            source,
        })?;
        if !row.get::<_, bool>(0) {
            // Another live holder's name hashes alike: its lock stands for
            // both, so this collector's death is found by the TTL alone.
            tracing::warn!(
                holder = me,
                "life lock held by another collector (hash clash); leases move after the TTL"
            );
        }
        *life = Some(client);
        Ok(())
    }

    fn set(&self, now: HashSet<String>) -> Changed {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        let mut c = Changed {
            gained: now.difference(&held).cloned().collect(),
            lost: held.difference(&now).cloned().collect(),
        };
        c.gained.sort();
        c.lost.sort();
        *held = now;
        c
    }

    /// Whether the agent of `opd` streams to another collector now (its
    /// lease, unexpired, held there with the stream). Blocking.
    pub fn streams_elsewhere(&self, opd: &str) -> Result<bool, StoreError> {
        let Some((kv, me)) = &self.pg else {
            return Ok(false);
        };
        let rows = kv.query(
            "SELECT 1 FROM leases WHERE opd = $1 AND holder <> $2 AND stream \
             AND expires_us > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
            &[&opd, me],
        )?;
        Ok(!rows.is_empty())
    }

    /// Gives up every lease this collector holds (a clean stop): the
    /// others take them at their next round rather than after [`TTL`].
    pub fn release(&self) -> Result<(), StoreError> {
        let Some((kv, me)) = &self.pg else {
            return Ok(());
        };
        self.set(HashSet::new());
        kv.query("DELETE FROM leases WHERE holder = $1", &[me])?;
        // The life lock goes with its connection.
        self.life.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(())
    }
}
