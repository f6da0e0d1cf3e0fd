//! The work report (laporan pekerjaan) of a ticket: what was wrong, the proof
//! (measurements before and after the work, side by side, with a verdict per
//! figure), the work, the OPD's acknowledgement, the disposition timeline and
//! the Kepala Dinas's review, as one self-contained HTML file or a PDF made
//! in-process. Bahasa Indonesia by default, English on request.
//!
//! [`data`] gathers the content from a ticket's records; [`html`] and [`pdf`]
//! draw it; [`verdict`] holds the rules. Before the review the report is a
//! draft (marked DRAF) rendered on request. Disposing the review step (the
//! SOP's `freezes_report` step) freezes it: both formats in both languages are
//! rendered once, stored with the ticket ([`store`]) and their sha256 appended
//! to the ticket's audit trail in the same transaction; from then on the
//! stored bytes are what `ticket.report` returns, and `siaga-collector verify`
//! recomputes their hashes.

pub mod api;
pub mod availability;
pub mod chart;
pub mod data;
pub mod html;
pub mod pdf;
pub mod prepare;
pub mod sla;
pub mod store;
pub mod verdict;
pub mod words;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

pub use data::ReportData;

use crate::measure::store::MeasureStore;
use crate::sop::store::{SopStore, StoreError};
use crate::sop::workflow::{Event, EventKind, FrozenDocument, SYSTEM_USER};
use crate::sop::{Lang, People};
use crate::ticket::TicketStore;

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One self-contained HTML file.
    Html,
    /// A4 PDF.
    Pdf,
}

impl Format {
    /// `html` / `pdf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "html" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            other => Err(format!("unknown report format `{other}` (html or pdf)")),
        }
    }
}

/// Why a report could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such ticket.
    #[error("no ticket {0}")]
    NoTicket(String),
    /// A store failed.
    #[error("{0}")]
    Store(String),
    /// The PDF could not be made.
    #[error("{0}")]
    Pdf(#[from] pdf::PdfError),
    /// The frozen report in the store does not match its audit record.
    #[error("the frozen report of {ticket} ({document}) {why}; run `siaga-collector verify`")]
    Tampered {
        /// Ticket.
        ticket: String,
        /// `pdf/id`, …
        document: String,
        /// What is wrong.
        why: String,
    },
}

impl From<StoreError> for ReportError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoTicket(t) => ReportError::NoTicket(t),
            other => ReportError::Store(other.to_string()),
        }
    }
}

impl From<crate::error::StoreError> for ReportError {
    fn from(e: crate::error::StoreError) -> Self {
        ReportError::Store(e.to_string())
    }
}

/// Renders `d` in `format`.
pub fn render(d: &ReportData, format: Format) -> Result<Vec<u8>, ReportError> {
    Ok(match format {
        Format::Html => html::render(d).into_bytes(),
        Format::Pdf => pdf::render(d)?,
    })
}

/// A report as given out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The document.
    pub bytes: Vec<u8>,
    /// The final report (frozen) rather than a draft.
    pub is_final: bool,
    /// Local time of the review, for a final report.
    pub reviewed_at: Option<String>,
}

/// The reports of the tickets in one database.
pub struct Reports {
    db: crate::kv::Db,
    sop: Arc<SopStore>,
    health: Arc<TicketStore>,
    measures: MeasureStore,
    /// The people the reports name (full name, NIP, jabatan), read when a
    /// report is rendered.
    people: Box<dyn Fn() -> People + Send + Sync>,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports").finish_non_exhaustive()
    }
}

impl Reports {
    /// Over the tickets' database (shared with the SOP, health and measurement tables).
    pub fn new(
        db: impl Into<crate::kv::Db>,
        sop: Arc<SopStore>,
        health: Arc<TicketStore>,
    ) -> Result<Self, ReportError> {
        let db = db.into();
        store::init(&db)?;
        let measures = MeasureStore::new(db.clone())?;
        Ok(Reports {
            db,
            sop,
            health,
            measures,
            people: Box::new(People::default),
        })
    }

    /// Names people as `people` has them when a report is rendered (the
    /// users' files); without it reports name logins, flagged.
    pub fn with_people(mut self, people: impl Fn() -> People + Send + Sync + 'static) -> Self {
        self.people = Box::new(people);
        self
    }

    /// The report's content for a ticket as its records stand.
    pub fn data(&self, ticket: &str, lang: Lang) -> Result<ReportData, ReportError> {
        Ok(self.data_all(ticket, &[lang])?.remove(0))
    }

