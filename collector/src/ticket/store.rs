//! Durable tickets, open incidents, health events and maintenance windows.
//!
//! Kept in their own redb file beside the sample store (`tickets.redb` in the
//! data directory): these records are few and precious, the samples many and
//! pruned. The SOP part keeps the ticket itself (number, facts, place in the
//! chain, audit trail); this keeps what health knows about it (incident,
//! evidence, recovery, occurrences, affected devices) and the open incidents.
//! Both share one database file, so that a new ticket, its health record and
//! its incident are written in one transaction. Every change is one durable
//! transaction.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::error::StoreError;
use crate::health::{Health, Incident, MaintenanceWindow, Reading};
use crate::kv::{Db, Table, Tx};

/// ticket number → JSON [`TicketHealth`].
const TICKETS: Table<String, Vec<u8>> = Table::new("health_tickets");
/// incident key → JSON [`OpenIncident`].
const INCIDENTS: Table<String, Vec<u8>> = Table::new("health_open_incidents");
/// counter name → value ("window", "event").
const COUNTERS: Table<String, u64> = Table::new("health_counters");
/// (ts_us, seq) → JSON [`HealthEvent`].
const EVENTS: Table<(i64, u64), Vec<u8>> = Table::new("health_events");
/// window id → JSON [`MaintenanceWindow`].
const WINDOWS: Table<u64, Vec<u8>> = Table::new("health_maintenance");
/// (OPD, subject as JSON) → JSON [`PublishedState`]: the state the
/// collector holding the OPD's lease shows, for the others to show too
/// (several collectors on PostgreSQL; never written on the embedded store).
/// Not copied by `migrate`: the holder writes it afresh.
const STATES: Table<(String, String), Vec<u8>> = Table::new("health_states");
/// (OPD, device) → linkDown traps of the device the next poll contradicted,
/// as the OPD's holder counts them (beside [`STATES`]).
const TRAPS: Table<(String, String), u64> = Table::new("health_traps");

/// At most this many published rows are read in one refresh (of each
/// table): far more subjects than an inventory holds, so the read stays
/// bounded whatever the table holds.
pub const MAX_PUBLISHED: usize = 100_000;

/// The state of one subject as the collector judging its OPD shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedState {
    /// Whose state (a device, a link, or the OPD itself: its agent alive
    /// (up) or silent (unknown)).
    pub subject: crate::health::Subject,
    /// The subject's OPD.
    pub opd: String,
    /// Visible state.
    pub health: Health,
    /// Flapping.
    pub flapping: bool,
    /// Since when, µs.
    pub since_us: i64,
    /// Why, in a few words (the state change's reason).
    pub reason: String,
}

/// What the collector judging some OPDs publishes in one write, or what a
/// refresh read of every OPD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// Subjects' states.
    pub states: Vec<PublishedState>,
    /// (OPD, device, linkDown traps the next poll contradicted).
    pub traps: Vec<(String, String, u64)>,
}

impl Published {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.traps.is_empty()
    }
}

/// Evidence kept per ticket; older readings beyond this are dropped.
pub const MAX_EVIDENCE: usize = 200;

/// A line in a ticket's health log ("pulih pada …").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketNote {
    /// When.
    pub at: DateTime<Utc>,
    /// opened, occurrence, recovered, flapping, settled, affected, evidence.
    pub kind: String,
    /// What, in a sentence (Bahasa Indonesia, times in the province's zone).
    pub text: String,
    /// The same as facts, for documents in either language (`None` for
    /// notes stored before notes were typed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<crate::health::reason::Note>,
}

impl TicketNote {
    /// A note made from its facts, its moments written in `zone`.
    pub fn new(
        at: DateTime<Utc>,
        note: crate::health::reason::Note,
        zone: &crate::sop::calendar::Zone,
    ) -> Self {
        TicketNote {
            at,
            kind: note.kind().to_string(),
            text: note.text(crate::sop::Lang::Id, &|us| zone.fmt_us(us)),
            note: Some(note),
        }
    }

    /// The note in `lang`, with `time` writing its moments (the text as
    /// stored for a note without facts).
    pub fn text_in(&self, lang: crate::sop::Lang, time: &dyn Fn(i64) -> String) -> String {
        self.note
            .as_ref()
            .map_or_else(|| self.text.clone(), |n| n.text(lang, time))
    }
}

