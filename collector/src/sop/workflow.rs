//! A ticket's place in the chain and the actions that move it.
//!
//! Every action is checked against the caller's roles and the actors of the
//! current step (or hand-off, in a sequential step), with `acts_for`
//! delegation: the Sekretaris Dinas may act where the Kepala Dinas acts, and the
//! event records that it was acting. A refused action is an error *and* an
//! event ([`Rejection`]), so the caller can write the refusal to the audit trail.
//!
//! `admin` is the system's own role: it manages users and may enter a letter
//! ticket, but it takes no SOP step unless the same user is also granted the
//! step's role. Giving admins every step would let one account walk a ticket
//! through the whole chain, which is what the chain is there to prevent.
//!
//! - dispose: completes the current step (or hand-off) and moves to the next,
//!   optionally to a named user who must be able to take that step;
//! - return: one step (or hand-off) back, with a reason; that step's clock restarts;
//! - update status: the current actor keeps the follow-up status current (the
//!   Tim Teknis at step 6);
//! - acknowledge: the OPD acknowledges the work report at a step that asks for it
//!   (`acknowledged_by`), or the helpdesk on its behalf (`acknowledged_on_behalf_by`);
//! - reaching the final step closes the ticket ("selesai");
//! - void: a mistaken or duplicate ticket is closed as void ("batal") with a
//!   reason by the roles the SOP file names (`void_roles`); it stays in the
//!   trail and the register, never deleted.
//!
//! A ticket the collector opened from a detected fault starts with step 1
//! already done: the detection is the request (there is no letter to wait
//! for), so the system completes the first step with the evidence and the
//! ticket waits on the second step's actors ([`Workflow::open`]).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::calendar::Calendar;
use super::model::{Capacity, Sop, SopVersion, Step};
use crate::role::Role;

/// Roles that may enter a ticket from an OPD's letter: the OPD itself (its
/// own letters only: the service holds a pemohon to their OPD), the
/// helpdesk that receives letters on paper, and the admin.
pub const LETTER_ROLES: &[Role] = &[Role::PEMOHON, Role::HELPDESK, Role::ADMIN];

/// The user name recorded for what the collector does by itself.
pub const SYSTEM_USER: &str = "siaga";

/// Where a ticket came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Opened by the collector from a detected fault.
    Detected,
    /// Entered from an OPD's request letter.
    Letter {
        /// The letter's number.
        number: String,
        /// The letter's date.
        date: NaiveDate,
        /// The letter's subject.
        subject: String,
    },
}

impl Origin {
    /// For the register: the letter number, or "deteksi otomatis" / "automatic detection".
    pub fn label(&self, lang: super::Lang) -> String {
        match (self, lang) {
            (Origin::Letter { number, .. }, _) => number.clone(),
            (Origin::Detected, super::Lang::Id) => "deteksi otomatis".into(),
            (Origin::Detected, super::Lang::En) => "automatic detection".into(),
        }
    }
}

/// What the documents need to know about a ticket besides its SOP state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketInfo {
    /// Ticket number, e.g. `PJ-2026-0001`.
    pub number: String,
    /// OPD id.
    pub opd: String,
    /// OPD name, if known.
    pub opd_name: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// The problem (the letter's subject, or the detected fault in an
    /// English sentence, as the CLI shows it).
    pub problem: String,
    /// Why the collector opened it, as facts (detected tickets): documents
    /// write it in their own language rather than copying `problem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::health::Reason>,
    /// Device concerned.
    pub device: Option<String>,
    /// Link concerned.
    pub link: Option<String>,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
}

impl TicketInfo {
    /// The problem as a document in `lang` writes it: the typed reason in
    /// that language with local times, else the text as recorded (a
    /// letter's subject).
    pub fn problem_text(&self, lang: super::Lang, cal: &super::Calendar) -> String {
        match &self.reason {
            Some(r) => r.text(lang, &|us| {
                DateTime::from_timestamp_micros(us).map_or_else(
                    || us.to_string(),
                    |t| format!("{} {}", cal.fmt_local(t), cal.zone_abbr()),
                )
            }),
            None => self.problem.clone(),
        }
    }

    /// "device / link", either, or "".
    pub fn device_link(&self) -> String {
        match (&self.device, &self.link) {
            (Some(d), Some(l)) => format!("{d} / {l}"),
            (Some(d), None) => d.clone(),
            (None, Some(l)) => l.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Who is asking: a user and the roles they hold in the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// User name (from the certificate).
    pub user: String,
    /// Roles granted to the user.
    pub roles: Vec<String>,
}

impl Actor {
    /// A user with roles.
    pub fn new(user: impl Into<String>, roles: &[&str]) -> Self {
        Actor {
            user: user.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// The collector itself.
    pub fn system() -> Self {
        Actor {
            user: SYSTEM_USER.into(),
            roles: Vec::new(),
        }
    }

    fn roles_text(&self) -> String {
        if self.roles.is_empty() {
            "you have no role".into()
        } else {
            format!("you are {}", self.roles.join(", "))
        }
    }
}

/// Measurements attached for a step that requires them: taken before and after
/// the work, or a reason why none could be taken. The caller checks what exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurements {
    /// A measurement before the work is attached.
    pub before: bool,
    /// A measurement after the work is attached.
    pub after: bool,
    /// Why there are none (instead of measurements).
    pub waived: Option<String>,
}

/// Which SOP step was just taken, for what follows it (announcements, the
/// work report's freezing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepTaken {
    /// The current step was completed and handed on.
    Disposed,
    /// The ticket went one step back.
    Returned,
    /// The work report was acknowledged.
    Acknowledged,
}

/// An action on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Complete the current step (or hand-off) and move to the next.
    Dispose {
        /// The user to hand it to (must be able to take the next step).
        to: Option<Actor>,
        /// Note on the disposition.
        note: Option<String>,
        /// Measurements, for a step that requires them.
        #[serde(default)]
        measurements: Measurements,
    },
    /// One step back.
    Return {
        /// Why.
        reason: String,
    },
    /// Keep the follow-up status current.
    UpdateStatus {
        /// The status text.
        status: String,
    },
    /// The OPD acknowledges the work report.
    Acknowledge {
        /// "NAME, JABATAN" of the person who acknowledged.
        by: String,
    },
    /// Close a mistaken or duplicate ticket as void.
    Void {
        /// Why.
        reason: String,
    },
}

impl Action {
    /// Name of the action, for records.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Dispose { .. } => "dispose",
            Action::Return { .. } => "return",
            Action::UpdateStatus { .. } => "update",
            Action::Acknowledge { .. } => "acknowledge",
            Action::Void { .. } => "void",
        }
    }
}

/// A place in the chain: a step and, for a sequential step, the hand-off (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Step number.
    pub step: u32,
    /// Hand-off within the step (0 unless sequential).
    pub handoff: u32,
}

/// The OPD's acknowledgement of the work report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// "NAME, JABATAN" as given.
    pub by: String,
    /// The user who recorded it.
    pub user: String,
    /// Recorded on the OPD's behalf (by the helpdesk).
    pub on_behalf: bool,
    /// When.
    pub at: DateTime<Utc>,
}

/// An escalation already sent (kept in the ticket's state, so it is
/// never sent twice; see `escalation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationMark {
    /// Step.
    pub step: u32,
    /// Hand-off.
    pub handoff: u32,
    /// The ticket's visit counter when sent.
    pub visit: u32,
    /// Level sent (1 or 2).
    pub level: u8,
}

