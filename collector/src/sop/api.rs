//! The SOP part of the admin API: JSON calls (`Admin.Call` with `method` and `json`)
//! for the `siaga` CLI. The server passes the caller (user from the certificate,
//! roles from the user store) and a [`Directory`] to look up other users and OPDs.
//!
//! Methods: `ticket.dispose`, `ticket.return`, `ticket.acknowledge`,
//! `ticket.sop`, `ticket.card`, `register`, `inbox`, `audit.verify`. A new
//! ticket from a letter, its status, voiding it and its trail are the
//! `Tickets` service's ([`new_ticket`], [`act_reply`]).

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::card;
use super::model::Lang;
use super::register;
use super::store::{SopStore, SopTicket, StoreError};
use super::workflow::{
    Action, Actor, Event, LETTER_ROLES, Measurements, Origin, TicketInfo, Workflow,
};
use crate::api::limits::{self, len};

/// What the API needs from the rest of the collector.
pub trait Directory: Send + Sync {
    /// Roles of a user; `None` if there is no such user.
    fn roles(&self, user: &str) -> Option<Vec<String>>;
    /// Whether an OPD exists, with its name.
    fn opd(&self, id: &str) -> Option<String>;
    /// Which measurements (before, after the work) are attached to a ticket.
    fn measurements(&self, ticket: &str) -> (bool, bool);
    /// The OPD of an inventory device; `None` if there is no such device.
    fn device_opd(&self, id: &str) -> Option<String>;
    /// The device of an inventory link (by name); `None` if there is no such link.
    fn link_device(&self, name: &str) -> Option<String>;
    /// The one OPD a user is held to (a `pemohon`); `None` for the province team.
    fn held_to(&self, user: &str) -> Option<String>;
    /// The oldest letter a ticket is entered from (`[tickets] max_letter_age`).
    fn max_letter_age(&self) -> chrono::Duration {
        chrono::Duration::days(365)
    }
    /// The people documents name (full name, NIP, jabatan from the users'
    /// files); none by default, so documents name logins, flagged.
    fn people(&self) -> super::People {
        super::People::default()
    }
}

impl From<crate::api::ApiError> for ApiError {
    fn from(e: crate::api::ApiError) -> Self {
        use crate::api::ApiError as E;
        match e {
            E::Denied(m) => ApiError::Denied(m),
            E::NotFound(m) => ApiError::NotFound(m),
            e @ E::Internal { .. } => ApiError::Internal(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl From<ApiError> for crate::api::ApiError {
    fn from(e: ApiError) -> Self {
        use crate::api::ApiError as E;
        match e {
            ApiError::Denied(m) => E::Denied(m),
            ApiError::NotFound(m) => E::NotFound(m),
            // The messages of bad input start with the field they are about.
            ApiError::BadRequest(m) => match m.split_once(": ") {
                Some((field, rest))
                    if !field.is_empty()
                        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    E::invalid(field, rest)
                }
                _ => E::invalid("request", m),
            },
            ApiError::Internal(m) => E::internal("serving an SOP call", anyhow::anyhow!(m)),
        }
    }
}

/// Checks a text field with [`limits::text`] (`required` when it must not be empty).
fn limit(field: &str, value: &str, max: usize, required: bool) -> Result<(), ApiError> {
    if required {
        limits::required(field, value, max)?;
    } else {
        limits::text(field, value, max)?;
    }
    Ok(())
}

/// Why a call failed; the server maps these to gRPC status codes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad arguments (InvalidArgument).
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed (PermissionDenied); an SOP refusal is also audited.
    #[error("{0}")]
    Denied(String),
    /// No such ticket or user (NotFound).
    #[error("{0}")]
    NotFound(String),
    /// The store failed (Internal).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoTicket(_) => ApiError::NotFound(e.to_string()),
            StoreError::Exists(_) => ApiError::BadRequest(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

fn args<T: for<'de> Deserialize<'de>>(method: &str, json: &str) -> Result<T, ApiError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json)
        .map_err(|e| ApiError::BadRequest(format!("{method}: bad arguments: {e}")))
}

fn out<T: Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(e.to_string()))
}

