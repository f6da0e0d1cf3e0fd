//! The `Measure` service (measure.proto): a ticket's before/after
//! measurement (`MeasureTicket`), a device outside a ticket
//! (`MeasureDevice`), one measurement (`GetMeasurement`) and a ticket's
//! measurements (`ListTicketMeasurements`, paged).
//!
//! A ticket is measured by whoever may take its SOP's measuring step (Tim
//! Teknis in the default SOP, step 6); a device outside a ticket by the same
//! roles or an admin. Anyone enrolled may read measurements. Everything is
//! held to the caller's OPD first ([`crate::api::scope`]): another OPD's
//! ticket, device or measurement answers `NOT_FOUND` before any role is
//! looked at, so its existence is not confirmed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use siaga_proto::v1;

use crate::role::Role;
use tonic::{Request, Response, Status};

use super::model::{MeasureState, Measurement, Phase};
use super::service::{MeasureError, MeasureService};
use super::wire;
use crate::api::error::blocking;
use crate::api::limits::{self, len};
use crate::api::page::{Page, num_key};
use crate::api::{ApiError, Caller, scope};
use crate::inventory::Inventory;
use crate::sop::model::Sop;
use crate::sop::workflow::TicketInfo;

/// Echo requests per device when the caller names no count.
pub const DEFAULT_COUNT: u32 = 100;
/// Most echo requests per device.
pub const MAX_COUNT: u32 = 10_000;
/// SNMP window when the caller names none, seconds.
pub const DEFAULT_WINDOW_S: u64 = 10;
/// Longest SNMP window, seconds.
pub const MAX_WINDOW_S: u64 = 600;

/// Echo requests and window (ms) from the caller's values (0: the
/// default), checked.
pub fn shape(count: u32, window_s: u64) -> Result<(u32, u64), ApiError> {
    let count = match count {
        0 => DEFAULT_COUNT,
        n if n > MAX_COUNT => {
            return Err(ApiError::invalid(
                "count",
                format!("{n}: at most {MAX_COUNT} echo requests per device"),
            ));
        }
        n => n,
    };
    let window = match window_s {
        0 => DEFAULT_WINDOW_S,
        s if s > MAX_WINDOW_S => {
            return Err(ApiError::invalid(
                "window_s",
                format!("window {s} s: at most {MAX_WINDOW_S} s"),
            ));
        }
        s => s,
    };
    Ok((count, window * 1000))
}

/// The roles that may take a measuring step of `sop` (and so measure its tickets).
pub fn measuring_roles(sop: &Sop) -> (Vec<String>, Vec<u32>) {
    let mut roles = Vec::new();
    let mut steps = Vec::new();
    for s in sop.steps.iter().filter(|s| s.requires_measurements) {
        steps.push(s.number);
        for a in &s.actors {
            if !roles.contains(a) {
                roles.push(a.clone());
            }
        }
    }
    (roles, steps)
}

fn you_are(roles: &[Role]) -> String {
    if roles.is_empty() {
        "you have no role".into()
    } else {
        format!("you are {}", crate::role::join(roles, ", "))
    }
}

/// Refuses a caller who may not take `sop`'s measuring step (`admin`
/// counts too when `admin_ok`); `what` names the request in the refusal.
fn allowed(sop: &Sop, caller: &[Role], what: &str, admin_ok: bool) -> Result<(), ApiError> {
    let (roles, steps) = measuring_roles(sop);
    if sop.capacity_any(caller, &roles).is_some() || (admin_ok && caller.contains(&Role::ADMIN)) {
        return Ok(());
    }
    let steps: Vec<String> = steps.iter().map(u32::to_string).collect();
    let mut who = roles.join(" or ");
    if admin_ok {
        who.push_str(" or admin");
    }
    Err(ApiError::Denied(format!(
        "{what} is for {who} (SOP step {}); {}",
        steps.join(", "),
        you_are(caller)
    )))
}