/// A ticket's SOP state. Stored with the ticket; it keeps the SOP version it started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSop {
    /// The SOP the ticket runs on.
    pub sop: SopVersion,
    /// Urgent tickets count calendar time instead of working time.
    pub urgent: bool,
    /// Where the ticket is.
    pub position: Position,
    /// When it got there (the step's clock starts here).
    pub entered_at: DateTime<Utc>,
    /// Counts every move, so a step reached again (after a return) is a new visit.
    pub visit: u32,
    /// The user it was handed to, if named.
    pub assignee: Option<String>,
    /// Follow-up status (step 6).
    pub status: Option<String>,
    /// The OPD's acknowledgement of the current work report.
    pub acknowledged: Option<Acknowledgement>,
    /// Escalations already sent.
    #[serde(default)]
    pub escalations: Vec<EscalationMark>,
    /// When the ticket reached the final step (or was voided).
    pub closed_at: Option<DateTime<Utc>>,
    /// Set when the ticket was voided instead of finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voided: Option<Voided>,
}

impl TicketSop {
    /// Whether the ticket has reached the final step or was voided.
    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }

    /// Whether the ticket was voided.
    pub fn is_void(&self) -> bool {
        self.voided.is_some()
    }
}

/// Who voided a ticket, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voided {
    /// The user.
    pub user: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

/// Time taken at a step against its standard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// The standard as written, e.g. "1d" or "1d-2d".
    pub standard: String,
    /// When the step was reached.
    pub started_at: DateTime<Utc>,
    /// When it was due.
    pub due_at: DateTime<Utc>,
    /// Seconds counted (working time, or calendar time when urgent).
    pub taken_secs: i64,
    /// Seconds allowed.
    pub allowed_secs: i64,
    /// Whether it was done in time.
    pub met: bool,
}

/// What happened, as recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The ticket entered the chain.
    Opened {
        /// Where it came from.
        origin: Origin,
        /// The OPD.
        opd: String,
        /// The SOP it runs on.
        sop: SopVersion,
        /// Counting calendar time.
        urgent: bool,
    },
    /// The step (or hand-off) was completed and the ticket moved on.
    Disposed {
        /// Step reached.
        to_step: u32,
        /// Hand-off reached.
        to_handoff: u32,
        /// Roles whose turn it is now.
        to_roles: Vec<String>,
        /// User it was handed to.
        to_user: Option<String>,
        /// Note.
        note: Option<String>,
        /// Time taken vs standard.
        timing: Option<Timing>,
        /// Measurements, for a step that requires them.
        measurements: Option<Measurements>,
        /// The final step was reached.
        closed: bool,
    },
    /// Sent one step back.
    Returned {
        /// Step reached.
        to_step: u32,
        /// Hand-off reached.
        to_handoff: u32,
        /// Roles whose turn it is now.
        to_roles: Vec<String>,
        /// Why.
        reason: String,
        /// Time taken at the step that returned it.
        timing: Option<Timing>,
    },
    /// Follow-up status.
    StatusUpdated {
        /// The status.
        status: String,
    },
    /// The OPD acknowledged the work report.
    Acknowledged {
        /// "NAME, JABATAN".
        by: String,
        /// Recorded on the OPD's behalf.
        on_behalf: bool,
    },
    /// An action was refused.
    Refused {
        /// The action tried.
        action: String,
        /// Why it was refused.
        reason: String,
    },
    /// A late step was told upward.
    Escalated {
        /// 1 when overdue, 2 at twice the standard.
        level: u8,
        /// When the step was due.
        due_at: DateTime<Utc>,
        /// Roles told.
        notify_roles: Vec<String>,
        /// Users told by name.
        notify_users: Vec<String>,
    },
    /// The ticket was voided (closed as mistaken or duplicate).
    Voided {
        /// Why.
        reason: String,
    },
    /// The work report was frozen after the review: its documents are stored
    /// with the ticket and their hashes recorded here.
    ReportFrozen {
        /// Index in this trail of the disposal (the review) it was frozen for.
        review_index: u64,
        /// The documents stored.
        documents: Vec<FrozenDocument>,
    },
}

/// One document of a frozen work report, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenDocument {
    /// `html` or `pdf`.
    pub format: String,
    /// Its language.
    pub lang: super::Lang,
    /// Hex sha256 of the stored bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// One event on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub user: String,
    /// The role they acted in (their own); for a refusal, all their roles.
    pub role: Option<String>,
    /// The role they acted for (Sekretaris Dinas for the Kepala Dinas).
    pub acting_for: Option<String>,
    /// The step the ticket was at.
    pub step: u32,
    /// The hand-off it was at.
    pub handoff: u32,
    /// What happened.
    pub kind: EventKind,
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The caller cannot take the current step.
    #[error("step {step} belongs to {roles}; {you}")]
    NotYourStep {
        /// Step.
        step: u32,
        /// Its actors ("a or b").
        roles: String,
        /// "you are x" / "you have no role".
        you: String,
    },
    /// The ticket is done.
    #[error("the ticket is closed (selesai); nothing more can be done")]
    Closed,
    /// The ticket was voided.
    #[error("the ticket is void (batal); nothing more can be done")]
    Voided,
    /// Nothing before the first step.
    #[error("step {step} is the first step; there is nothing to return to")]
    NothingToReturn {
        /// Step.
        step: u32,
    },
    /// A required text is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Step needs measurements.
    #[error(
        "step {step} needs measurements before and after the work ({missing} missing), or a reason why none were taken"
    )]
    MeasurementsMissing {
        /// Step.
        step: u32,
        /// "before", "after" or "before and after".
        missing: String,
    },
    /// Step needs the OPD's acknowledgement.
    #[error("step {step} needs the OPD's acknowledgement of the work report first")]
    NotAcknowledged {
        /// Step.
        step: u32,
    },
    /// Nothing to acknowledge here.
    #[error("step {step} has no work report to acknowledge")]
    NothingToAcknowledge {
        /// Step.
        step: u32,
    },
    /// The caller may not acknowledge.
    #[error("the work report is acknowledged by {roles}; {you}")]
    CannotAcknowledge {
        /// Who may.
        roles: String,
        /// "you are x".
        you: String,
    },
    /// The named user cannot take the next step.
    #[error("{user} cannot take step {step}: it belongs to {roles} and {user} {theirs}")]
    AssigneeCannotAct {
        /// The user.
        user: String,
        /// Step.
        step: u32,
        /// Its actors.
        roles: String,
        /// "is x" / "has no role".
        theirs: String,
    },
    /// The next step is final.
    #[error("the next step closes the ticket; there is no one to hand it to")]
    NoAssigneeAtEnd,
    /// The SOP given is not the ticket's.
    #[error("the ticket runs on SOP {ticket}, not {given}")]
    SopMismatch {
        /// The ticket's.
        ticket: SopVersion,
        /// The one given.
        given: SopVersion,
    },
    /// The caller may not void tickets.
    #[error("a ticket is voided by {roles}; {you}")]
    CannotVoid {
        /// Who may.
        roles: String,
        /// "you are x".
        you: String,
    },
    /// The ticket's step is not in its SOP.
    #[error("the ticket is at step {step}, which its SOP does not have")]
    UnknownStep {
        /// Step.
        step: u32,
    },
    /// The collector voids only a ticket that nobody has acted on yet.
    #[error("the collector voids a ticket only while nobody has acted on it")]
    NotUntouched,
}

/// A refused action: the error, and the event that records the refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Rejection {
    /// Why.
    pub error: WorkflowError,
    /// The refusal, for the audit trail.
    pub event: Box<Event>,
}

/// Whose turn it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Step.
    pub step: u32,
    /// Hand-off.
    pub handoff: u32,
    /// Roles that may act.
    pub roles: Vec<String>,
    /// Named user, if any.
    pub assignee: Option<String>,
    /// When the step was reached.
    pub entered_at: DateTime<Utc>,
    /// When it is due (None at the final step).
    pub due_at: Option<DateTime<Utc>>,
}