/// A ticket's SOP view: whose turn it is and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketView {
    /// Ticket number.
    pub id: String,
    /// OPD.
    pub opd: String,
    /// "detected" or "letter".
    pub origin: String,
    /// Letter number, if any.
    pub letter_number: Option<String>,
    /// The problem.
    pub problem: String,
    /// Device.
    pub device: Option<String>,
    /// Link.
    pub link: Option<String>,
    /// Current step.
    pub step: u32,
    /// Hand-off within the step.
    pub handoff: u32,
    /// Roles whose turn it is (joined with " / " for display).
    pub role: String,
    /// Named user, if any.
    pub assignee: Option<String>,
    /// When the step is due.
    pub due_at: Option<DateTime<Utc>>,
    /// The same in the calendar's local time, e.g. "2026-11-24 08:00 WIB".
    pub due_local: Option<String>,
    /// Past due.
    pub overdue: bool,
    /// Seconds left (negative when overdue), counted as the ticket counts time.
    pub time_left_secs: Option<i64>,
    /// Follow-up status.
    pub status: Option<String>,
    /// Who acknowledged the work report.
    pub acknowledged_by: Option<String>,
    /// Opened.
    pub opened_at: DateTime<Utc>,
    /// Closed ("selesai", or voided).
    pub closed_at: Option<DateTime<Utc>>,
    /// Why the ticket was voided, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub void_reason: Option<String>,
    /// Urgent (calendar time).
    pub urgent: bool,
    /// SOP version, e.g. "pemeliharaan-jaringan-tik v1 (abcdef012345)".
    pub sop: String,
}