    fn data_all(&self, ticket: &str, langs: &[Lang]) -> Result<Vec<ReportData>, ReportError> {
        let t = self.sop.get(ticket)?;
        let trail = self.sop.trail(ticket)?;
        let sop = self.sop.sop_by_hash(ticket, &t.state.sop.hash)?;
        let health = self.health.get(ticket)?;
        let measurements = self.measures.for_ticket(ticket)?;
        let people = (self.people)();
        let inputs = data::Inputs {
            info: &t.info,
            state: &t.state,
            trail: &trail,
            sop: &sop,
            calendar: self.sop.calendar(),
            health: health.as_ref(),
            measurements: &measurements,
            people: &people,
        };
        let seal = self.sop.anchor().map(|a| {
            a.key()
                .seal(ticket, &data::report_head(&sop, &t.state, &trail))
        });
        Ok(langs
            .iter()
            .map(|l| {
                let mut d = data::build(&inputs, *l);
                d.audit = seal
                    .as_ref()
                    .map(|s| format!("{}: {}.", crate::anchor::SignedHead::label(*l), s.value(*l)));
                d
            })
            .collect())
    }

    /// Freezes the ticket's report if its review step was disposed and the
    /// report was not frozen for that review yet: renders both formats in
    /// both languages, stores them and records their hashes. The documents
    /// frozen, or `None` when there was nothing to do. Whether it was frozen
    /// is checked again in the transaction that stores it: of two freezes
    /// at once (two requests, or two collectors on one database) the first
    /// stores its documents and the other stores nothing.
    pub fn freeze(
        &self,
        ticket: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<FrozenDocument>>, ReportError> {
        let t = self.sop.get(ticket)?;
        let trail = self.sop.trail(ticket)?;
        let sop = self.sop.sop_by_hash(ticket, &t.state.sop.hash)?;
        let Some(review) = data::review(&sop, &t.state, &trail) else {
            return Ok(None);
        };
        let done = |trail: &[crate::sop::audit::AuditRecord]| {
            trail.iter().any(|r| {
                matches!(r.event.kind, EventKind::ReportFrozen { review_index, .. } if review_index == review.index)
            })
        };
        if done(&trail) {
            return Ok(None);
        }
        let review_index = review.index;
        let mut docs = Vec::new();
        let mut records = Vec::new();
        for d in self.data_all(ticket, &[Lang::Id, Lang::En])? {
            for format in [Format::Html, Format::Pdf] {
                let bytes = render(&d, format)?;
                records.push(FrozenDocument {
                    format: format.as_str().to_string(),
                    lang: d.lang,
                    sha256: store::sha256(&bytes),
                    bytes: bytes.len() as u64,
                });
                docs.push((store::key(format.as_str(), d.lang), bytes));
            }
        }
        let event = Event {
            at: now,
            user: SYSTEM_USER.to_string(),
            role: None,
            acting_for: None,
            step: t.state.position.step,
            handoff: t.state.position.handoff,
            kind: EventKind::ReportFrozen {
                review_index,
                documents: records.clone(),
            },
        };
        // Rendered outside the transaction (it takes a while), checked again
        // inside it: it may have been frozen meanwhile.
        let frozen = self.sop.record(ticket, event, |w, trail| {
            if done(trail) {
                return Ok(false);
            }
            store::put(w, ticket, &docs)?;
            Ok(true)
        })?;
        if !frozen {
            return Ok(None);
        }
        info!(
            ticket,
            documents = records.len(),
            "work report frozen after the review"
        );
        Ok(Some(records))
    }

    /// After a disposal of ticket `number` (upper case): it may have been
    /// the review.
    pub fn after_dispose(&self, number: &str, now: DateTime<Utc>) {
        if let Err(e) = self.freeze(number, now) {
            // `ticket.report` freezes it on the next request.
            warn!(ticket = %number, error = %e, "cannot freeze the work report");
        }
    }

    /// The report of a ticket: the frozen original once reviewed (checked
    /// against its recorded hash), else a draft rendered now.
    pub fn document(
        &self,
        ticket: &str,
        format: Format,
        lang: Lang,
        now: DateTime<Utc>,
    ) -> Result<Rendered, ReportError> {
        let d = self.data(ticket, lang)?;
        if !d.is_final() {
            return Ok(Rendered {
                bytes: render(&d, format)?,
                is_final: false,
                reviewed_at: None,
            });
        }
        // Reviewed: freeze now if that did not happen at the review.
        self.freeze(ticket, now)?;
        let reviewed_at = match &d.status {
            data::Status::Final { reviewed_at } => Some(reviewed_at.clone()),
            data::Status::Draft { .. } => None,
        };
        let document = store::key(format.as_str(), lang);
        let recorded = store::recorded(&self.sop, ticket)?;
        let tampered = |why: &str| ReportError::Tampered {
            ticket: ticket.to_string(),
            document: document.clone(),
            why: why.to_string(),
        };
        let rec = recorded
            .get(&document)
            .ok_or_else(|| tampered("is not in the audit trail"))?;
        let bytes = store::get(&self.db, ticket, format.as_str(), lang)?
            .ok_or_else(|| tampered("is missing from the store"))?;
        if store::sha256(&bytes) != rec.sha256 {
            return Err(tampered("does not match the hash in the audit trail"));
        }
        Ok(Rendered {
            bytes,
            is_final: true,
            reviewed_at,
        })
    }
}