/// What a ticket's measurement covers: its device, the device of its link,
/// the devices unreachable because of it; its link, or else every inventory
/// link of its device.
pub fn ticket_subject(
    info: &TicketInfo,
    affected: &BTreeSet<String>,
    inv: &Inventory,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let mut devices: Vec<String> = Vec::new();
    let add = |d: &str, devices: &mut Vec<String>| {
        if !devices.iter().any(|x| x == d) {
            devices.push(d.to_string());
        }
    };
    if let Some(d) = &info.device {
        add(d, &mut devices);
    }
    let links: Vec<String> = match &info.link {
        Some(name) => {
            let l = inv.links.iter().find(|l| l.name == *name).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "link {name:?} of ticket {} is not in the inventory any more",
                    info.number
                ))
            })?;
            add(&l.device, &mut devices);
            vec![name.clone()]
        }
        None => inv
            .links
            .iter()
            .filter(|l| info.device.as_deref() == Some(l.device.as_str()))
            .map(|l| l.name.clone())
            .collect(),
    };
    for d in affected {
        add(d, &mut devices);
    }
    if devices.is_empty() && links.is_empty() {
        return Err(ApiError::Refused(format!(
            "ticket {} names no device or link to measure; measure a device with `siaga measure DEVICE`",
            info.number
        )));
    }
    for d in &devices {
        match inv.devices.get(d) {
            None => {
                return Err(ApiError::NotFound(format!(
                    "device {d:?} of ticket {} is not in the inventory any more",
                    info.number
                )));
            }
            Some(dev) if dev.opd != info.opd => {
                return Err(ApiError::Refused(format!(
                    "device {d:?} belongs to OPD {}, not to the ticket's OPD {}",
                    dev.opd, info.opd
                )));
            }
            Some(_) => {}
        }
    }
    Ok((devices, links))
}

fn new_measurement(
    ticket: Option<String>,
    phase: Option<Phase>,
    opd: String,
    devices: Vec<String>,
    links: Vec<String>,
    (icmp_count, window_ms): (u32, u64),
    user: &str,
) -> Measurement {
    Measurement {
        id: String::new(),
        ticket,
        phase,
        opd,
        devices,
        links,
        icmp_count,
        window_ms,
        requested_by: user.to_string(),
        requested_at: Utc::now(),
        completed_at: None,
        agent: None,
        state: MeasureState::Expired,
        device_figures: Vec::new(),
        link_figures: Vec::new(),
    }
}

/// A refusal of the measurement service as the API's error.
fn api_error(e: MeasureError) -> ApiError {
    match e {
        MeasureError::BadRequest(m) => ApiError::invalid("request", m),
        MeasureError::Denied(m) => ApiError::Denied(m),
        MeasureError::NotFound(m) => ApiError::NotFound(m),
        MeasureError::Offline(m) => ApiError::Refused(m),
        MeasureError::Internal(m) => ApiError::internal("taking a measurement", anyhow::anyhow!(m)),
    }
}

/// The paging key of measurement `id` (`M-000042`): in the order they
/// were asked for.
fn measurement_key(id: &str) -> String {
    match id.strip_prefix("M-").and_then(|n| n.parse::<u64>().ok()) {
        Some(n) => num_key(n),
        None => format!("~{id}"),
    }
}

/// The `Measure` gRPC service (measure.proto).
#[derive(Debug, Clone)]
pub struct MeasureApi {
    hub: Arc<crate::hub::Hub>,
}

impl MeasureApi {
    /// The service on `hub`.
    pub fn new(hub: Arc<crate::hub::Hub>) -> Self {
        Self { hub }
    }

    /// The collector's shared state.
    pub fn hub(&self) -> &crate::hub::Hub {
        &self.hub
    }

    fn parts(&self) -> (Arc<MeasureService>, Arc<crate::ticket::HealthPart>) {
        (self.hub.measure.clone(), self.hub.health.clone())
    }

