//! What the CLI shows, read from the services' messages: tickets, SOP
//! events and audit records, measurements. Only what the tables and
//! sentences need; the collector's own domain types stay in the collector.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use siaga_proto::time::time;
use siaga_proto::v1;

/// A ticket's SOP view: whose turn it is and until when.
#[derive(Debug, Clone, PartialEq)]
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
    pub void_reason: Option<String>,
    /// Urgent (calendar time).
    pub urgent: bool,
    /// SOP version, e.g. "pemeliharaan-jaringan-tik v1 (abcdef012345)".
    pub sop: String,
}

/// The answer to an action.
#[derive(Debug, Clone)]
pub struct ActionReply {
    /// The ticket after the action.
    pub ticket: TicketView,
    /// The event recorded (for a letter filed before, the opening event).
    pub event: Event,
    /// `ticket.new` for a letter already filed: the ticket is the one
    /// opened for it then, nothing new was opened.
    pub already_filed: bool,
}

/// One line of `siaga inbox`.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxItem {
    /// The ticket.
    pub ticket: TicketView,
    /// Named to the caller.
    pub assigned_to_me: bool,
    /// The role the caller would act for (Sekretaris for the Kepala Dinas).
    pub acting_for: Option<String>,
}

/// One record of a ticket's trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// 0-based position in the ticket's trail.
    pub index: u64,
    /// The ticket.
    pub ticket: String,
    /// What happened.
    pub event: Event,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
}

/// What happened, as recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenDocument {
    /// `html` or `pdf`.
    pub format: String,
    /// Its language.
    pub lang: Lang,
    /// Hex sha256 of the stored bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// One event on a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Where a ticket came from.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Measurements attached for a step that requires them: taken before and after
/// the work, or a reason why none could be taken. The caller checks what exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measurements {
    /// A measurement before the work is attached.
    pub before: bool,
    /// A measurement after the work is attached.
    pub after: bool,
    /// Why there are none (instead of measurements).
    pub waived: Option<String>,
}

/// Time taken at a step against its standard.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Language of the documents that leave the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Bahasa Indonesia (the default).
    #[default]
    Id,
    /// English.
    En,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "id" | "ind" | "indonesia" => Ok(Lang::Id),
            "en" | "eng" | "english" => Ok(Lang::En),
            other => Err(format!("unknown language `{other}` (id or en)")),
        }
    }
}

/// Which SOP a ticket runs on: the id and version from the file plus the sha256
/// of its bytes, so an edited file without a version bump is still told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SopVersion {
    /// `id` from the file.
    pub id: String,
    /// `version` from the file.
    pub version: u32,
    /// Hex sha256 of the file's bytes.
    pub hash: String,
}

impl fmt::Display for SopVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.hash.get(..12).unwrap_or(&self.hash);
        write!(f, "{} v{} ({short})", self.id, self.version)
    }
}

/// Before or after the technician's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taken before the work started.
    Before,
    /// Taken after the work was finished.
    After,
}

impl Phase {
    /// `before` / `after`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "before" | "sebelum" => Ok(Phase::Before),
            "after" | "sesudah" => Ok(Phase::After),
            other => Err(format!("phase must be before or after, not {other:?}")),
        }
    }
}

/// Where a measurement is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum MeasureState {
    /// Waiting for the OPD's agent to reconnect; dropped after `expires_at`.
    Queued {
        /// When the queued request lapses.
        expires_at: DateTime<Utc>,
    },
    /// Sent to the agent, result not yet back.
    Running {
        /// When it was sent down the stream.
        sent_at: DateTime<Utc>,
    },
    /// The agent sent the figures.
    Done,
    /// The agent could not take it, or the stream broke.
    Failed {
        /// Why, in a sentence.
        error: String,
    },
    /// Queued and never run before it lapsed.
    Expired,
}

impl MeasureState {
    /// Finished one way or the other.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            MeasureState::Done | MeasureState::Failed { .. } | MeasureState::Expired
        )
    }
}

