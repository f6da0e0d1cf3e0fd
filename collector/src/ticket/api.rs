//! Admin `Call` methods for tickets, events, the inbox and maintenance windows.
//!
//! | method | arguments | answer |
//! | --- | --- | --- |
//! | `tickets.list` | `{"open": bool}` | array of [`TicketSummary`] |
//! | `tickets.show` | `{"id": "PJ-2026-0001"}` | [`TicketDetail`] |
//! | `maintenance.add` | [`WindowRequest`] | the window with its id |
//! | `maintenance.list` | `{}` | array of windows |
//! | `maintenance.remove` | `{"id": n}` | `{"removed": true}` |

use serde::{Deserialize, Serialize};

use chrono::Utc;

use super::store::{TicketHealth, TicketNote, TicketStore};
use crate::health::{MaintenanceWindow, Reading, Schedule, Scope};
use crate::sop::AuditRecord;
use crate::sop::api::{TicketView, view};
use crate::sop::store::{SopStore, SopTicket};

/// Roles that may create and remove maintenance windows.
pub const MAINTENANCE_ROLES: [&str; 4] = ["admin", "tim_teknis", "helpdesk", "kabid_aptika"];

/// One line of `siaga tickets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketSummary {
    /// Ticket number.
    pub id: String,
    /// OPD.
    pub opd: String,
    /// Device, if any.
    pub device: Option<String>,
    /// Link, if any.
    pub link: Option<String>,
    /// The problem in a sentence.
    pub problem: String,
    /// `detected` or `letter`.
    pub origin: String,
    /// SOP step.
    pub step: u32,
    /// Whose turn (roles, comma separated).
    pub role: String,
    /// The person the ticket was handed to by name, if any.
    #[serde(default)]
    pub assignee: Option<String>,
    /// When the current step is due, RFC 3339 (none once closed).
    #[serde(default)]
    pub due_at: Option<String>,
    /// The current step is past its time standard.
    #[serde(default)]
    pub overdue: bool,
    /// Opened, RFC 3339.
    pub opened_at: String,
    /// Recovered, RFC 3339, if it has.
    pub recovered_at: Option<String>,
    /// Occurrences.
    pub occurrences: u32,
    /// Devices unreachable because of it.
    pub affected: Vec<String>,
    /// It flapped.
    pub flapping: bool,
    /// Closed through the SOP.
    pub closed: bool,
    /// Incident key, for detected tickets.
    pub incident: Option<String>,
}

/// `siaga ticket show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: TicketSummary,
    /// The problem in Bahasa Indonesia.
    pub problem_id: String,
    /// Why the collector opened it, as facts, with the raw diagnostic
    /// (detected tickets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::health::Reason>,
    /// The readings that triggered it and came after.
    pub evidence: Vec<Reading>,
    /// Health log ("pulih pada …").
    pub notes: Vec<TicketNote>,
    /// SOP events.
    pub trail: Vec<AuditRecord>,
}

/// Arguments of `maintenance.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    /// What it covers.
    pub scope: Scope,
    /// When.
    pub schedule: Schedule,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The summary of a ticket from its SOP view and health record.
pub fn summary(v: &TicketView, h: Option<&TicketHealth>) -> TicketSummary {
    TicketSummary {
        id: v.id.clone(),
        opd: v.opd.clone(),
        device: v.device.clone(),
        link: v.link.clone(),
        problem: v.problem.clone(),
        origin: v.origin.clone(),
        step: v.step,
        role: v.role.clone(),
        assignee: v.assignee.clone(),
        due_at: if v.closed_at.is_some() {
            None
        } else {
            v.due_at.map(rfc3339)
        },
        overdue: v.closed_at.is_none() && v.overdue,
        opened_at: rfc3339(v.opened_at),
        recovered_at: h.and_then(|h| h.recovered_at).map(rfc3339),
        occurrences: h.map(|h| h.occurrences).unwrap_or(0),
        affected: h
            .map(|h| h.affected.iter().cloned().collect())
            .unwrap_or_default(),
        flapping: h.is_some_and(|h| h.flapping),
        closed: v.closed_at.is_some(),
        incident: h.and_then(|h| h.incident.clone()),
    }
}

fn summarize(
    store: &TicketStore,
    sop_store: &SopStore,
    t: &SopTicket,
) -> Result<(TicketSummary, Option<TicketHealth>), String> {
    let v = view(sop_store, t, Utc::now()).map_err(|e| e.to_string())?;
    let h = store.get(&t.info.number).map_err(|e| e.to_string())?;
    Ok((summary(&v, h.as_ref()), h))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListArgs {
    open: bool,
}
#[derive(Deserialize)]
struct IdArgs {
    id: String,
}
#[derive(Deserialize)]
struct WindowId {
    id: u64,
}

fn args<T: for<'de> Deserialize<'de>>(method: &str, json: &str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| format!("{method}: bad arguments: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| format!("encoding the answer: {e}"))
}

/// Answers one call. `Ok(None)`: not one of these methods.
pub fn call(
    store: &TicketStore,
    sop_store: &SopStore,
    user: &str,
    roles: &[String],
    method: &str,
    json: &str,
) -> Result<Option<String>, String> {
    let db = |e: crate::error::StoreError| e.to_string();
    let out = match method {
        "tickets.list" => {
            let a: ListArgs = args(method, json)?;
            let mut list = Vec::new();
            for t in sop_store.list().map_err(|e| e.to_string())? {
                if a.open && t.state.is_closed() {
                    continue;
                }
                list.push(summarize(store, sop_store, &t)?.0);
            }
            list.sort_by_key(|s| (s.id.parse::<super::TicketNumber>().ok(), s.id.clone()));
            to_json(&list)?
        }
        "tickets.show" => {
            let a: IdArgs = args(method, json)?;
            let id = a.id.trim().to_ascii_uppercase();
            let t = sop_store.get(&id).map_err(|e| e.to_string())?;
            let (summary, h) = summarize(store, sop_store, &t)?;
            let h = h.unwrap_or_default();
            to_json(&TicketDetail {
                summary,
                problem_id: h.problem_id,
                reason: t.info.reason.clone(),
                evidence: h.evidence,
                notes: h.notes,
                trail: sop_store.trail(&id).map_err(|e| e.to_string())?,
            })?
        }
        "maintenance.list" => to_json(&store.windows().map_err(db)?)?,
        "maintenance.add" | "maintenance.remove" => {
            if !roles
                .iter()
                .any(|r| MAINTENANCE_ROLES.contains(&r.as_str()))
            {
                return Err(format!(
                    "{method}: only {} may change maintenance windows",
                    MAINTENANCE_ROLES.join(", ")
                ));
            }
            if method == "maintenance.add" {
                let a: WindowRequest = args(method, json)?;
                a.schedule.validate().map_err(|e| e.to_string())?;
                let w = store
                    .add_window(MaintenanceWindow {
                        id: 0,
                        scope: a.scope,
                        schedule: a.schedule,
                        reason: a.reason,
                        created_by: user.to_string(),
                    })
                    .map_err(db)?;
                to_json(&w)?
            } else {
                let a: WindowId = args(method, json)?;
                if !store.remove_window(a.id).map_err(db)? {
                    return Err(format!("no maintenance window {}", a.id));
                }
                to_json(&serde_json::json!({ "removed": true, "id": a.id }))?
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(out))
}

/// The `Tickets` gRPC service (tickets.proto).
#[derive(Debug, Clone)]
pub struct TicketsApi {
    hub: std::sync::Arc<crate::hub::Hub>,
}

impl TicketsApi {
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
impl siaga_proto::v1::tickets_server::Tickets for TicketsApi {}
