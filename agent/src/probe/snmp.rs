//! SNMP interface health: system scalars plus ifTable/ifXTable in as few
//! GETBULK round trips as the device allows, and rates from consecutive polls.
//!
//! One GETBULK asks for the three system scalars (non-repeaters) and every
//! needed column at once, row after row; it continues from each column's
//! last OID until every column has left its table. A device with a handful
//! of interfaces answers in one round trip, and sysUpTime comes from the same
//! response as the counters.
//!
//! What the status tells apart:
//! - `TIMEOUT`: no SNMP answer at all (neither to the request nor to an
//!   unauthenticated SNMPv3 discovery probe).
//! - `AUTH_FAILURE`: SNMPv3 — the device answered with a usmStats report
//!   (unknown user, unsupported level, decryption error). A wrong password
//!   is answered with an unauthenticated wrongDigest report that the library
//!   rightly does not trust, so it looks like silence; it is told apart
//!   like a wrong community, below.
//!   v1/v2c — a device that ignores a community is silent, as the protocol
//!   wants; the poller then sends an SNMPv3 discovery probe, and if the
//!   device answers that, it is alive and speaking SNMP, so the silence means
//!   the community (or the v3 password) was refused. A device with SNMPv3
//!   switched off cannot be told apart from an unreachable one and shows
//!   `TIMEOUT`; one that drops requests under load but answers the probe
//!   would show `AUTH_FAILURE`.
//! - `MALFORMED`: an answer that does not decode (`malformed answer`), is
//!   larger than the receive buffer or than the device can send even for
//!   one value (`answer too large`), or does not fit what was asked (wrong
//!   types, a walk that goes backwards, missing scalars). An answer that
//!   came is never taken for a refused community.
//!
//! Bounds: strings are DisplayStrings (255 octets in the MIB), so longer
//! ones are cut at a UTF-8 boundary and flagged (`sys_truncated`,
//! `Interface::truncated`); at most `max_interfaces` interfaces are polled
//! and the rest counted (`interfaces_omitted`, from ifNumber). The walk may
//! take as many round trips as the cap needs even at one row per request;
//! answers that come back tooBig (or genErr, net-snmp's answer when it
//! cannot trim an encrypted one) or not at all are asked again for fewer
//! rows, then fewer columns, before the device counts as unreachable.
//!
//! Every device has its own socket ([`DeviceSocket`]): answers only from the
//! device's address and port, with the random id of the request, count;
//! the rest are dropped and counted per device (`forged_answers`).
//! - `ERROR`: anything else (bad configuration, socket errors).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_snmp::v3::ReportStatus;
use async_snmp::{
    Auth, AuthProtocol, Client, ClientBuilder, EngineCache, Error, ErrorKind, ErrorStatus, Oid,
    PrivProtocol, Retry, UsmConfig, Value, VarBind,
};
use siaga_proto::v1::{Device, Event, Interface, Link, SnmpResult, SnmpStatus, SnmpTarget};
use siaga_proto::words::SnmpVersion;

use crate::metrics::Metrics;
use crate::probe::health::HealthPoller;
use crate::probe::snmp_socket::DeviceSocket;

/// Varbinds asked for per GETBULK (columns × repetitions), well inside one
/// UDP datagram for typical values.
const BULK_VARBINDS: u32 = 120;
/// The same for SNMPv3, whose encrypted answers net-snmp cannot trim.
const BULK_VARBINDS_V3: u32 = 60;
/// Round trips a walk may take beyond one per interface row (the slowest
/// walk: one row per request) before it is abandoned as runaway.
const EXTRA_ROUNDS: usize = 64;
/// Octets of a DisplayString (SNMPv2-TC): longer strings are cut.
pub const DISPLAY_STRING_MAX: usize = 255;
/// Interfaces polled per device unless configured otherwise: a chassis
/// switch has a few hundred to a few thousand.
pub const DEFAULT_MAX_INTERFACES: usize = 4096;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1];
const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3];
const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5];
const IF_NUMBER_0: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 1, 0];
const IF_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// The interface columns polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Descr,
    Speed,
    Admin,
    Oper,
    InOctets,
    InDiscards,
    InErrors,
    OutOctets,
    OutDiscards,
    OutErrors,
    Name,
    HcIn,
    HcOut,
    HighSpeed,
    Alias,
}

const COLUMNS: [(Col, bool, u32); 15] = [
    (Col::Descr, false, 2),
    (Col::Speed, false, 5),
    (Col::Admin, false, 7),
    (Col::Oper, false, 8),
    (Col::InOctets, false, 10),
    (Col::InDiscards, false, 13),
    (Col::InErrors, false, 14),
    (Col::OutOctets, false, 16),
    (Col::OutDiscards, false, 19),
    (Col::OutErrors, false, 20),
    (Col::Name, true, 1),
    (Col::HcIn, true, 6),
    (Col::HcOut, true, 10),
    (Col::HighSpeed, true, 15),
    (Col::Alias, true, 18),
];

fn column_oid(col: usize) -> Oid {
    let (_, x, n) = COLUMNS[col];
    let mut arcs = if x {
        IFX_ENTRY.to_vec()
    } else {
        IF_ENTRY.to_vec()
    };
    arcs.push(n);
    Oid::from_slice(&arcs)
}

/// One interface as read, before rates.
#[derive(Debug, Default, Clone)]
struct RawIf {
    descr: Option<String>,
    name: Option<String>,
    alias: Option<String>,
    admin: Option<u32>,
    oper: Option<u32>,
    speed: Option<u64>,
    high_speed: Option<u64>,
    in32: Option<u64>,
    out32: Option<u64>,
    hc_in: Option<u64>,
    hc_out: Option<u64>,
    in_errors: Option<u64>,
    out_errors: Option<u64>,
    in_discards: Option<u64>,
    out_discards: Option<u64>,
    /// A string column was cut to a DisplayString.
    truncated: bool,
}