/// What a person may do on a ticket now ([`Workflow::permitted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permitted {
    /// Dispose the current step (or hand-off).
    pub dispose: bool,
    /// That disposal is the Kepala Dinas's review (it freezes the report).
    pub review: bool,
    /// Return the ticket one step back.
    pub return_back: bool,
    /// Update the follow-up status.
    pub update: bool,
    /// Acknowledge the work report (for the OPD, or on its behalf).
    pub acknowledge: bool,
    /// Void the ticket.
    pub void: bool,
    /// The disposal asks for measurements before and after (or a reason).
    pub measurements: bool,
}

/// The chain of one SOP on one calendar.
#[derive(Debug, Clone, Copy)]
pub struct Workflow<'a> {
    /// The SOP.
    pub sop: &'a Sop,
    /// The business calendar.
    pub calendar: &'a Calendar,
}

fn join_roles(roles: &[String]) -> String {
    roles.join(" or ")
}

impl<'a> Workflow<'a> {
    /// A workflow over an SOP and a calendar.
    pub fn new(sop: &'a Sop, calendar: &'a Calendar) -> Self {
        Workflow { sop, calendar }
    }

    /// A new ticket at the first step. For a detected ticket `by` is [`Actor::system`].
    pub fn start(
        &self,
        origin: Origin,
        opd: &str,
        urgent: bool,
        by: &Actor,
        now: DateTime<Utc>,
    ) -> (TicketSop, Event) {
        let first = self.sop.first_step().number;
        let t = TicketSop {
            sop: self.sop.version(),
            urgent,
            position: Position {
                step: first,
                handoff: 0,
            },
            entered_at: now,
            visit: 0,
            assignee: None,
            status: None,
            acknowledged: None,
            escalations: Vec::new(),
            closed_at: None,
            voided: None,
        };
        let ev = Event {
            at: now,
            user: by.user.clone(),
            role: by.roles.first().cloned(),
            acting_for: None,
            step: first,
            handoff: 0,
            kind: EventKind::Opened {
                origin,
                opd: opd.to_string(),
                sop: self.sop.version(),
                urgent,
            },
        };
        (t, ev)
    }

    /// A new ticket with its opening events. A detected ticket has its first
    /// step completed by the system at once: the detection is the request,
    /// `evidence` says what was detected, and the ticket waits on the next step.
    pub fn open(
        &self,
        origin: Origin,
        opd: &str,
        urgent: bool,
        by: &Actor,
        evidence: &str,
        now: DateTime<Utc>,
    ) -> (TicketSop, Vec<Event>) {
        let detected = origin == Origin::Detected;
        let (mut t, opened) = self.start(origin, opd, urgent, by, now);
        let mut events = vec![opened];
        if detected {
            let first = self.sop.first_step();
            if let Some(next) = self.sop.next_step(first.number).filter(|n| !n.is_final) {
                let timing = self.timing(&t, first, now);
                let to = Position {
                    step: next.number,
                    handoff: 0,
                };
                self.move_to(&mut t, to, now);
                let note = if evidence.trim().is_empty() {
                    "deteksi otomatis".to_string()
                } else {
                    format!("deteksi otomatis: {evidence}")
                };
                events.push(Event {
                    at: now,
                    user: SYSTEM_USER.into(),
                    role: None,
                    acting_for: None,
                    step: first.number,
                    handoff: 0,
                    kind: EventKind::Disposed {
                        to_step: to.step,
                        to_handoff: 0,
                        to_roles: next.actors_at(0).to_vec(),
                        to_user: None,
                        note: Some(note),
                        timing,
                        measurements: None,
                        closed: false,
                    },
                });
            }
        }
        (t, events)
    }

