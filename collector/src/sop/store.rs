//! Durable SOP state in the collector's redb database: each ticket's place in the
//! chain, its hash-chained audit trail (with its head), and the text of every SOP
//! version a ticket runs on, so a ticket keeps its version when `sop.toml` changes.
//!
//! Every action is one write transaction: read the state, apply the action,
//! append the event (a refusal too), write the state, commit. Tables are
//! prefixed `sop_` so they sit beside the other parts' tables in the same file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::kv::{Db, Table, Tx};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditRecord, Head, Tamper};
use super::calendar::Calendar;
use super::escalation::{self, Escalation};
use super::file;
use super::model::Sop;
use super::workflow::{Action, Actor, Event, Origin, Rejection, TicketInfo, TicketSop, Workflow};

const TICKETS: Table<String, Vec<u8>> = Table::new("sop_tickets");
const AUDIT: Table<(String, u64), Vec<u8>> = Table::new("sop_audit");
const HEADS: Table<String, Vec<u8>> = Table::new("sop_heads");
const TEXTS: Table<String, String> = Table::new("sop_texts");
const NUMBERS: Table<u32, u32> = Table::new("sop_ticket_numbers");
/// Letters filed: (OPD, letter number as [`letter_key`] folds it) → the
/// ticket opened for it last, written in the transaction that opens it,
/// so that two collectors filing the same letter at once open one ticket.
/// A store written before this table has none: it is built from the
/// tickets by the first letter filed ([`letters_built`]).
const LETTERS: Table<(String, String), String> = Table::new("sop_letters");
/// Each ticket's newest head signed with the audit key (`anchor.rs`),
/// written in the transaction that writes the head, on a database shared
/// by several collectors (PostgreSQL) only: each collector's log holds the
/// heads it wrote, this table those of all of them. Never written in
/// `tickets.redb`, whose log beside it is the only one.
const SIGNED: Table<String, Vec<u8>> = Table::new("sop_signed_heads");
/// The row of [`LETTERS`] that says the table holds every letter filed
/// (no OPD has an empty id).
const LETTERS_BUILT: (&str, &str) = ("", "");

/// Errors of the SOP store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store: {0}")]
    Db(String),
    /// A stored record cannot be read back.
    #[error("store: ticket {ticket}: unreadable record: {why}")]
    Corrupt {
        /// Ticket.
        ticket: String,
        /// Why.
        why: String,
    },
    /// No such ticket.
    #[error("no ticket {0}")]
    NoTicket(String),
    /// A ticket with that number exists.
    #[error("ticket {0} exists already")]
    Exists(String),
    /// The incident has a ticket open already (another collector on the
    /// same database opened it first).
    #[error("incident {key} has ticket {ticket} open already")]
    IncidentOpen {
        /// Incident key.
        key: String,
        /// Its ticket.
        ticket: String,
    },
    /// The letter has a ticket open already (filed before, here or on
    /// another collector on the same database).
    #[error("letter {letter} of {opd} is filed as ticket {ticket} already")]
    LetterFiled {
        /// OPD.
        opd: String,
        /// Letter number, as given.
        letter: String,
        /// Its ticket.
        ticket: String,
    },
    /// The ticket's SOP text is missing or invalid.
    #[error("ticket {ticket}: its SOP version {hash} is not available: {why}")]
    Sop {
        /// Ticket.
        ticket: String,
        /// Hash.
        hash: String,
        /// Why.
        why: String,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<crate::error::StoreError> for StoreError {
    fn from(e: crate::error::StoreError) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// A ticket as the SOP part keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SopTicket {
    /// Facts about the ticket.
    pub info: TicketInfo,
    /// Its place in the chain.
    pub state: TicketSop,
}

/// The outcome of an action: applied, or refused (and audited either way).
pub type Outcome = Result<Event, Rejection>;

/// An escalation to deliver, with its ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketEscalation {
    /// Ticket.
    pub ticket: SopTicket,
    /// What to send.
    pub escalation: Escalation,
}

/// A ticket's trail checked: its number and the result.
pub type Verified = (String, Result<(), Tamper>);

/// The SOP store over a redb database shared with the rest of the collector.
pub struct SopStore {
    db: Db,
    current: Arc<Sop>,
    current_text: String,
    calendar: Calendar,
    cache: Mutex<HashMap<String, Arc<Sop>>>,
    /// Signs every head written and keeps it outside the store (`anchor.rs`).
    anchor: std::sync::OnceLock<Arc<crate::anchor::Anchor>>,
    /// Rows the paged reads have read: what a page costs, for the tests.
    rows_read: std::sync::atomic::AtomicU64,
}

/// A letter number as duplicates are found: spaces around it and the
/// case of its letters do not make another letter.
fn letter_key(opd: &str, number: &str) -> (String, String) {
    (opd.to_string(), number.trim().to_ascii_lowercase())
}

impl std::fmt::Debug for SopStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SopStore")
            .field("sop", &self.current.version())
            .finish()
    }
}

fn decode<T: for<'de> Deserialize<'de>>(ticket: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        ticket: ticket.to_string(),
        why: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Db(e.to_string()))
}