/// What the health part keeps about a ticket (the SOP part keeps its
/// number, facts, place in the chain and audit trail).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TicketHealth {
    /// Ticket number.
    pub number: String,
    /// The incident it was opened for.
    pub incident: Option<String>,
    /// The problem in Bahasa Indonesia.
    pub problem_id: String,
    /// When the device or link recovered last (cleared when it fails again).
    pub recovered_at: Option<DateTime<Utc>>,
    /// Occurrences of the problem while the ticket was open.
    pub occurrences: u32,
    /// Devices unreachable because of it.
    pub affected: BTreeSet<String>,
    /// The subject flapped while the ticket was open.
    pub flapping: bool,
    /// The readings that triggered it and came after.
    pub evidence: Vec<Reading>,
    /// Health log.
    pub notes: Vec<TicketNote>,
    /// Sequence of notification events sent for it.
    pub notify_seq: u64,
}

impl TicketHealth {
    /// Adds evidence, keeping the newest [`MAX_EVIDENCE`].
    pub fn add_evidence(&mut self, readings: impl IntoIterator<Item = Reading>) {
        self.evidence.extend(readings);
        if self.evidence.len() > MAX_EVIDENCE {
            let cut = self.evidence.len() - MAX_EVIDENCE;
            self.evidence.drain(..cut);
        }
    }
}

/// An open incident and its ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenIncident {
    /// The incident as the engine keeps it.
    pub incident: Incident,
    /// Its ticket number.
    pub ticket: String,
}

/// What an event of the log says happened, stored as its snake_case word
/// (the word the wire's `LogEvent.Kind` is named by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthEventKind {
    /// A device's or link's state changed.
    State,
    /// An incident was opened.
    Opened,
    /// The fault of an open incident came back.
    Occurrence,
    /// A device or link was added to an open incident.
    Affected,
    /// The incident's subject recovered.
    Recovered,
    /// The subject started flapping.
    Flapping,
    /// A linkDown trap the next poll contradicted.
    NotConfirmed,
    /// The incident was closed.
    Closed,
    /// The incident could not be closed.
    NotClosed,
    /// A problem opened no incident: a maintenance window covers it.
    Suppressed,
}

impl From<HealthEventKind> for siaga_proto::v1::log_event_kind::Kind {
    fn from(k: HealthEventKind) -> Self {
        match k {
            HealthEventKind::State => Self::State,
            HealthEventKind::Opened => Self::Opened,
            HealthEventKind::Occurrence => Self::Occurrence,
            HealthEventKind::Affected => Self::Affected,
            HealthEventKind::Recovered => Self::Recovered,
            HealthEventKind::Flapping => Self::Flapping,
            HealthEventKind::NotConfirmed => Self::NotConfirmed,
            HealthEventKind::Closed => Self::Closed,
            HealthEventKind::NotClosed => Self::NotClosed,
            HealthEventKind::Suppressed => Self::Suppressed,
        }
    }
}

/// Something the health engine saw, for `siaga events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthEvent {
    /// When, µs since the epoch.
    pub ts_us: i64,
    /// What happened.
    pub kind: HealthEventKind,
    /// `device ID`, `link DEVICE/LINK` or `opd ID`.
    pub subject: String,
    /// Device id, if any.
    pub device: Option<String>,
    /// Link name, if any.
    pub link: Option<String>,
    /// OPD.
    pub opd: String,
    /// State before (state changes).
    #[serde(default)]
    pub from: Option<Health>,
    /// State after (state changes).
    #[serde(default)]
    pub to: Option<Health>,
    /// Flapping after the change.
    #[serde(default)]
    pub flapping: bool,
    /// Why, in words.
    pub reason: String,
    /// Ticket concerned, if any.
    #[serde(default)]
    pub ticket: Option<String>,
}

/// Where an event sits in the log: `(ts_us, sequence)`.
pub type EventKey = (i64, u64);

/// The health part's tables.
pub struct TicketStore {
    db: Db,
}

impl std::fmt::Debug for TicketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketStore").finish_non_exhaustive()
    }
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising plain data structures to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn dec<T: for<'de> Deserialize<'de>>(what: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Decode {
        what,
        message: e.to_string(),
    })
}