    /// The step a ticket is at.
    pub fn step_of(&self, t: &TicketSop) -> Result<&'a Step, WorkflowError> {
        self.sop
            .step(t.position.step)
            .ok_or(WorkflowError::UnknownStep {
                step: t.position.step,
            })
    }

    /// Whose turn it is and until when.
    pub fn turn(&self, t: &TicketSop) -> Result<Turn, WorkflowError> {
        let step = self.step_of(t)?;
        Ok(Turn {
            step: step.number,
            handoff: t.position.handoff,
            roles: step.actors_at(t.position.handoff).to_vec(),
            assignee: t.assignee.clone(),
            entered_at: t.entered_at,
            due_at: self.due_at(t),
        })
    }

    /// When the current step is due (the upper bound of a range); None when closed.
    pub fn due_at(&self, t: &TicketSop) -> Option<DateTime<Utc>> {
        if t.is_closed() {
            return None;
        }
        let ts = self.sop.step(t.position.step)?.time_standard?;
        Some(self.calendar.deadline(t.entered_at, ts.allowed(), t.urgent))
    }

    /// Whether the current step is past its standard at `now` (strictly after the due instant).
    pub fn is_overdue(&self, t: &TicketSop, now: DateTime<Utc>) -> bool {
        self.due_at(t).is_some_and(|due| now > due)
    }

    /// Time left until due (negative when overdue), counted as the ticket counts time.
    pub fn time_left(&self, t: &TicketSop, now: DateTime<Utc>) -> Option<Duration> {
        let due = self.due_at(t)?;
        Some(if now <= due {
            self.calendar.elapsed(now, due, t.urgent)
        } else {
            -self.calendar.elapsed(due, now, t.urgent)
        })
    }

    fn timing(&self, t: &TicketSop, step: &Step, now: DateTime<Utc>) -> Option<Timing> {
        let ts = step.time_standard?;
        let allowed = ts.allowed();
        let due_at = self.calendar.deadline(t.entered_at, allowed, t.urgent);
        let standard = match ts.max {
            Some(max) => format!("{}-{}", ts.min, max),
            None => ts.min.to_string(),
        };
        Some(Timing {
            standard,
            started_at: t.entered_at,
            due_at,
            taken_secs: self
                .calendar
                .elapsed(t.entered_at, now, t.urgent)
                .num_seconds(),
            allowed_secs: self.calendar.span(allowed, t.urgent).num_seconds(),
            met: now <= due_at,
        })
    }

    /// Apply an action by `actor` at `now`. On success the ticket has moved and the
    /// event is returned; on refusal the ticket is unchanged and the [`Rejection`]
    /// carries the refusal event. Both events belong in the audit trail.
    pub fn apply(
        &self,
        t: &mut TicketSop,
        action: Action,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Event, Rejection> {
        let name = action.name();
        self.try_apply(t, action, actor, now)
            .map_err(|error| Rejection {
                event: Box::new(Event {
                    at: now,
                    user: actor.user.clone(),
                    role: (!actor.roles.is_empty()).then(|| actor.roles.join(",")),
                    acting_for: None,
                    step: t.position.step,
                    handoff: t.position.handoff,
                    kind: EventKind::Refused {
                        action: name.to_string(),
                        reason: error.to_string(),
                    },
                }),
                error,
            })
    }

    fn check_actor(
        &self,
        step: &Step,
        handoff: u32,
        actor: &Actor,
    ) -> Result<Capacity, WorkflowError> {
        let roles = step.actors_at(handoff);
        self.sop
            .capacity_any(&actor.roles, roles)
            .ok_or_else(|| WorkflowError::NotYourStep {
                step: step.number,
                roles: join_roles(roles),
                you: actor.roles_text(),
            })
    }

    fn try_apply(
        &self,
        t: &mut TicketSop,
        action: Action,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Event, WorkflowError> {
        let given = self.sop.version();
        if given != t.sop {
            return Err(WorkflowError::SopMismatch {
                ticket: t.sop.clone(),
                given,
            });
        }
        if t.is_void() {
            return Err(WorkflowError::Voided);
        }
        if t.is_closed() {
            return Err(WorkflowError::Closed);
        }
        let step = self.step_of(t)?;
        let here = t.position;
        let event = |cap: Option<&Capacity>, kind: EventKind| Event {
            at: now,
            user: actor.user.clone(),
            role: cap.map(|c| c.own_role().to_string()),
            acting_for: cap.and_then(|c| c.acting_for().map(str::to_string)),
            step: here.step,
            handoff: here.handoff,
            kind,
        };
        match action {
            Action::Dispose {
                to,
                note,
                measurements,
            } => {
                let cap = self.check_actor(step, here.handoff, actor)?;
                let last_handoff = here.handoff + 1 >= step.handoffs();
                if last_handoff && step.requires_measurements && !measurements_ok(&measurements) {
                    let missing = match (measurements.before, measurements.after) {
                        (false, false) => "before and after",
                        (false, true) => "before",
                        _ => "after",
                    };
                    return Err(WorkflowError::MeasurementsMissing {
                        step: step.number,
                        missing: missing.into(),
                    });
                }
                if last_handoff && step.requires_acknowledgement() && t.acknowledged.is_none() {
                    return Err(WorkflowError::NotAcknowledged { step: step.number });
                }
                let (next_step, next) = if last_handoff {
                    let n = self
                        .sop
                        .next_step(step.number)
                        .ok_or(WorkflowError::UnknownStep {
                            step: step.number + 1,
                        })?;
                    (
                        n,
                        Position {
                            step: n.number,
                            handoff: 0,
                        },
                    )
                } else {
                    (
                        step,
                        Position {
                            step: step.number,
                            handoff: here.handoff + 1,
                        },
                    )
                };
                if let Some(to) = &to {
                    if next_step.is_final {
                        return Err(WorkflowError::NoAssigneeAtEnd);
                    }
                    let roles = next_step.actors_at(next.handoff);
                    if self.sop.capacity_any(&to.roles, roles).is_none() {
                        return Err(WorkflowError::AssigneeCannotAct {
                            user: to.user.clone(),
                            step: next_step.number,
                            roles: join_roles(roles),
                            theirs: if to.roles.is_empty() {
                                "has no role".into()
                            } else {
                                format!("is {}", to.roles.join(", "))
                            },
                        });
                    }
                }
                let timing = self.timing(t, step, now);
                let note = note.filter(|n| !n.trim().is_empty());
                let measured = (last_handoff && step.requires_measurements).then_some(measurements);
                self.move_to(t, next, now);
                t.assignee = to.as_ref().map(|a| a.user.clone());
                if next_step.is_final {
                    t.closed_at = Some(now);
                }
                Ok(event(
                    Some(&cap),
                    EventKind::Disposed {
                        to_step: next.step,
                        to_handoff: next.handoff,
                        to_roles: next_step.actors_at(next.handoff).to_vec(),
                        to_user: t.assignee.clone(),
                        note,
                        timing,
                        measurements: measured,
                        closed: next_step.is_final,
                    },
                ))
            }
            Action::Return { reason } => {
                let cap = self.check_actor(step, here.handoff, actor)?;
                if reason.trim().is_empty() {
                    return Err(WorkflowError::Empty("the reason for a return"));
                }
                let (prev_step, prev) = if here.handoff > 0 {
                    (
                        step,
                        Position {
                            step: step.number,
                            handoff: here.handoff - 1,
                        },
                    )
                } else {
                    let p = self
                        .sop
                        .prev_step(step.number)
                        .ok_or(WorkflowError::NothingToReturn { step: step.number })?;
                    (
                        p,
                        Position {
                            step: p.number,
                            handoff: p.handoffs() - 1,
                        },
                    )
                };
                let timing = self.timing(t, step, now);
                self.move_to(t, prev, now);
                t.assignee = None;
                Ok(event(
                    Some(&cap),
                    EventKind::Returned {
                        to_step: prev.step,
                        to_handoff: prev.handoff,
                        to_roles: prev_step.actors_at(prev.handoff).to_vec(),
                        reason,
                        timing,
                    },
                ))
            }
            Action::UpdateStatus { status } => {
                let cap = self.check_actor(step, here.handoff, actor)?;
                if status.trim().is_empty() {
                    return Err(WorkflowError::Empty("the status"));
                }
                t.status = Some(status.clone());
                Ok(event(Some(&cap), EventKind::StatusUpdated { status }))
            }
            Action::Acknowledge { by } => {
                if !step.requires_acknowledgement() {
                    return Err(WorkflowError::NothingToAcknowledge { step: step.number });
                }
                let (cap, on_behalf) =
                    if let Some(c) = self.sop.capacity_any(&actor.roles, &step.acknowledged_by) {
                        (c, false)
                    } else if let Some(c) = self
                        .sop
                        .capacity_any(&actor.roles, &step.acknowledged_on_behalf_by)
                    {
                        (c, true)
                    } else {
                        let mut who = join_roles(&step.acknowledged_by);
                        if !step.acknowledged_on_behalf_by.is_empty() {
                            who = format!(
                                "{who} (or {} on its behalf)",
                                join_roles(&step.acknowledged_on_behalf_by)
                            );
                        }
                        return Err(WorkflowError::CannotAcknowledge {
                            roles: who,
                            you: actor.roles_text(),
                        });
                    };
                if by.trim().is_empty() {
                    return Err(WorkflowError::Empty(
                        "the acknowledging person (\"NAME, JABATAN\")",
                    ));
                }
                t.acknowledged = Some(Acknowledgement {
                    by: by.clone(),
                    user: actor.user.clone(),
                    on_behalf,
                    at: now,
                });
                Ok(event(Some(&cap), EventKind::Acknowledged { by, on_behalf }))
            }
            Action::Void { reason } => {
                // The collector itself voids a ticket it opened when the
                // fault turned out to be none or is over by itself (a trap
                // polling did not confirm, a link stable long after
                // flapping), but only while no person has acted on it.
                let system = actor.user == SYSTEM_USER && actor.roles.is_empty();
                let cap = if system {
                    if !self.untouched(t) {
                        return Err(WorkflowError::NotUntouched);
                    }
                    None
                } else {
                    Some(
                        self.sop
                            .capacity_any(&actor.roles, &self.sop.void_roles)
                            .ok_or_else(|| WorkflowError::CannotVoid {
                                roles: join_roles(&self.sop.void_roles),
                                you: actor.roles_text(),
                            })?,
                    )
                };
                if reason.trim().is_empty() {
                    return Err(WorkflowError::Empty("the reason for voiding"));
                }
                t.closed_at = Some(now);
                t.voided = Some(Voided {
                    user: actor.user.clone(),
                    at: now,
                    reason: reason.clone(),
                });
                Ok(event(cap.as_ref(), EventKind::Voided { reason }))
            }
        }
    }

    /// Where a ticket is when nobody but the collector has acted on it: at
    /// the first step, or (a detected ticket, step 1 done by the system at
    /// [`Workflow::open`]) at the one after it, with no hand-off, no
    /// assignee, no status and no acknowledgement.
    fn untouched(&self, t: &TicketSop) -> bool {
        let first = self.sop.first_step().number;
        let second = self.sop.next_step(first).map(|s| s.number);
        let here = t.position;
        let at_start =
            (here.step == first && t.visit == 0) || (Some(here.step) == second && t.visit == 1);
        at_start
            && here.handoff == 0
            && t.assignee.is_none()
            && t.status.is_none()
            && t.acknowledged.is_none()
    }

    /// What `actor` may do on `t` at `now`, decided by the same rules as
    /// [`Workflow::apply`]: each action is tried on a copy of the ticket.
    /// A try refused only for what the form itself supplies (measurements,
    /// the OPD's acknowledgement before the disposal) still counts as
    /// permitted; one refused for the role, the step or a closed ticket
    /// does not.
    pub fn permitted(&self, t: &TicketSop, actor: &Actor, now: DateTime<Utc>) -> Permitted {
        let probe = |action: Action| {
            let mut copy = t.clone();
            match self.try_apply(&mut copy, action, actor, now) {
                Ok(_) => true,
                Err(e) => matches!(
                    e,
                    WorkflowError::MeasurementsMissing { .. }
                        | WorkflowError::NotAcknowledged { .. }
                ),
            }
        };
        let text = || "-".to_string();
        let dispose = probe(Action::Dispose {
            to: None,
            note: None,
            measurements: Measurements::default(),
        });
        let step = self.sop.step(t.position.step);
        let last_handoff = step.is_some_and(|s| t.position.handoff + 1 >= s.handoffs());
        Permitted {
            dispose,
            review: dispose && last_handoff && step.is_some_and(|s| s.freezes_report),
            return_back: probe(Action::Return { reason: text() }),
            update: probe(Action::UpdateStatus { status: text() }),
            acknowledge: probe(Action::Acknowledge { by: text() }),
            void: probe(Action::Void { reason: text() }),
            measurements: last_handoff && step.is_some_and(|s| s.requires_measurements),
        }
    }

    /// Of `people`, those `actor` may dispose `t` to at `now` (the `to`
    /// of [`Action::Dispose`]): each is tried on a copy of the ticket by
    /// [`Workflow::apply`]'s own rules, as [`Workflow::permitted`] tries
    /// the actions. Empty when `actor` may not dispose, or when the next
    /// step takes no assignee.
    pub fn assignees<'p>(
        &self,
        t: &TicketSop,
        actor: &Actor,
        now: DateTime<Utc>,
        people: impl IntoIterator<Item = &'p Actor>,
    ) -> Vec<&'p Actor> {
        people
            .into_iter()
            .filter(|to| {
                let mut copy = t.clone();
                let action = Action::Dispose {
                    to: Some((*to).clone()),
                    note: None,
                    measurements: Measurements::default(),
                };
                match self.try_apply(&mut copy, action, actor, now) {
                    Ok(_) => true,
                    Err(e) => matches!(
                        e,
                        WorkflowError::MeasurementsMissing { .. }
                            | WorkflowError::NotAcknowledged { .. }
                    ),
                }
            })
            .collect()
    }

    fn move_to(&self, t: &mut TicketSop, to: Position, now: DateTime<Utc>) {
        t.position = to;
        t.entered_at = now;
        t.visit += 1;
        // A report reached again (after a return) needs a fresh acknowledgement.
        if self
            .sop
            .step(to.step)
            .is_some_and(Step::requires_acknowledgement)
        {
            t.acknowledged = None;
        }
    }
}