impl SopStore {
    /// Open over `db` with the current SOP (its text, as read from `sop.toml`) and calendar.
    pub fn new(
        db: impl Into<Db>,
        sop_text: &str,
        sop_path: &Path,
        calendar: Calendar,
    ) -> Result<Self, file::SopFileError> {
        let current = Arc::new(file::parse(sop_text, sop_path)?);
        let mut cache = HashMap::new();
        cache.insert(current.hash.clone(), current.clone());
        Ok(SopStore {
            db: db.into(),
            current,
            current_text: sop_text.to_string(),
            calendar,
            cache: Mutex::new(cache),
            anchor: std::sync::OnceLock::new(),
            rows_read: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// From now on every head written is signed and logged by `anchor`;
    /// trails that were never signed (written before there was an anchor)
    /// are signed as they stand. Returns how many were.
    pub fn set_anchor(&self, anchor: Arc<crate::anchor::Anchor>) -> Result<usize, StoreError> {
        // Signed by another collector of the same database counts.
        let shared = self.shared_signed_heads()?;
        let pg = matches!(self.db, Db::Pg(_));
        // Heads to sign into the database: the first signatures, and (after
        // a `migrate`) those only this collector's log has.
        let mut first = 0;
        let mut share = Vec::new();
        for (ticket, head) in self.heads()? {
            let logged = anchor.newest(&ticket);
            if pg
                && !shared.contains_key(&ticket)
                && logged
                    .as_ref()
                    .is_some_and(|s| s.len == head.len && s.hash == head.hash)
            {
                share.push((ticket.clone(), head.clone()));
            }
            match crate::anchor::newer(logged, shared.get(&ticket).cloned()) {
                None => {
                    anchor
                        .record(&ticket, &head, Some("first signature of an existing trail"))
                        .map_err(|e| StoreError::Db(e.to_string()))?;
                    first += 1;
                    if pg {
                        share.push((ticket, head));
                    }
                }
                Some(s) if s.len != head.len => {
                    tracing::warn!(
                        ticket,
                        signed = s.len,
                        stored = head.len,
                        "audit trail does not end at its newest signed head; run `siaga-collector verify`"
                    );
                }
                Some(_) => {}
            }
        }
        if !share.is_empty() {
            let w = self.db.write()?;
            for (ticket, head) in &share {
                // Unless another collector wrote and signed a newer one meanwhile.
                let now: Option<Head> = match w.get(&HEADS, ticket.as_str())? {
                    Some(g) => Some(decode(ticket, &g)?),
                    None => None,
                };
                if now.as_ref() == Some(head) && !w.contains(&SIGNED, ticket.as_str())? {
                    w.insert(
                        &SIGNED,
                        ticket.as_str(),
                        encode(&anchor.key().seal(ticket, head))?,
                    )?;
                }
            }
            w.commit()?;
        }
        let _ = self.anchor.set(anchor);
        Ok(first)
    }

    /// The anchor, once set.
    pub fn anchor(&self) -> Option<&Arc<crate::anchor::Anchor>> {
        self.anchor.get()
    }

    /// Every ticket's head as stored.
    pub fn heads(&self) -> Result<Vec<(String, Head)>, StoreError> {
        heads_of(&self.db)
    }

    /// A ticket's head as stored.
    pub fn head(&self, number: &str) -> Result<Option<Head>, StoreError> {
        let r = self.db.read()?;
        match r.get(&HEADS, number)? {
            Some(g) => Ok(Some(decode(number, &g)?)),
            None => Ok(None),
        }
    }

    /// The ticket's head signed with the audit key (`None` without an anchor).
    pub fn sealed_head(
        &self,
        number: &str,
    ) -> Result<Option<crate::anchor::SignedHead>, StoreError> {
        let Some(anchor) = self.anchor.get() else {
            return Ok(None);
        };
        Ok(self.head(number)?.map(|h| anchor.sealed(number, &h)))
    }

    /// Commits `w`, in which the trails of `numbers` grew, and signs their
    /// new heads: on a database shared by several collectors (PostgreSQL)
    /// into [`SIGNED`] in `w` itself, so that every collector's `verify`
    /// finds them whoever wrote them; then, after the commit, into this
    /// collector's log ([`Self::anchor_heads`]).
    fn commit(&self, w: Tx, numbers: &[&str]) -> Result<(), StoreError> {
        if let (Some(anchor), Db::Pg(_)) = (self.anchor.get(), &self.db) {
            for n in numbers {
                if let Some(g) = w.get(&HEADS, *n)? {
                    let h: Head = decode(n, &g)?;
                    w.insert(&SIGNED, *n, encode(&anchor.key().seal(n, &h))?)?;
                }
            }
        }
        w.commit()?;
        self.anchor_heads(numbers);
        Ok(())
    }

    /// The newest signed head of each ticket in the database (on
    /// PostgreSQL: written by every collector on it; none in
    /// `tickets.redb`). `verify` checks the trails against these and the
    /// log's, the newer of the two.
    pub fn shared_signed_heads(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::anchor::SignedHead>, StoreError> {
        let r = self.db.read()?;
        let mut out = std::collections::BTreeMap::new();
        for item in r.iter(&SIGNED)? {
            let (k, v) = item?;
            let s = decode(&k, &v)?;
            out.insert(k, s);
        }
        Ok(out)
    }

    /// After a commit: the heads of `numbers` are signed and logged. The
    /// commit stands either way; a failure is logged loudly (and `verify`
    /// will report the unsigned records).
    fn anchor_heads(&self, numbers: &[&str]) {
        let Some(anchor) = self.anchor.get() else {
            return;
        };
        for n in numbers {
            let result = self
                .head(n)
                .map_err(|e| e.to_string())
                .and_then(|h| match h {
                    Some(h) => anchor.record(n, &h, None).map_err(|e| e.to_string()),
                    None => Ok(()),
                });
            if let Err(e) = result {
                tracing::error!(ticket = %n, error = %e, "cannot sign the audit trail's head");
            }
        }
    }

    /// The current SOP (new tickets start on it).
    pub fn sop(&self) -> &Sop {
        &self.current
    }

    /// The business calendar.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Create the tables (so reads before the first write find them).
    pub fn init(&self) -> Result<(), StoreError> {
        self.db.create(&[TICKETS, HEADS])?;
        self.db.create(&[AUDIT])?;
        self.db.create(&[TEXTS])?;
        self.db.create(&[NUMBERS])?;
        self.db.create(&[LETTERS])?;
        Ok(())
    }

    /// The SOP with this hash (the current one, or one stored for an older ticket).
    pub fn sop_by_hash(&self, ticket: &str, hash: &str) -> Result<Arc<Sop>, StoreError> {
        if let Some(s) = self.cache.lock().ok().and_then(|c| c.get(hash).cloned()) {
            return Ok(s);
        }
        let r = self.db.read()?;
        let text = r.get(&TEXTS, hash)?.ok_or_else(|| StoreError::Sop {
            ticket: ticket.to_string(),
            hash: hash.to_string(),
            why: "not stored".into(),
        })?;
        let sop =
            Arc::new(
                file::parse(&text, Path::new("stored sop")).map_err(|e| StoreError::Sop {
                    ticket: ticket.to_string(),
                    hash: hash.to_string(),
                    why: e.to_string(),
                })?,
            );
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(hash.to_string(), sop.clone());
        }
        Ok(sop)
    }

    /// Open a ticket at the first step of the current SOP. An empty `info.number`
    /// gets the next `PREFIX-YEAR-NNNN` number (sequential per year).
    pub fn open(
        &self,
        info: TicketInfo,
        prefix: &str,
        urgent: bool,
        by: &Actor,
        now: DateTime<Utc>,
    ) -> Result<SopTicket, StoreError> {
        self.open_with(info, prefix, urgent, by, now, |_, _| Ok(()))
    }

    /// [`Self::open`], and `also` writes other records of the new ticket
    /// (its health record, its incident) in the same transaction: after an
    /// error or a crash there is all of it or none, never a ticket without
    /// its records nor a number used twice. A letter that has a ticket
    /// (not void) already is refused with [`StoreError::LetterFiled`],
    /// checked in the same transaction: one ticket per letter, whichever
    /// collector files it.
    pub fn open_with(
        &self,
        mut info: TicketInfo,
        prefix: &str,
        urgent: bool,
        by: &Actor,
        now: DateTime<Utc>,
        also: impl FnOnce(&Tx, &SopTicket) -> Result<(), StoreError>,
    ) -> Result<SopTicket, StoreError> {
        let wf = Workflow::new(&self.current, &self.calendar);
        // The trail's note on a detected ticket is in the documents' default language.
        let evidence = info.problem_text(super::Lang::Id, &self.calendar);
        let (state, events) = wf.open(info.origin.clone(), &info.opd, urgent, by, &evidence, now);
        let w = self.db.write()?;
        let letter = match &info.origin {
            Origin::Letter { number, .. } => Some((letter_key(&info.opd, number), number.clone())),
            _ => None,
        };
        if letter.is_some() {
            letters_built(&w)?;
        }
        if let Some(((opd, folded), given)) = &letter
            && let Some(t) = filed_in(&w, opd, folded)?
        {
            return Err(StoreError::LetterFiled {
                opd: opd.clone(),
                letter: given.clone(),
                ticket: t.info.number,
            });
        }
        let t = {
            if !w.contains(&TEXTS, self.current.hash.as_str())? {
                w.insert(
                    &TEXTS,
                    self.current.hash.as_str(),
                    self.current_text.as_str(),
                )?;
            }
            if info.number.is_empty() {
                // One sequence per year, shared with numbers given by callers: the
                // counter, or the highest number already stored, whichever is higher.
                let year = u32::try_from(self.calendar.local(now).year()).unwrap_or(0);
                let head = format!("{prefix}-{year}-");
                // Past every number of the year: '.' follows '-'.
                let end = format!("{prefix}-{year}.");
                let mut last = w.get(&NUMBERS, year)?.unwrap_or(0);
                for item in w.range(
                    &TICKETS,
                    std::ops::Bound::Included(head.as_str()),
                    std::ops::Bound::Excluded(end.as_str()),
                    false,
                )? {
                    let (k, _) = item?;
                    let Some(seq) = k.strip_prefix(head.as_str()) else {
                        break;
                    };
                    last = last.max(seq.parse().unwrap_or(0));
                }
                let n = last + 1;
                w.insert(&NUMBERS, year, n)?;
                info.number = format!("{head}{n:04}");
            } else if let Some((year, seq)) = split_number(&info.number) {
                let last = w.get(&NUMBERS, year)?.unwrap_or(0);
                w.insert(&NUMBERS, year, last.max(seq))?;
            }
            if w.contains(&TICKETS, info.number.as_str())? {
                return Err(StoreError::Exists(info.number));
            }
            let t = SopTicket { info, state };
            w.insert(&TICKETS, t.info.number.as_str(), encode(&t)?)?;
            t
        };
        if let Some(((opd, folded), _)) = &letter {
            w.insert(
                &LETTERS,
                (opd.as_str(), folded.as_str()),
                t.info.number.as_str(),
            )?;
        }
        for ev in events {
            append(&w, &t.info.number, ev)?;
        }
        also(&w, &t)?;
        self.commit(w, &[&t.info.number])?;
        Ok(t)
    }

    /// The ticket (not void) opened for letter `number` of `opd`, if one
    /// was (what [`Self::open_with`] checks, in its transaction, before
    /// it opens a letter's ticket).
    pub fn filed_letter(&self, opd: &str, number: &str) -> Result<Option<SopTicket>, StoreError> {
        let (opd, folded) = letter_key(opd, number);
        let r = self.db.read()?;
        if r.contains(&LETTERS, LETTERS_BUILT)? {
            return filed_in(&r, &opd, &folded);
        }
        // Not built yet (a store written before the table): the tickets say.
        for item in r.iter(&TICKETS)? {
            let (k, v) = item?;
            let t: SopTicket = decode(&k, &v)?;
            if let Origin::Letter { number, .. } = &t.info.origin
                && letter_key(&t.info.opd, number) == (opd.clone(), folded.clone())
                && !t.state.is_void()
            {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Apply an action to a ticket by `actor` at `now`; the event (or the refusal) is
    /// in the trail when this returns `Ok`.
    pub fn act(
        &self,
        number: &str,
        action: Action,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(SopTicket, Outcome), StoreError> {
        self.act_with(number, action, actor, now, |_, _, _| Ok(()))
    }

    /// [`Self::act`], and `also` writes other records that go with the step
    /// (the health record's note) in the same transaction: a reader sees
    /// the step and its records together, or neither.
    pub fn act_with(
        &self,
        number: &str,
        action: Action,
        actor: &Actor,
        now: DateTime<Utc>,
        also: impl FnOnce(&Tx, &SopTicket, &Outcome) -> Result<(), StoreError>,
    ) -> Result<(SopTicket, Outcome), StoreError> {
        let w = self.db.write()?;
        let outcome;
        let mut t: SopTicket;
        {
            t = match w.get(&TICKETS, number)? {
                Some(g) => decode(number, &g)?,
                None => return Err(StoreError::NoTicket(number.to_string())),
            };
            let sop = self.sop_by_hash(number, &t.state.sop.hash)?;
            let wf = Workflow::new(&sop, &self.calendar);
            outcome = wf.apply(&mut t.state, action, actor, now);
            let ev = match &outcome {
                Ok(e) => e.clone(),
                Err(r) => (*r.event).clone(),
            };
            w.insert(&TICKETS, number, encode(&t)?)?;
            append(&w, number, ev)?;
        }
        also(&w, &t, &outcome)?;
        self.commit(w, &[number])?;
        Ok((t, outcome))
    }

    /// Check every open ticket for an escalation due at `now`; each one returned is
    /// recorded (marked and audited) before this returns, so it is never sent twice.
    pub fn escalations(&self, now: DateTime<Utc>) -> Result<Vec<TicketEscalation>, StoreError> {
        let w = self.db.write()?;
        let mut out = Vec::new();
        {
            let mut all = Vec::new();
            for item in w.iter(&TICKETS)? {
                all.push(item?);
            }
            for (number, bytes) in all {
                let mut t: SopTicket = decode(&number, &bytes)?;
                if t.state.is_closed() {
                    continue;
                }
                let sop = self.sop_by_hash(&number, &t.state.sop.hash)?;
                let wf = Workflow::new(&sop, &self.calendar);
                if let Some(e) = escalation::check(&wf, &t.state, now) {
                    t.state.mark_escalated(&e);
                    w.insert(&TICKETS, number.as_str(), encode(&t)?)?;
                    append(&w, &number, e.event(now))?;
                    out.push(TicketEscalation {
                        ticket: t,
                        escalation: e,
                    });
                }
            }
        }
        let numbers: Vec<&str> = out.iter().map(|e| e.ticket.info.number.as_str()).collect();
        self.commit(w, &numbers)?;
        Ok(out)
    }

    /// One ticket.
    pub fn get(&self, number: &str) -> Result<SopTicket, StoreError> {
        let r = self.db.read()?;
        match r.get(&TICKETS, number)? {
            Some(g) => decode(number, &g),
            None => Err(StoreError::NoTicket(number.to_string())),
        }
    }

    /// All tickets.
    pub fn list(&self) -> Result<Vec<SopTicket>, StoreError> {
        let r = self.db.read()?;
        let mut out = Vec::new();
        for item in r.iter(&TICKETS)? {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Rows the paged reads ([`Self::tickets_after`], [`Self::trail_page`],
    /// [`Self::verify_page`]) have read so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_row(&self) {
        self.rows_read
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// What `read` makes of the tickets after number `after` in the table's
    /// order, handed as an iterator that reads the table as it goes: a page
    /// reads the rows it looks at and no others. The order is the numbers'
    /// as text: by year, then sequence while it has four digits (past 9999
    /// a year `…-10000` sorts among the `…-1000x`, still each once).
    pub fn tickets_after<T>(
        &self,
        after: Option<&str>,
        read: impl FnOnce(&mut dyn Iterator<Item = Result<(String, SopTicket), StoreError>>) -> T,
    ) -> Result<T, StoreError> {
        use std::ops::Bound;
        let r = self.db.read()?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut rows = r
            .range(&TICKETS, start, Bound::Unbounded, false)?
            .map(|item| {
                self.count_row();
                let (number, v) = item?;
                let t = decode(&number, &v)?;
                Ok((number, t))
            });
        Ok(read(&mut rows))
    }

    /// At most `n` records of a ticket's trail after index `after`, in order.
    pub fn trail_page(
        &self,
        number: &str,
        after: Option<u64>,
        n: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let start = match after {
            None => 0,
            Some(a) => match a.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
        };
        let r = self.db.read()?;
        let mut out = Vec::new();
        for item in trail_range(&r, number, start)?.take(n) {
            self.count_row();
            let (_, v) = item?;
            out.push(decode(number, &v)?);
        }
        Ok(out)
    }

    /// Appends an event the collector records by itself (a frozen work report)
    /// to a ticket's trail, in one transaction with `also`, which is given
    /// the trail as it stands in that transaction and writes what the event
    /// records beside it; when `also` answers `false` (the trail has the
    /// event already: another collector recorded it first) nothing is
    /// written. Whether the event was recorded.
    pub fn record(
        &self,
        number: &str,
        event: Event,
        also: impl FnOnce(&Tx, &[AuditRecord]) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        let w = self.db.write()?;
        if !w.contains(&TICKETS, number)? {
            return Err(StoreError::NoTicket(number.to_string()));
        }
        let mut trail = Vec::new();
        for item in trail_range(&w, number, 0)? {
            let (_, v) = item?;
            trail.push(decode(number, &v)?);
        }
        if !also(&w, &trail)? {
            return Ok(false);
        }
        append(&w, number, event)?;
        self.commit(w, &[number])?;
        Ok(true)
    }

    /// A ticket's audit trail, in order.
    pub fn trail(&self, number: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let r = self.db.read()?;
        let mut out = Vec::new();
        for item in trail_range(&r, number, 0)? {
            let (_, v) = item?;
            out.push(decode(number, &v)?);
        }
        Ok(out)
    }

    /// A ticket's events (from its trail).
    pub fn events(&self, number: &str) -> Result<Vec<Event>, StoreError> {
        Ok(self.trail(number)?.into_iter().map(|r| r.event).collect())
    }

    /// Verify every ticket's trail against its head: (ticket, result) for each.
    pub fn verify(&self) -> Result<Vec<Verified>, StoreError> {
        self.verify_page(None, usize::MAX)
    }

    /// Verify the trails of the first `n` tickets after number `after` (in
    /// number order), each against its head: walking every page verifies
    /// each trail once. A trail without a head (a head deleted behind our
    /// back) is one of them too.
    pub fn verify_page(&self, after: Option<&str>, n: usize) -> Result<Vec<Verified>, StoreError> {
        use std::ops::Bound;
        let r = self.db.read()?;
        // The first `n` numbers of the heads and the first `n` of the
        // trails: the first `n` of both together are among them.
        let mut numbers = std::collections::BTreeSet::new();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        for item in r.range(&HEADS, start, Bound::Unbounded, false)?.take(n) {
            self.count_row();
            numbers.insert(item?.0);
        }
        let mut trails = 0;
        let mut from = after.map(str::to_string);
        while trails < n {
            // The first record of the next trail: past every record of the last one.
            let next = match &from {
                Some(f) => r
                    .range(
                        &AUDIT,
                        Bound::Excluded((f.as_str(), u64::MAX)),
                        Bound::Unbounded,
                        false,
                    )?
                    .next(),
                None => r.iter(&AUDIT)?.next(),
            };
            let Some(item) = next else { break };
            self.count_row();
            let number = item?.0.0;
            numbers.insert(number.clone());
            from = Some(number);
            trails += 1;
        }
        let mut out = Vec::new();
        for n in numbers.into_iter().take(n) {
            let mut trail = Vec::new();
            let mut bad = None;
            for item in trail_range(&r, &n, 0)? {
                self.count_row();
                let (k, v) = item?;
                match serde_json::from_slice::<AuditRecord>(&v) {
                    Ok(rec) => trail.push(rec),
                    Err(e) => {
                        bad = Some(Tamper {
                            index: k.1,
                            reason: format!("record cannot be read: {e}"),
                        });
                        break;
                    }
                }
            }
            let head: Option<Head> = match r.get(&HEADS, n.as_str())? {
                Some(g) => serde_json::from_slice(&g).ok(),
                None => None,
            };
            let result = match (bad, head) {
                (Some(t), _) => Err(t),
                (None, None) => Err(Tamper {
                    index: 0,
                    reason: "the trail's head record is missing".into(),
                }),
                (None, Some(h)) => audit::verify_with_head(&trail, &h),
            };
            out.push((n, result));
        }
        Ok(out)
    }
}

/// Every ticket's head in a tickets store opened by someone else (a backup
/// being restored), without an SOP.
pub fn heads_in(db: impl Into<Db>) -> Result<Vec<(String, Head)>, StoreError> {
    heads_of(&db.into())
}

fn heads_of(db: &Db) -> Result<Vec<(String, Head)>, StoreError> {
    let r = db.read()?;
    let mut out = Vec::new();
    for item in r.iter(&HEADS)? {
        let (k, v) = item?;
        out.push((k.clone(), decode(&k, &v)?));
    }
    Ok(out)
}

/// The records of `number`'s trail from index `start` on, in order.
fn trail_range<'a>(
    r: &'a Tx,
    number: &'a str,
    start: u64,
) -> Result<crate::kv::Rows<'a, (String, u64), Vec<u8>>, StoreError> {
    Ok(r.range(
        &AUDIT,
        std::ops::Bound::Included((number, start)),
        std::ops::Bound::Included((number, u64::MAX)),
        false,
    )?)
}

/// The ticket (not void) of letter (`opd`, `folded`) as `r` reads
/// [`LETTERS`] (built: see [`letters_built`]).
fn filed_in(r: &Tx, opd: &str, folded: &str) -> Result<Option<SopTicket>, StoreError> {
    let Some(number) = r.get(&LETTERS, (opd, folded))? else {
        return Ok(None);
    };
    let Some(v) = r.get(&TICKETS, number.as_str())? else {
        return Ok(None);
    };
    let t: SopTicket = decode(&number, &v)?;
    Ok((!t.state.is_void()).then_some(t))
}

/// In a write transaction `w`: fills [`LETTERS`] from the tickets when a
/// store written before it has never filled it (once: then it is marked
/// built). A letter with several tickets keeps one that is not void.
fn letters_built(w: &Tx) -> Result<(), StoreError> {
    if w.contains(&LETTERS, LETTERS_BUILT)? {
        return Ok(());
    }
    let mut filed: HashMap<(String, String), (String, bool)> = HashMap::new();
    for item in w.iter(&TICKETS)? {
        let (k, v) = item?;
        let t: SopTicket = decode(&k, &v)?;
        if let Origin::Letter { number, .. } = &t.info.origin {
            let void = t.state.is_void();
            let e = filed
                .entry(letter_key(&t.info.opd, number))
                .or_insert_with(|| (k.clone(), void));
            if e.1 && !void {
                *e = (k, void);
            }
        }
    }
    for ((opd, folded), (number, _)) in &filed {
        w.insert(&LETTERS, (opd.as_str(), folded.as_str()), number.as_str())?;
    }
    w.insert(&LETTERS, LETTERS_BUILT, "")?;
    Ok(())
}

/// Copies the SOP part's tables from `from` into `to` (a write
/// transaction): (table, rows) of each.
pub fn copy_tables(
    from: &Tx,
    to: &Tx,
) -> Result<Vec<(&'static str, u64)>, crate::error::StoreError> {
    use crate::kv::copy_table;
    Ok(vec![
        copy_table(&TICKETS, from, to)?,
        copy_table(&AUDIT, from, to)?,
        copy_table(&HEADS, from, to)?,
        copy_table(&TEXTS, from, to)?,
        copy_table(&NUMBERS, from, to)?,
        copy_table(&LETTERS, from, to)?,
    ])
}

/// How many tickets `db` holds (a file about to be left behind is checked
/// with it).
pub fn ticket_count(db: &Db) -> Result<usize, StoreError> {
    let r = db.read()?;
    let mut n = 0;
    for item in r.iter(&TICKETS)? {
        item?;
        n += 1;
    }
    Ok(n)
}

/// (year, sequence) of a number like `PJ-2026-0001`.
fn split_number(n: &str) -> Option<(u32, u32)> {
    let mut parts = n.rsplitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let year = parts.next()?.parse().ok()?;
    Some((year, seq))
}

fn append(w: &Tx, number: &str, ev: Event) -> Result<(), StoreError> {
    let prev: Option<AuditRecord> = match w.get(&HEADS, number)? {
        Some(g) => {
            let h: Head = decode(number, &g)?;
            match h.len.checked_sub(1) {
                Some(last) => match w.get(&AUDIT, (number, last))? {
                    Some(r) => Some(decode(number, &r)?),
                    None => None,
                },
                None => None,
            }
        }
        None => None,
    };
    let rec = AuditRecord::next(prev.as_ref(), number, ev);
    w.insert(&AUDIT, (number, rec.index), encode(&rec)?)?;
    let head = Head {
        len: rec.index + 1,
        hash: rec.hash.clone(),
    };
    w.insert(&HEADS, number, encode(&head)?)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sop::file::DEFAULT_SOP;
    use crate::sop::workflow::tests::{dispose, user_for, wib};
    use crate::sop::workflow::{EventKind, Origin, Position};
    use redb::Database;

    pub(crate) fn store(dir: &Path) -> SopStore {
        let db = Arc::new(Database::create(dir.join("collector.redb")).expect("db"));
        let s = SopStore::new(db, DEFAULT_SOP, Path::new("sop.toml"), Calendar::default())
            .expect("sop");
        s.init().expect("init");
        s
    }

    /// The letter number of [`info`]'s letter: one letter per OPD and minute.
    pub(crate) fn letter_number(opd: &str, at: DateTime<Utc>) -> String {
        format!("005/{opd}/{}/2026", at.format("%d%H%M"))
    }

    /// A ticket from an OPD's letter: it starts at step 1 with the pemohon.
    pub(crate) fn info(opd: &str, at: DateTime<Utc>) -> TicketInfo {
        TicketInfo {
            number: String::new(),
            opd: opd.into(),
            opd_name: None,
            origin: Origin::Letter {
                number: letter_number(opd, at),
                date: at.date_naive(),
                subject: "Loss 40%".into(),
            },
            problem: "Loss 40%".into(),
            reason: None,
            device: Some(format!("{opd}-rtr")),
            link: None,
            opened_at: at,
        }
    }

    #[test]
    fn a_letter_filed_before_is_found_by_its_opd_and_number_until_its_ticket_is_voided() {
        let dir = tempfile::tempdir().expect("tmp");
        let at = wib("2026-11-23 08:00");
        let first = {
            let s = store(dir.path());
            s.open(info("dinkes", at), "PJ", false, &Actor::system(), at)
                .expect("open")
        };
        // Opened again: read from the table.
        let s = store(dir.path());
        let found = |opd: &str, n: &str| {
            s.filed_letter(opd, n)
                .expect("filed")
                .map(|t| t.info.number)
        };
        assert_eq!(
            found("dinkes", &format!(" {} ", letter_number("DINKES", at))),
            Some(first.info.number.clone())
        );
        assert_eq!(found("dishub", &letter_number("dinkes", at)), None);
        assert_eq!(found("dinkes", "006/dinkes/2026"), None);
        // A ticket opened now is in the index at once.
        let second = s
            .open(info("dishub", at), "PJ", false, &Actor::system(), at)
            .expect("open");
        assert_eq!(
            found("dishub", &letter_number("dishub", at)),
            Some(second.info.number.clone())
        );
        // A void ticket does not hold its letter: the letter may be filed again.
        let kadis = user_for("kepala_dinas");
        let (t, outcome) = s
            .act(
                &first.info.number,
                Action::Void {
                    reason: "salah OPD".into(),
                },
                &kadis,
                at,
            )
            .expect("act");
        assert!(outcome.is_ok() && t.state.is_void(), "{outcome:?}");
        assert_eq!(found("dinkes", &letter_number("dinkes", at)), None);
    }

    #[test]
    fn a_letter_filed_again_is_refused_in_its_transaction_also_in_a_store_without_the_letters_table()
     {
        let dir = tempfile::tempdir().expect("tmp");
        let at = wib("2026-11-23 08:00");
        let s = store(dir.path());
        let first = s
            .open(info("dinkes", at), "PJ", false, &Actor::system(), at)
            .expect("open");
        let again = |s: &SopStore| {
            let mut i = info("dinkes", at);
            i.origin = Origin::Letter {
                number: format!(" {}", letter_number("DINKES", at)),
                date: at.date_naive(),
                subject: "again".into(),
            };
            s.open(i, "PJ", false, &Actor::system(), at)
        };
        match again(&s) {
            Err(StoreError::LetterFiled { ticket, .. }) => assert_eq!(ticket, first.info.number),
            other => panic!("filed twice: {other:?}"),
        }
        // A store written before the table: its rows gone, the tickets stay.
        {
            let w = s.db.write().expect("w");
            let rows: Vec<_> = w
                .iter(&LETTERS)
                .expect("iter")
                .map(|r| r.expect("row").0)
                .collect();
            assert_eq!(rows.len(), 2, "the letter and the built mark: {rows:?}");
            for k in rows {
                w.remove(&LETTERS, k).expect("remove");
            }
            w.commit().expect("commit");
        }
        assert_eq!(
            s.filed_letter("dinkes", &letter_number("dinkes", at))
                .expect("filed")
                .map(|t| t.info.number),
            Some(first.info.number.clone())
        );
        match again(&s) {
            Err(StoreError::LetterFiled { ticket, .. }) => assert_eq!(ticket, first.info.number),
            other => panic!("filed twice in an older store: {other:?}"),
        }
        assert_eq!(s.list().expect("list").len(), 1);
        // Its ticket voided, the letter may be filed again, once.
        let (_, outcome) = s
            .act(
                &first.info.number,
                Action::Void {
                    reason: "salah OPD".into(),
                },
                &user_for("kepala_dinas"),
                at,
            )
            .expect("act");
        outcome.expect("voided");
        let second = again(&s).expect("filed again");
        match again(&s) {
            Err(StoreError::LetterFiled { ticket, .. }) => assert_eq!(ticket, second.info.number),
            other => panic!("filed twice: {other:?}"),
        }
    }

    #[test]
    fn a_step_whose_other_records_fail_is_not_taken_and_one_that_writes_them_is_seen_with_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = store(dir.path());
        let at = wib("2026-11-23 08:00");
        let t = s
            .open(info("dinkes", at), "PJ", false, &Actor::system(), at)
            .expect("open");
        let number = t.info.number.clone();
        let void = || Action::Void {
            reason: "pulih dengan sendirinya".into(),
        };
        let kadis = user_for("kepala_dinas");
        let other: Table<String, u64> = Table::new("test_other");
        let err = s
            .act_with(&number, void(), &kadis, at, |w, _, _| {
                w.insert(&other, number.as_str(), 1)?;
                Err(StoreError::Db("health note refused".into()))
            })
            .expect_err("refused");
        assert_eq!(err.to_string(), "store: health note refused");
        assert!(
            !s.get(&number).expect("get").state.is_void(),
            "the step was not taken"
        );
        assert_eq!(
            s.trail(&number).expect("trail").len(),
            1,
            "no event of the void"
        );
        let (t, outcome) = s
            .act_with(&number, void(), &kadis, at, |w, t, outcome| {
                assert!(outcome.is_ok() && t.state.is_void());
                w.insert(&other, number.as_str(), 2)?;
                Ok(())
            })
            .expect("act");
        assert!(outcome.is_ok() && t.state.is_void());
        let r = s.db.read().expect("read");
        assert_eq!(
            r.get(&other, number.as_str()).expect("get"),
            Some(2),
            "the other record went with the step"
        );
    }

    const OTHER: Table<String, u64> = Table::new("test_other");

    #[test]
    fn a_ticket_whose_other_records_fail_is_not_opened_and_its_number_not_used() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = store(dir.path());
        let at = wib("2026-11-23 08:00");
        let err = s
            .open_with(
                info("dinkes", at),
                "PJ",
                false,
                &Actor::system(),
                at,
                |w, t| {
                    // Written in the same transaction, then the caller fails.
                    w.insert(&OTHER, t.info.number.as_str(), 1)?;
                    Err(StoreError::Db("health record refused".into()))
                },
            )
            .expect_err("refused");
        assert_eq!(err.to_string(), "store: health record refused");
        assert!(s.list().expect("list").is_empty());
        assert!(s.trail("PJ-2026-0001").expect("trail").is_empty());
        let t = s
            .open(info("dinkes", at), "PJ", false, &Actor::system(), at)
            .expect("open");
        assert_eq!(t.info.number, "PJ-2026-0001");
        let r = s.db.read().expect("read");
        assert!(
            r.iter(&OTHER).expect("iter").next().is_none(),
            "the other record went with the ticket"
        );
    }

    #[test]
    fn a_detected_ticket_is_stored_at_step_2_with_the_system_disposal_in_its_trail() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = store(dir.path());
        let at = wib("2026-11-23 08:00");
        let mut i = info("dinkes", at);
        i.origin = Origin::Detected;
        let t = s.open(i, "PJ", false, &Actor::system(), at).expect("open");
        assert_eq!(
            t.state.position,
            Position {
                step: 2,
                handoff: 0
            }
        );
        let trail = s.trail(&t.info.number).expect("trail");
        let kinds: Vec<(&str, u32, &str)> = trail
            .iter()
            .map(|r| {
                let k = match r.event.kind {
                    EventKind::Opened { .. } => "opened",
                    EventKind::Disposed { .. } => "disposed",
                    _ => "other",
                };
                (k, r.event.step, r.event.user.as_str())
            })
            .collect();
        assert_eq!(kinds, [("opened", 1, "siaga"), ("disposed", 1, "siaga")]);
        assert!(s.verify().expect("verify").iter().all(|(_, r)| r.is_ok()));
        // Reopened from the store, it is still where it was.
        assert_eq!(s.get(&t.info.number).expect("get").state.position.step, 2);
    }

    #[test]
    fn numbers_actions_and_refusals_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = store(dir.path());
            let a = s
                .open(
                    info("dinkes", wib("2026-11-23 08:00")),
                    "PJ",
                    false,
                    &Actor::system(),
                    wib("2026-11-23 08:00"),
                )
                .expect("open");
            let b = s
                .open(
                    info("bappeda", wib("2026-11-23 08:05")),
                    "PJ",
                    false,
                    &Actor::system(),
                    wib("2026-11-23 08:05"),
                )
                .expect("open");
            assert_eq!(
                (a.info.number.as_str(), b.info.number.as_str()),
                ("PJ-2026-0001", "PJ-2026-0002")
            );
            let (_, out) = s
                .act(
                    "PJ-2026-0001",
                    dispose(),
                    &user_for("helpdesk"),
                    wib("2026-11-23 08:10"),
                )
                .expect("act");
            assert_eq!(
                out.expect_err("refused").to_string(),
                "step 1 belongs to pemohon; you are helpdesk"
            );
            let (t, out) = s
                .act(
                    "PJ-2026-0001",
                    dispose(),
                    &user_for("pemohon"),
                    wib("2026-11-23 08:11"),
                )
                .expect("act");
            out.expect("accepted");
            assert_eq!(
                t.state.position,
                Position {
                    step: 2,
                    handoff: 0
                }
            );
        }
        let db = Arc::new(Database::open(dir.path().join("collector.redb")).expect("reopen"));
        let s = SopStore::new(db, DEFAULT_SOP, Path::new("sop.toml"), Calendar::default())
            .expect("sop");
        assert_eq!(s.get("PJ-2026-0001").expect("get").state.position.step, 2);
        let kinds: Vec<&str> = s
            .events("PJ-2026-0001")
            .expect("events")
            .iter()
            .map(|e| match e.kind {
                EventKind::Opened { .. } => "opened",
                EventKind::Refused { .. } => "refused",
                EventKind::Disposed { .. } => "disposed",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["opened", "refused", "disposed"]);
        assert!(s.verify().expect("verify").iter().all(|(_, r)| r.is_ok()));
        let c = s
            .open(
                info("dinkes", wib("2026-11-24 08:00")),
                "PJ",
                false,
                &Actor::system(),
                wib("2026-11-24 08:00"),
            )
            .expect("open");
        assert_eq!(c.info.number, "PJ-2026-0003");
    }

    #[test]
    fn a_ticket_keeps_its_sop_when_the_file_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Arc::new(Database::create(dir.path().join("c.redb")).expect("db"));
        let old = SopStore::new(
            db.clone(),
            DEFAULT_SOP,
            Path::new("sop.toml"),
            Calendar::default(),
        )
        .expect("sop");
        old.init().expect("init");
        old.open(
            info("dinkes", wib("2026-11-23 08:00")),
            "PJ",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        )
        .expect("open");
        // The office edits sop.toml: step 2 now belongs to the sekretaris only.
        let edited = DEFAULT_SOP
            .replacen(
                "actors = [\"kepala_dinas\"]",
                "actors = [\"sekretaris_dinas\"]",
                1,
            )
            .replace("version = 1", "version = 2");
        let new =
            SopStore::new(db, &edited, Path::new("sop.toml"), Calendar::default()).expect("sop");
        new.act(
            "PJ-2026-0001",
            dispose(),
            &user_for("pemohon"),
            wib("2026-11-23 08:10"),
        )
        .expect("act")
        .1
        .expect("ok");
        let (t, out) = new
            .act(
                "PJ-2026-0001",
                dispose(),
                &user_for("kepala_dinas"),
                wib("2026-11-23 08:20"),
            )
            .expect("act");
        out.expect("the old chain still lets the kepala dinas dispose");
        assert_eq!(t.state.sop.version, 1);
        let fresh = new
            .open(
                info("dinkes", wib("2026-11-23 09:00")),
                "PJ",
                false,
                &Actor::system(),
                wib("2026-11-23 09:00"),
            )
            .expect("open");
        assert_eq!(fresh.state.sop.version, 2);
    }

    #[test]
    fn escalations_are_recorded_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = store(dir.path());
        s.open(
            info("dinkes", wib("2026-11-27 15:30")),
            "PJ",
            false,
            &Actor::system(),
            wib("2026-11-27 15:30"),
        )
        .expect("open");
        assert!(
            s.escalations(wib("2026-11-30 15:30"))
                .expect("check")
                .is_empty()
        );
        let first = s.escalations(wib("2026-11-30 15:31")).expect("check");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].escalation.notify_roles, ["pemohon", "helpdesk"]);
        assert!(
            s.escalations(wib("2026-11-30 15:55"))
                .expect("check")
                .is_empty()
        );
        let events = s.events("PJ-2026-0001").expect("events");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Escalated { .. }))
                .count(),
            1
        );
    }

    /// A store with `n` tickets (PJ-2026-0001 …), each with a short trail.
    fn store_of(dir: &Path, n: usize) -> SopStore {
        let s = store(dir);
        for i in 0..n {
            let at = wib("2026-11-23 08:00") + chrono::Duration::minutes(i as i64);
            s.open(info("dinkes", at), "PJ", false, &Actor::system(), at)
                .expect("open");
        }
        s
    }

    #[test]
    fn a_page_of_tickets_reads_a_bounded_number_of_rows() {
        use crate::api::page::{MAX_SCAN, Page};
        let dir = tempfile::tempdir().expect("tmp");
        let s = store_of(dir.path(), 60);
        let mut page = Page::new(2, "", "").expect("page");
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let before = s.rows_read();
            let (got, next) = s
                .tickets_after(page.after.as_deref(), |rows| {
                    page.scan(rows, MAX_SCAN, |t| Ok::<_, StoreError>(Some(t.info.number)))
                })
                .expect("read")
                .expect("page");
            // Two tickets and one to know there is a next page.
            assert!(
                s.rows_read() - before <= 3,
                "{} rows read",
                s.rows_read() - before
            );
            seen.extend(got);
            pages += 1;
            if next.is_empty() {
                break;
            }
            page = Page::new(2, &next, "").expect("page");
        }
        assert_eq!(pages, 30);
        let all: Vec<String> = (1..=60).map(|n| format!("PJ-2026-{n:04}")).collect();
        assert_eq!(seen, all);
        // A filter that passes over every row: the page stops at the cap.
        let before = s.rows_read();
        let page = Page::new(2, "", "").expect("page");
        let (got, next) = s
            .tickets_after(None, |rows| {
                page.scan(rows, 10, |_| Ok::<Option<()>, _>(None))
            })
            .expect("read")
            .expect("page");
        assert!(got.is_empty() && !next.is_empty());
        assert!(
            s.rows_read() - before <= 11,
            "{} rows read",
            s.rows_read() - before
        );
        // A trail's page too.
        let before = s.rows_read();
        let t = s.trail_page("PJ-2026-0007", Some(0), 1).expect("trail");
        assert_eq!(s.rows_read() - before, t.len() as u64);
        assert!(t.iter().all(|r| r.index == 1), "{t:?}");
    }

    #[test]
    fn trails_verified_page_by_page_are_each_verified_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = store_of(dir.path(), 7);
        let all = s.verify().expect("verify");
        assert_eq!(all.len(), 7);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let before = s.rows_read();
            // Three trails a page.
            let page = s.verify_page(after.as_deref(), 3).expect("verify");
            let trails: u64 = page
                .iter()
                .map(|(n, _)| s.trail(n).expect("trail").len() as u64)
                .sum();
            // The page's heads, the first record of each trail, the trails.
            assert!(
                s.rows_read() - before <= 3 + 3 + trails,
                "{} rows",
                s.rows_read() - before
            );
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            seen.extend(page);
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn editing_the_stored_trail_is_detected() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("collector.redb");
        {
            let s = store(dir.path());
            s.open(
                info("dinkes", wib("2026-11-23 08:00")),
                "PJ",
                false,
                &Actor::system(),
                wib("2026-11-23 08:00"),
            )
            .expect("open");
            s.act(
                "PJ-2026-0001",
                dispose(),
                &user_for("pemohon"),
                wib("2026-11-23 08:10"),
            )
            .expect("act")
            .1
            .expect("ok");
            s.act(
                "PJ-2026-0001",
                dispose(),
                &user_for("kepala_dinas"),
                wib("2026-11-23 08:20"),
            )
            .expect("act")
            .1
            .expect("ok");
        }
        // Behind the collector's back: rewrite who disposed step 2.
        {
            let db = Db::Redb(Arc::new(Database::open(&path).expect("db")));
            let w = db.write().expect("w");
            let raw = w
                .get(&AUDIT, ("PJ-2026-0001", 2u64))
                .expect("get")
                .expect("rec");
            let text = String::from_utf8(raw)
                .expect("utf8")
                .replace("\"kadis\"", "\"sekdis\"");
            w.insert(&AUDIT, ("PJ-2026-0001", 2u64), text.as_bytes())
                .expect("insert");
            w.commit().expect("commit");
        }
        let db = Arc::new(Database::open(&path).expect("db"));
        let s = SopStore::new(db, DEFAULT_SOP, Path::new("sop.toml"), Calendar::default())
            .expect("sop");
        let results = s.verify().expect("verify");
        assert_eq!(results.len(), 1);
        let err = results[0].1.clone().expect_err("tampered");
        assert_eq!(err.index, 2);
        assert!(err.reason.contains("altered"), "{err}");
    }
}