/// A subject as the key of [`STATES`] (JSON: unambiguous whatever the ids hold).
fn subject_key(s: &crate::health::Subject) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Appends `events` to the log in `tx`; the key each got, in order.
fn append_in(tx: &Tx, events: &[HealthEvent]) -> Result<Vec<EventKey>, StoreError> {
    let mut keys = Vec::with_capacity(events.len());
    for e in events {
        let seq = next_counter(tx, "event")?;
        tx.insert(&EVENTS, (e.ts_us, seq), enc(e))?;
        keys.push((e.ts_us, seq));
    }
    Ok(keys)
}

fn next_counter(tx: &Tx, name: &str) -> Result<u64, StoreError> {
    let next = tx.get(&COUNTERS, name)?.unwrap_or(0) + 1;
    tx.insert(&COUNTERS, name, next)?;
    Ok(next)
}

/// Copies the health part's tables from `from` into `to` (a write
/// transaction): (table, rows) of each.
pub fn copy_tables(from: &Tx, to: &Tx) -> Result<Vec<(&'static str, u64)>, StoreError> {
    use crate::kv::copy_table;
    Ok(vec![
        copy_table(&TICKETS, from, to)?,
        copy_table(&INCIDENTS, from, to)?,
        copy_table(&COUNTERS, from, to)?,
        copy_table(&EVENTS, from, to)?,
        copy_table(&WINDOWS, from, to)?,
    ])
}

impl TicketStore {
    /// The database these tables live in (shared with the SOP part).
    pub fn database(&self) -> &Db {
        &self.db
    }