/// What one poll read from a device.
#[derive(Debug, Default)]
struct Reading {
    sys_descr: String,
    sys_name: String,
    sys_truncated: bool,
    uptime_cs: u32,
    ifs: BTreeMap<u32, RawIf>,
    /// Interfaces at most (the cap); a row beyond it ends the walk.
    max_ifs: usize,
    /// A row beyond the cap was seen.
    capped: bool,
    /// Interfaces beyond the cap.
    omitted: u32,
}

impl Reading {
    fn new(max_ifs: usize) -> Self {
        Self {
            max_ifs,
            ..Self::default()
        }
    }

    /// Whether interface `index` is (or may still be) in the reading.
    fn admits(&mut self, index: u32) -> bool {
        if self.ifs.contains_key(&index) || self.ifs.len() < self.max_ifs {
            return true;
        }
        self.capped = true;
        false
    }
}

/// Why a poll failed, as the user should see it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: SnmpStatus,
    pub(crate) message: String,
}

impl Failure {
    fn new(status: SnmpStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Counters of one interface kept for the next poll's rates.
#[derive(Debug, Clone, Copy)]
struct PrevIf {
    hc: bool,
    in_octets: Option<u64>,
    out_octets: Option<u64>,
    errors: Option<u64>,
    discards: Option<u64>,
}

#[derive(Debug)]
struct PrevPoll {
    at: Instant,
    uptime_cs: u32,
    ifs: HashMap<u32, PrevIf>,
}

/// Bounds of what the poller takes from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnmpLimits {
    /// Interfaces polled per device; the rest are counted, not polled.
    pub max_interfaces: usize,
}

impl Default for SnmpLimits {
    fn default() -> Self {
        Self {
            max_interfaces: DEFAULT_MAX_INTERFACES,
        }
    }
}

pub(crate) type DeviceClient = Client<DeviceSocket>;

/// Polls devices over SNMP and keeps each device's previous counters for
/// rates. Each device gets its own UDP socket; share one poller.
pub struct SnmpPoller {
    engines: Arc<EngineCache>,
    clients: Mutex<HashMap<String, (String, DeviceClient, DeviceSocket)>>,
    prev: Mutex<HashMap<String, PrevPoll>>,
    health: HealthPoller,
    metrics: Metrics,
    limits: SnmpLimits,
}

impl std::fmt::Debug for SnmpPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnmpPoller").finish_non_exhaustive()
    }
}

impl Default for SnmpPoller {
    fn default() -> Self {
        Self::new()
    }
}

impl SnmpPoller {
    /// A poller with no history, the default limits and counters of its own.
    pub fn new() -> Self {
        Self::with_limits(Metrics::default(), SnmpLimits::default())
    }

    /// A poller that counts in `metrics` and takes at most `limits`.
    pub fn with_limits(metrics: Metrics, limits: SnmpLimits) -> Self {
        Self {
            engines: Arc::new(EngineCache::new()),
            clients: Mutex::new(HashMap::new()),
            prev: Mutex::new(HashMap::new()),
            health: HealthPoller::default(),
            metrics,
            limits: SnmpLimits {
                max_interfaces: limits.max_interfaces.max(1),
            },
        }
    }

    /// The per-device counters every result carries.
    fn counted(&self, device: &str, r: SnmpResult) -> SnmpResult {
        SnmpResult {
            forged_answers: Metrics::of(&self.metrics.snmp_forged_answers, device).get(),
            traps_refused: Metrics::of(&self.metrics.traps_refused, device).get(),
            traps_suppressed: Metrics::of(&self.metrics.traps_suppressed, device).get(),
            ..r
        }
    }

    /// Polls one device: system scalars, every interface, rates against the
    /// previous poll of the same device, and the events this poll revealed
    /// (a reboot, a counter that went backwards).
    pub async fn poll(&self, device: &Device, links: &[Link]) -> (SnmpResult, Vec<Event>) {
        let started = Instant::now();
        let outcome = self.read(device).await;
        let poll_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match outcome {
            Ok(reading) => {
                let at = Instant::now();
                let uptime_cs = reading.uptime_cs;
                let (result, events) = self.with_rates(device, links, reading, at);
                // The device has just answered with these credentials.
                let health = match self.client(device).await {
                    Ok((client, _)) => self.health.read(&device.id, &client, uptime_cs).await,
                    Err(_) => None,
                };
                (
                    self.counted(
                        &device.id,
                        SnmpResult {
                            poll_us,
                            health,
                            ..result
                        },
                    ),
                    events,
                )
            }
            Err(f) => {
                tracing::debug!(device = %device.id, status = ?f.status, error = %f.message, "snmp poll failed");
                (
                    self.counted(
                        &device.id,
                        SnmpResult {
                            status: f.status as i32,
                            error: f.message,
                            poll_us,
                            ..SnmpResult::default()
                        },
                    ),
                    Vec::new(),
                )
            }
        }
    }

    async fn client(&self, device: &Device) -> Result<(DeviceClient, DeviceSocket), Failure> {
        let target = device.snmp.clone().unwrap_or_default();
        let ip: IpAddr = device.address.parse().map_err(|_| {
            Failure::new(
                SnmpStatus::Error,
                format!("device address {:?} is not an IP address", device.address),
            )
        })?;
        let port = u16::try_from(target.port)
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or(161);
        let addr = SocketAddr::new(ip, port);
        let fingerprint = format!("{addr} {target:?}");
        if let Some((_, c, s)) = self
            .lock_clients()
            .get(&device.id)
            .filter(|(fp, _, _)| *fp == fingerprint)
        {
            return Ok((c.clone(), s.clone()));
        }
        let auth = auth_of(&target).map_err(|m| Failure::new(SnmpStatus::Error, m))?;
        let socket = self.socket(&device.id, addr).await?;
        let client = ClientBuilder::new(auth)
            .request_timeout(timeout_of(&target))
            .retry(retry_of(&target))
            .engine_cache(Arc::clone(&self.engines))
            .build_with_transport(socket.clone())
            .map_err(|e| classify(&e))?;
        self.lock_clients().insert(
            device.id.clone(),
            (fingerprint, client.clone(), socket.clone()),
        );
        Ok((client, socket))
    }

