//! Measurement records, in the database the tickets live in.

use crate::kv::{Db, Table};

use super::model::{MeasureState, Measurement};
use crate::error::StoreError;

/// id → JSON [`Measurement`].
const MEASUREMENTS: Table<String, Vec<u8>> = Table::new("measurements");
/// `next` → last id number handed out.
const MEASURE_COUNTER: Table<String, u64> = Table::new("measurement_counter");
/// (OPD, id) → 1 for each measurement not final yet (queued or running),
/// kept in the transaction that writes the measurement: what the pickup of
/// queued measurements (every 500 ms on each collector sharing a database)
/// and the sweep read, not every measurement ever taken.
const MEASURE_OPEN: Table<(String, String), u64> = Table::new("measurements_open");

/// Copies the measurement tables from `from` into `to` (a write
/// transaction): (table, rows) of each.
pub fn copy_tables(
    from: &crate::kv::Tx,
    to: &crate::kv::Tx,
) -> Result<Vec<(&'static str, u64)>, StoreError> {
    use crate::kv::copy_table;
    Ok(vec![
        copy_table(&MEASUREMENTS, from, to)?,
        copy_table(&MEASURE_COUNTER, from, to)?,
        copy_table(&MEASURE_OPEN, from, to)?,
    ])
}

/// The measurement table.
#[derive(Clone)]
pub struct MeasureStore {
    db: Db,
}

impl std::fmt::Debug for MeasureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasureStore").finish_non_exhaustive()
    }
}

fn dec(b: &[u8]) -> Result<Measurement, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Decode {
        what: "measurement",
        message: e.to_string(),
    })
}

fn enc(m: &Measurement) -> Vec<u8> {
    // Plain data: serialising to JSON cannot fail.
    serde_json::to_vec(m).unwrap_or_default()
}

/// Writes `m` and keeps its place in [`MEASURE_OPEN`].
fn put(tx: &crate::kv::Tx, m: &Measurement) -> Result<(), StoreError> {
    tx.insert(&MEASUREMENTS, m.id.as_str(), enc(m))?;
    let key = (m.opd.as_str(), m.id.as_str());
    if m.state.is_final() {
        tx.remove(&MEASURE_OPEN, key)?;
    } else {
        tx.insert(&MEASURE_OPEN, key, 1)?;
    }
    Ok(())
}

impl MeasureStore {
    /// The tables in a shared database (the tickets' one).
    pub fn new(db: impl Into<Db>) -> Result<Self, StoreError> {
        let db = db.into();
        db.create(&[MEASUREMENTS])?;
        db.create(&[MEASURE_COUNTER])?;
        db.create(&[MEASURE_OPEN])?;
        let store = Self { db };
        store.index_open()?;
        Ok(store)
    }

    /// Fills [`MEASURE_OPEN`] from the measurements, for a store written
    /// before it existed (one read at start; nothing written when it is
    /// whole).
    fn index_open(&self) -> Result<(), StoreError> {
        let missing: Vec<Measurement> = {
            let tx = self.db.read()?;
            let mut out = Vec::new();
            for row in tx.iter(&MEASUREMENTS)? {
                let m = dec(&row?.1)?;
                if !m.state.is_final()
                    && tx
                        .get(&MEASURE_OPEN, (m.opd.as_str(), m.id.as_str()))?
                        .is_none()
                {
                    out.push(m);
                }
            }
            out
        };
        if missing.is_empty() {
            return Ok(());
        }
        let tx = self.db.write()?;
        for m in &missing {
            // Read again: another collector may have moved it on meanwhile.
            if let Some(now) = tx.get(&MEASUREMENTS, m.id.as_str())? {
                put(&tx, &dec(&now)?)?;
            }
        }
        tx.commit()
    }

    /// The measurements not final yet, oldest first (of `opd` only, if
    /// given).
    pub fn open(&self, opd: Option<&str>) -> Result<Vec<Measurement>, StoreError> {
        let tx = self.db.read()?;
        let from = match opd {
            Some(o) => std::ops::Bound::Included((o, "")),
            None => std::ops::Bound::Unbounded,
        };
        let mut out = Vec::new();
        for row in tx.range(&MEASURE_OPEN, from, std::ops::Bound::Unbounded, false)? {
            let ((o, id), _) = row?;
            if opd.is_some_and(|want| want != o) {
                break;
            }
            if let Some(v) = tx.get(&MEASUREMENTS, id.as_str())? {
                out.push(dec(&v)?);
            }
        }
        out.sort_by_key(|m| m.id.clone());
        Ok(out)
    }