/// ICMP figures of one device, from an extended burst. Times in µs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceFigures {
    /// Device id.
    pub device: String,
    /// Echo requests sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// Loss in percent.
    pub loss_pct: f64,
    /// Smallest round trip.
    pub rtt_min_us: Option<u64>,
    /// Mean round trip.
    pub rtt_avg_us: Option<u64>,
    /// Median round trip.
    pub rtt_median_us: Option<u64>,
    /// 95th percentile round trip.
    pub rtt_p95_us: Option<u64>,
    /// Largest round trip.
    pub rtt_max_us: Option<u64>,
    /// Mean absolute difference of consecutive round trips.
    pub jitter_us: Option<u64>,
    /// Every round trip received, in order (for the report's distribution).
    pub rtts_us: Vec<u64>,
    /// The burst could not be run.
    pub error: Option<String>,
    /// The device's own CPU busy, percent (its SNMP poll).
    pub cpu_pct: Option<f64>,
    /// Its memory used, percent.
    pub mem_pct: Option<f64>,
    /// Its temperature, °C.
    pub temp_c: Option<f64>,
}

/// SNMP figures of one inventory link over the measurement window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkFigures {
    /// Inventory link name.
    pub name: String,
    /// Device carrying the interface.
    pub device: String,
    /// Interface name as the device reports it.
    pub interface: String,
    /// `up`, `down`, `testing`, … (IF-MIB ifOperStatus).
    pub oper_status: String,
    /// `up`, `down`, `testing` (IF-MIB ifAdminStatus).
    pub admin_status: String,
    /// Link speed in Mbit/s.
    pub speed_mbps: Option<f64>,
    /// Received bits per second over the window.
    pub in_bps: Option<f64>,
    /// Sent bits per second over the window.
    pub out_bps: Option<f64>,
    /// Inbound utilisation of the link speed, %.
    pub util_in_pct: Option<f64>,
    /// Outbound utilisation of the link speed, %.
    pub util_out_pct: Option<f64>,
    /// In + out errors per second.
    pub errors_per_s: Option<f64>,
    /// In + out discards per second.
    pub discards_per_s: Option<f64>,
    /// The device could not be polled (timeout, credentials, garbage).
    pub error: Option<String>,
}

/// One measurement: the request and, once back, its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Unique id (`M-000042`).
    pub id: String,
    /// Ticket it belongs to, if taken for one.
    pub ticket: Option<String>,
    /// Before or after the work (only on a ticket).
    pub phase: Option<Phase>,
    /// OPD whose agent takes it.
    pub opd: String,
    /// Devices to burst-ping.
    pub devices: Vec<String>,
    /// Inventory link names to watch.
    pub links: Vec<String>,
    /// Echo requests per device.
    pub icmp_count: u32,
    /// SNMP window, milliseconds.
    pub window_ms: u64,
    /// User who asked.
    pub requested_by: String,
    /// When they asked.
    pub requested_at: DateTime<Utc>,
    /// When the figures came back.
    pub completed_at: Option<DateTime<Utc>>,
    /// Agent that took it.
    pub agent: Option<String>,
    /// Where it is.
    pub state: MeasureState,
    /// ICMP figures per device.
    pub device_figures: Vec<DeviceFigures>,
    /// SNMP figures per link.
    pub link_figures: Vec<LinkFigures>,
}