    async fn socket(&self, device: &str, addr: SocketAddr) -> Result<DeviceSocket, Failure> {
        DeviceSocket::bind(addr, Metrics::of(&self.metrics.snmp_forged_answers, device))
            .await
            .map_err(|e| Failure::new(SnmpStatus::Error, format!("opening the SNMP socket: {e}")))
    }

    #[allow(clippy::type_complexity)]
    fn lock_clients(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (String, DeviceClient, DeviceSocket)>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn read(&self, device: &Device) -> Result<Reading, Failure> {
        let (client, socket) = self.client(device).await?;
        let _ = socket.take_diagnosis();
        let v1 = device
            .snmp
            .as_ref()
            .is_some_and(|t| t.snmp_version() == Some(SnmpVersion::V1));
        let max_ifs = self.limits.max_interfaces;
        let walked = if v1 {
            read_v1(&client, max_ifs).await
        } else {
            read_bulk(
                &client,
                device
                    .snmp
                    .as_ref()
                    .is_some_and(|t| t.snmp_version() == Some(SnmpVersion::V3)),
                max_ifs,
            )
            .await
        };
        let walked = match walked {
            Ok(mut r) => {
                if r.capped {
                    r.omitted = omitted(&client, &r).await;
                }
                Ok(r)
            }
            Err(e) => Err(e),
        };
        if let (Err(_), Some(d)) = (&walked, socket.take_diagnosis()) {
            return Err(Failure::new(SnmpStatus::Malformed, d.to_string()));
        }
        match walked {
            Ok(r) => Ok(r),
            Err(WalkFail::Snmp(e)) => {
                let mut f = classify(&e);
                if f.status == SnmpStatus::Timeout
                    && self.answers_v3_discovery(&device.id, &client).await
                {
                    let v3 = device
                        .snmp
                        .as_ref()
                        .is_some_and(|t| t.snmp_version() == Some(SnmpVersion::V3));
                    f = Failure::new(
                        SnmpStatus::AuthFailure,
                        if v3 {
                            "credentials refused: the device answers SNMPv3 discovery but not our \
                             authenticated requests (wrong auth or privacy password)"
                        } else {
                            "community refused: the device answers SNMP (v3 discovery) but not to \
                             this community"
                        },
                    );
                }
                Err(f)
            }
            // The device answered this poll's first requests with our
            // credentials: whatever stopped the walk, it was not them.
            Err(WalkFail::Stalled(e)) => {
                let f = classify(&e);
                let message = format!("the device stopped answering mid-walk: {}", f.message);
                Err(Failure::new(f.status, message))
            }
            Err(WalkFail::Malformed(m)) => Err(Failure::new(SnmpStatus::Malformed, m)),
        }
    }

    /// Whether the device answers an unauthenticated SNMPv3 discovery: it
    /// is up and speaks SNMP.
    async fn answers_v3_discovery(&self, device: &str, client: &DeviceClient) -> bool {
        let Ok(socket) = self.socket(device, client.peer_addr()).await else {
            return false;
        };
        let probe = ClientBuilder::new(UsmConfig::new("siaga-discovery"))
            .request_timeout(Duration::from_millis(1500))
            .retry(Retry::none())
            .build_with_transport(socket);
        match probe {
            Ok(c) => {
                let r = c.get(&Oid::from_slice(&[1, 3, 6, 1, 2, 1, 1, 3, 0])).await;
                !matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Network | ErrorKind::Closed))
            }
            // Engine discovery itself failed with an answer (a report) vs silence.
            Err(e) => !matches!(
                e.kind(),
                ErrorKind::Timeout
                    | ErrorKind::Network
                    | ErrorKind::Closed
                    | ErrorKind::ConstructionTimeout
            ),
        }
    }

    fn with_rates(
        &self,
        device: &Device,
        links: &[Link],
        reading: Reading,
        at: Instant,
    ) -> (SnmpResult, Vec<Event>) {
        let mut prev_all = self.prev.lock().unwrap_or_else(|e| e.into_inner());
        let prev = prev_all.get(&device.id);
        let mut events = Vec::new();
        let rebooted = prev.is_some_and(|p| reading.uptime_cs < p.uptime_cs);
        if let (true, Some(p)) = (rebooted, prev) {
            events.push(Event {
                kind: "device_rebooted".into(),
                detail: format!(
                    "sysUpTime went back from {} to {} (1/100 s); no rates this poll",
                    p.uptime_cs, reading.uptime_cs
                ),
                source: "poll".into(),
                ..Event::default()
            });
        }
        let dt = prev.map(|p| at.saturating_duration_since(p.at).as_secs_f64());
        let mut interfaces = Vec::with_capacity(reading.ifs.len());
        let mut next_prev = HashMap::with_capacity(reading.ifs.len());
        for (&index, raw) in &reading.ifs {
            let mut iface = interface_of(index, raw);
            iface.link_name = link_name(device, links, &iface);
            let cur = PrevIf {
                hc: iface.hc_counters,
                in_octets: iface.in_octets,
                out_octets: iface.out_octets,
                errors: sum(iface.in_errors, iface.out_errors),
                discards: sum(iface.in_discards, iface.out_discards),
            };
            let before = prev.and_then(|p| p.ifs.get(&index));
            if let (Some(before), Some(dt), false) = (before, dt, rebooted) {
                match rates(before, &cur, dt, iface.speed_bps) {
                    Ok(r) => {
                        iface.in_bps = r.in_bps;
                        iface.out_bps = r.out_bps;
                        iface.util_in_pct = r.util_in;
                        iface.util_out_pct = r.util_out;
                        iface.errors_per_s = r.errors;
                        iface.discards_per_s = r.discards;
                    }
                    Err(why) => events.push(Event {
                        kind: "counter_reset".into(),
                        link: iface.link_name.clone(),
                        if_index: index,
                        detail: format!("{} ({}): {why}; no rate this poll", iface.if_name, index),
                        source: "poll".into(),
                        ..Event::default()
                    }),
                }
            }
            next_prev.insert(index, cur);
            interfaces.push(iface);
        }
        prev_all.insert(
            device.id.clone(),
            PrevPoll {
                at,
                uptime_cs: reading.uptime_cs,
                ifs: next_prev,
            },
        );
        (
            SnmpResult {
                status: SnmpStatus::Ok as i32,
                sys_uptime_cs: Some(u64::from(reading.uptime_cs)),
                sys_name: reading.sys_name,
                sys_descr: reading.sys_descr,
                sys_truncated: reading.sys_truncated,
                interfaces_omitted: reading.omitted,
                interfaces,
                ..SnmpResult::default()
            },
            events,
        )
    }
}

fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.wrapping_add(b?))
}

fn link_name(device: &Device, links: &[Link], iface: &Interface) -> String {
    links
        .iter()
        .filter(|l| l.device == device.id)
        .find(|l| {
            if l.if_index != 0 {
                l.if_index == iface.if_index
            } else {
                !l.interface.is_empty()
                    && (l.interface == iface.if_name || l.interface == iface.if_descr)
            }
        })
        .map(|l| l.name.clone())
        .unwrap_or_default()
}

fn interface_of(index: u32, raw: &RawIf) -> Interface {
    let hc = raw.hc_in.is_some() && raw.hc_out.is_some();
    // ifHighSpeed (Mbit/s) when ifSpeed saturates or is missing.
    let speed_bps = match (raw.speed, raw.high_speed) {
        (Some(s), Some(h)) if h > 0 && (s == u64::from(u32::MAX) || h * 1_000_000 > s) => {
            h * 1_000_000
        }
        (Some(s), _) => s,
        (None, Some(h)) => h * 1_000_000,
        (None, None) => 0,
    };
    Interface {
        if_index: index,
        if_name: raw
            .name
            .clone()
            .or_else(|| raw.descr.clone())
            .unwrap_or_default(),
        if_descr: raw.descr.clone().unwrap_or_default(),
        if_alias: raw.alias.clone().unwrap_or_default(),
        admin_status: raw.admin.unwrap_or(0),
        oper_status: raw.oper.unwrap_or(0),
        speed_bps,
        in_octets: if hc { raw.hc_in } else { raw.in32 },
        out_octets: if hc { raw.hc_out } else { raw.out32 },
        in_errors: raw.in_errors,
        out_errors: raw.out_errors,
        in_discards: raw.in_discards,
        out_discards: raw.out_discards,
        hc_counters: hc,
        truncated: raw.truncated,
        ..Interface::default()
    }
}

/// Rates of one interface between two polls.
#[derive(Debug, Default, PartialEq)]
struct Rates {
    in_bps: Option<f64>,
    out_bps: Option<f64>,
    util_in: Option<f64>,
    util_out: Option<f64>,
    errors: Option<f64>,
    discards: Option<f64>,
}

/// Increase of a counter. 64-bit counters never wrap in practice, so going
/// back is a reset. A 32-bit counter that goes back has wrapped once, unless
/// that would mean more than the link can carry (then it is a reset).
fn delta(
    before: u64,
    now: u64,
    wide: bool,
    dt: f64,
    max_per_s: Option<f64>,
) -> Result<u64, &'static str> {
    if now >= before {
        return Ok(now - before);
    }
    if wide {
        return Err("64-bit counter went backwards");
    }
    let wrapped = (u64::from(u32::MAX) - before) + now + 1;
    match max_per_s {
        Some(max) if (wrapped as f64) / dt > max * 1.1 => {
            Err("32-bit counter went backwards (reset, not a wrap)")
        }
        _ => Ok(wrapped),
    }
}

fn rates(before: &PrevIf, now: &PrevIf, dt: f64, speed_bps: u64) -> Result<Rates, &'static str> {
    if dt <= 0.0 {
        return Ok(Rates::default());
    }
    if before.hc != now.hc {
        return Err("counter width changed");
    }
    let max_octets = (speed_bps > 0).then(|| speed_bps as f64 / 8.0);
    let octets = |b: Option<u64>, n: Option<u64>| -> Result<Option<f64>, &'static str> {
        match (b, n) {
            (Some(b), Some(n)) => Ok(Some(delta(b, n, now.hc, dt, max_octets)? as f64 * 8.0 / dt)),
            _ => Ok(None),
        }
    };
    let per_s = |b: Option<u64>, n: Option<u64>| -> Result<Option<f64>, &'static str> {
        match (b, n) {
            // Error counters take years to wrap: going back is a reset.
            (Some(b), Some(n)) if n < b => Err("error or discard counter went backwards"),
            (Some(b), Some(n)) => Ok(Some((n - b) as f64 / dt)),
            _ => Ok(None),
        }
    };
    let in_bps = octets(before.in_octets, now.in_octets)?;
    let out_bps = octets(before.out_octets, now.out_octets)?;
    let util = |bps: Option<f64>| {
        bps.filter(|_| speed_bps > 0)
            .map(|b| b * 100.0 / speed_bps as f64)
    };
    Ok(Rates {
        in_bps,
        out_bps,
        util_in: util(in_bps),
        util_out: util(out_bps),
        errors: per_s(before.errors, now.errors)?,
        discards: per_s(before.discards, now.discards)?,
    })
}

enum WalkFail {
    /// Failed before the device answered anything.
    Snmp(Box<Error>),
    /// Failed after the device had answered part of the walk.
    Stalled(Box<Error>),
    Malformed(String),
}

impl WalkFail {
    /// The error, as seen after `answered` answers.
    fn after(e: Box<Error>, answered: bool) -> Self {
        if answered {
            WalkFail::Stalled(e)
        } else {
            WalkFail::Snmp(e)
        }
    }
}

impl From<Box<Error>> for WalkFail {
    fn from(e: Box<Error>) -> Self {
        WalkFail::Snmp(e)
    }
}

/// Round trips a walk of `max_ifs` rows may take: one per row at the
/// slowest, and some to spare for requests asked again smaller.
fn round_budget(max_ifs: usize) -> usize {
    max_ifs.saturating_add(EXTRA_ROUNDS)
}