    /// Stores a new measurement, giving it the next id (`M-000001`, …).
    pub fn create(&self, mut m: Measurement) -> Result<Measurement, StoreError> {
        let tx = self.db.write()?;
        let next = tx.get(&MEASURE_COUNTER, "next")?.unwrap_or(0) + 1;
        tx.insert(&MEASURE_COUNTER, "next", next)?;
        m.id = format!("M-{next:06}");
        put(&tx, &m)?;
        tx.commit()?;
        Ok(m)
    }

    /// Replaces a stored measurement (same id).
    pub fn update(&self, m: &Measurement) -> Result<(), StoreError> {
        let tx = self.db.write()?;
        put(&tx, m)?;
        tx.commit()?;
        Ok(())
    }

    /// Takes queued measurement `id` for `agent` at `now`: marked running
    /// there, in one write transaction, unless it is no longer queued
    /// (another collector took it first, or it expired): then `None`.
    pub fn claim(
        &self,
        id: &str,
        agent: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Measurement>, StoreError> {
        let tx = self.db.write()?;
        let Some(mut m) = tx.get(&MEASUREMENTS, id)?.map(|v| dec(&v)).transpose()? else {
            return Ok(None);
        };
        if !matches!(m.state, MeasureState::Queued { expires_at } if expires_at > now) {
            return Ok(None);
        }
        m.state = MeasureState::Running { sent_at: now };
        m.agent = Some(agent.to_string());
        put(&tx, &m)?;
        tx.commit()?;
        Ok(Some(m))
    }

    /// One measurement.
    pub fn get(&self, id: &str) -> Result<Option<Measurement>, StoreError> {
        let tx = self.db.read()?;
        tx.get(&MEASUREMENTS, id)?.map(|v| dec(&v)).transpose()
    }

    /// Every measurement, oldest first.
    pub fn all(&self) -> Result<Vec<Measurement>, StoreError> {
        let tx = self.db.read()?;
        let mut out = Vec::new();
        for row in tx.iter(&MEASUREMENTS)? {
            let (_, v) = row?;
            out.push(dec(&v)?);
        }
        Ok(out)
    }

    /// The measurements of a ticket, oldest first.
    pub fn for_ticket(&self, ticket: &str) -> Result<Vec<Measurement>, StoreError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|m| m.ticket.as_deref() == Some(ticket))
            .collect())
    }

    /// Queued measurements for an OPD's agent, oldest first.
    pub fn queued(&self, opd: &str) -> Result<Vec<Measurement>, StoreError> {
        Ok(self
            .open(Some(opd))?
            .into_iter()
            .filter(|m| matches!(m.state, MeasureState::Queued { .. }))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::model::Phase;
    use chrono::Utc;
    use redb::Database;
    use siaga_proto::v1::{
        IcmpResult, Interface, MeasureResult, Sample, SnmpResult, SnmpStatus, sample,
    };
    use std::sync::Arc;

    fn request(ticket: Option<&str>, phase: Option<Phase>) -> Measurement {
        Measurement {
            id: String::new(),
            ticket: ticket.map(str::to_string),
            phase,
            opd: "dinkes".into(),
            devices: vec!["dinkes-sw1".into()],
            links: vec!["uplink".into()],
            icmp_count: 100,
            window_ms: 10_000,
            requested_by: "teknisi".into(),
            requested_at: Utc::now(),
            completed_at: None,
            agent: None,
            state: MeasureState::Queued {
                expires_at: Utc::now(),
            },
            device_figures: vec![],
            link_figures: vec![],
        }
    }

    #[test]
    fn ids_are_sequential_and_records_survive_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.redb");
        {
            let s = MeasureStore::new(Arc::new(Database::create(&path).expect("db"))).expect("s");
            let a = s
                .create(request(Some("PJ-2026-0001"), Some(Phase::Before)))
                .expect("a");
            let b = s.create(request(None, None)).expect("b");
            assert_eq!((a.id.as_str(), b.id.as_str()), ("M-000001", "M-000002"));
        }
        let s = MeasureStore::new(Arc::new(Database::create(&path).expect("db"))).expect("s");
        let c = s
            .create(request(Some("PJ-2026-0001"), Some(Phase::After)))
            .expect("c");
        assert_eq!(c.id, "M-000003");
        let on_ticket = s.for_ticket("PJ-2026-0001").expect("list");
        assert_eq!(
            on_ticket.iter().map(|m| m.phase).collect::<Vec<_>>(),
            vec![Some(Phase::Before), Some(Phase::After)]
        );
        assert_eq!(s.queued("dinkes").expect("q").len(), 3);
        assert!(s.queued("bappeda").expect("q").is_empty());
    }

    /// The pickup and the sweep read only measurements not final: one
    /// finished leaves the index in its own transaction, and a store
    /// written before the index existed is indexed when opened.
    #[test]
    fn only_open_measurements_are_read_by_the_pickup_and_old_stores_are_indexed() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Arc::new(Database::create(dir.path().join("t.redb")).expect("db"));
        let s = MeasureStore::new(db.clone()).expect("s");
        let mut a = s.create(request(None, None)).expect("a");
        let mut other = request(None, None);
        other.opd = "bappeda".into();
        let b = s.create(other).expect("b");
        let c = s.create(request(None, None)).expect("c");
        a.state = MeasureState::Done;
        s.update(&a).expect("done");
        let running = s.claim(&c.id, "agent-1", Utc::now() - chrono::Duration::seconds(1));
        assert!(running.expect("claim").is_some());
        let ids = |v: Vec<Measurement>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.open(None).expect("open")),
            [b.id.clone(), c.id.clone()]
        );
        assert_eq!(
            ids(s.open(Some("dinkes")).expect("open")),
            vec![c.id.clone()]
        );
        assert!(
            s.queued("dinkes").expect("q").is_empty(),
            "running, not queued"
        );
        assert_eq!(ids(s.queued("bappeda").expect("q")), vec![b.id.clone()]);

        // An older store: the index lost (as before it existed).
        let w = db.begin_write().expect("w");
        w.delete_table(redb::TableDefinition::<(&str, &str), u64>::new(
            "measurements_open",
        ))
        .expect("drop");
        w.commit().expect("commit");
        let s = MeasureStore::new(db).expect("reopen");
        assert_eq!(ids(s.open(None).expect("open")), [b.id, c.id]);
    }

    #[test]
    fn an_answer_fills_device_and_link_figures_and_a_failed_poll_marks_its_links() {
        let mut m = request(Some("PJ-2026-0001"), Some(Phase::Before));
        m.links = vec!["uplink".into(), "core".into()];
        let answer = MeasureResult {
            id: "M-000001".into(),
            samples: vec![
                Sample {
                    seq: 0,
                    ts_us: 0,
                    device: "dinkes-sw1".into(),
                    kind: Some(sample::Kind::Icmp(IcmpResult {
                        sent: 100,
                        received: 50,
                        loss_pct: 50.0,
                        rtt_median_us: Some(120),
                        rtts_us: vec![100, 120, 140],
                        ..Default::default()
                    })),
                },
                Sample {
                    seq: 0,
                    ts_us: 0,
                    device: "dinkes-sw1".into(),
                    kind: Some(sample::Kind::Snmp(SnmpResult {
                        status: SnmpStatus::Ok as i32,
                        health: Some(siaga_proto::v1::DeviceHealth {
                            cpu_pct: Some(97.0),
                            mem_pct: Some(41.5),
                            temp_c: Some(52.0),
                            temp_threshold_c: Some(55.0),
                            ..Default::default()
                        }),
                        interfaces: vec![Interface {
                            if_name: "eth1".into(),
                            oper_status: 2,
                            admin_status: 1,
                            speed_bps: 1_000_000_000,
                            link_name: "uplink".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })),
                },
                Sample {
                    seq: 0,
                    ts_us: 0,
                    device: "dinkes-rtr".into(),
                    kind: Some(sample::Kind::Snmp(SnmpResult {
                        status: SnmpStatus::Timeout as i32,
                        ..Default::default()
                    })),
                },
            ],
            error: String::new(),
        };
        m.complete(&answer, "agent-dinkes", Utc::now(), |l| {
            Some(
                if l == "uplink" {
                    "dinkes-sw1"
                } else {
                    "dinkes-rtr"
                }
                .to_string(),
            )
        });
        assert_eq!(m.state, MeasureState::Done);
        let d = m.device("dinkes-sw1").expect("device figures");
        assert_eq!((d.sent, d.received, d.loss_pct), (100, 50, 50.0));
        assert_eq!(d.rtts_us, vec![100, 120, 140]);
        // Its own health from the SNMP poll, beside the ICMP figures.
        assert_eq!(
            (d.cpu_pct, d.mem_pct, d.temp_c, d.temp_threshold_c),
            (Some(97.0), Some(41.5), Some(52.0), Some(55.0))
        );
        let up = m.link("uplink").expect("uplink");
        assert_eq!(
            (up.oper_status.as_str(), up.admin_status.as_str()),
            ("down", "up")
        );
        assert_eq!(up.speed_mbps, Some(1000.0));
        let core = m.link("core").expect("core");
        assert_eq!(core.error.as_deref(), Some("SNMP: no answer (timeout)"));
    }

    #[test]
    fn an_agent_error_fails_the_measurement() {
        let mut m = request(None, None);
        let answer = MeasureResult {
            id: "x".into(),
            samples: vec![],
            error: "device unknown to this agent".into(),
        };
        m.complete(&answer, "a", Utc::now(), |_| None);
        assert_eq!(
            m.state,
            MeasureState::Failed {
                error: "device unknown to this agent".into()
            }
        );
        assert!(m.state.is_final());
    }
}