/// An interface status in the words a measurement's tables have always
/// used (IF-MIB's own, `notPresent`); empty when not read.
fn if_status_word(s: v1::interface_status::Status) -> &'static str {
    use v1::interface_status::Status;
    match s {
        Status::Unspecified => "",
        Status::NotPresent => "notPresent",
        Status::LowerLayerDown => "lowerLayerDown",
        s => s.word(),
    }
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The SOP view of a ticket message (what the CLI's words are made from).
pub fn view(t: &v1::Ticket) -> TicketView {
    TicketView {
        id: t.id.clone(),
        opd: t.opd.clone(),
        origin: crate::ticket::set_word(t.origin().is_set(), t.origin().word()).to_string(),
        letter_number: some(&t.letter_number),
        problem: t.problem.clone(),
        device: some(&t.device),
        link: some(&t.link),
        step: t.step,
        handoff: t.handoff,
        role: t.role.clone(),
        assignee: some(&t.assignee),
        due_at: t.due_at.as_ref().map(time),
        due_local: some(&t.due_local),
        overdue: t.overdue,
        time_left_secs: t.time_left_secs,
        status: some(&t.status),
        acknowledged_by: some(&t.acknowledged_by),
        opened_at: t.opened_at.as_ref().map(time).unwrap_or_default(),
        closed_at: t.closed_at.as_ref().map(time),
        void_reason: some(&t.void_reason),
        urgent: t.urgent,
        sop: t.sop.clone(),
    }
}

fn timing_back(t: &v1::StepTiming) -> Timing {
    Timing {
        standard: t.standard.clone(),
        started_at: t.started_at.as_ref().map(time).unwrap_or_default(),
        due_at: t.due_at.as_ref().map(time).unwrap_or_default(),
        taken_secs: t.taken_secs,
        allowed_secs: t.allowed_secs,
        met: t.met,
    }
}

/// The SOP event of a message; `None` when it has no detail this CLI knows.
pub fn event_back(e: &v1::AuditEvent) -> Option<Event> {
    use v1::audit_event::Detail;
    let kind = match e.detail.as_ref()? {
        Detail::Opened(o) => EventKind::Opened {
            origin: if o.origin() == v1::ticket::Origin::Letter {
                Origin::Letter {
                    number: o.letter_number.clone(),
                    date: o.letter_date.parse::<NaiveDate>().ok()?,
                    subject: o.letter_subject.clone(),
                }
            } else {
                Origin::Detected
            },
            opd: o.opd.clone(),
            sop: SopVersion {
                id: o.sop_id.clone(),
                version: o.sop_version,
                hash: o.sop_hash.clone(),
            },
            urgent: o.urgent,
        },
        Detail::Disposed(d) => EventKind::Disposed {
            to_step: d.to_step,
            to_handoff: d.to_handoff,
            to_roles: d.to_roles.clone(),
            to_user: d.to_user.clone(),
            note: d.note.clone(),
            timing: d.timing.as_ref().map(timing_back),
            measurements: d.measurements.as_ref().map(|m| Measurements {
                before: m.before,
                after: m.after,
                waived: m.waived.clone(),
            }),
            closed: d.closed,
        },
        Detail::Returned(r) => EventKind::Returned {
            to_step: r.to_step,
            to_handoff: r.to_handoff,
            to_roles: r.to_roles.clone(),
            reason: r.reason.clone(),
            timing: r.timing.as_ref().map(timing_back),
        },
        Detail::StatusUpdated(s) => EventKind::StatusUpdated {
            status: s.status.clone(),
        },
        Detail::Acknowledged(a) => EventKind::Acknowledged {
            by: a.by.clone(),
            on_behalf: a.on_behalf,
        },
        Detail::Refused(r) => EventKind::Refused {
            action: r.action.clone(),
            reason: r.reason.clone(),
        },
        Detail::Escalated(x) => EventKind::Escalated {
            level: u8::try_from(x.level).unwrap_or(u8::MAX),
            due_at: x.due_at.as_ref().map(time).unwrap_or_default(),
            notify_roles: x.notify_roles.clone(),
            notify_users: x.notify_users.clone(),
        },
        Detail::Voided(v) => EventKind::Voided {
            reason: v.reason.clone(),
        },
        Detail::ReportFrozen(r) => EventKind::ReportFrozen {
            review_index: r.review_index,
            documents: r
                .documents
                .iter()
                .map(|d| FrozenDocument {
                    format: d.format.clone(),
                    lang: d.lang.parse().unwrap_or_default(),
                    sha256: d.sha256.clone(),
                    bytes: d.bytes,
                })
                .collect(),
        },
    };
    Some(Event {
        at: e.at.as_ref().map(time).unwrap_or_default(),
        user: e.user.clone(),
        role: some(&e.role),
        acting_for: some(&e.acting_for),
        step: e.step,
        handoff: e.handoff,
        kind,
    })
}

/// The audit record of a message; `None` when its event is not one this
/// CLI knows.
pub fn record_back(r: &v1::AuditRecord) -> Option<AuditRecord> {
    Some(AuditRecord {
        index: r.index,
        ticket: r.ticket.clone(),
        event: event_back(r.event.as_ref()?)?,
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    })
}

/// A measurement the service gave, as the CLI's row (for its
/// tables); `Err` names what does not read.
pub fn measurement_back(m: &v1::Measurement) -> Result<Measurement, String> {
    let at = |t: &Option<pbjson_types::Timestamp>, what: &str| {
        t.as_ref()
            .map(time)
            .ok_or_else(|| format!("measurement {}: no {what}", m.id))
    };
    use v1::measurement::State;
    let state = match m.state() {
        State::Queued => MeasureState::Queued {
            expires_at: at(&m.expires_at, "expires_at")?,
        },
        State::Running => MeasureState::Running {
            sent_at: m.sent_at.as_ref().map(time).unwrap_or_default(),
        },
        State::Done => MeasureState::Done,
        State::Failed => MeasureState::Failed {
            error: m.error.clone(),
        },
        State::Expired => MeasureState::Expired,
        State::Unspecified => {
            return Err(format!("measurement {}: unknown state {}", m.id, m.state));
        }
    };
    // Unspecified (or a phase only a newer collector knows): none.
    let phase = match m.phase() {
        v1::measurement::Phase::Before => Some(Phase::Before),
        v1::measurement::Phase::After => Some(Phase::After),
        v1::measurement::Phase::Unspecified => None,
    };
    Ok(Measurement {
        id: m.id.clone(),
        ticket: some(&m.ticket),
        phase,
        opd: m.opd.clone(),
        devices: m.devices.clone(),
        links: m.links.clone(),
        icmp_count: m.icmp_count,
        window_ms: m.window_ms,
        requested_by: m.requested_by.clone(),
        requested_at: at(&m.requested_at, "requested_at")?,
        completed_at: m.completed_at.as_ref().map(time),
        agent: some(&m.agent),
        state,
        device_figures: m
            .device_figures
            .iter()
            .map(|d| DeviceFigures {
                device: d.device.clone(),
                sent: d.sent,
                received: d.received,
                loss_pct: d.loss_pct,
                rtt_min_us: d.rtt_min_us,
                rtt_avg_us: d.rtt_avg_us,
                rtt_median_us: d.rtt_median_us,
                rtt_p95_us: d.rtt_p95_us,
                rtt_max_us: d.rtt_max_us,
                jitter_us: d.jitter_us,
                rtts_us: d.rtts_us.clone(),
                error: some(&d.error),
                cpu_pct: d.cpu_pct,
                mem_pct: d.mem_pct,
                temp_c: d.temp_c,
            })
            .collect(),
        link_figures: m
            .link_figures
            .iter()
            .map(|l| LinkFigures {
                name: l.name.clone(),
                device: l.device.clone(),
                interface: l.interface.clone(),
                oper_status: if_status_word(l.oper_status()).into(),
                admin_status: if_status_word(l.admin_status()).into(),
                speed_mbps: l.speed_mbps,
                in_bps: l.in_bps,
                out_bps: l.out_bps,
                util_in_pct: l.util_in_pct,
                util_out_pct: l.util_out_pct,
                errors_per_s: l.errors_per_s,
                discards_per_s: l.discards_per_s,
                error: some(&l.error),
            })
            .collect(),
    })
}
