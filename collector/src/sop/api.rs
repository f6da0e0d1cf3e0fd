//! The SOP chain's domain calls and the `Sop` gRPC service (sop.proto):
//! dispose, return, acknowledge, whose turn, the inbox and the check of
//! the audit trails. The workflow decides who may take a step; the policy
//! table only who may call each RPC. A new ticket from a letter, its
//! status, voiding it and its trail are the `Tickets` service's
//! ([`new_ticket`], [`act_reply`]).

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
            StoreError::Exists(_) | StoreError::LetterFiled { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
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

/// What `caller` may do on ticket `t` at `now`: the workflow's own rules
/// ([`Workflow::permitted`]) with the SOP the ticket started with.
pub fn permitted(
    store: &SopStore,
    t: &SopTicket,
    caller: &Actor,
    now: DateTime<Utc>,
) -> Result<super::workflow::Permitted, ApiError> {
    let sop = store.sop_by_hash(&t.info.number, &t.state.sop.hash)?;
    Ok(Workflow::new(&sop, store.calendar()).permitted(&t.state, caller, now))
}

/// The names of `people` `caller` may dispose ticket `t` to at `now`
/// (`DisposeTicket`'s `to`): the workflow's own check of an assignee
/// ([`Workflow::assignees`]) with the SOP the ticket started with.
pub fn assignees(
    store: &SopStore,
    t: &SopTicket,
    caller: &Actor,
    now: DateTime<Utc>,
    people: &[Actor],
) -> Result<Vec<String>, ApiError> {
    let sop = store.sop_by_hash(&t.info.number, &t.state.sop.hash)?;
    Ok(Workflow::new(&sop, store.calendar())
        .assignees(&t.state, caller, now, people)
        .into_iter()
        .map(|a| a.user.clone())
        .collect())
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

/// The check of one ticket's audit trail ([`verify_trails`]).
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

/// The disposal of `ticket` as asked: the person it is handed to (`to`,
/// who must exist), the note, and the measurements found (or why there
/// are none). Whether the caller may take the step is the workflow's.
pub fn dispose_action(
    dir: &dyn Directory,
    ticket: &str,
    to: Option<String>,
    note: Option<String>,
    no_measurement_reason: Option<String>,
) -> Result<Action, ApiError> {
    if let Some(to) = &to {
        limit("to", to, len::ID, false)?;
    }
    if let Some(note) = &note {
        limit("note", note, len::NOTE, false)?;
    }
    if let Some(r) = &no_measurement_reason {
        limit("no_measurement_reason", r, len::NOTE, false)?;
    }
    let to = match to {
        None => None,
        Some(u) => Some(Actor {
            roles: dir
                .roles(&u)
                .ok_or_else(|| ApiError::NotFound(format!("no user {u}")))?,
            user: u,
        }),
    };
    let (before, after) = dir.measurements(ticket);
    Ok(Action::Dispose {
        to,
        note,
        measurements: Measurements {
            before,
            after,
            waived: no_measurement_reason,
        },
    })
}

/// Checks every ticket's hash-chained audit trail, by ticket number.
pub fn verify_trails(store: &SopStore) -> Result<Vec<VerifyItem>, ApiError> {
    Ok(store.verify()?.into_iter().map(verify_item).collect())
}

/// One ticket's trail checked, as answered.
pub fn verify_item((ticket, r): crate::sop::store::Verified) -> VerifyItem {
    match r {
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
    }
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

/// Opens a ticket from letter `a` as `caller` (one of [`LETTER_ROLES`]): the
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
        .any(|r| LETTER_ROLES.iter().any(|l| l == r))
    {
        return Err(ApiError::Denied(format!(
            "a letter ticket is entered by {}; {}",
            crate::role::join(LETTER_ROLES, " or "),
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
    // One ticket per letter: the store checks for one filed before in the
    // transaction that opens it, so two desks filing the same letter at
    // once, on one collector or on two of one database, open one ticket.
    let t = match store.open(info, TICKET_PREFIX, a.urgent, caller, now) {
        Ok(t) => t,
        Err(StoreError::LetterFiled { ticket, .. }) => {
            let t = store.get(&ticket)?;
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
        Err(e) => return Err(e.into()),
    };
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

/// Per OPD that `keep` lets through, its tickets opened from `from` to `to`
/// (included) inside and outside the SOP's time standards at `now`
/// ([`register::standards`]).
pub fn standards_by_opd(
    store: &SopStore,
    from: NaiveDate,
    to: NaiveDate,
    keep: &dyn Fn(&str) -> bool,
    now: DateTime<Utc>,
) -> Result<std::collections::BTreeMap<String, register::Standards>, ApiError> {
    let cal = store.calendar();
    let tickets = store.list()?;
    let mut owned = Vec::new();
    for t in tickets.iter().filter(|t| {
        let d = cal.local_date(t.info.opened_at);
        keep(&t.info.opd) && from <= d && d <= to
    }) {
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
    Ok(register::standards(&entries, cal, from, to, now))
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
        items.extend(inbox_item(store, caller, &t, now)?);
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

/// Ticket `t` as an item of `caller`'s inbox, if it waits on them.
pub fn inbox_item(
    store: &SopStore,
    caller: &Actor,
    t: &SopTicket,
    now: DateTime<Utc>,
) -> Result<Option<InboxItem>, ApiError> {
    if t.state.is_closed() {
        return Ok(None);
    }
    let sop = store.sop_by_hash(&t.info.number, &t.state.sop.hash)?;
    let Some(step) = sop.step(t.state.position.step) else {
        return Ok(None);
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
        return Ok(None);
    }
    Ok(Some(InboxItem {
        ticket: view(store, t, now)?,
        assigned_to_me: mine,
        acting_for: cap.and_then(|c| c.acting_for().map(str::to_string)),
    }))
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

    /// Disposes `ticket` as `who` at `now`, as the `Sop` service does.
    fn dispose(
        s: &SopStore,
        ticket: &str,
        to: Option<&str>,
        note: Option<&str>,
        who: &Actor,
        now: &str,
    ) -> Result<ActionReply, ApiError> {
        let action = dispose_action(
            &dir(),
            ticket,
            to.map(str::to_string),
            note.map(str::to_string),
            None,
        )?;
        act_reply(s, ticket, action, who, wib(now))
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
            "a letter ticket is entered by pemohon or helpdesk or admin; you are tim_teknis"
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
        let steps: [(&str, Option<&str>, Option<&str>); 4] = [
            ("pemohon", None, None),
            ("sekretaris_dinas", None, Some("segera")),
            ("kabid_aptika", Some("prakom"), None),
            ("pranata_komputer", None, None),
        ];
        for (who, to, note) in steps {
            dispose(&s, &id, to, note, &user_for(who), "2026-11-23 09:00")
                .unwrap_or_else(|e| panic!("{who}: {e}"));
        }
        let inbox = inbox(&s, &user_for("helpdesk"), wib("2026-11-23 09:30")).expect("inbox");
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].ticket.step, 5);
        assert_eq!(inbox[0].ticket.time_left_secs, Some(30 * 60));
        let card = card_bytes(&s, &dir(), &id, "text", Lang::Id).expect("card");
        let text = String::from_utf8(card).expect("text");
        assert!(text.contains("a.n. Kepala Dinas"), "{text}");
        assert!(text.contains("Pranata Komputer: prakom"), "{text}");
    }

    #[test_case("PJ-2026-0001", None, "kabid_aptika", "step 1 belongs to pemohon; you are kabid_aptika" ; "refused")]
    #[test_case("PJ-2026-0009", None, "pemohon", "no ticket PJ-2026-0009" ; "no ticket")]
    #[test_case("PJ-2026-0001", Some("nobody"), "pemohon", "no user nobody" ; "no user")]
    fn errors(ticket: &str, to: Option<&str>, who: &str, words: &str) {
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
        let e =
            dispose(&s, ticket, to, None, &user_for(who), "2026-11-23 08:30").expect_err("error");
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
        dispose(
            &s,
            "PJ-2026-0001",
            None,
            None,
            &user_for("helpdesk"),
            "2026-11-23 08:30",
        )
        .expect_err("refused");
        let events = s.events("PJ-2026-0001").expect("events");
        assert!(matches!(
            events.last().map(|e| &e.kind),
            Some(crate::sop::EventKind::Refused { .. })
        ));
        let v = verify_trails(&s).expect("verify");
        assert_eq!(
            v,
            [VerifyItem {
                ticket: "PJ-2026-0001".into(),
                ok: true,
                index: None,
                reason: None
            }]
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

impl SopApi {
    fn health(&self) -> std::sync::Arc<crate::ticket::HealthPart> {
        self.hub.health.clone()
    }

    /// Takes the step `make` gives on ticket `id` as `caller`, once the
    /// ticket is one they see; then what follows the step (announcements,
    /// the work report's freezing).
    async fn step<F>(
        &self,
        caller: crate::api::Caller,
        id: super::TicketNumber,
        what: &'static str,
        taken: super::workflow::StepTaken,
        make: F,
    ) -> Result<siaga_proto::v1::TicketActionResponse, crate::api::ApiError>
    where
        F: FnOnce(&str) -> Result<Action, ApiError> + Send + 'static,
    {
        use crate::ticket::api::{action_reply, actor};
        let health = self.health();
        let hub = self.hub.clone();
        crate::api::error::blocking(what, move || {
            let t = crate::api::scope::ticket(&caller, &health.sop_store, &id)?;
            let number = t.info.number;
            let action = make(&number)?;
            let r = act_reply(
                &health.sop_store,
                &number,
                action,
                &actor(&caller),
                Utc::now(),
            )?;
            let reply = action_reply(&health, r)?;
            hub.after_step(&number, taken);
            Ok(reply)
        })
        .await
    }
}

/// `None` for an unset or blank text.
fn given(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

#[tonic::async_trait]
impl siaga_proto::v1::sop_server::Sop for SopApi {
    async fn dispose_ticket(
        &self,
        req: tonic::Request<siaga_proto::v1::DisposeTicketRequest>,
    ) -> Result<tonic::Response<siaga_proto::v1::TicketActionResponse>, tonic::Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let id = limits::ticket_number("id", &r.id)?;
        let dir = crate::admin::HubDirectory(self.hub.clone());
        let (to, note, waived) = (given(Some(r.to)), r.note, r.no_measurement_reason);
        let reply = self
            .step(
                caller,
                id,
                "disposing a ticket",
                super::workflow::StepTaken::Disposed,
                move |number| dispose_action(&dir, number, to, note, waived),
            )
            .await?;
        Ok(tonic::Response::new(reply))
    }

    async fn return_ticket(
        &self,
        req: tonic::Request<siaga_proto::v1::ReturnTicketRequest>,
    ) -> Result<tonic::Response<siaga_proto::v1::TicketActionResponse>, tonic::Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let id = limits::ticket_number("id", &r.id)?;
        // An empty reason is the workflow's to refuse (and to put on the trail).
        limits::text("reason", &r.reason, len::NOTE)?;
        let reason = r.reason;
        let reply = self
            .step(
                caller,
                id,
                "returning a ticket",
                super::workflow::StepTaken::Returned,
                move |_| Ok(Action::Return { reason }),
            )
            .await?;
        Ok(tonic::Response::new(reply))
    }

    async fn acknowledge_ticket(
        &self,
        req: tonic::Request<siaga_proto::v1::AcknowledgeTicketRequest>,
    ) -> Result<tonic::Response<siaga_proto::v1::TicketActionResponse>, tonic::Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let id = limits::ticket_number("id", &r.id)?;
        limits::text("by", &r.by, len::SUBJECT)?;
        let by = r.by;
        let reply = self
            .step(
                caller,
                id,
                "acknowledging a work report",
                super::workflow::StepTaken::Acknowledged,
                move |_| Ok(Action::Acknowledge { by }),
            )
            .await?;
        Ok(tonic::Response::new(reply))
    }

    async fn get_turn(
        &self,
        req: tonic::Request<siaga_proto::v1::GetTurnRequest>,
    ) -> Result<tonic::Response<siaga_proto::v1::Ticket>, tonic::Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let id = limits::ticket_number("id", &r.id)?;
        let health = self.health();
        let t = crate::api::error::blocking("reading whose turn it is", move || {
            let t = crate::api::scope::ticket(&caller, &health.sop_store, &id)?;
            crate::ticket::api::ticket_of(&health.store, &health.sop_store, &t, Utc::now())
        })
        .await?;
        Ok(tonic::Response::new(t))
    }

    async fn list_inbox(
        &self,
        req: tonic::Request<siaga_proto::v1::ListInboxRequest>,
    ) -> Result<tonic::Response<siaga_proto::v1::ListInboxResponse>, tonic::Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        // Paged by ticket number, not by due time: a ticket's due time
        // changes with its step, so between two pages it could move back
        // over the token (missed) or ahead of it (shown twice); its number
        // never changes, so a walk shows each ticket that waits on the
        // caller throughout once, whatever steps are taken meanwhile. The
        // due time is on each item for whoever wants them by urgency.
        // The token names the number order, so one given when the inbox was
        // paged by due time is refused rather than misread.
        let page = crate::api::page::Page::new(r.page_size, &r.page_token, "inbox by number")?;
        let health = self.health();
        let (items, next_page_token) =
            crate::api::error::blocking("listing the inbox", move || {
                let actor = crate::ticket::api::actor(&caller);
                let now = Utc::now();
                let internal = |e| crate::api::ApiError::internal("listing the inbox", e);
                let keep = |t: SopTicket| {
                    if !crate::api::scope::listed(&caller, &t.info.opd) {
                        return Ok(None);
                    }
                    let Some(i) = inbox_item(&health.sop_store, &actor, &t, now)? else {
                        return Ok(None);
                    };
                    let h = health.store.get(&i.ticket.id).map_err(|e| {
                        crate::api::ApiError::internal("reading a ticket's health record", e)
                    })?;
                    Ok(Some(siaga_proto::v1::InboxItem {
                        ticket: Some(crate::ticket::wire::ticket(&i.ticket, h.as_ref())),
                        assigned_to_me: i.assigned_to_me,
                        acting_for: i.acting_for.unwrap_or_default(),
                    }))
                };
                health
                    .sop_store
                    .tickets_after(page.after.as_deref(), |rows| {
                        page.scan(
                            rows.map(|row| row.map_err(internal)),
                            crate::api::page::MAX_SCAN,
                            keep,
                        )
                    })
                    .map_err(internal)?
            })
            .await?;
        Ok(tonic::Response::new(siaga_proto::v1::ListInboxResponse {
            items,
            next_page_token,
        }))
    }

    async fn verify_audit_trails(
        &self,
        req: tonic::Request<siaga_proto::v1::VerifyAuditTrailsRequest>,
    ) -> Result<tonic::Response<siaga_proto::v1::VerifyAuditTrailsResponse>, tonic::Status> {
        // Admin only: the policy table says so and the gate has checked.
        let r = req.into_inner();
        let page = crate::api::page::Page::new(r.page_size, &r.page_token, "trails")?;
        let health = self.health();
        let (after, size) = (page.after.clone(), page.size);
        // This page's trails only (one more: whether there is a next page),
        // so walking every page verifies each trail once.
        let checked: Vec<VerifyItem> =
            crate::api::error::blocking("checking the audit trails", move || {
                Ok(health
                    .sop_store
                    .verify_page(after.as_deref(), size.saturating_add(1))
                    .map_err(|e| crate::api::ApiError::internal("checking the audit trails", e))?
                    .into_iter()
                    .map(verify_item)
                    .collect())
            })
            .await?;
        let (checked, next_page_token) = page.take(checked, |i| i.ticket.clone());
        Ok(tonic::Response::new(
            siaga_proto::v1::VerifyAuditTrailsResponse {
                trails: checked
                    .into_iter()
                    .map(|i| siaga_proto::v1::TrailCheck {
                        ticket: i.ticket,
                        ok: i.ok,
                        index: i.index,
                        reason: i.reason.unwrap_or_default(),
                    })
                    .collect(),
                next_page_token,
            },
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod service_tests {
    use std::sync::Arc;

    use siaga_proto::v1::{self, sop_client::SopClient, tickets_client::TicketsClient};
    use tonic::Code;

    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::{Fixture, OTHER, OWN};

    /// A new letter ticket of `opd` numbered `number`, entered by the helpdesk.
    async fn open(f: &Fixture, opd: &str, number: &str) -> String {
        let today = chrono::Utc::now()
            .with_timezone(&chrono_tz::Asia::Jakarta)
            .date_naive();
        TicketsClient::new(f.as_role("helpdesk"))
            .new_ticket(v1::NewTicketRequest {
                opd: opd.into(),
                letter_number: number.into(),
                letter_date: today.to_string(),
                subject: format!("Internet putus ({number})"),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("new ticket of {opd}: {s:?}"))
            .into_inner()
            .ticket
            .expect("ticket")
            .id
    }

    /// The fixture's ticket of `opd` the SOP steps are taken on (made once).
    async fn stepped(f: &Fixture, opd: &str) -> String {
        f.once(&format!("sop ticket of {opd}"), async {
            open(f, opd, &format!("sop/{opd}/2026")).await
        })
        .await
    }

    fn seen_if_ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
        match r {
            Ok(_) => Outcome::Seen,
            Err(s) => s.into(),
        }
    }

    /// The matrix cases of the `Sop` service. A refusal of the workflow
    /// (not the role's step) is PERMISSION_DENIED past the policy, which
    /// the matrix accepts for a role the table lets through.
    pub const CASES: &[Case] = &[
        Case {
            rpc: "/siaga.v1.Sop/DisposeTicket",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = stepped(&f, opd).await;
                    let mut c = SopClient::new(f.channel(p));
                    seen_if_ok(
                        c.dispose_ticket(v1::DisposeTicketRequest {
                            id,
                            note: Some("mohon ditindaklanjuti".into()),
                            ..Default::default()
                        })
                        .await,
                    )
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Sop/ReturnTicket",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = stepped(&f, opd).await;
                    let mut c = SopClient::new(f.channel(p));
                    seen_if_ok(
                        c.return_ticket(v1::ReturnTicketRequest {
                            id,
                            reason: "kurang lengkap".into(),
                        })
                        .await,
                    )
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Sop/AcknowledgeTicket",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = stepped(&f, opd).await;
                    let mut c = SopClient::new(f.channel(p));
                    seen_if_ok(
                        c.acknowledge_ticket(v1::AcknowledgeTicketRequest {
                            id,
                            by: "Andi, Kasubag Umum".into(),
                        })
                        .await,
                    )
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Sop/GetTurn",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = f.ticket_of(opd).await;
                    let mut c = SopClient::new(f.channel(p));
                    match c.get_turn(v1::GetTurnRequest { id: id.clone() }).await {
                        Ok(r) if r.get_ref().id == id && r.get_ref().opd == opd => Outcome::Seen,
                        Ok(r) => Outcome::Refused(Code::Internal, format!("{:?}", r.get_ref())),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Sop/ListInbox",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    // A ticket of each OPD at step 1: it waits on every pemohon
                    // role, of whichever OPD, as far as the SOP file goes.
                    for o in [OWN, OTHER] {
                        f.ticket_of(o).await;
                    }
                    let mut c = SopClient::new(f.channel(p));
                    match c.list_inbox(v1::ListInboxRequest::default()).await {
                        Ok(r) => {
                            let items = r.into_inner().items;
                            let of = |o: &str| {
                                items
                                    .iter()
                                    .any(|i| i.ticket.as_ref().is_some_and(|t| t.opd == o))
                            };
                            // The person held to OWN ("opd") must not see
                            // OTHER's; anyone else's listing was allowed
                            // whatever waits on them.
                            if of(opd) || (p != "opd" || opd == OWN) {
                                Outcome::Seen
                            } else {
                                Outcome::Hidden
                            }
                        }
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Sop/VerifyAuditTrails",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    f.ticket_of(opd).await;
                    let mut c = SopClient::new(f.channel(p));
                    match c
                        .verify_audit_trails(v1::VerifyAuditTrailsRequest::default())
                        .await
                    {
                        Ok(r) if !r.get_ref().trails.is_empty() => Outcome::Seen,
                        Ok(r) => Outcome::Refused(Code::Internal, format!("{:?}", r.get_ref())),
                        Err(s) => s.into(),
                    }
                })
            },
        },
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_inbox_walked_page_by_page_while_a_ticket_changes_step_shows_each_once() {
        let f = Fixture::start().await;
        // Four tickets brought to step 5 (the helpdesk's), in turn.
        let mut tickets = Vec::new();
        for n in 0..4 {
            let id = open(&f, OWN, &format!("{n}/kotak")).await;
            for role in [
                "pemohon",
                "kepala_dinas",
                "kabid_aptika",
                "pranata_komputer",
            ] {
                SopClient::new(f.as_role(role))
                    .dispose_ticket(v1::DisposeTicketRequest {
                        id: id.clone(),
                        note: Some("lanjut".into()),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|s| panic!("{role} disposes {id}: {s:?}"));
            }
            tickets.push(id);
        }
        let mut hd = SopClient::new(f.as_role("helpdesk"));
        let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let r = hd
                .list_inbox(v1::ListInboxRequest {
                    page_size: 2,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            let ids: Vec<String> = r
                .items
                .into_iter()
                .filter_map(|i| i.ticket.map(|t| t.id))
                .collect();
            pages += 1;
            if pages == 1 {
                // The first ticket shown moves on to step 6, due later: it
                // still waits on the helpdesk (the OPD's acknowledgement
                // may be given on its behalf).
                let step = hd
                    .dispose_ticket(v1::DisposeTicketRequest {
                        id: ids[0].clone(),
                        note: Some("dicatat".into()),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(step.ticket.unwrap().step, 6);
            }
            seen.extend(ids);
            if r.next_page_token.is_empty() {
                break;
            }
            token = r.next_page_token;
            assert!(pages < 20, "no end to the pages: {seen:?}");
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "nothing twice: {seen:?}");
        for id in &tickets {
            assert!(seen.contains(id), "{id} missed: {seen:?}");
        }
        // It still waits on the helpdesk: shown whole, it is there.
        let all = hd
            .list_inbox(v1::ListInboxRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.items.len(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_chain_moves_through_the_service_and_the_inbox_is_scoped_and_paged() {
        let f = Fixture::start().await;
        let own = open(&f, OWN, "1/inbox").await;
        let other = open(&f, OTHER, "1/inbox").await;
        let more = open(&f, OWN, "2/inbox").await;
        let ids = |r: v1::ListInboxResponse| -> Vec<String> {
            r.items
                .into_iter()
                .filter_map(|i| i.ticket.map(|t| t.id))
                .collect()
        };
        // The pemohon of OWN: the own OPD's step-1 tickets only.
        let mut opd = SopClient::new(f.as_role("pemohon"));
        let inbox = opd
            .list_inbox(v1::ListInboxRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids(inbox), [own.clone(), more.clone()]);
        // Paged: one at a time, each once, by ticket number.
        let first = opd
            .list_inbox(v1::ListInboxRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!first.next_page_token.is_empty());
        let token = first.next_page_token.clone();
        assert_eq!(ids(first), std::slice::from_ref(&own));
        let second = opd
            .list_inbox(v1::ListInboxRequest {
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(second.next_page_token.is_empty());
        assert_eq!(ids(second), std::slice::from_ref(&more));
        // Another OPD's ticket answers as a missing one, for every step.
        let e = opd
            .get_turn(v1::GetTurnRequest { id: other.clone() })
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::NotFound, format!("no ticket {other}").as_str())
        );
        let e = opd
            .dispose_ticket(v1::DisposeTicketRequest {
                id: other.to_ascii_lowercase(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);

        // The chain moves; a step that is not the caller's is refused.
        let d = opd
            .dispose_ticket(v1::DisposeTicketRequest {
                id: own.clone(),
                note: Some("mohon ditindaklanjuti".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.event.as_ref().unwrap().kind().word(), "disposed");
        let t = d.ticket.unwrap();
        assert_eq!((t.step, t.role.as_str()), (2, "kepala_dinas"));
        let e = opd
            .dispose_ticket(v1::DisposeTicketRequest {
                id: own.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.message().contains("step 2"), "{}", e.message());
        let e = opd
            .dispose_ticket(v1::DisposeTicketRequest {
                id: more.clone(),
                note: Some("n".repeat(2001)),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.message(), "note: 2001 characters; the limit is 2000");
        let mut kadis = SopClient::new(f.as_role("kepala_dinas"));
        let e = kadis
            .dispose_ticket(v1::DisposeTicketRequest {
                id: own.clone(),
                to: "nobody".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::NotFound, "no user nobody"));
        let r = kadis
            .return_ticket(v1::ReturnTicketRequest {
                id: own.clone(),
                reason: "lampiran kurang".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.event.unwrap().kind().word(), "returned");
        let turn = kadis
            .get_turn(v1::GetTurnRequest { id: own.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((turn.step, turn.role.as_str()), (1, "pemohon"));
        assert!(turn.due_at.is_some() && !turn.closed, "{turn:?}");

        // Every trail intact, by number; admin only (the gate).
        let mut root = SopClient::new(f.as_role("admin"));
        let v = root
            .verify_audit_trails(v1::VerifyAuditTrailsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let checked: Vec<(&str, bool)> =
            v.trails.iter().map(|t| (t.ticket.as_str(), t.ok)).collect();
        assert_eq!(
            checked,
            [
                (own.as_str(), true),
                (other.as_str(), true),
                (more.as_str(), true)
            ]
        );
        let e = kadis
            .verify_audit_trails(v1::VerifyAuditTrailsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
}