    /// When an agent of `opd` was last heard of.
    fn last_seen(&self, opd: &str) -> Option<DateTime<Utc>> {
        let mut seen: HashMap<String, DateTime<Utc>> = HashMap::new();
        for a in self.hub.agents() {
            if let Some(t) = DateTime::from_timestamp_micros(a.record.last_seen_us)
                .filter(|_| a.record.last_seen_us > 0)
            {
                let e = seen.entry(a.record.opd.clone()).or_insert(t);
                *e = (*e).max(t);
            }
        }
        seen.get(opd).copied()
    }

    /// Sends (or queues) `m` and gives the record.
    async fn start(
        &self,
        service: &MeasureService,
        m: Measurement,
        queue: bool,
    ) -> Result<v1::Measurement, ApiError> {
        let seen = self.last_seen(&m.opd);
        let m = service
            .start(m, queue, seen, Utc::now())
            .await
            .map_err(api_error)?;
        Ok(wire::measurement(&m))
    }
}

/// The ticket of `r` and what measuring it covers, once `caller` sees it,
/// may take its measuring step and it is open.
fn ticket_request(
    health: &crate::ticket::HealthPart,
    inv: &Inventory,
    caller: &Caller,
    ticket: &crate::sop::TicketNumber,
) -> Result<(TicketInfo, Vec<String>, Vec<String>), ApiError> {
    let t = scope::ticket(caller, &health.sop_store, ticket)?;
    let number = t.info.number.clone();
    let sop = health
        .sop_store
        .sop_by_hash(&number, &t.state.sop.hash)
        .map_err(|e| ApiError::internal("reading the ticket's SOP", e))?;
    allowed(&sop, &caller.roles, "ticket.measure", false)?;
    if t.state.is_closed() {
        return Err(ApiError::Refused(format!(
            "ticket {number} is closed; measurements are taken while it is open"
        )));
    }
    let affected = health
        .store
        .get(&number)
        .map_err(|e| ApiError::internal("reading the ticket's health record", e))?
        .map(|h| h.affected)
        .unwrap_or_default();
    let (devices, links) = ticket_subject(&t.info, &affected, inv)?;
    Ok((t.info, devices, links))
}

/// Whether `caller` may measure ticket `number` now: the checks
/// `MeasureTicket` makes before it sends anything to an agent.
pub fn may_measure(
    health: &crate::ticket::HealthPart,
    inv: &Inventory,
    caller: &Caller,
    number: &crate::sop::TicketNumber,
) -> bool {
    ticket_request(health, inv, caller, number).is_ok()
}

