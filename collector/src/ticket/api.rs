//! The `Tickets` service (tickets.proto): listing, one ticket, a ticket
//! from a letter, update, void, the audit trail, maintenance windows.

use chrono::{DateTime, Utc};

use std::sync::Arc;

use siaga_proto::v1;
use siaga_proto::v1::list_tickets_request::State as TicketState;
use tonic::{Request, Response, Status};

use super::store::TicketStore;
use super::{HealthPart, wire};
use crate::api::limits::{self, len};
use crate::api::page::{MAX_SCAN, Page, num_key};
use crate::api::{ApiError, Caller, scope};
use crate::health::{MaintenanceWindow, Scope};
use crate::inventory::Inventory;
use crate::role::Role;
use crate::sop::api::{NewLetter, view};
use crate::sop::store::{SopStore, SopTicket};
use crate::sop::workflow::{Action, Actor};

/// Roles that may create and remove maintenance windows.
pub const MAINTENANCE_ROLES: &[Role] = &[
    Role::ADMIN,
    Role::TIM_TEKNIS,
    Role::HELPDESK,
    Role::KABID_APTIKA,
];

/// Days a weekly window names at most (each day once).
const MAX_DAYS: usize = 7;

/// The OPD a window covers (`None`: a device no longer in the inventory).
fn window_opd<'a>(w: &'a MaintenanceWindow, inv: &'a Inventory) -> Option<&'a str> {
    match &w.scope {
        Scope::Opd { opd } => Some(opd),
        Scope::Device { device } | Scope::Link { device, .. } => {
            inv.devices.get(device).map(|d| d.opd.as_str())
        }
    }
}

/// The windows `caller` sees (those of the OPDs they see), by id.
pub fn windows_of(
    store: &TicketStore,
    caller: &Caller,
    inv: &Inventory,
) -> Result<Vec<MaintenanceWindow>, ApiError> {
    let mut all = store
        .windows()
        .map_err(|e| ApiError::internal("listing the maintenance windows", e))?;
    all.retain(|w| match window_opd(w, inv) {
        Some(opd) => scope::listed(caller, opd),
        None => caller.province(),
    });
    all.sort_by_key(|w| w.id);
    Ok(all)
}

/// Adds the window of request `r` for `user`: its fields within their
/// limits, its schedule valid and no longer than `max`.
pub fn add_window(
    store: &TicketStore,
    r: &v1::AddMaintenanceWindowRequest,
    user: &str,
    max: std::time::Duration,
) -> Result<v1::MaintenanceWindow, ApiError> {
    let s = r
        .scope
        .as_ref()
        .ok_or_else(|| ApiError::invalid("scope", "is required"))?;
    limits::text("scope.opd", &s.opd, len::ID)?;
    limits::text("scope.device", &s.device, len::ID)?;
    limits::text("scope.link", &s.link, len::ID)?;
    let p = r
        .schedule
        .as_ref()
        .ok_or_else(|| ApiError::invalid("schedule", "is required"))?;
    limits::text("schedule.start_time", &p.start_time, 16)?;
    if p.days.len() > MAX_DAYS {
        return Err(ApiError::invalid(
            "schedule.days",
            format!("{} days; the limit is {MAX_DAYS}", p.days.len()),
        ));
    }
    for d in &p.days {
        limits::text("schedule.days", d, 16)?;
    }
    limits::text("reason", &r.reason, len::NOTE)?;
    let scope = wire::scope_back(s).map_err(|(f, m)| ApiError::invalid(f, m))?;
    let schedule = wire::schedule_back(p).map_err(|(f, m)| ApiError::invalid(f, m))?;
    schedule
        .validate()
        .map_err(|e| ApiError::invalid("schedule", e.to_string()))?;
    super::check_window_length(&schedule, max).map_err(|e| ApiError::invalid("schedule", e))?;
    let w = store
        .add_window(MaintenanceWindow {
            id: 0,
            scope,
            schedule,
            reason: r.reason.clone(),
            created_by: user.to_string(),
        })
        .map_err(|e| ApiError::internal("adding the maintenance window", e))?;
    Ok(wire::window(&w))
}

/// Removes window `id`.
pub fn remove_window(store: &TicketStore, id: u64) -> Result<(), ApiError> {
    match store.remove_window(id) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::NotFound(format!(
            "no maintenance window {id} (see `siaga maintenance list`)"
        ))),
        Err(e) => Err(ApiError::internal("removing the maintenance window", e)),
    }
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