/// The view of a ticket at `now`.
pub fn view(store: &SopStore, t: &SopTicket, now: DateTime<Utc>) -> Result<TicketView, ApiError> {
    let sop = store.sop_by_hash(&t.info.number, &t.state.sop.hash)?;
    let wf = Workflow::new(&sop, store.calendar());
    let roles = sop
        .step(t.state.position.step)
        .map(|s| s.actors_at(t.state.position.handoff).join(" / "))
        .unwrap_or_default();
    let (origin, letter_number) = match &t.info.origin {
        Origin::Detected => ("detected".to_string(), None),
        Origin::Letter { number, .. } => ("letter".to_string(), Some(number.clone())),
    };
    Ok(TicketView {
        id: t.info.number.clone(),
        opd: t.info.opd.clone(),
        origin,
        letter_number,
        problem: t.info.problem.clone(),
        device: t.info.device.clone(),
        link: t.info.link.clone(),
        step: t.state.position.step,
        handoff: t.state.position.handoff,
        role: if t.state.is_closed() {
            String::new()
        } else {
            roles
        },
        assignee: t.state.assignee.clone(),
        due_at: wf.due_at(&t.state),
        due_local: wf.due_at(&t.state).map(|d| {
            let c = store.calendar();
            format!("{} {}", c.fmt_local(d), c.zone_abbr())
        }),
        overdue: wf.is_overdue(&t.state, now),
        time_left_secs: wf.time_left(&t.state, now).map(|d| d.num_seconds()),
        status: t.state.status.clone(),
        acknowledged_by: t.state.acknowledged.as_ref().map(|a| a.by.clone()),
        opened_at: t.info.opened_at,
        closed_at: t.state.closed_at,
        void_reason: t.state.voided.as_ref().map(|v| v.reason.clone()),
        urgent: t.state.urgent,
        sop: t.state.sop.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketArg {
    ticket: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisposeArgs {
    ticket: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    no_measurement_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnArgs {
    ticket: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckArgs {
    ticket: String,
    by: String,
}

/// A ticket from an OPD's request letter (SOP step 1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLetter {
    /// The OPD that wrote it.
    pub opd: String,
    /// The letter's number.
    pub letter_number: String,
    /// The letter's date.
    pub letter_date: NaiveDate,
    /// Its subject.
    pub subject: String,
    /// The device concerned.
    #[serde(default)]
    pub device: Option<String>,
    /// The link concerned.
    #[serde(default)]
    pub link: Option<String>,
    /// Counts calendar time.
    #[serde(default)]
    pub urgent: bool,
}

/// The answer to an action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionReply {
    /// The ticket after the action.
    pub ticket: TicketView,
    /// The event recorded (for a letter filed before, the opening event).
    pub event: Event,
    /// `ticket.new` for a letter already filed: the ticket is the one
    /// opened for it then, nothing new was opened.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_filed: bool,
}

/// A document: text, or base64 bytes for binary formats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// "text", "html", "csv" or "xlsx".
    pub format: String,
    /// Text content (text, html, csv).
    pub text: Option<String>,
    /// Base64 content (xlsx).
    pub base64: Option<String>,
}

impl Document {
    /// The bytes of the document.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.text, &self.base64) {
            (Some(t), _) => Ok(t.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("bad document from the collector: {e}")),
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// One line of `siaga inbox`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    /// The ticket.
    #[serde(flatten)]
    pub ticket: TicketView,
    /// Named to the caller.
    pub assigned_to_me: bool,
    /// The role the caller would act for (Sekretaris for the Kepala Dinas).
    pub acting_for: Option<String>,
}

/// Result of `audit.verify` for one ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyItem {
    /// Ticket.
    pub ticket: String,
    /// Intact.
    pub ok: bool,
    /// Index of the first bad record.
    pub index: Option<u64>,
    /// What is wrong.
    pub reason: Option<String>,
}

/// Handle an SOP call. Returns `None` when `method` is not an SOP method (the
/// server then tries its other handlers).
pub fn handle(
    store: &SopStore,
    dir: &dyn Directory,
    method: &str,
    json: &str,
    caller: &Actor,
    now: DateTime<Utc>,
) -> Option<Result<String, ApiError>> {
    let r = match method {
        "ticket.dispose" => args::<DisposeArgs>(method, json).and_then(|a| {
            limit("ticket", &a.ticket, len::ID, false)?;
            if let Some(to) = &a.to {
                limit("to", to, len::ID, false)?;
            }
            if let Some(note) = &a.note {
                limit("note", note, len::NOTE, false)?;
            }
            if let Some(r) = &a.no_measurement_reason {
                limit("no_measurement_reason", r, len::NOTE, false)?;
            }
            let to = match &a.to {
                None => None,
                Some(u) => Some(Actor {
                    user: u.clone(),
                    roles: dir
                        .roles(u)
                        .ok_or_else(|| ApiError::NotFound(format!("no user {u}")))?,
                }),
            };
            let (before, after) = dir.measurements(&a.ticket);
            let action = Action::Dispose {
                to,
                note: a.note,
                measurements: Measurements {
                    before,
                    after,
                    waived: a.no_measurement_reason,
                },
            };
            act(store, &a.ticket, action, caller, now)
        }),
        "ticket.return" => args::<ReturnArgs>(method, json).and_then(|a| {
            limit("ticket", &a.ticket, len::ID, false)?;
            limit("reason", &a.reason, len::NOTE, false)?;
            act(
                store,
                &a.ticket,
                Action::Return { reason: a.reason },
                caller,
                now,
            )
        }),
        "ticket.acknowledge" => args::<AckArgs>(method, json).and_then(|a| {
            limit("ticket", &a.ticket, len::ID, false)?;
            limit("by", &a.by, len::SUBJECT, false)?;
            act(
                store,
                &a.ticket,
                Action::Acknowledge { by: a.by },
                caller,
                now,
            )
        }),
        "ticket.sop" => args::<TicketArg>(method, json).and_then(|a| {
            let t = store.get(&a.ticket)?;
            out(&view(store, &t, now)?)
        }),
        "inbox" => inbox(store, caller, now).and_then(|v| out(&v)),
        "audit.verify" => {
            if !caller.roles.iter().any(|r| r == "admin") {
                Err(ApiError::Denied("audit.verify is for admin".into()))
            } else {
                store.verify().map_err(ApiError::from).and_then(|v| {
                    let items: Vec<VerifyItem> = v
                        .into_iter()
                        .map(|(ticket, r)| match r {
                            Ok(()) => VerifyItem {
                                ticket,
                                ok: true,
                                index: None,
                                reason: None,
                            },
                            Err(t) => VerifyItem {
                                ticket,
                                ok: false,
                                index: Some(t.index),
                                reason: Some(t.reason),
                            },
                        })
                        .collect();
                    out(&items)
                })
            }
        }
        _ => return None,
    };
    Some(r)
}

fn act(
    store: &SopStore,
    ticket: &str,
    action: Action,
    caller: &Actor,
    now: DateTime<Utc>,
) -> Result<String, ApiError> {
    out(&act_reply(store, ticket, action, caller, now)?)
}

/// Takes `action` on `ticket` as `caller`: the ticket after it and the
/// event recorded; a refusal of the workflow is [`ApiError::Denied`] (and
/// is on the trail).
pub fn act_reply(
    store: &SopStore,
    ticket: &str,
    action: Action,
    caller: &Actor,
    now: DateTime<Utc>,
) -> Result<ActionReply, ApiError> {
    let (t, outcome) = store.act(ticket, action, caller, now)?;
    match outcome {
        Ok(event) => Ok(ActionReply {
            ticket: view(store, &t, now)?,
            event,
            already_filed: false,
        }),
        Err(rej) => Err(ApiError::Denied(rej.error.to_string())),
    }
}

/// Opens a ticket from letter `a` as `caller` (helpdesk or admin): the
/// letter's date, OPD, device and link are checked; the same letter of the
/// same OPD again answers the ticket opened for it (`already_filed`).
pub fn new_ticket(
    store: &SopStore,
    dir: &dyn Directory,
    a: NewLetter,
    caller: &Actor,
    now: DateTime<Utc>,
) -> Result<ActionReply, ApiError> {
    if !caller
        .roles
        .iter()
        .any(|r| LETTER_ROLES.contains(&r.as_str()))
    {
        return Err(ApiError::Denied(format!(
            "a letter ticket is entered by {}; {}",
            LETTER_ROLES.join(" or "),
            if caller.roles.is_empty() {
                "you have no role".to_string()
            } else {
                format!("you are {}", caller.roles.join(", "))
            }
        )));
    }
    limit("opd", &a.opd, len::ID, true)?;
    limit("letter_number", &a.letter_number, len::LETTER_NUMBER, true)?;
    limit("subject", &a.subject, len::SUBJECT, true)?;
    let opd_hidden = dir.held_to(&caller.user).is_some_and(|own| own != a.opd);
    let Some(opd_name) = dir.opd(&a.opd).filter(|_| !opd_hidden) else {
        return Err(ApiError::NotFound(format!(
            "no OPD {} in the inventory",
            a.opd
        )));
    };
    check_letter_date(a.letter_date, store, dir, now)?;
    if let Some(d) = &a.device {
        limit("device", d, len::ID, true)?;
        match dir.device_opd(d) {
            None => {
                return Err(ApiError::NotFound(format!(
                    "device: no device {d} in the inventory"
                )));
            }
            Some(o) if o != a.opd => {
                return Err(ApiError::BadRequest(format!(
                    "device: {d} is not a device of OPD {}; name a device of the OPD that wrote the letter",
                    a.opd
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(l) = &a.link {
        limit("link", l, len::ID, true)?;
        let Some(device) = dir.link_device(l) else {
            return Err(ApiError::NotFound(format!(
                "link: no link {l} in the inventory"
            )));
        };
        if dir.device_opd(&device).as_deref() != Some(a.opd.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "link: {l} is not a link of OPD {}; name a link of the OPD that wrote the letter",
                a.opd
            )));
        }
        if let Some(d) = a.device.as_ref().filter(|d| **d != device) {
            return Err(ApiError::BadRequest(format!(
                "link: {l} is on device {device}, not on {d}"
            )));
        }
    }
    // One ticket per letter: the check and the opening under one lock, so
    // two helpdesk desks filing the same letter at once open one ticket.
    let _one_at_a_time = NEW_LETTER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(t) = filed(store, &a.opd, &a.letter_number)? {
        let event = store
            .events(&t.info.number)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::Internal("a ticket without an event".into()))?;
        return Ok(ActionReply {
            ticket: view(store, &t, now)?,
            event,
            already_filed: true,
        });
    }
    let info = TicketInfo {
        number: String::new(),
        opd: a.opd,
        opd_name: Some(opd_name).filter(|n| !n.is_empty()),
        origin: Origin::Letter {
            number: a.letter_number,
            date: a.letter_date,
            subject: a.subject.clone(),
        },
        problem: a.subject,
        reason: None,
        device: a.device,
        link: a.link,
        opened_at: now,
    };
    let t = store.open(info, TICKET_PREFIX, a.urgent, caller, now)?;
    let events = store.events(&t.info.number)?;
    Ok(ActionReply {
        ticket: view(store, &t, now)?,
        event: events
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::Internal("opened without an event".into()))?,
        already_filed: false,
    })
}

/// Held while a letter is checked against the filed ones and opened.
static NEW_LETTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The ticket already opened for letter `number` of `opd` and not voided;
/// numbers compare without surrounding blanks and letter case.
fn filed(store: &SopStore, opd: &str, number: &str) -> Result<Option<SopTicket>, ApiError> {
    let number = number.trim();
    Ok(store.list()?.into_iter().find(|t| {
        t.info.opd == opd
            && !t.state.is_void()
            && matches!(&t.info.origin, Origin::Letter { number: n, .. } if n.trim().eq_ignore_ascii_case(number))
    }))
}

/// A letter is dated at most one day after today (clock tolerance) and not
/// longer ago than [`Directory::max_letter_age`]; days in the calendar's time.
fn check_letter_date(
    date: NaiveDate,
    store: &SopStore,
    dir: &dyn Directory,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let today = store.calendar().local(now).date_naive();
    if date > today + chrono::Duration::days(1) {
        return Err(ApiError::BadRequest(format!(
            "letter_date: {date} is in the future (today is {today}); give the date written on the letter"
        )));
    }
    let age = dir.max_letter_age();
    if today - date > age {
        return Err(ApiError::BadRequest(format!(
            "letter_date: {date} is more than {} days ago (the limit is tickets.max_letter_age); \
             an older request is sent again with a new letter",
            age.num_days()
        )));
    }
    Ok(())
}

/// Prefix of ticket numbers (PJ: Pemeliharaan Jaringan).
pub const TICKET_PREFIX: &str = "PJ";

/// A ticket's control card in `format` ("text" or "html") and `lang`.
pub fn card_bytes(
    store: &SopStore,
    dir: &dyn Directory,
    ticket: &str,
    format: &str,
    lang: Lang,
) -> Result<Vec<u8>, ApiError> {
    let t = store.get(ticket)?;
    let sop = store.sop_by_hash(&t.info.number, &t.state.sop.hash)?;
    let events = store.events(&t.info.number)?;
    let people = dir.people();
    let mut c = card::build(
        &t.info,
        &t.state,
        &events,
        &sop,
        store.calendar(),
        &people,
        lang,
    );
    if let Some(h) = store.sealed_head(&t.info.number)? {
        c.header.push((
            crate::anchor::SignedHead::label(lang).to_string(),
            h.value(lang),
        ));
    }
    match format {
        "" | "text" => Ok(c.to_text().into_bytes()),
        "html" => Ok(c.to_html().into_bytes()),
        other => Err(ApiError::BadRequest(format!(
            "format: unknown card format `{other}` (text or html)"
        ))),
    }
}

/// The register of `from` to `to` (included) in `format` ("csv" or
/// "xlsx") and `lang`, with the tickets of the OPDs `keep` lets through.
#[allow(clippy::too_many_arguments)]
pub fn register_bytes(
    store: &SopStore,
    dir: &dyn Directory,
    from: NaiveDate,
    to: NaiveDate,
    format: &str,
    lang: Lang,
    keep: &dyn Fn(&str) -> bool,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, ApiError> {
    if to < from {
        return Err(ApiError::BadRequest(format!(
            "--to {to} is before --from {from}"
        )));
    }
    if !matches!(format, "" | "csv" | "xlsx") {
        return Err(ApiError::BadRequest(format!(
            "format: unknown register format `{format}` (csv or xlsx)"
        )));
    }
    let tickets = store.list()?;
    let mut owned = Vec::new();
    for t in tickets.iter().filter(|t| keep(&t.info.opd)) {
        let sop = store.sop_by_hash(&t.info.number, &t.state.sop.hash)?;
        owned.push((t, sop, store.events(&t.info.number)?));
    }
    let entries: Vec<register::Entry<'_>> = owned
        .iter()
        .map(|(t, sop, ev)| register::Entry {
            info: &t.info,
            state: &t.state,
            events: ev,
            sop,
        })
        .collect();
    let people = dir.people();
    let mut rows = register::rows(&entries, store.calendar(), &people, from, to, lang, now);
    for r in &mut rows {
        if let Some(h) = store.sealed_head(&r.number)? {
            r.audit = h.value(lang);
        }
    }
    if format == "xlsx" {
        return register::to_xlsx(&rows, lang).map_err(|e| ApiError::Internal(e.to_string()));
    }
    let mut buf = Vec::new();
    register::write_csv(&rows, lang, &mut buf).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(buf)
}

/// What waits on the caller: open tickets whose current step the caller may take
/// (by role or acting for one) or that were handed to them by name; most urgent first.
pub fn inbox(
    store: &SopStore,
    caller: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<InboxItem>, ApiError> {
    let mut items = Vec::new();
    for t in store.list()? {
        if t.state.is_closed() {
            continue;
        }
        let sop = store.sop_by_hash(&t.info.number, &t.state.sop.hash)?;
        let Some(step) = sop.step(t.state.position.step) else {
            continue;
        };
        let roles = step.actors_at(t.state.position.handoff);
        let cap = sop.capacity_any(&caller.roles, roles);
        let mine = t.state.assignee.as_deref() == Some(caller.user.as_str());
        // Waiting on the OPD's acknowledgement counts for those who may give it.
        let ack = step.requires_acknowledgement()
            && t.state.acknowledged.is_none()
            && (sop
                .capacity_any(&caller.roles, &step.acknowledged_by)
                .is_some()
                || sop
                    .capacity_any(&caller.roles, &step.acknowledged_on_behalf_by)
                    .is_some());
        if cap.is_none() && !mine && !ack {
            continue;
        }
        items.push(InboxItem {
            ticket: view(store, &t, now)?,
            assigned_to_me: mine,
            acting_for: cap.and_then(|c| c.acting_for().map(str::to_string)),
        });
    }
    items.sort_by(|a, b| {
        let key = |i: &InboxItem| {
            (
                i.ticket.due_at.is_none(),
                i.ticket.due_at,
                i.ticket.id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sop::store::tests::{info, store};
    use crate::sop::workflow::tests::{user_for, wib};
    use std::collections::HashMap;
    use test_case::test_case;

    struct Dir {
        users: HashMap<String, Vec<String>>,
    }

    impl Directory for Dir {
        fn roles(&self, user: &str) -> Option<Vec<String>> {
            self.users.get(user).cloned()
        }
        fn opd(&self, id: &str) -> Option<String> {
            (id == "dinkes").then(|| "Dinas Kesehatan".to_string())
        }
        fn measurements(&self, _ticket: &str) -> (bool, bool) {
            (true, true)
        }
        fn device_opd(&self, id: &str) -> Option<String> {
            match id {
                "dinkes-rtr" => Some("dinkes".into()),
                "bappeda-sw" => Some("bappeda".into()),
                _ => None,
            }
        }
        fn link_device(&self, name: &str) -> Option<String> {
            (name == "wan").then(|| "dinkes-rtr".to_string())
        }
        fn held_to(&self, _user: &str) -> Option<String> {
            None
        }
    }

    fn dir() -> Dir {
        let mut users = HashMap::new();
        for r in [
            "pemohon",
            "kepala_dinas",
            "sekretaris_dinas",
            "kabid_aptika",
            "pranata_komputer",
            "helpdesk",
            "tim_teknis",
        ] {
            let a = user_for(r);
            users.insert(a.user, a.roles);
        }
        users.insert("root".into(), vec!["admin".into()]);
        Dir { users }
    }

    fn call(
        s: &SopStore,
        method: &str,
        json: serde_json::Value,
        who: &Actor,
        now: &str,
    ) -> Result<String, ApiError> {
        handle(s, &dir(), method, &json.to_string(), who, wib(now)).expect("an SOP method")
    }

    #[test]
    fn letter_ticket_walks_the_chain_through_the_api() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        let new: NewLetter = serde_json::from_value(serde_json::json!({"opd": "dinkes", "letter_number": "005/1/DINKES", "letter_date": "2026-11-20", "subject": "Internet putus"})).expect("letter");
        let r = new_ticket(
            &s,
            &dir(),
            new.clone(),
            &user_for("tim_teknis"),
            wib("2026-11-23 08:00"),
        )
        .expect_err("not helpdesk");
        assert_eq!(
            r.to_string(),
            "a letter ticket is entered by helpdesk or admin; you are tim_teknis"
        );
        let reply = new_ticket(
            &s,
            &dir(),
            new,
            &user_for("helpdesk"),
            wib("2026-11-23 08:00"),
        )
        .expect("new");
        let id = reply.ticket.id.clone();
        assert_eq!(
            (
                id.as_str(),
                reply.ticket.origin.as_str(),
                reply.ticket.role.as_str()
            ),
            ("PJ-2026-0001", "letter", "pemohon")
        );
        let steps: [(&str, &str, serde_json::Value); 4] = [
            (
                "ticket.dispose",
                "pemohon",
                serde_json::json!({"ticket": id}),
            ),
            (
                "ticket.dispose",
                "sekretaris_dinas",
                serde_json::json!({"ticket": id, "note": "segera"}),
            ),
            (
                "ticket.dispose",
                "kabid_aptika",
                serde_json::json!({"ticket": id, "to": "prakom"}),
            ),
            (
                "ticket.dispose",
                "pranata_komputer",
                serde_json::json!({"ticket": id}),
            ),
        ];
        for (m, who, a) in steps {
            call(&s, m, a, &user_for(who), "2026-11-23 09:00")
                .unwrap_or_else(|e| panic!("{who}: {e}"));
        }
        let inbox: Vec<InboxItem> = serde_json::from_str(
            &call(
                &s,
                "inbox",
                serde_json::json!({}),
                &user_for("helpdesk"),
                "2026-11-23 09:30",
            )
            .expect("inbox"),
        )
        .expect("json");
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].ticket.step, 5);
        assert_eq!(inbox[0].ticket.time_left_secs, Some(30 * 60));
        let card = card_bytes(&s, &dir(), &id, "text", Lang::Id).expect("card");
        let text = String::from_utf8(card).expect("text");
        assert!(text.contains("a.n. Kepala Dinas"), "{text}");
        assert!(text.contains("Pranata Komputer: prakom"), "{text}");
    }

    #[test_case("ticket.dispose", serde_json::json!({"ticket": "PJ-2026-0001"}), "kabid_aptika", "step 1 belongs to pemohon; you are kabid_aptika" ; "refused")]
    #[test_case("ticket.dispose", serde_json::json!({"ticket": "PJ-2026-0009"}), "pemohon", "no ticket PJ-2026-0009" ; "no ticket")]
    #[test_case("ticket.dispose", serde_json::json!({"ticket": "PJ-2026-0001", "to": "nobody"}), "pemohon", "no user nobody" ; "no user")]
    #[test_case("ticket.dispose", serde_json::json!({"tiket": "PJ-2026-0001"}), "pemohon", "unknown field `tiket`" ; "bad field")]
    #[test_case("audit.verify", serde_json::json!({}), "helpdesk", "audit.verify is for admin" ; "verify by non admin")]
    fn errors(method: &str, a: serde_json::Value, who: &str, words: &str) {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        s.open(
            info("dinkes", wib("2026-11-23 08:00")),
            "PJ",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        )
        .expect("open");
        let e = call(&s, method, a, &user_for(who), "2026-11-23 08:30").expect_err("error");
        assert!(e.to_string().contains(words), "{e}");
    }

    #[test]
    fn refusals_are_audited_and_verify_reports() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        s.open(
            info("dinkes", wib("2026-11-23 08:00")),
            "PJ",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        )
        .expect("open");
        call(
            &s,
            "ticket.dispose",
            serde_json::json!({"ticket": "PJ-2026-0001"}),
            &user_for("helpdesk"),
            "2026-11-23 08:30",
        )
        .expect_err("refused");
        let events = s.events("PJ-2026-0001").expect("events");
        assert!(matches!(
            events.last().map(|e| &e.kind),
            Some(crate::sop::EventKind::Refused { .. })
        ));
        let v: Vec<VerifyItem> = serde_json::from_str(
            &call(
                &s,
                "audit.verify",
                serde_json::json!({}),
                &Actor::new("root", &["admin"]),
                "2026-11-23 09:00",
            )
            .expect("verify"),
        )
        .expect("json");
        assert_eq!(
            v,
            [VerifyItem {
                ticket: "PJ-2026-0001".into(),
                ok: true,
                index: None,
                reason: None
            }]
        );
        assert!(
            handle(
                &s,
                &dir(),
                "devices",
                "{}",
                &user_for("helpdesk"),
                wib("2026-11-23 09:00")
            )
            .is_none()
        );
    }

    #[test]
    fn register_xlsx_comes_back_as_bytes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        let mut detected = info("dinkes", wib("2026-11-23 08:00"));
        detected.origin = Origin::Detected;
        s.open(
            detected,
            "PJ",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        )
        .expect("open");
        let (from, to) = (
            NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
            NaiveDate::from_ymd_opt(2026, 11, 30).expect("date"),
        );
        let all = |_: &str| true;
        let now = wib("2026-11-23 09:00");
        let xlsx = register_bytes(&s, &dir(), from, to, "xlsx", Lang::Id, &all, now);
        assert!(xlsx.expect("xlsx").starts_with(b"PK"));
        let csv = register_bytes(&s, &dir(), from, to, "csv", Lang::Id, &all, now).expect("csv");
        let text = String::from_utf8(csv).expect("csv");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("PJ-2026-0001,2026-11-23,dinkes,deteksi otomatis,")),
            "{text}"
        );
        let back = register_bytes(&s, &dir(), to, from, "csv", Lang::Id, &all, now);
        assert!(
            back.expect_err("backwards")
                .to_string()
                .contains("--to 2026-11-01 is before --from 2026-11-30")
        );
        // Another OPD's register has the header only.
        let other = |o: &str| o == "dishub";
        let csv = register_bytes(&s, &dir(), from, to, "csv", Lang::Id, &other, now).expect("csv");
        assert_eq!(String::from_utf8(csv).expect("csv").lines().count(), 1);
    }
}

/// The `Sop` gRPC service (sop.proto).
#[derive(Debug, Clone)]
pub struct SopApi {
    hub: std::sync::Arc<crate::hub::Hub>,
}

impl SopApi {
    /// The service on `hub`.
    pub fn new(hub: std::sync::Arc<crate::hub::Hub>) -> Self {
        Self { hub }
    }

    /// The collector's shared state.
    pub fn hub(&self) -> &crate::hub::Hub {
        &self.hub
    }
}

#[tonic::async_trait]
impl siaga_proto::v1::sop_server::Sop for SopApi {}