#[tonic::async_trait]
impl v1::measure_server::Measure for MeasureApi {
    async fn measure_ticket(
        &self,
        req: Request<v1::MeasureTicketRequest>,
    ) -> Result<Response<v1::Measurement>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let ticket = limits::ticket_number("ticket", &r.ticket)?;
        let phase = wire::phase(r.phase())
            .ok_or_else(|| ApiError::invalid("phase", "phase must be before or after"))?;
        let shape = shape(r.count, r.window_s)?;
        let (service, health) = self.parts();
        let inv = self.hub.inventory();
        let who = caller.name.clone();
        let (info, devices, links) = blocking("reading the ticket to measure", move || {
            ticket_request(&health, &inv, &caller, &ticket)
        })
        .await?;
        let m = new_measurement(
            Some(info.number),
            Some(phase),
            info.opd,
            devices,
            links,
            shape,
            &who,
        );
        Ok(Response::new(self.start(&service, m, r.queue).await?))
    }

    async fn measure_device(
        &self,
        req: Request<v1::MeasureDeviceRequest>,
    ) -> Result<Response<v1::Measurement>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::required("device", &r.device, len::ID)?;
        limits::text("link", &r.link, len::ID)?;
        let (service, health) = self.parts();
        let inv = self.hub.inventory();
        let d = scope::device(&caller, &inv, &r.device)?;
        allowed(health.sop_store.sop(), &caller.roles, "measure", true)?;
        let shape = shape(r.count, r.window_s)?;
        let links = match r.link.trim() {
            "" => Vec::new(),
            name => {
                // Link names are unique per device, not across devices.
                let on_it = inv
                    .links
                    .iter()
                    .find(|l| l.name == name && l.device == d.id);
                let Some(l) = on_it.or_else(|| inv.links.iter().find(|l| l.name == name)) else {
                    return Err(ApiError::NotFound(format!(
                        "unknown link {name:?} (see `siaga links`)"
                    ))
                    .into());
                };
                if l.device != d.id {
                    return Err(ApiError::invalid(
                        "link",
                        format!("link {name:?} is on device {}, not on {}", l.device, d.id),
                    )
                    .into());
                }
                vec![l.name.clone()]
            }
        };
        let m = new_measurement(
            None,
            None,
            d.opd.clone(),
            vec![d.id.clone()],
            links,
            shape,
            &caller.name,
        );
        Ok(Response::new(self.start(&service, m, r.queue).await?))
    }

    async fn get_measurement(
        &self,
        req: Request<v1::GetMeasurementRequest>,
    ) -> Result<Response<v1::Measurement>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::required("id", &r.id, len::ID)?;
        let id = r.id.trim().to_ascii_uppercase();
        let (service, _) = self.parts();
        let m = blocking("reading a measurement", move || {
            let m = service
                .get(&id)
                .map_err(|e| ApiError::internal("reading a measurement", e))?
                .ok_or_else(|| scope::no_measurement(&id))?;
            scope::measurement(&caller, &id, &m.opd)?;
            Ok(m)
        })
        .await?;
        Ok(Response::new(wire::measurement(&m)))
    }

    async fn list_ticket_measurements(
        &self,
        req: Request<v1::ListTicketMeasurementsRequest>,
    ) -> Result<Response<v1::ListTicketMeasurementsResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let number = limits::ticket_number("ticket", &r.ticket)?;
        let page = Page::new(r.page_size, &r.page_token, &format!("ticket={number}"))?;
        let (service, health) = self.parts();
        let mut all = blocking("listing a ticket's measurements", move || {
            let t = scope::ticket(&caller, &health.sop_store, &number)?;
            let all = service
                .for_ticket(&t.info.number)
                .map_err(|e| ApiError::internal("listing a ticket's measurements", e))?;
            Ok(all
                .into_iter()
                .filter(|m| scope::listed(&caller, &m.opd))
                .collect::<Vec<_>>())
        })
        .await?;
        all.sort_by_key(|m| measurement_key(&m.id));
        let (list, next_page_token) = page.take(all, |m| measurement_key(&m.id));
        Ok(Response::new(v1::ListTicketMeasurementsResponse {
            measurements: list.iter().map(wire::measurement).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use test_case::test_case;

    use super::*;
    use crate::sop::file::DEFAULT_SOP;
    use crate::sop::workflow::Origin;

    const INV: &str = r#"
interval = "10s"
[[opd]]
id = "dinkes"
[[opd]]
id = "bappeda"
[[device]]
id = "dinkes-rtr"
opd = "dinkes"
kind = "router"
address = "198.18.1.1"
[[device]]
id = "dinkes-sw1"
opd = "dinkes"
kind = "switch"
address = "198.18.1.2"
parent = "dinkes-rtr"
[[device]]
id = "bappeda-sw1"
opd = "bappeda"
kind = "switch"
address = "198.18.2.2"
[[link]]
device = "dinkes-rtr"
interface = "eth1"
name = "wan"
[[link]]
device = "dinkes-rtr"
interface = "eth2"
name = "lan"
"#;

    fn info(device: Option<&str>, link: Option<&str>) -> TicketInfo {
        TicketInfo {
            number: "PJ-2026-0001".into(),
            opd: "dinkes".into(),
            opd_name: None,
            origin: Origin::Detected,
            problem: "x".into(),
            reason: None,
            device: device.map(str::to_string),
            link: link.map(str::to_string),
            opened_at: Utc::now(),
        }
    }

    fn inv() -> Inventory {
        Inventory::parse(Path::new("inventory.toml"), INV).unwrap()
    }

    #[test_case(Some("dinkes-rtr"), None, &[], &["dinkes-rtr"], &["wan", "lan"] ; "a device ticket: the device and its links")]
    #[test_case(Some("dinkes-rtr"), Some("wan"), &[], &["dinkes-rtr"], &["wan"] ; "a link ticket: only that link")]
    #[test_case(None, Some("lan"), &[], &["dinkes-rtr"], &["lan"] ; "a link alone brings its device")]
    #[test_case(Some("dinkes-rtr"), None, &["dinkes-sw1"], &["dinkes-rtr", "dinkes-sw1"], &["wan", "lan"] ; "the devices behind it too")]
    #[test_case(None, None, &["dinkes-sw1", "dinkes-rtr"], &["dinkes-rtr", "dinkes-sw1"], &[] ; "an OPD ticket: what it affects")]
    fn what_a_ticket_measures(
        device: Option<&str>,
        link: Option<&str>,
        affected: &[&str],
        devices: &[&str],
        links: &[&str],
    ) {
        let affected = affected.iter().map(|s| s.to_string()).collect();
        let (d, l) = ticket_subject(&info(device, link), &affected, &inv()).unwrap();
        assert_eq!(d, devices);
        assert_eq!(l, links);
    }

    #[test_case(None, None, "names no device or link" ; "nothing to measure")]
    #[test_case(Some("dinkes-gone"), None, "device \"dinkes-gone\" of ticket PJ-2026-0001 is not in the inventory" ; "device gone")]
    #[test_case(Some("bappeda-sw1"), None, "belongs to OPD bappeda" ; "another OPD")]
    #[test_case(None, Some("old"), "link \"old\" of ticket PJ-2026-0001" ; "link gone")]
    fn a_ticket_that_cannot_be_measured_says_why(
        device: Option<&str>,
        link: Option<&str>,
        words: &str,
    ) {
        let e = ticket_subject(&info(device, link), &BTreeSet::new(), &inv()).unwrap_err();
        assert!(e.to_string().contains(words), "{e}");
    }

    #[test]
    fn only_the_measuring_step_may_measure_a_ticket() {
        let sop = crate::sop::file::parse(DEFAULT_SOP, Path::new("sop.toml")).unwrap();
        let (roles, steps) = measuring_roles(&sop);
        assert_eq!((roles, steps), (vec!["tim_teknis".to_string()], vec![6]));
        allowed(&sop, &[Role::TIM_TEKNIS], "ticket.measure", false).unwrap();
        let e = allowed(&sop, &[Role::HELPDESK], "ticket.measure", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ticket.measure is for tim_teknis (SOP step 6); you are helpdesk"
        );
        assert!(matches!(e, ApiError::Denied(_)));
        assert!(allowed(&sop, &[Role::ADMIN], "ticket.measure", false).is_err());
        allowed(&sop, &[Role::ADMIN], "measure", true).unwrap();
        let e = allowed(&sop, &[], "measure", true).unwrap_err();
        assert!(e.to_string().ends_with("you have no role"), "{e}");
    }

    #[test_case(0, 0, Ok((100, 10_000)) ; "zero means default")]
    #[test_case(20, 2, Ok((20, 2_000)) ; "given")]
    #[test_case(10_001, 0, Err("count: 10001: at most 10000") ; "too many")]
    #[test_case(0, 601, Err("window_s: window 601 s: at most 600 s") ; "too long")]
    fn counts_and_windows(count: u32, window: u64, want: Result<(u32, u64), &str>) {
        match (shape(count, window), want) {
            (Ok(got), Ok(w)) => assert_eq!(got, w),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
            (got, w) => panic!("{got:?} vs {w:?}"),
        }
    }
}

/// The policy matrix's cases of the `Measure` service, and its own
/// in-process tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod matrix {
    use std::sync::Arc;

    use siaga_proto::v1;
    use siaga_proto::v1::measure_client::MeasureClient;
    use siaga_proto::v1::tickets_client::TicketsClient;
    use tonic::Code;

    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::{Fixture, OTHER, OWN};

    /// The switch of `opd` in the fixture's inventory.
    fn switch(opd: &str) -> String {
        format!("{opd}-sw")
    }

    /// A letter ticket of `opd` about its switch, with a `before`
    /// measurement queued by the technician (no agent runs in the fixture).
    async fn measured_ticket(f: &Fixture, opd: &str) -> String {
        f.once(&format!("measured ticket of {opd}"), async {
            let today = chrono::Utc::now()
                .with_timezone(&chrono_tz::Asia::Jakarta)
                .date_naive();
            let mut t = TicketsClient::new(f.as_role("helpdesk"));
            let id = t
                .new_ticket(v1::NewTicketRequest {
                    opd: opd.into(),
                    letter_number: format!("007/{opd}/ukur"),
                    letter_date: today.to_string(),
                    subject: "Switch mati".into(),
                    device: switch(opd),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("NewTicket for {opd}: {s}"))
                .into_inner()
                .ticket
                .expect("ticket")
                .id;
            let mut m = MeasureClient::new(f.as_role("tim_teknis"));
            m.measure_ticket(v1::MeasureTicketRequest {
                ticket: id.clone(),
                phase: v1::measurement::Phase::Before.into(),
                queue: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("MeasureTicket for {opd}: {s}"));
            id
        })
        .await
    }

    /// A measurement of `opd`'s switch outside a ticket, queued by the
    /// technician.
    async fn measurement_of(f: &Fixture, opd: &str) -> String {
        f.once(&format!("measurement of {opd}"), async {
            let mut m = MeasureClient::new(f.as_role("tim_teknis"));
            m.measure_device(v1::MeasureDeviceRequest {
                device: switch(opd),
                queue: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("MeasureDevice for {opd}: {s}"))
            .into_inner()
            .id
        })
        .await
    }

    /// Every RPC of the `Measure` service.
    pub const CASES: &[Case] = &[
        Case {
            rpc: "/siaga.v1.Measure/MeasureTicket",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = measured_ticket(&f, opd).await;
                    let mut c = MeasureClient::new(f.channel(p));
                    // No agent runs: whoever may measure is told it is offline.
                    match c
                        .measure_ticket(v1::MeasureTicketRequest {
                            ticket: id,
                            phase: v1::measurement::Phase::After.into(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(_) => Outcome::Seen,
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Measure/MeasureDevice",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = MeasureClient::new(f.channel(p));
                    match c
                        .measure_device(v1::MeasureDeviceRequest {
                            device: switch(opd),
                            link: "uplink".into(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(_) => Outcome::Seen,
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Measure/GetMeasurement",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = measurement_of(&f, opd).await;
                    let mut c = MeasureClient::new(f.channel(p));
                    match c
                        .get_measurement(v1::GetMeasurementRequest {
                            id: id.to_ascii_lowercase(),
                        })
                        .await
                    {
                        Ok(r) if r.get_ref().id == id && r.get_ref().opd == opd => Outcome::Seen,
                        Ok(r) => Outcome::Refused(Code::Unknown, format!("{:?}", r.get_ref())),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Measure/ListTicketMeasurements",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let id = measured_ticket(&f, opd).await;
                    let mut c = MeasureClient::new(f.channel(p));
                    match c
                        .list_ticket_measurements(v1::ListTicketMeasurementsRequest {
                            ticket: id.clone(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(r) if r.get_ref().measurements.is_empty() => Outcome::Hidden,
                        Ok(r) if r.get_ref().measurements.iter().all(|m| m.ticket == id) => {
                            Outcome::Seen
                        }
                        Ok(r) => Outcome::Refused(Code::Unknown, format!("{:?}", r.get_ref())),
                        Err(s) => s.into(),
                    }
                })
            },
        },
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn measurements_are_taken_read_and_listed_within_the_opd() {
        let f = Arc::new(Fixture::start().await);
        let mut teknisi = MeasureClient::new(f.as_role("tim_teknis"));
        let mut opd = MeasureClient::new(f.as_role("pemohon"));

        // No agent: refused at once, saying what to do.
        let s = teknisi
            .measure_device(v1::MeasureDeviceRequest {
                device: switch(OWN),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        assert!(
            s.message()
                .contains("the agent of OPD dinkes has never connected; use --queue"),
            "{s:?}"
        );

        // Queued: kept, with when it lapses.
        let ticket = measured_ticket(&f, OWN).await;
        let again = teknisi
            .measure_ticket(v1::MeasureTicketRequest {
                ticket: ticket.to_ascii_lowercase(),
                phase: v1::measurement::Phase::After.into(),
                count: 10,
                window_s: 2,
                queue: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                again.state().word(),
                again.phase().word(),
                again.ticket.as_str()
            ),
            ("queued", "after", ticket.as_str())
        );
        assert_eq!((again.icmp_count, again.window_ms), (10, 2_000));
        assert!(again.expires_at.is_some(), "{again:?}");
        assert_eq!(again.devices, vec![switch(OWN)]);
        assert_eq!(again.links, vec!["uplink".to_string()]);

        // Listed oldest first, page by page.
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let r = opd
                .list_ticket_measurements(v1::ListTicketMeasurementsRequest {
                    ticket: ticket.clone(),
                    page_size: 1,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.measurements.len() <= 1);
            ids.extend(
                r.measurements
                    .into_iter()
                    .map(|m| (m.id.clone(), m.phase().word())),
            );
            if r.next_page_token.is_empty() {
                break;
            }
            token = r.next_page_token;
        }
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids[0].0 < ids[1].0, "{ids:?}");
        assert_eq!((ids[0].1, ids[1].1), ("before", "after"));

        // The pemohon reads their own OPD's, not the other's.
        let own = measurement_of(&f, OWN).await;
        let other = measurement_of(&f, OTHER).await;
        let m = opd
            .get_measurement(v1::GetMeasurementRequest { id: own.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((m.opd.as_str(), m.requested_by.as_str()), (OWN, "teknisi"));
        let s = opd
            .get_measurement(v1::GetMeasurementRequest { id: other.clone() })
            .await
            .unwrap_err();
        let missing = opd
            .get_measurement(v1::GetMeasurementRequest {
                id: "M-999999".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), format!("no measurement {other}"));
        assert_eq!(missing.code(), Code::NotFound);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_requests_name_the_field() {
        let f = Fixture::start().await;
        let mut c = MeasureClient::new(f.as_role("tim_teknis"));
        let ticket = measured_ticket(&f, OWN).await;
        let cases = [
            (
                v1::MeasureTicketRequest {
                    ticket: ticket.clone(),
                    // A phase only a newer client knows.
                    phase: 99,
                    ..Default::default()
                },
                "phase: phase must be before or after",
            ),
            (
                v1::MeasureTicketRequest {
                    ticket: ticket.clone(),
                    phase: v1::measurement::Phase::Before.into(),
                    count: 10_001,
                    ..Default::default()
                },
                "count: 10001: at most 10000",
            ),
            (
                v1::MeasureTicketRequest {
                    ticket: ticket.clone(),
                    phase: v1::measurement::Phase::Before.into(),
                    window_s: 601,
                    ..Default::default()
                },
                "window_s: window 601 s: at most 600 s",
            ),
        ];
        for (r, words) in cases {
            let s = c.measure_ticket(r).await.unwrap_err();
            assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
            assert!(s.message().starts_with(words), "{s:?}");
        }
        let s = c
            .measure_device(v1::MeasureDeviceRequest {
                device: switch(OWN),
                link: "nowhere".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        let s = MeasureClient::new(f.as_role("helpdesk"))
            .measure_device(v1::MeasureDeviceRequest {
                device: switch(OWN),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
        assert!(
            s.message()
                .starts_with("measure is for tim_teknis or admin (SOP step 6); you are helpdesk"),
            "{s:?}"
        );
    }
}
