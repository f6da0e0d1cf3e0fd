//! Admin `Call` methods for measurements.
//!
//! | method | arguments | answer |
//! | --- | --- | --- |
//! | `ticket.measure` | `{"ticket", "phase": "before"\|"after", "count"?, "window_s"?, "queue"?}` | the [`Measurement`] |
//! | `measure` | `{"device", "link"?, "count"?, "window_s"?, "queue"?}` | the [`Measurement`] |
//! | `measure.get` | `{"id": "M-000001"}` | the [`Measurement`] |
//! | `ticket.measurements` | `{"ticket"}` | array of [`Measurement`], oldest first |
//!
//! A ticket is measured by whoever may take its SOP's measuring step (Tim
//! Teknis in the default SOP, step 6); a device outside a ticket by the same
//! roles or an admin. Anyone enrolled may read measurements.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::model::{MeasureState, Measurement, Phase};
use super::service::{MeasureError, MeasureService};
use crate::inventory::Inventory;
use crate::sop::model::Sop;
use crate::sop::store::SopStore;
use crate::sop::workflow::TicketInfo;
use crate::ticket::TicketStore;

/// Echo requests per device when the caller names no count.
pub const DEFAULT_COUNT: u32 = 100;
/// Most echo requests per device.
pub const MAX_COUNT: u32 = 10_000;
/// SNMP window when the caller names none, seconds.
pub const DEFAULT_WINDOW_S: u64 = 10;
/// Longest SNMP window, seconds.
pub const MAX_WINDOW_S: u64 = 600;

/// What the calls need from the running collector.
pub struct Env<'a> {
    /// Measurements and the routes to the agents.
    pub service: &'a MeasureService,
    /// The inventory in force.
    pub inventory: &'a Inventory,
    /// Tickets and their SOP.
    pub sop_store: &'a SopStore,
    /// What health knows of tickets (affected devices).
    pub tickets: &'a TicketStore,
    /// When an agent of each OPD was last heard of.
    pub last_seen: HashMap<String, DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketMeasureArgs {
    ticket: String,
    phase: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    window_s: Option<u64>,
    #[serde(default)]
    queue: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceMeasureArgs {
    device: String,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    window_s: Option<u64>,
    #[serde(default)]
    queue: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketArgs {
    ticket: String,
}

fn args<T: for<'de> Deserialize<'de>>(method: &str, json: &str) -> Result<T, MeasureError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json)
        .map_err(|e| MeasureError::BadRequest(format!("{method}: bad arguments: {e}")))
}

fn out<T: serde::Serialize>(v: &T) -> Result<String, MeasureError> {
    serde_json::to_string(v).map_err(|e| MeasureError::Internal(e.to_string()))
}