/// An answer the device could not make small enough (tooBig, or genErr for
/// an encrypted one it cannot trim).
fn too_big(e: &Error) -> bool {
    matches!(
        e,
        Error::Snmp {
            status: ErrorStatus::TooBig | ErrorStatus::GenErr,
            ..
        }
    )
}

fn timed_out(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Timeout)
}

/// How much one GETBULK asks for; shrinks when answers are too big or lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ask {
    /// Varbinds per request (columns × repetitions).
    varbinds: u32,
    /// Columns per request.
    columns: usize,
}

impl Ask {
    fn reps(&self, columns: usize) -> u32 {
        (self.varbinds / columns.max(1) as u32).max(1)
    }

    /// The next smaller request: fewer rows, then fewer columns; `None`
    /// when one value per request is already too much.
    fn smaller(self, columns: usize) -> Option<Ask> {
        let columns = columns.min(self.columns).max(1);
        if self.reps(columns) > 1 {
            Some(Ask {
                varbinds: (self.varbinds / 2).max(columns as u32),
                columns,
            })
        } else if columns > 1 {
            let columns = columns / 2;
            Some(Ask {
                varbinds: columns as u32,
                columns,
            })
        } else {
            None
        }
    }
}

/// System scalars and the interface columns with GETBULK (v2c, v3).
async fn read_bulk(client: &DeviceClient, v3: bool, max_ifs: usize) -> Result<Reading, WalkFail> {
    let mut ask = Ask {
        varbinds: if v3 { BULK_VARBINDS_V3 } else { BULK_VARBINDS },
        columns: COLUMNS.len(),
    };
    let sys = [SYS_DESCR, SYS_UPTIME, SYS_NAME].map(Oid::from_slice);
    let bases: Vec<Oid> = (0..COLUMNS.len()).map(column_oid).collect();
    let mut reading = Reading::new(max_ifs);
    let mut cursor: Vec<(usize, Oid)> = bases.iter().cloned().enumerate().collect();
    let mut first = true;
    let mut lost = 0;
    for _ in 0..round_budget(max_ifs) {
        if cursor.is_empty() {
            return Ok(reading);
        }
        let width = ask.columns.min(cursor.len());
        let part = &cursor[..width];
        let mut oids = Vec::with_capacity(width + 3);
        if first {
            oids.extend(sys.iter().cloned());
        }
        oids.extend(part.iter().map(|(_, o)| o.clone()));
        let non_rep = if first { 3 } else { 0 };
        let vbs = match client.get_bulk(&oids, non_rep, ask.reps(width)).await {
            Ok(v) => {
                lost = 0;
                v
            }
            // Too big for one message, or lost (a big answer in fragments
            // that do not all arrive): ask for less. Twice lost in a row
            // at the same size is an unreachable device.
            Err(e) if too_big(&e) || (timed_out(&e) && lost < 1) => {
                if timed_out(&e) {
                    lost += 1;
                }
                match ask.smaller(width) {
                    Some(a) => ask = a,
                    None if first && too_big(&e) => {
                        // The system scalars alone may be the big part.
                        read_sys_alone(client, &mut reading).await?;
                        first = false;
                    }
                    None if too_big(&e) => {
                        return Err(WalkFail::Malformed(format!(
                            "answer too large: the device cannot fit one value of {} in an answer",
                            part[0].1
                        )));
                    }
                    None => return Err(WalkFail::after(e, !first)),
                }
                continue;
            }
            Err(e) => return Err(WalkFail::after(e, !first)),
        };
        let rest = if first {
            let (head, rest) = vbs.split_at_checked(3).ok_or_else(|| {
                WalkFail::Malformed(format!(
                    "GETBULK answer has {} varbinds, fewer than the 3 system scalars",
                    vbs.len()
                ))
            })?;
            read_sys(&mut reading, head)?;
            first = false;
            rest
        } else {
            &vbs[..]
        };
        let mut next = advance(&mut reading, &bases, part, rest)?;
        next.extend(cursor[width..].iter().cloned());
        cursor = next;
    }
    Err(WalkFail::Malformed(format!(
        "interface walk did not end after {} requests",
        round_budget(max_ifs)
    )))
}

/// The system scalars with one GET of their own.
async fn read_sys_alone(client: &DeviceClient, reading: &mut Reading) -> Result<(), WalkFail> {
    let oids = sys_instances();
    match client.get_many(&oids).await {
        Ok(resp) => read_sys(reading, &resp.varbinds),
        Err(e) if too_big(&e) => Err(WalkFail::Malformed(
            "answer too large: the device cannot fit sysDescr, sysUpTime and sysName in an answer"
                .into(),
        )),
        Err(e) => Err(e.into()),
    }
}

fn sys_instances() -> Vec<Oid> {
    [SYS_DESCR, SYS_UPTIME, SYS_NAME]
        .iter()
        .map(|a| {
            let mut v = a.to_vec();
            v.push(0);
            Oid::from_slice(&v)
        })
        .collect()
}