fn measurements_ok(m: &Measurements) -> bool {
    (m.before && m.after) || m.waived.as_deref().is_some_and(|w| !w.trim().is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sop::file::default_sop;
    use test_case::test_case;

    pub(crate) fn wib(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_str(&format!("{s} +0700"), "%Y-%m-%d %H:%M %z")
            .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
            .with_timezone(&Utc)
    }

    #[test]
    fn the_assignees_of_a_disposal_are_those_the_next_step_takes() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let now = wib("2026-11-23 08:00");
        let letter = Origin::Letter {
            number: "005/1/DINKES/2026".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
            subject: "Internet putus".into(),
        };
        let (mut t, _) = wf.open(
            letter,
            "dinkes",
            false,
            &user_for("helpdesk"),
            "Internet putus",
            now,
        );
        wf.apply(&mut t, dispose(), &user_for("pemohon"), now)
            .expect("step 1");
        let people: Vec<Actor> = [
            "pemohon",
            "kepala_dinas",
            "sekretaris_dinas",
            "kabid_aptika",
            "pranata_komputer",
            "helpdesk",
        ]
        .iter()
        .map(|r| user_for(r))
        .collect();
        let names = |v: Vec<&Actor>| v.iter().map(|a| a.user.clone()).collect::<Vec<_>>();
        // Step 2 is the Kepala Dinas's; step 3, next, the Kabid's.
        assert_eq!(
            names(wf.assignees(&t, &user_for("kepala_dinas"), now, &people)),
            ["kabid"]
        );
        // Someone who may not dispose now has nobody to dispose to.
        assert!(
            wf.assignees(&t, &user_for("helpdesk"), now, &people)
                .is_empty()
        );
        // Each one listed is taken by apply, and one not listed is refused.
        for to in &people {
            let mut copy = t.clone();
            let r = wf.apply(
                &mut copy,
                Action::Dispose {
                    to: Some(to.clone()),
                    note: None,
                    measurements: Measurements::default(),
                },
                &user_for("kepala_dinas"),
                now,
            );
            assert_eq!(r.is_ok(), to.user == "kabid", "{}: {r:?}", to.user);
        }
    }

    pub(crate) fn dispose() -> Action {
        Action::Dispose {
            to: None,
            note: None,
            measurements: Measurements::default(),
        }
    }

    fn measured() -> Action {
        Action::Dispose {
            to: None,
            note: Some("ganti patch cord".into()),
            measurements: Measurements {
                before: true,
                after: true,
                waived: None,
            },
        }
    }

    /// The user holding each role in the tests.
    pub(crate) fn user_for(role: &str) -> Actor {
        let name = match role {
            "pemohon" => "opd-dinkes",
            "kepala_dinas" => "kadis",
            "sekretaris_dinas" => "sekdis",
            "kabid_aptika" => "kabid",
            "pranata_komputer" => "prakom",
            "helpdesk" => "hd",
            "tim_teknis" => "teknisi",
            other => other,
        };
        Actor::new(name, &[role])
    }

    /// Walk a ticket through the whole default chain; returns the ticket and its events.
    pub(crate) fn walk(
        wf: &Workflow<'_>,
        start: DateTime<Utc>,
        step_gap: Duration,
    ) -> (TicketSop, Vec<Event>) {
        let (mut t, ev) = wf.start(Origin::Detected, "dinkes", false, &Actor::system(), start);
        let mut events = vec![ev];
        let mut now = start;
        let mut apply = |t: &mut TicketSop, a: Action, who: &str, now: DateTime<Utc>| {
            let e = wf
                .apply(t, a, &user_for(who), now)
                .unwrap_or_else(|r| panic!("{who}: {r}"));
            events.push(e);
        };
        for role in [
            "pemohon",
            "kepala_dinas",
            "kabid_aptika",
            "pranata_komputer",
            "helpdesk",
        ] {
            now += step_gap;
            apply(&mut t, dispose(), role, now);
        }
        now += step_gap;
        apply(
            &mut t,
            Action::UpdateStatus {
                status: "menuju lokasi".into(),
            },
            "tim_teknis",
            now,
        );
        apply(
            &mut t,
            Action::Acknowledge {
                by: "Andi, Kasubag Umum".into(),
            },
            "pemohon",
            now,
        );
        apply(&mut t, measured(), "tim_teknis", now);
        for role in [
            "helpdesk",
            "pranata_komputer",
            "kabid_aptika",
            "kepala_dinas",
        ] {
            now += step_gap;
            apply(&mut t, dispose(), role, now);
        }
        (t, events)
    }

    fn at_step(wf: &Workflow<'_>, n: u32, handoff: u32) -> TicketSop {
        let (mut t, _) = wf.start(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        );
        t.position = Position { step: n, handoff };
        t
    }

    // What each role may do at a step, as the forms of the web console show it.
    #[test_case(1, 0, "pemohon", "dispose update" ; "the letter's step is the pemohon's")]
    #[test_case(2, 0, "kepala_dinas", "dispose return update void" ; "the kadis disposes and may void")]
    #[test_case(2, 0, "sekretaris_dinas", "dispose return update void" ; "the sekdis acts for the kadis")]
    #[test_case(2, 0, "pemohon", "" ; "not the pemohon's step")]
    #[test_case(2, 0, "helpdesk", "" ; "nor the helpdesk's")]
    #[test_case(6, 0, "tim_teknis", "dispose measurements return update" ; "the work asks for measurements")]
    #[test_case(6, 0, "pemohon", "acknowledge" ; "the OPD acknowledges the work")]
    #[test_case(6, 0, "helpdesk", "acknowledge" ; "or the helpdesk on its behalf")]
    #[test_case(9, 0, "kepala_dinas", "dispose review return update void" ; "the review freezes the report")]
    #[test_case(10, 0, "kepala_dinas", "" ; "nothing once closed")]
    fn what_a_role_may_do_now(step: u32, handoff: u32, role: &str, want: &str) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, step, handoff);
        if sop.step(step).is_some_and(|s| s.is_final) {
            t.closed_at = Some(wib("2026-11-23 09:00"));
        }
        let p = wf.permitted(&t, &user_for(role), wib("2026-11-23 09:00"));
        let got: Vec<&str> = [
            ("dispose", p.dispose),
            ("review", p.review),
            ("measurements", p.measurements && p.dispose),
            ("return", p.return_back),
            ("update", p.update),
            ("acknowledge", p.acknowledge),
            ("void", p.void),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
        assert_eq!(got.join(" "), want);
        // Nothing was taken: the ticket is as it was.
        assert_eq!(t.position, Position { step, handoff });
    }

    #[test]
    fn a_detected_ticket_waits_on_step_2_with_step_1_done_by_the_system() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let now = wib("2026-11-23 08:00");
        let (t, events) = wf.open(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            "Packet loss 50% to dinkes-sw1",
            now,
        );
        assert_eq!(
            t.position,
            Position {
                step: 2,
                handoff: 0
            }
        );
        assert_eq!(t.entered_at, now);
        let turn = wf.turn(&t).expect("turn");
        assert_eq!(turn.roles, ["kepala_dinas"]);
        assert_eq!(events.len(), 2, "{events:#?}");
        assert!(matches!(events[0].kind, EventKind::Opened { .. }));
        let done = &events[1];
        assert_eq!((done.user.as_str(), done.step), (SYSTEM_USER, 1));
        match &done.kind {
            EventKind::Disposed {
                to_step: 2,
                note: Some(note),
                closed: false,
                ..
            } => assert!(note.contains("Packet loss 50% to dinkes-sw1"), "{note}"),
            other => panic!("{other:?}"),
        }
        // The OPD cannot dispose the step the system already completed.
        let mut t2 = t.clone();
        let err = wf
            .apply(&mut t2, dispose(), &user_for("pemohon"), now)
            .expect_err("pemohon at step 2");
        assert_eq!(
            err.error.to_string(),
            "step 2 belongs to kepala_dinas; you are pemohon"
        );
    }

    #[test]
    fn a_letter_ticket_still_waits_on_the_pemohon() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let letter = Origin::Letter {
            number: "005/1/DINKES/2026".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
            subject: "Jaringan lambat".into(),
        };
        let (t, events) = wf.open(
            letter,
            "dinkes",
            false,
            &user_for("helpdesk"),
            "Jaringan lambat",
            wib("2026-11-23 08:00"),
        );
        assert_eq!(
            t.position,
            Position {
                step: 1,
                handoff: 0
            }
        );
        assert_eq!(events.len(), 1);
    }

    #[test_case("kabid_aptika", None ; "kabid")]
    #[test_case("kepala_dinas", None ; "kadis")]
    #[test_case("sekretaris_dinas", None ; "sekdis acting for kadis")]
    #[test_case("admin", None ; "admin")]
    #[test_case("helpdesk", Some("a ticket is voided by kabid_aptika or kepala_dinas or admin; you are helpdesk") ; "helpdesk")]
    #[test_case("tim_teknis", Some("a ticket is voided by kabid_aptika or kepala_dinas or admin; you are tim_teknis") ; "teknisi")]
    #[test_case("pemohon", Some("a ticket is voided by kabid_aptika or kepala_dinas or admin; you are pemohon") ; "pemohon")]
    fn void_is_for_the_roles_of_the_sop_file(role: &str, err: Option<&str>) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 4, 0);
        let now = wib("2026-11-23 09:00");
        let void = Action::Void {
            reason: "duplikat PJ-2026-0001".into(),
        };
        match (wf.apply(&mut t, void, &user_for(role), now), err) {
            (Ok(ev), None) => {
                assert!(t.is_closed() && t.is_void(), "{t:?}");
                assert_eq!(t.closed_at, Some(now));
                assert_eq!(
                    ev.kind,
                    EventKind::Voided {
                        reason: "duplikat PJ-2026-0001".into()
                    }
                );
                assert_eq!(ev.acting_for.is_some(), role == "sekretaris_dinas");
                // A void ticket takes no further step.
                let again = wf
                    .apply(&mut t, dispose(), &user_for("pranata_komputer"), now)
                    .expect_err("closed");
                assert_eq!(again.error, WorkflowError::Voided);
                assert_eq!(wf.due_at(&t), None);
            }
            (Err(rej), Some(msg)) => {
                assert_eq!(rej.error.to_string(), msg);
                assert!(!t.is_closed());
                assert!(matches!(rej.event.kind, EventKind::Refused { .. }));
            }
            (got, want) => panic!("{role}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn void_needs_a_reason_and_an_open_ticket() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 2, 0);
        let now = wib("2026-11-23 09:00");
        let err = wf
            .apply(
                &mut t,
                Action::Void { reason: " ".into() },
                &user_for("kabid_aptika"),
                now,
            )
            .expect_err("empty reason");
        assert_eq!(err.error, WorkflowError::Empty("the reason for voiding"));
        let (mut done, _) = walk(&wf, now, Duration::minutes(5));
        let err = wf
            .apply(
                &mut done,
                Action::Void {
                    reason: "salah".into(),
                },
                &user_for("kabid_aptika"),
                now,
            )
            .expect_err("closed");
        assert_eq!(err.error, WorkflowError::Closed);
        assert!(!done.is_void());
    }

    #[test]
    fn walks_all_ten_steps_to_selesai() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let (t, events) = walk(&wf, wib("2026-11-23 08:00"), Duration::minutes(10));
        assert!(t.is_closed());
        assert_eq!(
            t.position,
            Position {
                step: 10,
                handoff: 0
            }
        );
        let moves: Vec<(u32, u32, u32)> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Disposed {
                    to_step,
                    to_handoff,
                    ..
                } => Some((e.step, *to_step, *to_handoff)),
                _ => None,
            })
            .collect();
        assert_eq!(
            moves,
            [
                (1, 2, 0),
                (2, 3, 0),
                (3, 4, 0),
                (4, 5, 0),
                (5, 6, 0),
                (6, 7, 0),
                (7, 8, 0),
                (8, 8, 1),
                (8, 9, 0),
                (9, 10, 0)
            ]
        );
        assert!(matches!(
            events.last().map(|e| &e.kind),
            Some(EventKind::Disposed { closed: true, .. })
        ));
        assert!(events.iter().all(|e| match &e.kind {
            EventKind::Disposed {
                timing: Some(t), ..
            } => t.met,
            _ => true,
        }));
        assert!(wf.due_at(&t).is_none());
    }

    // (step, handoff, role trying) → every role but the step's own is refused.
    #[test_case(1, 0, "kepala_dinas", "step 1 belongs to pemohon; you are kepala_dinas" ; "kadis at step 1")]
    #[test_case(2, 0, "kabid_aptika", "step 2 belongs to kepala_dinas; you are kabid_aptika" ; "kabid at step 2")]
    #[test_case(3, 0, "helpdesk", "step 3 belongs to kabid_aptika; you are helpdesk" ; "helpdesk at step 3")]
    #[test_case(4, 0, "tim_teknis", "step 4 belongs to pranata_komputer; you are tim_teknis" ; "teknis at step 4")]
    #[test_case(5, 0, "pemohon", "step 5 belongs to helpdesk; you are pemohon" ; "pemohon at step 5")]
    #[test_case(6, 0, "helpdesk", "step 6 belongs to tim_teknis; you are helpdesk" ; "helpdesk at step 6")]
    #[test_case(7, 0, "sekretaris_dinas", "step 7 belongs to helpdesk; you are sekretaris_dinas" ; "sekdis at step 7")]
    #[test_case(8, 0, "kabid_aptika", "step 8 belongs to pranata_komputer; you are kabid_aptika" ; "kabid before prakom at step 8")]
    #[test_case(8, 1, "pranata_komputer", "step 8 belongs to kabid_aptika; you are pranata_komputer" ; "prakom twice at step 8")]
    #[test_case(9, 0, "admin", "step 9 belongs to kepala_dinas; you are admin" ; "admin is not an actor")]
    #[test_case(9, 0, "", "step 9 belongs to kepala_dinas; you have no role" ; "no role")]
    fn refuses_other_roles(step: u32, handoff: u32, role: &str, message: &str) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, step, handoff);
        let before = t.clone();
        let who = if role.is_empty() {
            Actor::new("x", &[])
        } else {
            user_for(role)
        };
        for action in [
            dispose(),
            Action::Return { reason: "x".into() },
            Action::UpdateStatus { status: "x".into() },
        ] {
            let r = wf
                .apply(&mut t, action, &who, wib("2026-11-23 09:00"))
                .expect_err("refused");
            assert_eq!(r.to_string(), message);
            assert_eq!(t, before, "a refusal changes nothing");
            assert_eq!(r.event.user, who.user);
            assert!(
                matches!(&r.event.kind, EventKind::Refused { reason, .. } if reason == message)
            );
        }
    }

    #[test_case(2 ; "step 2")]
    #[test_case(9 ; "step 9")]
    fn sekretaris_acts_for_kepala_dinas(step: u32) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, step, 0);
        let e = wf
            .apply(
                &mut t,
                dispose(),
                &user_for("sekretaris_dinas"),
                wib("2026-11-23 09:00"),
            )
            .expect("accepted");
        assert_eq!(e.role.as_deref(), Some("sekretaris_dinas"));
        assert_eq!(e.acting_for.as_deref(), Some("kepala_dinas"));
        assert_eq!(t.position.step, step + 1);
    }

    #[test]
    fn acting_does_not_chain_or_reverse() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        // The Kepala Dinas may not act for the Sekretaris, nor anyone for others.
        let mut t = at_step(&wf, 3, 0);
        let err = wf
            .apply(
                &mut t,
                dispose(),
                &user_for("kepala_dinas"),
                wib("2026-11-23 09:00"),
            )
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "step 3 belongs to kabid_aptika; you are kepala_dinas"
        );
    }

    #[test]
    fn a_user_with_several_roles_acts_directly() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 2, 0);
        let both = Actor::new("budi", &["sekretaris_dinas", "kepala_dinas"]);
        let e = wf
            .apply(&mut t, dispose(), &both, wib("2026-11-23 09:00"))
            .expect("ok");
        assert_eq!(e.role.as_deref(), Some("kepala_dinas"));
        assert_eq!(e.acting_for, None);
    }

    #[test_case(3, 0, 2, 0 ; "plain step")]
    #[test_case(8, 1, 8, 0 ; "second hand-off back to the first")]
    #[test_case(8, 0, 7, 0 ; "first hand-off back to step 7")]
    #[test_case(9, 0, 8, 1 ; "into a sequential step at its last hand-off")]
    fn return_moves_back_and_restarts_the_clock(
        step: u32,
        handoff: u32,
        to_step: u32,
        to_handoff: u32,
    ) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, step, handoff);
        let role = sop.step(step).expect("step").actors_at(handoff)[0].clone();
        let now = wib("2026-11-24 10:00");
        let e = wf
            .apply(
                &mut t,
                Action::Return {
                    reason: "lampiran kurang".into(),
                },
                &user_for(&role),
                now,
            )
            .expect("returned");
        assert_eq!(
            t.position,
            Position {
                step: to_step,
                handoff: to_handoff
            }
        );
        assert_eq!(t.entered_at, now, "the clock restarts");
        let standard = sop
            .step(to_step)
            .and_then(|s| s.time_standard)
            .expect("ts")
            .allowed();
        assert_eq!(wf.due_at(&t), Some(cal.deadline(now, standard, false)));
        assert!(
            matches!(e.kind, EventKind::Returned { ref reason, .. } if reason == "lampiran kurang")
        );
    }

    #[test]
    fn return_needs_a_reason_and_a_step_before() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 1, 0);
        let err = wf
            .apply(
                &mut t,
                Action::Return { reason: "x".into() },
                &user_for("pemohon"),
                wib("2026-11-23 09:00"),
            )
            .expect_err("first step");
        assert_eq!(err.error, WorkflowError::NothingToReturn { step: 1 });
        let mut t = at_step(&wf, 3, 0);
        let err = wf
            .apply(
                &mut t,
                Action::Return { reason: " ".into() },
                &user_for("kabid_aptika"),
                wib("2026-11-23 09:00"),
            )
            .expect_err("no reason");
        assert_eq!(err.to_string(), "the reason for a return must not be empty");
    }

    // Step 6: (before, after, waived, acknowledged) → error text or None.
    #[test_case(false, false, None, true, Some("(before and after missing)") ; "nothing")]
    #[test_case(true, false, None, true, Some("(after missing)") ; "no after")]
    #[test_case(false, true, None, true, Some("(before missing)") ; "no before")]
    #[test_case(false, false, Some(" "), true, Some("(before and after missing)") ; "blank reason")]
    #[test_case(false, false, Some("perangkat mati total"), true, None ; "waived with a reason")]
    #[test_case(true, true, None, true, None ; "both taken")]
    #[test_case(true, true, None, false, Some("acknowledgement") ; "not acknowledged")]
    fn step_6_preconditions(
        before: bool,
        after: bool,
        waived: Option<&str>,
        ack: bool,
        err: Option<&str>,
    ) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 6, 0);
        let now = wib("2026-11-23 10:00");
        if ack {
            wf.apply(
                &mut t,
                Action::Acknowledge {
                    by: "Andi, Kasubag".into(),
                },
                &user_for("pemohon"),
                now,
            )
            .expect("ack");
        }
        let action = Action::Dispose {
            to: None,
            note: None,
            measurements: Measurements {
                before,
                after,
                waived: waived.map(str::to_string),
            },
        };
        let r = wf.apply(&mut t, action, &user_for("tim_teknis"), now);
        match err {
            None => {
                let e = r.expect("accepted");
                assert_eq!(t.position.step, 7);
                assert!(matches!(
                    e.kind,
                    EventKind::Disposed {
                        measurements: Some(_),
                        ..
                    }
                ));
            }
            Some(words) => {
                let e = r.expect_err("refused");
                assert!(e.to_string().contains(words), "{e}");
                assert_eq!(t.position.step, 6);
            }
        }
    }

    #[test_case("pemohon", Some(false) ; "the OPD itself")]
    #[test_case("helpdesk", Some(true) ; "helpdesk on behalf")]
    #[test_case("tim_teknis", None ; "technician cannot")]
    #[test_case("kepala_dinas", None ; "kadis cannot")]
    fn acknowledgement(role: &str, on_behalf: Option<bool>) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 6, 0);
        let r = wf.apply(
            &mut t,
            Action::Acknowledge {
                by: "Andi, Kasubag Umum".into(),
            },
            &user_for(role),
            wib("2026-11-23 10:00"),
        );
        match on_behalf {
            Some(b) => {
                let e = r.expect("accepted");
                assert_eq!(
                    e.kind,
                    EventKind::Acknowledged {
                        by: "Andi, Kasubag Umum".into(),
                        on_behalf: b
                    }
                );
                assert_eq!(t.acknowledged.as_ref().map(|a| a.on_behalf), Some(b));
            }
            None => {
                let e = r.expect_err("refused");
                assert!(
                    e.to_string().starts_with(
                        "the work report is acknowledged by pemohon (or helpdesk on its behalf)"
                    ),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn acknowledgement_only_where_asked_and_reset_after_return() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 5, 0);
        let e = wf
            .apply(
                &mut t,
                Action::Acknowledge { by: "A, B".into() },
                &user_for("pemohon"),
                wib("2026-11-23 10:00"),
            )
            .expect_err("nothing to ack");
        assert_eq!(e.error, WorkflowError::NothingToAcknowledge { step: 5 });
        let mut t = at_step(&wf, 6, 0);
        wf.apply(
            &mut t,
            Action::Acknowledge { by: "A, B".into() },
            &user_for("pemohon"),
            wib("2026-11-23 10:00"),
        )
        .expect("ack");
        wf.apply(
            &mut t,
            measured(),
            &user_for("tim_teknis"),
            wib("2026-11-23 10:05"),
        )
        .expect("dispose");
        wf.apply(
            &mut t,
            Action::Return {
                reason: "laporan belum lengkap".into(),
            },
            &user_for("helpdesk"),
            wib("2026-11-23 10:10"),
        )
        .expect("return");
        assert_eq!(t.position.step, 6);
        assert!(
            t.acknowledged.is_none(),
            "a reworked report needs a new acknowledgement"
        );
    }

    #[test_case("pranata_komputer", None ; "to a pranata komputer")]
    #[test_case("tim_teknis", Some("teknisi cannot take step 4: it belongs to pranata_komputer and teknisi is tim_teknis") ; "to the wrong role")]
    fn dispose_to_a_named_user(role: &str, err: Option<&str>) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 3, 0);
        let to = user_for(role);
        let r = wf.apply(
            &mut t,
            Action::Dispose {
                to: Some(to.clone()),
                note: Some("mohon segera".into()),
                measurements: Measurements::default(),
            },
            &user_for("kabid_aptika"),
            wib("2026-11-23 10:00"),
        );
        match err {
            None => {
                let e = r.expect("ok");
                assert_eq!(t.assignee.as_deref(), Some(to.user.as_str()));
                assert!(
                    matches!(e.kind, EventKind::Disposed { to_user: Some(ref u), .. } if *u == to.user)
                );
            }
            Some(m) => assert_eq!(r.expect_err("refused").to_string(), m),
        }
    }

    #[test]
    fn closed_ticket_and_other_sop_are_refused() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let (mut t, _) = walk(&wf, wib("2026-11-23 08:00"), Duration::minutes(5));
        let e = wf
            .apply(
                &mut t,
                dispose(),
                &user_for("kepala_dinas"),
                wib("2026-11-24 08:00"),
            )
            .expect_err("closed");
        assert_eq!(e.error, WorkflowError::Closed);
        let other = crate::sop::file::parse(
            &format!("{}\n# edited\n", crate::sop::file::DEFAULT_SOP),
            std::path::Path::new("sop.toml"),
        )
        .expect("valid");
        let wf2 = Workflow::new(&other, &cal);
        let mut t = at_step(&wf, 1, 0);
        let e = wf2
            .apply(
                &mut t,
                dispose(),
                &user_for("pemohon"),
                wib("2026-11-23 09:00"),
            )
            .expect_err("mismatch");
        assert!(matches!(e.error, WorkflowError::SopMismatch { .. }));
    }

    /// The collector voids a ticket it opened only while no person has
    /// acted on it; people void by the SOP's `void_roles`.
    #[test_case(None, "siaga" => None; "the collector, untouched")]
    #[test_case(None, "pemohon" => Some("CannotVoid".to_string()); "a person without the role")]
    #[test_case(Some("kepala_dinas"), "siaga" => Some("NotUntouched".to_string()); "after the step 2 disposition")]
    #[test_case(Some("status"), "siaga" => Some("NotUntouched".to_string()); "after a status update")]
    fn the_collector_voids_only_a_detected_ticket_nobody_acted_on(
        before: Option<&str>,
        who: &str,
    ) -> Option<String> {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let now = wib("2026-11-23 08:05");
        let (mut t, _) = wf.open(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            "linkDown trap",
            now,
        );
        match before {
            Some("status") => t.status = Some("dicek".into()),
            Some(role) => {
                wf.apply(&mut t, dispose(), &user_for(role), now)
                    .unwrap_or_else(|r| panic!("{r}"));
            }
            None => {}
        }
        let actor = if who == "siaga" {
            Actor::system()
        } else {
            user_for(who)
        };
        let void = Action::Void {
            reason: "trap linkDown tidak terkonfirmasi oleh polling".into(),
        };
        match wf.apply(&mut t, void, &actor, now) {
            Ok(e) => {
                assert!(t.is_closed() && t.is_void());
                assert_eq!((e.user.as_str(), e.role.as_deref()), (SYSTEM_USER, None));
                let again = wf.apply(&mut t, dispose(), &user_for("kepala_dinas"), now);
                assert_eq!(again.map_err(|r| r.error), Err(WorkflowError::Voided));
                None
            }
            Err(r) => {
                assert!(!t.is_closed());
                let name = format!("{:?}", r.error);
                Some(
                    name.split([' ', '{'])
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                )
            }
        }
    }

    #[test]
    fn letter_and_detected_tickets_run_the_same_chain() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let letter = Origin::Letter {
            number: "005/123/DINKES/2026".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
            subject: "Jaringan internet lambat".into(),
        };
        let (a, ea) = wf.start(
            letter,
            "dinkes",
            false,
            &user_for("helpdesk"),
            wib("2026-11-23 08:00"),
        );
        let (b, eb) = wf.start(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        );
        assert_eq!(a.position, b.position);
        assert_eq!(wf.turn(&a).expect("turn"), wf.turn(&b).expect("turn"));
        assert_eq!(ea.user, "hd");
        assert_eq!(eb.user, SYSTEM_USER);
    }

    // Timing on the disposition: met or exceeded, on working time.
    #[test_case("2026-11-27 15:30", "2026-11-30 08:00", true ; "one working hour over the weekend is met")]
    #[test_case("2026-11-27 15:30", "2026-11-30 08:01", false ; "a minute late")]
    #[test_case("2026-11-24 15:30", "2026-11-26 08:00", true ; "over the holiday is met")]
    fn timing_against_standard(entered: &str, done: &str, met: bool) {
        let cfg: crate::sop::CalendarConfig =
            toml::from_str(r#"holidays = ["2026-11-25"]"#).expect("cfg");
        let cal = Calendar::new(&cfg).expect("cal");
        let sop = default_sop();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step(&wf, 3, 0);
        t.entered_at = wib(entered);
        let e = wf
            .apply(&mut t, dispose(), &user_for("kabid_aptika"), wib(done))
            .expect("ok");
        match e.kind {
            EventKind::Disposed {
                timing: Some(tm), ..
            } => {
                assert_eq!(tm.met, met);
                assert_eq!(tm.allowed_secs, 3600);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urgent_counts_calendar_time() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let (t, _) = wf.start(
            Origin::Detected,
            "dinkes",
            true,
            &Actor::system(),
            wib("2026-11-27 15:00"),
        );
        assert_eq!(wf.due_at(&t), Some(wib("2026-11-28 15:00")));
        let (t, _) = wf.start(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            wib("2026-11-27 15:00"),
        );
        assert_eq!(wf.due_at(&t), Some(wib("2026-11-30 15:00")));
        assert_eq!(
            wf.time_left(&t, wib("2026-11-30 14:30")),
            Some(Duration::minutes(30))
        );
        assert_eq!(
            wf.time_left(&t, wib("2026-11-30 15:30")),
            Some(Duration::minutes(-30))
        );
    }
}
