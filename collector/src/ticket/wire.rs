//! Tickets on the wire: the domain's tickets, readings, notes and audit
//! records as the `Tickets` service's messages (tickets.proto).

use pbjson_types::Timestamp;
use serde_json::Value;
use siaga_proto::v1;

use super::store::{TicketHealth, TicketNote};
use crate::health::{MaintenanceWindow, Reading, Reason, Schedule, Scope};
use crate::sop::api::TicketView;
use crate::sop::audit::AuditRecord;
use crate::sop::model::Lang;
use crate::sop::workflow::{Event, EventKind, Origin, Timing};

pub use siaga_proto::time::{time, ts, ts_us};

/// The serde name of a unit enum value (`snake_case` in the domain).
fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A ticket from its SOP view and health record.
pub fn ticket(v: &TicketView, h: Option<&TicketHealth>) -> v1::Ticket {
    let closed = v.closed_at.is_some();
    v1::Ticket {
        id: v.id.clone(),
        opd: v.opd.clone(),
        device: v.device.clone().unwrap_or_default(),
        link: v.link.clone().unwrap_or_default(),
        problem: v.problem.clone(),
        origin: v
            .origin
            .parse::<v1::ticket::Origin>()
            .unwrap_or_default()
            .into(),
        letter_number: v.letter_number.clone().unwrap_or_default(),
        step: v.step,
        handoff: v.handoff,
        role: v.role.clone(),
        assignee: v.assignee.clone().unwrap_or_default(),
        due_at: v.due_at.filter(|_| !closed).map(ts),
        due_local: v.due_local.clone().filter(|_| !closed).unwrap_or_default(),
        overdue: !closed && v.overdue,
        time_left_secs: v.time_left_secs.filter(|_| !closed),
        status: v.status.clone().unwrap_or_default(),
        acknowledged_by: v.acknowledged_by.clone().unwrap_or_default(),
        opened_at: Some(ts(v.opened_at)),
        closed_at: v.closed_at.map(ts),
        closed,
        void_reason: v.void_reason.clone().unwrap_or_default(),
        urgent: v.urgent,
        sop: v.sop.clone(),
        recovered_at: h.and_then(|h| h.recovered_at).map(ts),
        occurrences: h.map_or(0, |h| h.occurrences),
        affected: h
            .map(|h| h.affected.iter().cloned().collect())
            .unwrap_or_default(),
        flapping: h.is_some_and(|h| h.flapping),
        incident: h.and_then(|h| h.incident.clone()).unwrap_or_default(),
    }
}

/// Why a detected ticket opened.
pub fn reason(r: &Reason) -> v1::TicketReason {
    let facts = serde_json::to_value(r).unwrap_or_default();
    let field = |k: &str| facts[k].as_str().unwrap_or_default().to_string();
    v1::TicketReason {
        reason: field("reason"),
        device: field("device"),
        link: field("link"),
        text: r.text_utc(Lang::En),
        text_id: r.text_utc(Lang::Id),
        diagnostic: r.diagnostic().unwrap_or_default().to_string(),
    }
}