/// Interfaces beyond the cap: ifNumber less those read, at least one (a
/// row beyond the cap was seen).
async fn omitted(client: &DeviceClient, reading: &Reading) -> u32 {
    let read = u32::try_from(reading.ifs.len()).unwrap_or(u32::MAX);
    let total = match client.get(&Oid::from_slice(IF_NUMBER_0)).await {
        Ok(r) => match r.varbinds.first().map(|vb| &vb.value) {
            Some(Value::Integer(n)) => u32::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        Err(_) => 0,
    };
    total.saturating_sub(read).max(1)
}

/// Files a GETBULK's repeaters (row-major) and returns where each column
/// that has not ended goes on from.
fn advance(
    reading: &mut Reading,
    bases: &[Oid],
    cursor: &[(usize, Oid)],
    vbs: &[VarBind],
) -> Result<Vec<(usize, Oid)>, WalkFail> {
    let m = cursor.len();
    let mut last: Vec<Option<Oid>> = vec![None; m];
    let mut done = vec![false; m];
    for (k, vb) in vbs.iter().enumerate() {
        let j = k % m;
        if done[j] {
            continue;
        }
        let (col, from) = &cursor[j];
        let base = &bases[*col];
        if matches!(vb.value, Value::EndOfMibView) || !in_column(&vb.oid, base) {
            done[j] = true;
            continue;
        }
        let prev = last[j].as_ref().unwrap_or(from);
        if vb.oid <= *prev {
            return Err(WalkFail::Malformed(format!(
                "walk went backwards at {}",
                vb.oid
            )));
        }
        let index = vb.oid.arcs().last().copied().unwrap_or(0);
        if !reading.admits(index) {
            // Beyond the interface cap: this column is done.
            done[j] = true;
            continue;
        }
        file(reading, *col, &vb.oid, &vb.value)?;
        last[j] = Some(vb.oid.clone());
    }
    Ok(cursor
        .iter()
        .enumerate()
        .filter(|(j, _)| !done[*j])
        .map(|(j, (col, from))| (*col, last[j].clone().unwrap_or_else(|| from.clone())))
        .collect())
}

fn in_column(oid: &Oid, base: &Oid) -> bool {
    oid.len() == base.len() + 1 && oid.starts_with(base)
}

/// SNMPv1: GET for the scalars, GETNEXT row by row (no GETBULK, no Counter64).
async fn read_v1(client: &DeviceClient, max_ifs: usize) -> Result<Reading, WalkFail> {
    let sys = sys_instances();
    let mut reading = Reading::new(max_ifs);
    let resp = client.get_many(&sys).await?;
    read_sys(&mut reading, &resp.varbinds)?;
    let bases: Vec<Oid> = (0..COLUMNS.len()).map(column_oid).collect();
    let mut cursor: Vec<(usize, Oid)> = bases.iter().cloned().enumerate().collect();
    for _ in 0..round_budget(max_ifs) {
        if cursor.is_empty() {
            return Ok(reading);
        }
        let oids: Vec<Oid> = cursor.iter().map(|(_, o)| o.clone()).collect();
        match client.get_next_many(&oids).await {
            Ok(resp) => cursor = advance(&mut reading, &bases, &cursor, &resp.varbinds)?,
            // v1 ends a walk past the last object with noSuchName: drop that column.
            Err(e) => match &*e {
                Error::Snmp {
                    status: ErrorStatus::NoSuchName,
                    index,
                    ..
                } if *index >= 1 && (*index as usize) <= cursor.len() => {
                    cursor.remove(*index as usize - 1);
                }
                _ => return Err(WalkFail::Stalled(e)),
            },
        }
    }
    Err(WalkFail::Malformed("interface walk did not end".into()))
}

fn read_sys(reading: &mut Reading, vbs: &[VarBind]) -> Result<(), WalkFail> {
    let bad = |what: &str, vb: &VarBind| {
        WalkFail::Malformed(format!("{what}: unexpected {} = {:?}", vb.oid, vb.value))
    };
    for (i, vb) in vbs.iter().take(3).enumerate() {
        let base = Oid::from_slice([SYS_DESCR, SYS_UPTIME, SYS_NAME][i]);
        if !vb.oid.starts_with(&base) {
            if matches!(
                vb.value,
                Value::EndOfMibView | Value::NoSuchObject | Value::NoSuchInstance
            ) && i != 1
            {
                continue;
            }
            return Err(bad(["sysDescr", "sysUpTime", "sysName"][i], vb));
        }
        match (i, &vb.value) {
            (0, v) => {
                let (t, cut) = display_string(v).ok_or_else(|| bad("sysDescr", vb))?;
                reading.sys_descr = t;
                reading.sys_truncated |= cut;
            }
            (1, Value::TimeTicks(t)) => reading.uptime_cs = *t,
            (1, _) => return Err(bad("sysUpTime", vb)),
            (_, v) => {
                let (t, cut) = display_string(v).ok_or_else(|| bad("sysName", vb))?;
                reading.sys_name = t;
                reading.sys_truncated |= cut;
            }
        }
    }
    if vbs.len() < 2 {
        return Err(WalkFail::Malformed("no sysUpTime in the answer".into()));
    }
    Ok(())
}

/// An octet-string value as text of at most [`DISPLAY_STRING_MAX`] octets,
/// cut at a UTF-8 boundary, and whether it was cut.
fn display_string(v: &Value) -> Option<(String, bool)> {
    v.as_bytes().map(cut_display_string)
}

/// `bytes` (trailing NULs dropped, invalid UTF-8 replaced) cut to at most
/// [`DISPLAY_STRING_MAX`] octets at a character boundary; true when cut.
pub fn cut_display_string(bytes: &[u8]) -> (String, bool) {
    let mut end = bytes.len();
    while end > 0 && bytes[end - 1] == 0 {
        end -= 1;
    }
    let bytes = &bytes[..end];
    // Only what can end up in the result is converted: one octet more than
    // fits tells whether anything was cut.
    let head = &bytes[..bytes.len().min(DISPLAY_STRING_MAX + 1)];
    let text = String::from_utf8_lossy(head);
    if bytes.len() <= DISPLAY_STRING_MAX && text.len() <= DISPLAY_STRING_MAX {
        return (text.into_owned(), false);
    }
    let mut cut = DISPLAY_STRING_MAX.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (text[..cut].to_string(), true)
}

fn file(reading: &mut Reading, col: usize, oid: &Oid, value: &Value) -> Result<(), WalkFail> {
    let Some(&index) = oid.arcs().last() else {
        return Err(WalkFail::Malformed(format!("empty OID in column {col}")));
    };
    let (c, _, _) = COLUMNS[col];
    if matches!(value, Value::NoSuchObject | Value::NoSuchInstance) {
        return Ok(());
    }
    let raw = reading.ifs.entry(index).or_default();
    let bad = || WalkFail::Malformed(format!("{oid}: unexpected value {value:?}"));
    let counter = || match value {
        Value::Counter32(v) => Ok(u64::from(*v)),
        Value::Counter64(v) => Ok(*v),
        _ => Err(bad()),
    };
    let gauge = || match value {
        Value::Gauge32(v) | Value::UInteger32(v) => Ok(u64::from(*v)),
        _ => Err(bad()),
    };
    let int = || match value {
        Value::Integer(v) => u32::try_from(*v).map_err(|_| bad()),
        _ => Err(bad()),
    };
    match c {
        Col::Descr | Col::Name | Col::Alias => {
            let (t, cut) = display_string(value).ok_or_else(bad)?;
            raw.truncated |= cut;
            match c {
                Col::Descr => raw.descr = Some(t),
                Col::Name => raw.name = Some(t),
                _ => raw.alias = Some(t),
            }
        }
        Col::Speed => raw.speed = Some(gauge()?),
        Col::HighSpeed => raw.high_speed = Some(gauge()?),
        Col::Admin => raw.admin = Some(int()?),
        Col::Oper => raw.oper = Some(int()?),
        Col::InOctets => raw.in32 = Some(counter()?),
        Col::OutOctets => raw.out32 = Some(counter()?),
        Col::HcIn => raw.hc_in = Some(counter()?),
        Col::HcOut => raw.hc_out = Some(counter()?),
        Col::InErrors => raw.in_errors = Some(counter()?),
        Col::OutErrors => raw.out_errors = Some(counter()?),
        Col::InDiscards => raw.in_discards = Some(counter()?),
        Col::OutDiscards => raw.out_discards = Some(counter()?),
    }
    Ok(())
}

fn report_status(e: &Error) -> Option<&ReportStatus> {
    match e {
        Error::Report { status, .. } => Some(status),
        Error::Exchange { source, .. } => report_status(source),
        Error::SharedOperation { source } => report_status(source),
        _ => None,
    }
}

/// Maps a library error to what the user sees.
pub(crate) fn classify(e: &Error) -> Failure {
    let status = match e.kind() {
        ErrorKind::Timeout | ErrorKind::ConstructionTimeout => SnmpStatus::Timeout,
        ErrorKind::Auth => SnmpStatus::AuthFailure,
        ErrorKind::Report => match report_status(e) {
            Some(
                ReportStatus::WrongDigest { .. }
                | ReportStatus::UnknownUserName { .. }
                | ReportStatus::UnsupportedSecurityLevel { .. }
                | ReportStatus::DecryptionError { .. },
            ) => SnmpStatus::AuthFailure,
            _ => SnmpStatus::Error,
        },
        ErrorKind::Decode
        | ErrorKind::MalformedResponse
        | ErrorKind::ResponseShape
        | ErrorKind::WalkAborted => SnmpStatus::Malformed,
        _ => SnmpStatus::Error,
    };
    let message = match status {
        SnmpStatus::AuthFailure => format!("credentials rejected: {e}"),
        SnmpStatus::Timeout => format!("no answer: {e}"),
        SnmpStatus::Malformed => format!("malformed answer: {e}"),
        _ => e.to_string(),
    };
    Failure::new(status, message)
}

pub(crate) fn timeout_of(t: &SnmpTarget) -> Duration {
    if t.timeout_ms == 0 {
        DEFAULT_TIMEOUT
    } else {
        Duration::from_millis(t.timeout_ms)
    }
}

pub(crate) fn retry_of(t: &SnmpTarget) -> Retry {
    Retry::fixed(t.retries.min(5), Duration::ZERO).unwrap_or_else(|_| Retry::none())
}

/// Credentials of a target, or why they are unusable.
pub(crate) fn auth_of(t: &SnmpTarget) -> Result<Auth, String> {
    // Leniently by the word, not by `SnmpTarget::snmp_version`: an unset
    // version (an older collector) and "2" have always meant v2c here.
    match t.version.as_str() {
        "1" => Ok(Auth::v1(t.community.as_bytes().to_vec())),
        "" | "2c" | "2" => Ok(Auth::v2c(t.community.as_bytes().to_vec())),
        "3" => {
            let user = UsmConfig::new(t.user.as_bytes().to_vec());
            let auth = match t.auth_protocol.to_ascii_lowercase().as_str() {
                "" | "none" => None,
                "md5" => Some(AuthProtocol::Md5),
                "sha" | "sha1" => Some(AuthProtocol::Sha1),
                "sha224" => Some(AuthProtocol::Sha224),
                "sha256" => Some(AuthProtocol::Sha256),
                "sha384" => Some(AuthProtocol::Sha384),
                "sha512" => Some(AuthProtocol::Sha512),
                other => return Err(format!("unknown SNMPv3 auth protocol {other:?}")),
            };
            let privacy = match t.priv_protocol.to_ascii_lowercase().as_str() {
                "" | "none" => None,
                "des" => Some(PrivProtocol::Des),
                "aes" | "aes128" => Some(PrivProtocol::Aes128),
                "aes192" => Some(PrivProtocol::Aes192Blumenthal),
                "aes256" => Some(PrivProtocol::Aes256Blumenthal),
                other => return Err(format!("unknown SNMPv3 privacy protocol {other:?}")),
            };
            let user = match (auth, privacy) {
                (None, None) => user,
                (Some(a), None) => user
                    .auth(a, t.auth_password.as_bytes())
                    .map_err(|e| e.to_string())?,
                (Some(a), Some(p)) => user
                    .auth_priv(a, t.auth_password.as_bytes(), p, t.priv_password.as_bytes())
                    .map_err(|e| e.to_string())?,
                (None, Some(_)) => return Err("SNMPv3 privacy needs an auth protocol".into()),
            };
            Ok(user.into())
        }
        other => Err(format!("unknown SNMP version {other:?} (want 1, 2c or 3)")),
    }
}

/// Decodes one SNMP message (any version) the way the poller's library
/// does: an error for anything malformed, never a panic.
pub fn decode_message(bytes: &[u8]) -> Result<(), String> {
    async_snmp::message::Message::decode(bytes.to_vec().into(), async_snmp::DecodeConfig::default())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(b"sw1", "sw1", false ; "short")]
    #[test_case(b"port 1\0\0", "port 1", false ; "trailing NULs dropped")]
    #[test_case(&[b'a'; 255], &"a".repeat(255), false ; "exactly a DisplayString")]
    #[test_case(&[b'a'; 256], &"a".repeat(255), true ; "one octet over")]
    #[test_case(&[b'd'; 60_000], &"d".repeat(255), true ; "sixty kilobytes")]
    #[test_case("é".repeat(200).as_bytes(), &"é".repeat(127), true ; "cut at a character boundary")]
    #[test_case(b"bad \xff byte", "bad \u{fffd} byte", false ; "invalid UTF-8 replaced")]
    fn strings_from_devices_are_cut_to_a_display_string(bytes: &[u8], want: &str, cut: bool) {
        let (got, was_cut) = cut_display_string(bytes);
        assert!(got.len() <= DISPLAY_STRING_MAX);
        assert_eq!((got.as_str(), was_cut), (want, cut));
    }

    #[test]
    fn requests_shrink_by_rows_then_columns_then_give_up() {
        let mut ask = Ask {
            varbinds: BULK_VARBINDS,
            columns: COLUMNS.len(),
        };
        let mut seen = vec![(ask.reps(15), ask.columns)];
        while let Some(a) = ask.smaller(15) {
            ask = a;
            seen.push((ask.reps(ask.columns.min(15)), ask.columns));
        }
        assert_eq!(
            seen,
            [(8, 15), (4, 15), (2, 15), (1, 15), (1, 7), (1, 3), (1, 1)]
        );
    }

    #[test]
    fn the_walk_budget_covers_the_cap_at_one_row_per_request() {
        for cap in [1, 490, 4096, 65_536] {
            assert!(round_budget(cap) > cap);
        }
    }

    #[test]
    fn rows_beyond_the_cap_are_not_kept() {
        let mut r = Reading::new(2);
        assert!(
            r.admits(5)
                && file(
                    &mut r,
                    0,
                    &Oid::from_slice(&[1, 5]),
                    &Value::OctetString(b"a".to_vec().into())
                )
                .is_ok()
        );
        assert!(
            r.admits(6)
                && file(
                    &mut r,
                    0,
                    &Oid::from_slice(&[1, 6]),
                    &Value::OctetString(b"b".to_vec().into())
                )
                .is_ok()
        );
        assert!(r.admits(5), "a row already kept");
        assert!(!r.admits(7));
        assert!(r.capped);
        assert_eq!(r.ifs.len(), 2);
    }

    fn p(hc: bool, i: u64, o: u64, err: u64, disc: u64) -> PrevIf {
        PrevIf {
            hc,
            in_octets: Some(i),
            out_octets: Some(o),
            errors: Some(err),
            discards: Some(disc),
        }
    }

    #[test]
    fn rates_from_two_polls() {
        let r = rates(
            &p(true, 1000, 0, 0, 0),
            &p(true, 126_000, 12_500, 10, 4),
            10.0,
            1_000_000,
        );
        let r = r.expect("rates");
        assert_eq!(r.in_bps, Some(100_000.0));
        assert_eq!(r.out_bps, Some(10_000.0));
        assert_eq!(r.util_in, Some(10.0));
        assert_eq!(r.util_out, Some(1.0));
        assert_eq!(r.errors, Some(1.0));
        assert_eq!(r.discards, Some(0.4));
    }

    #[test]
    fn a_32_bit_wrap_is_a_rate_and_a_64_bit_drop_is_a_reset() {
        let before = p(false, u64::from(u32::MAX) - 99, 0, 0, 0);
        let r = rates(&before, &p(false, 900, 0, 0, 0), 1.0, 1_000_000_000).expect("wrap");
        assert_eq!(r.in_bps, Some(8000.0));
        assert!(rates(&p(true, 5000, 0, 0, 0), &p(true, 10, 0, 0, 0), 1.0, 0).is_err());
        // A "wrap" bigger than the link could carry is a reset.
        let r = rates(
            &p(false, 3_000_000_000, 0, 0, 0),
            &p(false, 10, 0, 0, 0),
            1.0,
            10_000_000,
        );
        assert!(r.is_err());
        // Errors going back (counters cleared) are a reset too.
        assert!(rates(&p(true, 0, 0, 50, 0), &p(true, 0, 0, 0, 0), 1.0, 0).is_err());
    }

    #[test]
    fn speed_prefers_high_speed_when_if_speed_saturates() {
        let raw = RawIf {
            speed: Some(u64::from(u32::MAX)),
            high_speed: Some(10_000),
            ..RawIf::default()
        };
        assert_eq!(interface_of(1, &raw).speed_bps, 10_000_000_000);
        let raw = RawIf {
            speed: Some(100_000_000),
            high_speed: Some(100),
            ..RawIf::default()
        };
        assert_eq!(interface_of(1, &raw).speed_bps, 100_000_000);
    }

    #[test]
    fn hc_counters_win_over_32_bit() {
        let raw = RawIf {
            in32: Some(1),
            out32: Some(2),
            hc_in: Some(10),
            hc_out: Some(20),
            ..RawIf::default()
        };
        let i = interface_of(3, &raw);
        assert!(i.hc_counters);
        assert_eq!((i.in_octets, i.out_octets), (Some(10), Some(20)));
        let raw = RawIf {
            in32: Some(1),
            out32: Some(2),
            ..RawIf::default()
        };
        let i = interface_of(3, &raw);
        assert!(!i.hc_counters);
        assert_eq!((i.in_octets, i.out_octets), (Some(1), Some(2)));
    }

    #[test]
    fn bad_credentials_config_is_an_error_not_a_panic() {
        let t = SnmpTarget {
            version: "3".into(),
            user: "u".into(),
            auth_protocol: "sha256".into(),
            auth_password: "short".into(),
            priv_protocol: "aes".into(),
            priv_password: "privpass1".into(),
            ..SnmpTarget::default()
        };
        assert!(auth_of(&t).is_err());
        let t = SnmpTarget {
            version: "4".into(),
            ..SnmpTarget::default()
        };
        assert!(auth_of(&t).is_err());
    }
}
