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
//! it, which watches it for silence. Times are the database's clock
//! (`clock_timestamp()`), so collectors' clocks need not agree. One
//! statement a round, the OPDs sorted so that concurrent rounds lock rows in
//! one order. A collector that stops cleanly gives its leases up at once.
//!
//! The ticket and SOP timers need no lease: an escalation is marked in the
//! transaction that finds it due (writers take turns, `kv/postgres.rs`), so
//! it is sent once whoever finds it.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::error::StoreError;
use crate::kv::postgres::PgKv;

/// How often leases are renewed and taken.
pub const RENEW: Duration = Duration::from_secs(1);
/// How long a lease lasts without renewal: a dead collector's OPDs move
/// within this (plus one round).
pub const TTL: Duration = Duration::from_secs(5);

/// One round: renew, take; the OPDs held afterwards.
const ROUND: &str = "INSERT INTO leases (opd, holder, stream, expires_us) \
     SELECT o, $2, s, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + $4 \
     FROM unnest($1::text[], $3::bool[]) AS t(o, s) \
     ON CONFLICT (opd) DO UPDATE SET holder = EXCLUDED.holder, stream = EXCLUDED.stream, \
         expires_us = EXCLUDED.expires_us \
     WHERE leases.holder = EXCLUDED.holder \
        OR leases.expires_us < EXCLUDED.expires_us - $4 \
        OR (NOT leases.stream AND EXCLUDED.stream) \
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
        })
    }

    /// Leases in the PostgreSQL database of `kv`, held as `me` (unique per
    /// running collector). None held until the first round.
    pub fn on_postgres(kv: Arc<PgKv>, me: String) -> Arc<Self> {
        Arc::new(Leases {
            pg: Some((kv, me)),
            held: RwLock::default(),
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
        match kv.query(ROUND, &[&names, me, &stream, &ttl_us]) {
            Ok(rows) => self.set(rows.iter().map(|r| r.get::<_, String>(0)).collect()),
            Err(e) => {
                let c = self.set(HashSet::new());
                tracing::warn!(error = %e, given_up = ?c.lost, "cannot renew the OPD leases");
                c
            }
        }
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
        Ok(())
    }
}