fn f64_of(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn u32_of(v: &Value) -> u32 {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// An SNMP poll's status as the health engine keeps it: the uplink's
/// number, or (kept by older collectors) its word.
fn snmp_status(v: &Value) -> v1::snmp_poll_status::Status {
    match v.as_i64() {
        Some(n) => i32::try_from(n).map_or(Default::default(), |n| {
            v1::snmp_poll_status::Status::from_uplink(n)
        }),
        None => v.as_str().and_then(|w| w.parse().ok()).unwrap_or_default(),
    }
}

/// A finding's level on the wire.
fn level(l: crate::health::Level) -> v1::finding::Level {
    use crate::health::Level;
    match l {
        Level::Up => v1::finding::Level::Up,
        Level::Degraded => v1::finding::Level::Degraded,
        Level::Down => v1::finding::Level::Down,
    }
}

/// The sample of a reading, from the JSON the health engine keeps of it.
fn sample(v: &Value) -> v1::EvidenceSample {
    let us_ms = |v: &Value| v.as_f64().map(|us| us / 1000.0);
    v1::EvidenceSample {
        ts: v["ts_us"].as_i64().map(ts_us),
        seq: v["seq"].as_u64().unwrap_or(0),
        device: str_of(&v["device"]),
        icmp: v
            .get("icmp")
            .filter(|i| i.is_object())
            .map(|i| v1::EvidenceIcmp {
                sent: u32_of(&i["sent"]),
                received: u32_of(&i["received"]),
                loss_pct: i["loss_pct"].as_f64().unwrap_or(0.0),
                rtt_avg_ms: us_ms(&i["rtt_avg_us"]),
                jitter_ms: us_ms(&i["jitter_us"]),
            }),
        snmp: v
            .get("snmp")
            .filter(|s| s.is_object())
            .map(|s| v1::EvidenceSnmp {
                status: snmp_status(&s["status"]).into(),
                error: str_of(&s["error"]),
                cpu_pct: f64_of(&s["health"]["cpu_pct"]),
                mem_pct: f64_of(&s["health"]["mem_pct"]),
                temp_c: f64_of(&s["health"]["temp_c"]),
                temp_threshold_c: f64_of(&s["health"]["temp_threshold_c"]),
            }),
        event: v
            .get("event")
            .filter(|e| e.is_object())
            .map(|e| v1::EvidenceEvent {
                kind: str_of(&e["kind"]),
                link: str_of(&e["link"]),
                if_index: u32_of(&e["if_index"]),
                detail: str_of(&e["detail"]),
                source: str_of(&e["source"]),
            }),
        interface: v
            .get("interface")
            .filter(|i| i.is_object())
            .map(|i| v1::EvidenceInterface {
                if_index: u32_of(&i["if_index"]),
                if_name: str_of(&i["if_name"]),
                link: str_of(&i["link"]),
                admin_status: v1::interface_status::Status::from_if_mib_admin(u32_of(
                    &i["admin_status"],
                ))
                .into(),
                oper_status: v1::interface_status::Status::from_if_mib(u32_of(&i["oper_status"]))
                    .into(),
                util_in_pct: f64_of(&i["util_in_pct"]),
                util_out_pct: f64_of(&i["util_out_pct"]),
                errors_per_s: f64_of(&i["errors_per_s"]),
            }),
    }
}

/// One reading of the evidence.
pub fn reading(r: &Reading) -> v1::EvidenceReading {
    v1::EvidenceReading {
        at: Some(ts_us(r.at)),
        findings: r
            .findings
            .iter()
            .map(|f| v1::Finding {
                problem: name(&f.problem),
                level: level(f.level).into(),
                value: f.value,
                threshold: f.threshold,
                detail: f.detail.clone(),
            })
            .collect(),
        immediate: r.immediate,
        sample: Some(sample(&r.sample.to_json())),
    }
}

/// One line of the health log.
pub fn note(n: &TicketNote) -> v1::TicketNote {
    v1::TicketNote {
        at: Some(ts(n.at)),
        // A kind this build does not know (written by a newer collector)
        // is unspecified.
        kind: n
            .kind
            .parse::<v1::ticket_note::Kind>()
            .unwrap_or_default()
            .into(),
        text: n.text.clone(),
    }
}

fn timing(t: &Timing) -> v1::StepTiming {
    v1::StepTiming {
        standard: t.standard.clone(),
        started_at: Some(ts(t.started_at)),
        due_at: Some(ts(t.due_at)),
        taken_secs: t.taken_secs,
        allowed_secs: t.allowed_secs,
        met: t.met,
    }
}

/// An event's kind as the wire names it (the word is its `type` in the
/// stored JSON).
pub fn wire_kind(k: &EventKind) -> v1::audit_event_kind::Kind {
    use v1::audit_event_kind::Kind;
    match k {
        EventKind::Opened { .. } => Kind::Opened,
        EventKind::Disposed { .. } => Kind::Disposed,
        EventKind::Returned { .. } => Kind::Returned,
        EventKind::StatusUpdated { .. } => Kind::StatusUpdated,
        EventKind::Acknowledged { .. } => Kind::Acknowledged,
        EventKind::Refused { .. } => Kind::Refused,
        EventKind::Escalated { .. } => Kind::Escalated,
        EventKind::Voided { .. } => Kind::Voided,
        EventKind::ReportFrozen { .. } => Kind::ReportFrozen,
    }
}

/// An SOP event.
pub fn event(e: &Event) -> v1::AuditEvent {
    use v1::audit_event::Detail;
    let detail = match &e.kind {
        EventKind::Opened {
            origin,
            opd,
            sop,
            urgent,
        } => {
            let (o, number, date, subject) = match origin {
                Origin::Detected => (v1::ticket::Origin::Detected, "", String::new(), ""),
                Origin::Letter {
                    number,
                    date,
                    subject,
                } => (
                    v1::ticket::Origin::Letter,
                    number.as_str(),
                    date.to_string(),
                    subject.as_str(),
                ),
            };
            Detail::Opened(v1::AuditOpened {
                origin: o.into(),
                letter_number: number.into(),
                letter_date: date,
                letter_subject: subject.into(),
                opd: opd.clone(),
                sop_id: sop.id.clone(),
                sop_version: sop.version,
                sop_hash: sop.hash.clone(),
                urgent: *urgent,
            })
        }
        EventKind::Disposed {
            to_step,
            to_handoff,
            to_roles,
            to_user,
            note,
            timing: t,
            measurements,
            closed,
        } => Detail::Disposed(v1::AuditDisposed {
            to_step: *to_step,
            to_handoff: *to_handoff,
            to_roles: to_roles.clone(),
            to_user: to_user.clone(),
            note: note.clone(),
            timing: t.as_ref().map(timing),
            measurements: measurements.as_ref().map(|m| v1::StepMeasurements {
                before: m.before,
                after: m.after,
                waived: m.waived.clone(),
            }),
            closed: *closed,
        }),
        EventKind::Returned {
            to_step,
            to_handoff,
            to_roles,
            reason,
            timing: t,
        } => Detail::Returned(v1::AuditReturned {
            to_step: *to_step,
            to_handoff: *to_handoff,
            to_roles: to_roles.clone(),
            reason: reason.clone(),
            timing: t.as_ref().map(timing),
        }),
        EventKind::StatusUpdated { status } => Detail::StatusUpdated(v1::AuditStatusUpdated {
            status: status.clone(),
        }),
        EventKind::Acknowledged { by, on_behalf } => Detail::Acknowledged(v1::AuditAcknowledged {
            by: by.clone(),
            on_behalf: *on_behalf,
        }),
        EventKind::Refused { action, reason } => Detail::Refused(v1::AuditRefused {
            action: action.clone(),
            reason: reason.clone(),
        }),
        EventKind::Escalated {
            level,
            due_at,
            notify_roles,
            notify_users,
        } => Detail::Escalated(v1::AuditEscalated {
            level: u32::from(*level),
            due_at: Some(ts(*due_at)),
            notify_roles: notify_roles.clone(),
            notify_users: notify_users.clone(),
        }),
        EventKind::Voided { reason } => Detail::Voided(v1::AuditVoided {
            reason: reason.clone(),
        }),
        EventKind::ReportFrozen {
            review_index,
            documents,
        } => Detail::ReportFrozen(v1::AuditReportFrozen {
            review_index: *review_index,
            documents: documents
                .iter()
                .map(|d| v1::FrozenDocument {
                    format: d.format.clone(),
                    lang: name(&d.lang),
                    sha256: d.sha256.clone(),
                    bytes: d.bytes,
                })
                .collect(),
        }),
    };
    v1::AuditEvent {
        at: Some(ts(e.at)),
        user: e.user.clone(),
        role: e.role.clone().unwrap_or_default(),
        acting_for: e.acting_for.clone().unwrap_or_default(),
        step: e.step,
        handoff: e.handoff,
        kind: wire_kind(&e.kind).into(),
        detail: Some(detail),
    }
}

/// One record of the audit trail.
pub fn record(r: &AuditRecord) -> v1::AuditRecord {
    v1::AuditRecord {
        index: r.index,
        ticket: r.ticket.clone(),
        event: Some(event(&r.event)),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

/// A maintenance window.
pub fn window(w: &MaintenanceWindow) -> v1::MaintenanceWindow {
    let scope = match &w.scope {
        Scope::Opd { opd } => v1::MaintenanceScope {
            kind: v1::maintenance_scope_kind::Kind::Opd.into(),
            opd: opd.clone(),
            ..Default::default()
        },
        Scope::Device { device } => v1::MaintenanceScope {
            kind: v1::maintenance_scope_kind::Kind::Device.into(),
            device: device.clone(),
            ..Default::default()
        },
        Scope::Link { device, link } => v1::MaintenanceScope {
            kind: v1::maintenance_scope_kind::Kind::Link.into(),
            device: device.clone(),
            link: link.clone(),
            ..Default::default()
        },
    };
    let schedule = match &w.schedule {
        Schedule::Once { start_us, end_us } => v1::MaintenanceSchedule {
            kind: v1::maintenance_schedule::Kind::Once.into(),
            start: Some(ts_us(*start_us)),
            end: Some(ts_us(*end_us)),
            ..Default::default()
        },
        Schedule::Weekly {
            days,
            start,
            duration_s,
            utc_offset_minutes,
        } => v1::MaintenanceSchedule {
            kind: v1::maintenance_schedule::Kind::Weekly.into(),
            days: days.clone(),
            start_time: start.clone(),
            duration_s: *duration_s,
            utc_offset_minutes: *utc_offset_minutes,
            ..Default::default()
        },
    };
    v1::MaintenanceWindow {
        id: w.id,
        scope: Some(scope),
        schedule: Some(schedule),
        reason: w.reason.clone(),
        created_by: w.created_by.clone(),
    }
}

fn us_of(t: &Option<Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos) / 1_000)
    })
}