    /// Opens (or creates) `<data_dir>/tickets.redb` on its own.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        Self::new(Arc::new(crate::schema::open_tickets(data_dir)?))
    }

    /// The tables in a database shared with other parts (the SOP store).
    pub fn new(db: impl Into<Db>) -> Result<Self, StoreError> {
        let db = db.into();
        db.create(&[TICKETS, INCIDENTS])?;
        db.create(&[COUNTERS])?;
        db.create(&[EVENTS])?;
        db.create(&[WINDOWS])?;
        Ok(Self { db })
    }

    /// Stores the health record of a new ticket together with its incident.
    pub fn create(
        &self,
        rec: &TicketHealth,
        incident: Option<&Incident>,
    ) -> Result<(), StoreError> {
        let tx = self.db.write()?;
        Self::create_in(&tx, rec, incident)?;
        tx.commit()?;
        Ok(())
    }

    /// [`Self::create`] inside a transaction of the caller (the one that
    /// opens the SOP ticket), which commits it.
    pub fn create_in(
        tx: &Tx,
        rec: &TicketHealth,
        incident: Option<&Incident>,
    ) -> Result<(), StoreError> {
        tx.insert(&TICKETS, rec.number.as_str(), enc(rec))?;
        if let Some(i) = incident {
            let o = OpenIncident {
                incident: i.clone(),
                ticket: rec.number.clone(),
            };
            tx.insert(&INCIDENTS, i.key.as_str(), enc(&o))?;
        }
        Ok(())
    }

    /// The ticket already open for incident `key`, read in a write
    /// transaction: what a collector checks before opening one, so that
    /// two collectors racing on one incident open one ticket.
    pub fn open_incident_in(tx: &Tx, key: &str) -> Result<Option<OpenIncident>, StoreError> {
        tx.get(&INCIDENTS, key)?
            .map(|v| dec("incident", &v))
            .transpose()
    }

    /// The health record of one ticket (none for a ticket from a letter).
    pub fn get(&self, number: &str) -> Result<Option<TicketHealth>, StoreError> {
        let tx = self.db.read()?;
        tx.get(&TICKETS, number)?
            .map(|v| dec("ticket health", &v))
            .transpose()
    }

    /// Every health record.
    pub fn list(&self) -> Result<Vec<TicketHealth>, StoreError> {
        let tx = self.db.read()?;
        let mut out = Vec::new();
        for row in tx.iter(&TICKETS)? {
            let (_, v) = row?;
            out.push(dec::<TicketHealth>("ticket health", &v)?);
        }
        Ok(out)
    }

    /// Changes one health record in one transaction (creating it for a
    /// ticket that has none); returns it as stored.
    pub fn update(
        &self,
        number: &str,
        f: impl FnOnce(&mut TicketHealth),
    ) -> Result<TicketHealth, StoreError> {
        let tx = self.db.write()?;
        let rec = Self::update_in(&tx, number, f)?;
        tx.commit()?;
        Ok(rec)
    }

    /// [`Self::update`] inside a transaction of the caller (the one that
    /// takes the SOP step the record goes with), which commits it.
    pub fn update_in(
        tx: &Tx,
        number: &str,
        f: impl FnOnce(&mut TicketHealth),
    ) -> Result<TicketHealth, StoreError> {
        let mut rec: TicketHealth = match tx.get(&TICKETS, number)? {
            Some(bytes) => dec("ticket health", &bytes)?,
            None => TicketHealth {
                number: number.to_string(),
                ..TicketHealth::default()
            },
        };
        f(&mut rec);
        tx.insert(&TICKETS, number, enc(&rec))?;
        Ok(rec)
    }

    /// The open incidents.
    pub fn incidents(&self) -> Result<Vec<OpenIncident>, StoreError> {
        let tx = self.db.read()?;
        let mut out = Vec::new();
        for row in tx.iter(&INCIDENTS)? {
            let (_, v) = row?;
            out.push(dec("incident", &v)?);
        }
        Ok(out)
    }

    /// The ticket of an open incident.
    pub fn incident(&self, key: &str) -> Result<Option<OpenIncident>, StoreError> {
        let tx = self.db.read()?;
        tx.get(&INCIDENTS, key)?
            .map(|v| dec("incident", &v))
            .transpose()
    }

    /// Saves the engine's view of an open incident.
    pub fn put_incident(&self, rec: &OpenIncident) -> Result<(), StoreError> {
        let tx = self.db.write()?;
        tx.insert(&INCIDENTS, rec.incident.key.as_str(), enc(rec))?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets an incident (its ticket was closed).
    pub fn remove_incident(&self, key: &str) -> Result<(), StoreError> {
        let tx = self.db.write()?;
        tx.remove(&INCIDENTS, key)?;
        tx.commit()?;
        Ok(())
    }

    /// Appends events; returns the key each got in the log, in order.
    pub fn append_events(&self, events: &[HealthEvent]) -> Result<Vec<EventKey>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.db.write()?;
        let keys = append_in(&tx, events)?;
        tx.commit()?;
        Ok(keys)
    }

    /// [`Self::append_events`] and, in the same transaction, the states
    /// of `published` (several collectors on PostgreSQL: the holder of an
    /// OPD's lease shows the others what it judges, in the one write it
    /// makes per sample batch).
    pub fn append_events_publishing(
        &self,
        events: &[HealthEvent],
        published: &Published,
    ) -> Result<Vec<EventKey>, StoreError> {
        if published.is_empty() {
            return self.append_events(events);
        }
        let tx = self.db.write()?;
        let keys = append_in(&tx, events)?;
        for p in &published.states {
            tx.insert(
                &STATES,
                (p.opd.as_str(), subject_key(&p.subject).as_str()),
                enc(p),
            )?;
        }
        for (opd, device, n) in &published.traps {
            tx.insert(&TRAPS, (opd.as_str(), device.as_str()), *n)?;
        }
        tx.commit()?;
        Ok(keys)
    }

    /// Every published state and trap count (at most [`MAX_PUBLISHED`]
    /// of each), in one read transaction.
    pub fn published(&self) -> Result<Published, StoreError> {
        let tx = self.db.read()?;
        let mut out = Published::default();
        for row in tx.iter(&STATES)?.take(MAX_PUBLISHED) {
            let (_, v) = row?;
            out.states.push(dec("published state", &v)?);
        }
        for row in tx.iter(&TRAPS)?.take(MAX_PUBLISHED) {
            let ((opd, device), n) = row?;
            out.traps.push((opd, device, n));
        }
        Ok(out)
    }

    /// Events after `after` (else from `since_us`, inclusive) with
    /// `ts < until_us` that `keep` keeps, oldest first, at most `limit`;
    /// one read transaction.
    pub fn events_range(
        &self,
        after: Option<EventKey>,
        since_us: i64,
        until_us: i64,
        limit: usize,
        keep: impl Fn(&HealthEvent) -> bool,
    ) -> Result<Vec<(EventKey, HealthEvent)>, StoreError> {
        use std::ops::Bound;
        let tx = self.db.read()?;
        let start = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included((since_us, 0)),
        };
        let first = after.map_or(since_us, |k| k.0);
        let mut out = Vec::new();
        if limit == 0 || first >= until_us {
            return Ok(out);
        }
        for row in tx.range(&EVENTS, start, Bound::Excluded((until_us, 0)), false)? {
            let (k, v) = row?;
            let e = dec::<HealthEvent>("event", &v)?;
            if keep(&e) {
                out.push((k, e));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Events with `ts >= since_us`, oldest first, at most `limit` (the newest ones).
    pub fn events_since(
        &self,
        since_us: i64,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError> {
        use std::ops::Bound;
        let tx = self.db.read()?;
        let mut out = Vec::new();
        for row in tx.range(
            &EVENTS,
            Bound::Included((since_us, 0)),
            Bound::Unbounded,
            true,
        )? {
            let (_, v) = row?;
            out.push(dec::<HealthEvent>("event", &v)?);
            if out.len() >= limit {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Stores a new window, giving it the next id.
    pub fn add_window(&self, mut w: MaintenanceWindow) -> Result<MaintenanceWindow, StoreError> {
        let tx = self.db.write()?;
        w.id = next_counter(&tx, "window")?;
        tx.insert(&WINDOWS, w.id, enc(&w))?;
        tx.commit()?;
        Ok(w)
    }

    /// Every window.
    pub fn windows(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        let tx = self.db.read()?;
        let mut out = Vec::new();
        for row in tx.iter(&WINDOWS)? {
            let (_, v) = row?;
            out.push(dec("maintenance window", &v)?);
        }
        Ok(out)
    }

    /// Removes a window; false when there was none.
    pub fn remove_window(&self, id: u64) -> Result<bool, StoreError> {
        let tx = self.db.write()?;
        let found = tx.remove(&WINDOWS, id)?;
        tx.commit()?;
        Ok(found)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::health::Subject;

    fn state(opd: &str, subject: Subject, health: Health, since_us: i64) -> PublishedState {
        PublishedState {
            subject,
            opd: opd.into(),
            health,
            flapping: false,
            since_us,
            reason: "loss 100 % >= 50 %".into(),
        }
    }

    fn event() -> HealthEvent {
        HealthEvent {
            ts_us: 1,
            kind: HealthEventKind::State,
            subject: "device dinkes-sw1".into(),
            device: Some("dinkes-sw1".into()),
            link: None,
            opd: "dinkes".into(),
            from: Some(Health::Up),
            to: Some(Health::Down),
            flapping: false,
            reason: "loss 100 % >= 50 %".into(),
            ticket: None,
        }
    }

    #[test]
    fn published_states_are_written_with_the_events_and_the_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = TicketStore::open(dir.path()).unwrap();
        assert_eq!(store.published().unwrap(), Published::default());
        let sw1 = Subject::device("dinkes-sw1");
        // A device id that would collide with a link's in a text key.
        let odd = Subject::device("rtr/uplink");
        let link = Subject::link("rtr", "uplink");
        let first = Published {
            states: vec![
                state("dinkes", sw1.clone(), Health::Down, 1),
                state("dinkes", odd.clone(), Health::Up, 1),
                state("dinkes", link.clone(), Health::Down, 1),
            ],
            traps: vec![("dinkes".into(), "dinkes-sw1".into(), 1)],
        };
        let keys = store.append_events_publishing(&[event()], &first).unwrap();
        assert_eq!(keys.len(), 1, "the event is written too");
        let second = Published {
            states: vec![state("dinkes", sw1.clone(), Health::Up, 2)],
            traps: vec![("dinkes".into(), "dinkes-sw1".into(), 2)],
        };
        store.append_events_publishing(&[], &second).unwrap();
        let read = store.published().unwrap();
        assert_eq!(read.states.len(), 3, "{read:#?}");
        let of = |s: &Subject| read.states.iter().find(|p| p.subject == *s).unwrap();
        assert_eq!((of(&sw1).health, of(&sw1).since_us), (Health::Up, 2));
        assert_eq!(of(&odd).health, Health::Up);
        assert_eq!(of(&link).health, Health::Down);
        assert_eq!(read.traps, [("dinkes".into(), "dinkes-sw1".into(), 2)]);
    }
}