/// Longest `letter_date` (YYYY-MM-DD).
const DATE_LEN: usize = 10;

/// Whether open ticket `t` waits on `caller`: handed to them by name, or at
/// a step one of their roles takes.
fn waits_on(caller: &Caller, t: &v1::Ticket) -> bool {
    !t.closed && (t.assignee == caller.name || t.role.split(" / ").any(|r| caller.has(r.trim())))
}

fn some(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

pub(crate) fn actor(caller: &Caller) -> Actor {
    Actor {
        user: caller.name.clone(),
        roles: crate::role::ids(&caller.roles),
    }
}

/// The answer to an SOP action, with the ticket's health record.
pub(crate) fn action_reply(
    health: &HealthPart,
    r: crate::sop::api::ActionReply,
) -> Result<v1::TicketActionResponse, ApiError> {
    let h = health
        .store
        .get(&r.ticket.id)
        .map_err(|e| ApiError::internal("reading the ticket's health record", e))?;
    Ok(v1::TicketActionResponse {
        ticket: Some(wire::ticket(&r.ticket, h.as_ref())),
        event: Some(wire::event(&r.event)),
        already_filed: r.already_filed,
    })
}

/// The letter of a `NewTicket` request, its fields within their limits.
pub fn letter(r: v1::NewTicketRequest) -> Result<NewLetter, ApiError> {
    limits::required("opd", &r.opd, len::ID)?;
    limits::required("letter_number", &r.letter_number, len::LETTER_NUMBER)?;
    limits::required("subject", &r.subject, len::SUBJECT)?;
    limits::required("letter_date", &r.letter_date, DATE_LEN)?;
    limits::text("device", &r.device, len::ID)?;
    limits::text("link", &r.link, len::ID)?;
    let letter_date =
        chrono::NaiveDate::parse_from_str(r.letter_date.trim(), "%Y-%m-%d").map_err(|_| {
            ApiError::invalid(
                "letter_date",
                format!("{:?} is not a date YYYY-MM-DD", r.letter_date),
            )
        })?;
    Ok(NewLetter {
        opd: r.opd.trim().to_string(),
        letter_number: r.letter_number,
        letter_date,
        subject: r.subject,
        device: some(r.device),
        link: some(r.link),
        urgent: r.urgent,
    })
}

/// Ticket `t` as the service gives it, at `now`.
pub fn ticket_of(
    store: &TicketStore,
    sop_store: &SopStore,
    t: &SopTicket,
    now: DateTime<Utc>,
) -> Result<v1::Ticket, ApiError> {
    let v = view(sop_store, t, now)?;
    let h = store
        .get(&t.info.number)
        .map_err(|e| ApiError::internal("reading a ticket's health record", e))?;
    Ok(wire::ticket(&v, h.as_ref()))
}

/// Ticket `t` with its health record, evidence, notes, trail and
/// `measurements`, at `now`.
pub fn detail_of(
    store: &TicketStore,
    sop_store: &SopStore,
    t: &SopTicket,
    measurements: Vec<v1::Measurement>,
    now: DateTime<Utc>,
) -> Result<v1::TicketDetail, ApiError> {
    let number = &t.info.number;
    let v = view(sop_store, t, now)?;
    let h = store
        .get(number)
        .map_err(|e| ApiError::internal("reading the ticket's health record", e))?;
    let trail = sop_store
        .trail(number)
        .map_err(|e| ApiError::internal("reading the ticket's trail", e))?;
    let ticket = wire::ticket(&v, h.as_ref());
    let h = h.unwrap_or_default();
    Ok(v1::TicketDetail {
        ticket: Some(ticket),
        problem_id: h.problem_id,
        reason: t.info.reason.as_ref().map(wire::reason),
        evidence: h.evidence.iter().map(wire::reading).collect(),
        notes: h.notes.iter().map(wire::note).collect(),
        trail: trail.iter().map(wire::record).collect(),
        measurements,
    })
}

impl TicketsApi {
    fn health(&self) -> Arc<HealthPart> {
        self.hub.health.clone()
    }

    /// Takes `action` on ticket `id` as `caller`, once the ticket is one
    /// they see.
    async fn act(
        &self,
        caller: Caller,
        id: crate::sop::TicketNumber,
        what: &'static str,
        action: Action,
    ) -> Result<v1::TicketActionResponse, ApiError> {
        let health = self.health();
        crate::api::error::blocking(what, move || {
            let t = scope::ticket(&caller, &health.sop_store, &id)?;
            let r = crate::sop::api::act_reply(
                &health.sop_store,
                &t.info.number,
                action,
                &actor(&caller),
                Utc::now(),
            )?;
            action_reply(&health, r)
        })
        .await
    }
}

#[tonic::async_trait]
impl siaga_proto::v1::tickets_server::Tickets for TicketsApi {
    async fn list_tickets(
        &self,
        req: Request<v1::ListTicketsRequest>,
    ) -> Result<Response<v1::ListTicketsResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::text("opd", &r.opd, len::ID)?;
        let state = TicketState::try_from(r.state).map_err(|_| {
            ApiError::invalid(
                "state",
                format!("{}: give open, closed or recovered", r.state),
            )
        })?;
        let page = Page::new(
            r.page_size,
            &r.page_token,
            &format!(
                "opd={}\nstate={}\nstep={:?}\noverdue={}\nmine={}",
                r.opd, r.state, r.step, r.overdue, r.mine
            ),
        )?;
        let health = self.health();
        let (tickets, next_page_token) =
            crate::api::error::blocking("listing the tickets", move || {
                let now = Utc::now();
                let internal = |e| ApiError::internal("listing the tickets", e);
                let keep = |t: SopTicket| -> Result<Option<v1::Ticket>, ApiError> {
                    if !scope::listed(&caller, &t.info.opd)
                        || (!r.opd.is_empty() && t.info.opd != r.opd)
                    {
                        return Ok(None);
                    }
                    let closed = t.state.is_closed();
                    let state_ok = match state {
                        TicketState::Open | TicketState::Recovered => !closed,
                        TicketState::Closed => closed,
                        TicketState::Unspecified => true,
                    };
                    if !state_ok || r.step.is_some_and(|s| s != t.state.position.step) {
                        return Ok(None);
                    }
                    let ticket = ticket_of(&health.store, &health.sop_store, &t, now)?;
                    if (r.overdue && !ticket.overdue)
                        || (state == TicketState::Recovered && ticket.recovered_at.is_none())
                        || (r.mine && !waits_on(&caller, &ticket))
                    {
                        return Ok(None);
                    }
                    Ok(Some(ticket))
                };
                health
                    .sop_store
                    .tickets_after(page.after.as_deref(), |rows| {
                        page.scan(rows.map(|row| row.map_err(internal)), MAX_SCAN, keep)
                    })
                    .map_err(internal)?
            })
            .await?;
        Ok(Response::new(v1::ListTicketsResponse {
            tickets,
            next_page_token,
        }))
    }

    async fn get_ticket(
        &self,
        req: Request<v1::GetTicketRequest>,
    ) -> Result<Response<v1::TicketDetail>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let id = limits::ticket_number("id", &r.id)?;
        let health = self.health();
        let hub = self.hub.clone();
        let detail = crate::api::error::blocking("reading the ticket", move || {
            let t = scope::ticket(&caller, &health.sop_store, &id)?;
            let measurements = hub.ticket_measurements(&t.info.number);
            detail_of(
                &health.store,
                &health.sop_store,
                &t,
                measurements,
                Utc::now(),
            )
        })
        .await?;
        Ok(Response::new(detail))
    }

    async fn new_ticket(
        &self,
        req: Request<v1::NewTicketRequest>,
    ) -> Result<Response<v1::TicketActionResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let letter = letter(r)?;
        let health = self.health();
        let dir = crate::admin::HubDirectory(self.hub.clone());
        let reply = crate::api::error::blocking("opening a ticket from a letter", move || {
            let r = crate::sop::api::new_ticket(
                &health.sop_store,
                &dir,
                letter,
                &actor(&caller),
                Utc::now(),
            )?;
            action_reply(&health, r)
        })
        .await?;
        Ok(Response::new(reply))
    }

    async fn update_ticket(
        &self,
        req: Request<v1::UpdateTicketRequest>,
    ) -> Result<Response<v1::TicketActionResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let id = limits::ticket_number("id", &r.id)?;
        // An empty status is the workflow's to refuse (and to put on the trail).
        limits::text("status", &r.status, len::NOTE)?;
        let action = Action::UpdateStatus { status: r.status };
        Ok(Response::new(
            self.act(caller, id, "updating a ticket", action).await?,
        ))
    }

    async fn void_ticket(
        &self,
        req: Request<v1::VoidTicketRequest>,
    ) -> Result<Response<v1::TicketActionResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let id = limits::ticket_number("id", &r.id)?;
        // An empty reason is the workflow's to refuse (and to put on the trail).
        limits::text("reason", &r.reason, len::NOTE)?;
        let action = Action::Void { reason: r.reason };
        Ok(Response::new(
            self.act(caller, id, "voiding a ticket", action).await?,
        ))
    }

    async fn list_audit_records(
        &self,
        req: Request<v1::ListAuditRecordsRequest>,
    ) -> Result<Response<v1::ListAuditRecordsResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let id = limits::ticket_number("id", &r.id)?;
        let page = Page::new(r.page_size, &r.page_token, &format!("id={id}"))?;
        // The token's key is the last record's index.
        let after = match &page.after {
            None => None,
            Some(k) => Some(k.parse::<u64>().map_err(|_| {
                ApiError::invalid(
                    "page_token",
                    "not a token this collector gave for this query; start again without it",
                )
            })?),
        };
        let health = self.health();
        let size = page.size;
        let trail = crate::api::error::blocking("reading the trail", move || {
            let t = scope::ticket(&caller, &health.sop_store, &id)?;
            // One more than the page: whether there is a next one.
            health
                .sop_store
                .trail_page(&t.info.number, after, size.saturating_add(1))
                .map_err(|e| ApiError::internal("reading the ticket's trail", e))
        })
        .await?;
        let (records, next_page_token) = page.take(trail, |a| num_key(a.index));
        Ok(Response::new(v1::ListAuditRecordsResponse {
            records: records.iter().map(wire::record).collect(),
            next_page_token,
        }))
    }

    async fn list_maintenance_windows(
        &self,
        req: Request<v1::ListMaintenanceWindowsRequest>,
    ) -> Result<Response<v1::ListMaintenanceWindowsResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let page = Page::new(r.page_size, &r.page_token, "windows")?;
        let health = self.health();
        let inv = self.hub.inventory();
        let all = crate::api::error::blocking("listing the maintenance windows", move || {
            windows_of(&health.store, &caller, &inv)
        })
        .await?;
        let (windows, next_page_token) = page.take(all, |w| num_key(w.id));
        Ok(Response::new(v1::ListMaintenanceWindowsResponse {
            windows: windows.iter().map(wire::window).collect(),
            next_page_token,
        }))
    }

    async fn add_maintenance_window(
        &self,
        req: Request<v1::AddMaintenanceWindowRequest>,
    ) -> Result<Response<v1::MaintenanceWindow>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let health = self.health();
        let w = crate::api::error::blocking("adding a maintenance window", move || {
            add_window(&health.store, &r, &caller.name, health.max_window)
        })
        .await?;
        Ok(Response::new(w))
    }

    async fn remove_maintenance_window(
        &self,
        req: Request<v1::RemoveMaintenanceWindowRequest>,
    ) -> Result<Response<v1::RemoveMaintenanceWindowResponse>, Status> {
        let id = req.get_ref().id;
        let health = self.health();
        crate::api::error::blocking("removing a maintenance window", move || {
            remove_window(&health.store, id)
        })
        .await?;
        Ok(Response::new(v1::RemoveMaintenanceWindowResponse {}))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod tests {
    use std::sync::Arc;

    use siaga_proto::v1;
    use siaga_proto::v1::list_tickets_request::State as TicketState;
    use siaga_proto::v1::tickets_client::TicketsClient;
    use tonic::Code;

    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::{Fixture, OTHER, OWN};

    /// A letter dated yesterday (in any zone of the province, within the
    /// year a letter is accepted).
    fn yesterday() -> String {
        (chrono::Utc::now() - chrono::Duration::days(1))
            .date_naive()
            .to_string()
    }

    fn letter(opd: &str, number: &str) -> v1::NewTicketRequest {
        v1::NewTicketRequest {
            opd: opd.into(),
            letter_number: number.into(),
            letter_date: yesterday(),
            subject: format!("Internet putus ({number})"),
            ..Default::default()
        }
    }

    /// A ticket of `opd` from a letter numbered `number`, entered by the helpdesk.
    async fn open(f: &Fixture, opd: &str, number: &str) -> String {
        let mut c = TicketsClient::new(f.as_role("helpdesk"));
        c.new_ticket(letter(opd, number))
            .await
            .unwrap_or_else(|s| panic!("new ticket of {opd}: {s:?}"))
            .into_inner()
            .ticket
            .expect("ticket")
            .id
    }

    /// The fixture's ticket of `opd` for `what` (made once).
    async fn ticket_of(f: &Fixture, what: &str, opd: &str) -> String {
        f.once(&format!("{what} ticket of {opd}"), async {
            open(f, opd, &format!("{what}/{opd}/2026")).await
        })
        .await
    }

    fn seen_if_ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
        match r {
            Ok(_) => Outcome::Seen,
            Err(s) => s.into(),
        }
    }

    /// A window of an hour from now over `opd`.
    fn window(opd: &str) -> v1::AddMaintenanceWindowRequest {
        let now = chrono::Utc::now();
        v1::AddMaintenanceWindowRequest {
            scope: Some(v1::MaintenanceScope {
                kind: v1::maintenance_scope_kind::Kind::Opd.into(),
                opd: opd.into(),
                ..Default::default()
            }),
            schedule: Some(v1::MaintenanceSchedule {
                kind: v1::maintenance_schedule::Kind::Once.into(),
                start: Some(crate::ticket::wire::ts(now)),
                end: Some(crate::ticket::wire::ts(now + chrono::Duration::hours(1))),
                ..Default::default()
            }),
            reason: "uji".into(),
        }
    }

    /// A new window over `opd`, added by the admin; its id.
    async fn add_window(f: &Fixture, opd: &str) -> u64 {
        TicketsClient::new(f.as_role("admin"))
            .add_maintenance_window(window(opd))
            .await
            .unwrap_or_else(|s| panic!("window of {opd}: {s:?}"))
            .into_inner()
            .id
    }

    /// The matrix cases of the `Tickets` service.
    pub const CASES: &[Case] = &[
        Case {
            rpc: "/siaga.v1.Tickets/ListMaintenanceWindows",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    f.once(&format!("window of {opd}"), async {
                        add_window(&f, opd).await.to_string()
                    })
                    .await;
                    let mut c = TicketsClient::new(f.channel(p));
                    match c
                        .list_maintenance_windows(v1::ListMaintenanceWindowsRequest::default())
                        .await
                    {
                        Ok(r) => {
                            let of_opd = r
                                .into_inner()
                                .windows
                                .iter()
                                .any(|w| w.scope.as_ref().is_some_and(|s| s.opd == opd));
                            if of_opd {
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
            rpc: "/siaga.v1.Tickets/AddMaintenanceWindow",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = TicketsClient::new(f.channel(p));
                    seen_if_ok(c.add_maintenance_window(window(opd)).await)
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Tickets/RemoveMaintenanceWindow",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = add_window(&f, opd).await;
                    let mut c = TicketsClient::new(f.channel(p));
                    seen_if_ok(
                        c.remove_maintenance_window(v1::RemoveMaintenanceWindowRequest { id })
                            .await,
                    )
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Tickets/ListTickets",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    ticket_of(&f, "shown", opd).await;
                    let mut c = TicketsClient::new(f.channel(p));
                    match c
                        .list_tickets(v1::ListTicketsRequest {
                            opd: opd.into(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(r) => {
                            let t = r.into_inner().tickets;
                            if t.iter().any(|t| t.opd != opd) {
                                Outcome::Refused(Code::Internal, "another OPD's ticket".into())
                            } else if t.is_empty() {
                                Outcome::Hidden
                            } else {
                                Outcome::Seen
                            }
                        }
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Tickets/GetTicket",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = ticket_of(&f, "shown", opd).await;
                    let mut c = TicketsClient::new(f.channel(p));
                    seen_if_ok(c.get_ticket(v1::GetTicketRequest { id }).await)
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Tickets/NewTicket",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = TicketsClient::new(f.channel(p));
                    match c.new_ticket(letter(opd, &format!("baru/{opd}"))).await {
                        Ok(r) if r.get_ref().ticket.as_ref().is_some_and(|t| t.opd == opd) => {
                            Outcome::Seen
                        }
                        Ok(r) => Outcome::Refused(Code::Internal, format!("{:?}", r.get_ref())),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Tickets/UpdateTicket",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = ticket_of(&f, "shown", opd).await;
                    let mut c = TicketsClient::new(f.channel(p));
                    seen_if_ok(
                        c.update_ticket(v1::UpdateTicketRequest {
                            id,
                            status: "diperiksa".into(),
                        })
                        .await,
                    )
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Tickets/VoidTicket",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = ticket_of(&f, "voided", opd).await;
                    let mut c = TicketsClient::new(f.channel(p));
                    seen_if_ok(
                        c.void_ticket(v1::VoidTicketRequest {
                            id,
                            reason: "ganda".into(),
                        })
                        .await,
                    )
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Tickets/ListAuditRecords",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = ticket_of(&f, "shown", opd).await;
                    let mut c = TicketsClient::new(f.channel(p));
                    match c
                        .list_audit_records(v1::ListAuditRecordsRequest {
                            id: id.clone(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(r) if r.get_ref().records.iter().all(|a| a.ticket == id) => {
                            Outcome::Seen
                        }
                        Ok(r) => Outcome::Refused(Code::Internal, format!("{:?}", r.get_ref())),
                        Err(s) => s.into(),
                    }
                })
            },
        },
    ];

    async fn ids(
        c: &mut TicketsClient<tonic::transport::Channel>,
        r: v1::ListTicketsRequest,
    ) -> Vec<String> {
        c.list_tickets(r)
            .await
            .unwrap()
            .into_inner()
            .tickets
            .into_iter()
            .map(|t| t.id)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_walk_page_by_page_sees_each_ticket_once_while_tickets_arrive() {
        let f = Fixture::start().await;
        let mut before = Vec::new();
        for n in 0..7 {
            before.push(open(&f, OWN, &format!("{n}/halaman")).await);
        }
        let mut c = TicketsClient::new(f.as_role("kabid_aptika"));
        let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let r = c
                .list_tickets(v1::ListTicketsRequest {
                    page_size: 3,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.tickets.len() <= 3, "{}", r.tickets.len());
            seen.extend(r.tickets.into_iter().map(|t| t.id));
            pages += 1;
            // A ticket arrives between pages.
            open(&f, OTHER, &format!("{pages}/baru")).await;
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
        assert_eq!(unique, seen, "in ticket number order: {seen:?}");
        for id in &before {
            assert!(seen.contains(id), "{id} missed: {seen:?}");
        }
        // A token is for its own query only.
        let first = c
            .list_tickets(v1::ListTicketsRequest {
                page_size: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let e = c
            .list_tickets(v1::ListTicketsRequest {
                page_size: 2,
                page_token: first.next_page_token,
                opd: OWN.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("page_token:"), "{}", e.message());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trail_walked_page_by_page_while_records_arrive_gives_each_record_once() {
        let f = Fixture::start().await;
        let id = open(&f, OWN, "1/jejak").await;
        let opd = TicketsClient::new(f.as_role("pemohon"));
        let update = |n: usize| {
            let (mut c, id) = (opd.clone(), id.clone());
            async move {
                c.update_ticket(v1::UpdateTicketRequest {
                    id,
                    status: format!("diperiksa {n}"),
                })
                .await
                .unwrap();
            }
        };
        for n in 0..4 {
            update(n).await;
        }
        let mut kabid = TicketsClient::new(f.as_role("kabid_aptika"));
        let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let r = kabid
                .list_audit_records(v1::ListAuditRecordsRequest {
                    id: id.clone(),
                    page_size: 2,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.records.len() <= 2, "{}", r.records.len());
            seen.extend(r.records.iter().map(|a| a.index));
            pages += 1;
            // A record arrives between pages, for the first few.
            if pages <= 3 {
                update(10 + pages).await;
            }
            if r.next_page_token.is_empty() {
                break;
            }
            token = r.next_page_token;
            assert!(pages < 20, "no end to the pages: {seen:?}");
        }
        // Every record, the three that arrived during the walk too, once
        // and in order.
        let all = kabid
            .list_audit_records(v1::ListAuditRecordsRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(all.next_page_token.is_empty());
        assert!(all.records.len() >= 8, "{}", all.records.len());
        let all: Vec<u64> = all.records.iter().map(|a| a.index).collect();
        assert_eq!(seen, all, "each record once, in order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_page_token_is_invalid_argument_naming_page_token() {
        let f = Fixture::start().await;
        let id = open(&f, OWN, "1/token").await;
        let mut c = TicketsClient::new(f.as_role("kabid_aptika"));
        // Not base64; base64 of nonsense; a well-formed token whose key is
        // not a record index (what a forger or a bug would send).
        let filters = format!("id={id}");
        let forged = crate::api::page::Page::new(1, "", &filters)
            .unwrap()
            .token("not-an-index");
        for token in ["%%%".to_string(), "bm9wZQ".to_string(), forged] {
            let e = c
                .list_audit_records(v1::ListAuditRecordsRequest {
                    id: id.clone(),
                    page_size: 1,
                    page_token: token.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{token}: {e:?}");
            assert!(e.message().starts_with("page_token:"), "{}", e.message());
            if token != "bm9wZQ" && token != "%%%" {
                continue;
            }
            let e = c
                .list_tickets(v1::ListTicketsRequest {
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{token}: {e:?}");
            assert!(e.message().starts_with("page_token:"), "{}", e.message());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pemohon_sees_and_acts_only_on_their_own_opds_tickets() {
        let f = Fixture::start().await;
        let own = open(&f, OWN, "1/own").await;
        let other = open(&f, OTHER, "1/other").await;
        let mut opd = TicketsClient::new(f.as_role("pemohon"));
        assert_eq!(
            ids(&mut opd, Default::default()).await,
            std::slice::from_ref(&own)
        );
        let filtered = v1::ListTicketsRequest {
            opd: OTHER.into(),
            ..Default::default()
        };
        assert!(ids(&mut opd, filtered).await.is_empty());
        let got = opd
            .get_ticket(v1::GetTicketRequest { id: own.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.ticket.unwrap().opd, OWN);
        assert!(!got.trail.is_empty(), "the opening is on the trail");
        // Another OPD's ticket answers as a missing one does.
        let missing = opd
            .get_ticket(v1::GetTicketRequest {
                id: "PJ-2099-0001".into(),
            })
            .await
            .unwrap_err();
        let e = opd
            .get_ticket(v1::GetTicketRequest { id: other.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.message(), format!("no ticket {other}"));
        assert_eq!(missing.code(), Code::NotFound);
        let e = opd
            .list_audit_records(v1::ListAuditRecordsRequest {
                id: other.to_ascii_lowercase(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = opd
            .void_ticket(v1::VoidTicketRequest {
                id: other.clone(),
                reason: "bukan urusan saya".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        // The province sees both.
        let mut kabid = TicketsClient::new(f.as_role("kabid_aptika"));
        assert_eq!(ids(&mut kabid, Default::default()).await, [own, other]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn letters_are_checked_and_filters_run_on_the_collector() {
        let f = Fixture::start().await;
        let mut hd = TicketsClient::new(f.as_role("helpdesk"));
        let refused = |r: v1::NewTicketRequest| {
            let mut hd = hd.clone();
            async move { hd.new_ticket(r).await.unwrap_err() }
        };
        let e = refused(v1::NewTicketRequest {
            subject: "x".repeat(201),
            ..letter(OWN, "1/panjang")
        })
        .await;
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.message(), "subject: 201 characters; the limit is 200");
        let e = refused(v1::NewTicketRequest {
            letter_date: "20-11-2026".into(),
            ..letter(OWN, "1/tanggal")
        })
        .await;
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("letter_date:"), "{}", e.message());
        let next_year = (chrono::Utc::now() + chrono::Duration::days(366))
            .date_naive()
            .to_string();
        let e = refused(v1::NewTicketRequest {
            letter_date: next_year,
            ..letter(OWN, "1/masa-depan")
        })
        .await;
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("in the future"), "{}", e.message());
        let e = refused(v1::NewTicketRequest {
            device: "dishub-sw".into(),
            ..letter(OWN, "1/perangkat")
        })
        .await;
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("device:"), "{}", e.message());
        let e = hd
            .list_tickets(v1::ListTicketsRequest {
                opd: "o".repeat(65),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().starts_with("opd: 65 characters"),
            "{}",
            e.message()
        );

        // The same letter twice: one ticket.
        let first = hd
            .new_ticket(letter(OWN, "005/1"))
            .await
            .unwrap()
            .into_inner();
        let again = hd
            .new_ticket(letter(OWN, " 005/1 "))
            .await
            .unwrap()
            .into_inner();
        assert!(!first.already_filed && again.already_filed);
        assert_eq!(
            first.ticket.as_ref().unwrap().id,
            again.ticket.as_ref().unwrap().id
        );
        assert_eq!(first.event.as_ref().unwrap().kind().word(), "opened");
        let second = open(&f, OTHER, "005/2").await;

        // Voided: closed, with its reason, in the closed listing only.
        let mut kabid = TicketsClient::new(f.as_role("kabid_aptika"));
        let voided = kabid
            .void_ticket(v1::VoidTicketRequest {
                id: second.clone(),
                reason: "ganda".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let t = voided.ticket.unwrap();
        assert!(t.closed && t.void_reason == "ganda", "{t:?}");
        assert_eq!(voided.event.unwrap().kind().word(), "voided");
        let state = |s: TicketState| v1::ListTicketsRequest {
            state: s.into(),
            ..Default::default()
        };
        let id1 = first.ticket.unwrap().id;
        assert_eq!(
            ids(&mut hd, state(TicketState::Closed)).await,
            std::slice::from_ref(&second)
        );
        assert_eq!(
            ids(&mut hd, state(TicketState::Open)).await,
            std::slice::from_ref(&id1)
        );
        assert!(ids(&mut hd, state(TicketState::Recovered)).await.is_empty());
        let step1 = v1::ListTicketsRequest {
            step: Some(1),
            ..Default::default()
        };
        // A voided ticket stays at the step it was voided at.
        assert_eq!(
            ids(&mut hd, step1.clone()).await,
            [id1.clone(), second.clone()]
        );
        let step2 = v1::ListTicketsRequest {
            step: Some(2),
            ..step1
        };
        assert!(ids(&mut hd, step2).await.is_empty());
        // Step 1 waits on the pemohon, not on the helpdesk.
        let mine = v1::ListTicketsRequest {
            mine: true,
            ..Default::default()
        };
        assert!(ids(&mut hd, mine.clone()).await.is_empty());
        let mut opd = TicketsClient::new(f.as_role("pemohon"));
        assert_eq!(ids(&mut opd, mine).await, std::slice::from_ref(&id1));
        // A value only a newer client knows.
        let lost = v1::ListTicketsRequest {
            state: 99,
            ..Default::default()
        };
        let e = hd.list_tickets(lost).await.unwrap_err();
        assert!(e.message().starts_with("state:"), "{}", e.message());

        // The trail, paged.
        let trail = kabid
            .list_audit_records(v1::ListAuditRecordsRequest {
                id: second,
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(trail.records.len(), 1);
        assert_eq!(
            trail.records[0].event.as_ref().unwrap().kind().word(),
            "opened"
        );
        assert!(!trail.next_page_token.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn maintenance_windows_are_checked_and_scoped_to_the_opd() {
        let f = Fixture::start().await;
        let mut kabid = TicketsClient::new(f.as_role("kabid_aptika"));
        let refused = |r: v1::AddMaintenanceWindowRequest| {
            let mut c = kabid.clone();
            async move { c.add_maintenance_window(r).await.unwrap_err() }
        };
        let e = refused(v1::AddMaintenanceWindowRequest {
            reason: "r".repeat(2001),
            ..window(OWN)
        })
        .await;
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.message(), "reason: 2001 characters; the limit is 2000");
        let mut planet = window(OWN);
        // A kind only a newer client knows.
        planet.scope.as_mut().unwrap().kind = 99;
        let e = refused(planet).await;
        assert!(e.message().starts_with("scope.kind:"), "{}", e.message());
        let mut forever = window(OWN);
        forever.schedule.as_mut().unwrap().end = Some(crate::ticket::wire::ts(
            chrono::Utc::now() + chrono::Duration::days(365),
        ));
        let e = refused(forever).await;
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("schedule:"), "{}", e.message());
        let own = kabid
            .add_maintenance_window(window(OWN))
            .await
            .unwrap()
            .into_inner();
        let other = kabid
            .add_maintenance_window(window(OTHER))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(own.created_by, "kabid");
        let ids = |r: v1::ListMaintenanceWindowsResponse| -> Vec<u64> {
            r.windows.iter().map(|w| w.id).collect()
        };
        let all = kabid
            .list_maintenance_windows(v1::ListMaintenanceWindowsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids(all), [own.id, other.id]);
        let mut opd = TicketsClient::new(f.as_role("pemohon"));
        let seen = opd
            .list_maintenance_windows(v1::ListMaintenanceWindowsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids(seen), [own.id]);
        kabid
            .remove_maintenance_window(v1::RemoveMaintenanceWindowRequest { id: own.id })
            .await
            .unwrap();
        let e = kabid
            .remove_maintenance_window(v1::RemoveMaintenanceWindowRequest { id: own.id })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
}