/// What a window's scope message says, or (field, what is wrong).
pub fn scope_back(s: &v1::MaintenanceScope) -> Result<Scope, (&'static str, String)> {
    let need = |field: &'static str, v: &str| {
        if v.trim().is_empty() {
            Err((
                field,
                format!("is required for a scope of kind {}", s.kind()),
            ))
        } else {
            Ok(v.trim().to_string())
        }
    };
    match s.kind() {
        v1::maintenance_scope_kind::Kind::Opd => Ok(Scope::Opd {
            opd: need("scope.opd", &s.opd)?,
        }),
        v1::maintenance_scope_kind::Kind::Device => Ok(Scope::Device {
            device: need("scope.device", &s.device)?,
        }),
        v1::maintenance_scope_kind::Kind::Link => Ok(Scope::Link {
            device: need("scope.device", &s.device)?,
            link: need("scope.link", &s.link)?,
        }),
        v1::maintenance_scope_kind::Kind::Unspecified => Err((
            "scope.kind",
            format!("{}: give opd, device or link", s.kind),
        )),
    }
}

/// What a window's schedule message says, or (field, what is wrong).
pub fn schedule_back(s: &v1::MaintenanceSchedule) -> Result<Schedule, (&'static str, String)> {
    match s.kind() {
        v1::maintenance_schedule::Kind::Once => Ok(Schedule::Once {
            start_us: us_of(&s.start).ok_or(("schedule.start", "is required".to_string()))?,
            end_us: us_of(&s.end).ok_or(("schedule.end", "is required".to_string()))?,
        }),
        v1::maintenance_schedule::Kind::Weekly => Ok(Schedule::Weekly {
            days: s.days.clone(),
            start: s.start_time.clone(),
            duration_s: s.duration_s,
            utc_offset_minutes: s.utc_offset_minutes,
        }),
        v1::maintenance_schedule::Kind::Unspecified => {
            Err(("schedule.kind", format!("{}: give once or weekly", s.kind)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_snmp_status_reads_from_the_number_or_the_word_kept() {
        use v1::snmp_poll_status::Status;
        assert_eq!(
            snmp_status(&json!(v1::SnmpStatus::Timeout as i32)),
            Status::Timeout
        );
        assert_eq!(snmp_status(&json!("auth_failure")), Status::AuthFailure);
        assert_eq!(snmp_status(&json!(99)), Status::Unspecified);
        assert_eq!(snmp_status(&json!("garbled")), Status::Unspecified);
        assert_eq!(snmp_status(&Value::Null), Status::Unspecified);
    }

    #[test]
    fn a_note_kind_is_its_word_and_one_this_build_does_not_know_is_unspecified() {
        use v1::ticket_note::Kind;
        let n = |kind: &str| {
            note(&TicketNote {
                at: "2026-11-24T03:00:00Z".parse().unwrap(),
                kind: kind.into(),
                text: "pulih".into(),
                note: None,
            })
        };
        for k in Kind::ALL {
            assert_eq!(n(k.word()).kind(), *k);
        }
        let v = serde_json::to_value(n("not_confirmed")).unwrap();
        assert_eq!(v["kind"], "not_confirmed");
        let newer = n("rebooted");
        assert_eq!(newer.kind(), Kind::Unspecified);
        assert_eq!(newer.text, "pulih");
    }

    #[test]
    fn an_evidence_interface_names_its_statuses() {
        use v1::interface_status::Status;
        let s = sample(&json!({
            "ts_us": 1, "seq": 2, "device": "sw1",
            "interface": {"if_index": 3, "if_name": "port3", "admin_status": 1, "oper_status": 7},
        }));
        let i = s.interface.unwrap();
        assert_eq!(
            (i.admin_status(), i.oper_status()),
            (Status::Up, Status::LowerLayerDown)
        );
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(
            (&v["admin_status"], &v["oper_status"]),
            (&"up".into(), &"lower_layer_down".into())
        );
    }

    #[test]
    fn every_level_has_its_word() {
        use crate::health::Level;
        for l in [Level::Up, Level::Degraded, Level::Down] {
            assert_eq!(level(l).word(), l.as_str());
        }
    }
}