/// Echo requests and window (ms) from the caller's values, checked.
pub fn shape(count: Option<u32>, window_s: Option<u64>) -> Result<(u32, u64), MeasureError> {
    let count = match count {
        None | Some(0) => DEFAULT_COUNT,
        Some(n) if n > MAX_COUNT => {
            return Err(MeasureError::BadRequest(format!(
                "count {n}: at most {MAX_COUNT} echo requests per device"
            )));
        }
        Some(n) => n,
    };
    let window = match window_s {
        None | Some(0) => DEFAULT_WINDOW_S,
        Some(s) if s > MAX_WINDOW_S => {
            return Err(MeasureError::BadRequest(format!(
                "window {s} s: at most {MAX_WINDOW_S} s"
            )));
        }
        Some(s) => s,
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

fn you_are(roles: &[String]) -> String {
    if roles.is_empty() {
        "you have no role".into()
    } else {
        format!("you are {}", roles.join(", "))
    }
}

/// Refuses a caller who may not take `sop`'s measuring step (`admin`
/// counts too when `admin_ok`).
fn allowed(sop: &Sop, caller: &[String], method: &str, admin_ok: bool) -> Result<(), MeasureError> {
    let (roles, steps) = measuring_roles(sop);
    if sop.capacity_any(caller, &roles).is_some()
        || (admin_ok && caller.iter().any(|r| r == "admin"))
    {
        return Ok(());
    }
    let steps: Vec<String> = steps.iter().map(u32::to_string).collect();
    let mut who = roles.join(" or ");
    if admin_ok {
        who.push_str(" or admin");
    }
    Err(MeasureError::Denied(format!(
        "{method} is for {who} (SOP step {}); {}",
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
) -> Result<(Vec<String>, Vec<String>), MeasureError> {
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
                MeasureError::NotFound(format!(
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
        return Err(MeasureError::BadRequest(format!(
            "ticket {} names no device or link to measure; measure a device with `siaga measure DEVICE`",
            info.number
        )));
    }
    for d in &devices {
        match inv.devices.get(d) {
            None => {
                return Err(MeasureError::NotFound(format!(
                    "device {d:?} of ticket {} is not in the inventory any more",
                    info.number
                )));
            }
            Some(dev) if dev.opd != info.opd => {
                return Err(MeasureError::BadRequest(format!(
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

fn ticket_number(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

/// Answers a measurement call; `None` when `method` is not one.
pub async fn call(
    env: &Env<'_>,
    user: &str,
    roles: &[String],
    method: &str,
    json: &str,
) -> Option<Result<String, MeasureError>> {
    let r = match method {
        "ticket.measure" => ticket_measure(env, user, roles, json).await,
        "measure" => device_measure(env, user, roles, json).await,
        "measure.get" => args::<IdArgs>(method, json).and_then(|a| {
            let id = a.id.trim().to_ascii_uppercase();
            match env.service.get(&id)? {
                Some(m) => out(&m),
                None => Err(MeasureError::NotFound(format!("no measurement {id}"))),
            }
        }),
        "ticket.measurements" => args::<TicketArgs>(method, json).and_then(|a| {
            let number = ticket_number(&a.ticket);
            env.sop_store
                .get(&number)
                .map_err(|e| MeasureError::NotFound(e.to_string()))?;
            out(&env.service.for_ticket(&number)?)
        }),
        _ => return None,
    };
    Some(r)
}

async fn ticket_measure(
    env: &Env<'_>,
    user: &str,
    roles: &[String],
    json: &str,
) -> Result<String, MeasureError> {
    let a: TicketMeasureArgs = args("ticket.measure", json)?;
    let phase: Phase = a.phase.parse().map_err(MeasureError::BadRequest)?;
    let shape = shape(a.count, a.window_s)?;
    let number = ticket_number(&a.ticket);
    let t = env.sop_store.get(&number).map_err(|e| match e {
        crate::sop::store::StoreError::NoTicket(_) => MeasureError::NotFound(e.to_string()),
        other => MeasureError::Internal(other.to_string()),
    })?;
    let sop = env
        .sop_store
        .sop_by_hash(&t.info.number, &t.state.sop.hash)
        .map_err(|e| MeasureError::Internal(e.to_string()))?;
    allowed(&sop, roles, "ticket.measure", false)?;
    if t.state.is_closed() {
        return Err(MeasureError::BadRequest(format!(
            "ticket {number} is closed; measurements are taken while it is open"
        )));
    }
    let affected = env
        .tickets
        .get(&number)?
        .map(|h| h.affected)
        .unwrap_or_default();
    let (devices, links) = ticket_subject(&t.info, &affected, env.inventory)?;
    let m = new_measurement(
        Some(number),
        Some(phase),
        t.info.opd.clone(),
        devices,
        links,
        shape,
        user,
    );
    let seen = env.last_seen.get(&m.opd).copied();
    out(&env.service.start(m, a.queue, seen, Utc::now()).await?)
}

async fn device_measure(
    env: &Env<'_>,
    user: &str,
    roles: &[String],
    json: &str,
) -> Result<String, MeasureError> {
    let a: DeviceMeasureArgs = args("measure", json)?;
    allowed(env.sop_store.sop(), roles, "measure", true)?;
    let shape = shape(a.count, a.window_s)?;
    let Some(d) = env.inventory.devices.get(a.device.trim()) else {
        return Err(MeasureError::NotFound(format!(
            "unknown device {:?} (see `siaga devices`)",
            a.device
        )));
    };
    let links = match &a.link {
        None => Vec::new(),
        Some(name) => {
            let Some(l) = env.inventory.links.iter().find(|l| l.name == name.trim()) else {
                return Err(MeasureError::NotFound(format!(
                    "unknown link {name:?} (see `siaga links`)"
                )));
            };
            if l.device != d.id {
                return Err(MeasureError::BadRequest(format!(
                    "link {name:?} is on device {}, not on {}",
                    l.device, d.id
                )));
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
        user,
    );
    let seen = env.last_seen.get(&m.opd).copied();
    out(&env.service.start(m, a.queue, seen, Utc::now()).await?)
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
        allowed(&sop, &["tim_teknis".into()], "ticket.measure", false).unwrap();
        let e = allowed(&sop, &["helpdesk".into()], "ticket.measure", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ticket.measure is for tim_teknis (SOP step 6); you are helpdesk"
        );
        assert!(matches!(e, MeasureError::Denied(_)));
        assert!(allowed(&sop, &["admin".into()], "ticket.measure", false).is_err());
        allowed(&sop, &["admin".into()], "measure", true).unwrap();
        let e = allowed(&sop, &[], "measure", true).unwrap_err();
        assert!(e.to_string().ends_with("you have no role"), "{e}");
    }

    #[test_case(None, None, Ok((100, 10_000)) ; "defaults")]
    #[test_case(Some(0), Some(0), Ok((100, 10_000)) ; "zero means default")]
    #[test_case(Some(20), Some(2), Ok((20, 2_000)) ; "given")]
    #[test_case(Some(10_001), None, Err("at most 10000") ; "too many")]
    #[test_case(None, Some(601), Err("at most 600 s") ; "too long")]
    fn counts_and_windows(count: Option<u32>, window: Option<u64>, want: Result<(u32, u64), &str>) {
        match (shape(count, window), want) {
            (Ok(got), Ok(w)) => assert_eq!(got, w),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
            (got, w) => panic!("{got:?} vs {w:?}"),
        }
    }
}

/// The `Measure` gRPC service (measure.proto).
#[derive(Debug, Clone)]
pub struct MeasureApi {
    hub: std::sync::Arc<crate::hub::Hub>,
}

impl MeasureApi {
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
impl siaga_proto::v1::measure_server::Measure for MeasureApi {}
