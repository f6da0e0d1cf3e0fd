//! Measurements on command: when the collector asks (a technician's "before"
//! or "after" for a ticket, or a check of one device), an extended ICMP burst
//! per device that keeps every round trip, and for each link two SNMP polls
//! a window apart with the rates between them.
//!
//! A measurement runs beside the regular cycle and never holds it up: the
//! ICMP sockets are shared (each burst has its own sequence numbers), and
//! the SNMP polls use a poller of their own, so that the regular poller's
//! previous counters (and its rates) are left alone. The figures go back to
//! the collector as the answer to the command; they are not spooled as
//! regular samples, since they are not part of the device's history (a burst
//! of 100 every now and then would skew the health engine's view).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use siaga_proto::v1::{
    Device, IcmpResult, Inventory, Link, MeasureCommand, MeasureResult, Sample, SnmpResult,
    SnmpStatus, sample,
};
use tokio::sync::Semaphore;
use tracing::{debug, info};

use crate::probe::cycle::polled;
use crate::probe::icmp::{BurstOptions, IcmpProber};
use crate::probe::snmp::SnmpPoller;
use crate::scheduler::InventoryWatch;
use crate::spool::now_us;

/// Echo requests per device when the command names no count.
pub const DEFAULT_COUNT: u32 = 100;
/// Most echo requests per device one measurement sends.
pub const MAX_COUNT: u32 = 10_000;
/// SNMP window when the command names none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Longest SNMP window.
pub const MAX_WINDOW: Duration = Duration::from_secs(600);
/// Measurements running at once; more wait their turn.
pub const CONCURRENT: usize = 4;
/// Shortest spacing of the echo requests to one device.
const MIN_SPACING: Duration = Duration::from_millis(10);
/// Longest spacing (as `ping`).
const MAX_SPACING: Duration = Duration::from_secs(1);
/// How long each reply is waited for.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// What one command asks of this agent's inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Devices to burst-ping.
    pub devices: Vec<Device>,
    /// Devices to poll over SNMP, each with the requested links it carries.
    pub snmp: Vec<(Device, Vec<Link>)>,
    /// Echo requests per device.
    pub count: u32,
    /// Time between the two SNMP polls (and over which the burst is spread).
    pub window: Duration,
}

/// Resolves a command against the inventory: every device and link it
/// names must be there, else an error naming the first that is not.
pub fn plan(inv: Option<&Inventory>, cmd: &MeasureCommand) -> Result<Plan, String> {
    let Some(inv) = inv else {
        return Err("this agent has no inventory yet (not connected to the collector since it started, and none cached)".into());
    };
    if cmd.devices.is_empty() && cmd.links.is_empty() {
        return Err("the measurement names no device and no link".into());
    }
    let mut devices = Vec::new();
    let mut seen = BTreeSet::new();
    for id in &cmd.devices {
        if !seen.insert(id.as_str()) {
            continue;
        }
        let d = inv.devices.iter().find(|d| d.id == *id).ok_or_else(|| {
            format!(
                "device {id:?} is not in this agent's inventory (OPD {})",
                inv.opd
            )
        })?;
        devices.push(d.clone());
    }
    let mut snmp: Vec<(Device, Vec<Link>)> = Vec::new();
    let mut seen = BTreeSet::new();
    for name in &cmd.links {
        if !seen.insert(name.as_str()) {
            continue;
        }
        let l = inv.links.iter().find(|l| l.name == *name).ok_or_else(|| {
            format!(
                "link {name:?} is not in this agent's inventory (OPD {})",
                inv.opd
            )
        })?;
        let d = inv
            .devices
            .iter()
            .find(|d| d.id == l.device)
            .ok_or_else(|| {
                format!(
                    "link {name:?} is on device {:?}, which is not in this agent's inventory",
                    l.device
                )
            })?;
        match snmp.iter_mut().find(|(sd, _)| sd.id == d.id) {
            Some((_, links)) => links.push(l.clone()),
            None => snmp.push((d.clone(), vec![l.clone()])),
        }
    }
    // A requested device with SNMP access is polled too, for its own health
    // (CPU, memory, temperature) beside its ICMP figures.
    for d in devices.iter().filter(|d| polled(d)) {
        if !snmp.iter().any(|(sd, _)| sd.id == d.id) {
            snmp.push((d.clone(), Vec::new()));
        }
    }
    let count = match cmd.icmp_count {
        0 => DEFAULT_COUNT,
        n => n.min(MAX_COUNT),
    };
    let window = match cmd.window_ms {
        0 => DEFAULT_WINDOW,
        ms => Duration::from_millis(ms).min(MAX_WINDOW),
    };
    Ok(Plan {
        devices,
        snmp,
        count,
        window,
    })
}

/// The burst of a measurement: `count` echo requests spread over the
/// window (10 ms to 1 s apart), every round trip kept.
pub fn burst_options(count: u32, window: Duration) -> BurstOptions {
    let count = count.max(1);
    BurstOptions {
        count,
        interval: (window / count).clamp(MIN_SPACING, MAX_SPACING),
        timeout: REPLY_TIMEOUT,
        keep_rtts: true,
    }
}

/// Takes measurements with the agent's ICMP sockets and its inventory.
#[derive(Debug, Clone)]
pub struct Measurer {
    prober: Arc<IcmpProber>,
    inventory: InventoryWatch,
    limit: Arc<Semaphore>,
}

impl Measurer {
    /// A measurer sharing the regular cycle's prober and inventory.
    pub fn new(prober: Arc<IcmpProber>, inventory: InventoryWatch) -> Self {
        Self {
            prober,
            inventory,
            limit: Arc::new(Semaphore::new(CONCURRENT)),
        }
    }

    /// Runs one command to its answer. Errors (unknown device or link, no
    /// inventory) are the answer's `error`, never a panic.
    pub async fn measure(&self, cmd: &MeasureCommand) -> MeasureResult {
        let inv = self.inventory.borrow().clone();
        let plan = match plan(inv.as_deref(), cmd) {
            Ok(p) => p,
            Err(error) => {
                info!(id = %cmd.id, %error, "measurement refused");
                return MeasureResult {
                    id: cmd.id.clone(),
                    samples: Vec::new(),
                    error,
                };
            }
        };
        let links = inv.as_ref().map(|i| i.links.clone()).unwrap_or_default();
        // The semaphore is never closed; without a permit the run goes ahead.
        let _permit = self.limit.acquire().await.ok();
        info!(
            id = %cmd.id,
            ticket = %cmd.ticket,
            devices = plan.devices.len(),
            links = cmd.links.len(),
            count = plan.count,
            window = %humantime::format_duration(plan.window),
            "measurement started"
        );
        let ts_us = now_us();
        let opts = burst_options(plan.count, plan.window);
        let bursts = futures::future::join_all(
            plan.devices
                .iter()
                .map(|d| async { (d.id.clone(), self.burst(d, &opts).await) }),
        );
        let poller = SnmpPoller::new();
        let windows = futures::future::join_all(plan.snmp.iter().map(|(d, wanted)| {
            let poller = &poller;
            let links = &links;
            async move {
                (
                    d.id.clone(),
                    snmp_window(poller, d, links, wanted, plan.window).await,
                )
            }
        }));
        let (bursts, windows) = tokio::join!(bursts, windows);
        let mut samples = Vec::with_capacity(bursts.len() + windows.len());
        for (device, r) in bursts {
            debug!(id = %cmd.id, %device, sent = r.sent, received = r.received, loss_pct = r.loss_pct, "measurement burst");
            samples.push(Sample {
                seq: 0,
                ts_us,
                device,
                kind: Some(sample::Kind::Icmp(r)),
            });
        }
        for (device, r) in windows {
            samples.push(Sample {
                seq: 0,
                ts_us,
                device,
                kind: Some(sample::Kind::Snmp(r)),
            });
        }
        info!(id = %cmd.id, samples = samples.len(), "measurement done");
        MeasureResult {
            id: cmd.id.clone(),
            samples,
            error: String::new(),
        }
    }

    async fn burst(&self, device: &Device, opts: &BurstOptions) -> IcmpResult {
        match device.address.trim().parse::<IpAddr>() {
            Ok(addr) => self.prober.burst(addr, opts).await,
            Err(_) => IcmpResult {
                error: format!("address {:?} is not an IP address", device.address),
                ..Default::default()
            },
        }
    }
}

/// Two polls `window` apart; the second carries the rates over the window.
/// Only the interfaces of the `wanted` links are kept.
async fn snmp_window(
    poller: &SnmpPoller,
    device: &Device,
    links: &[Link],
    wanted: &[Link],
    window: Duration,
) -> SnmpResult {
    if !polled(device) {
        return SnmpResult {
            status: SnmpStatus::Error as i32,
            error: format!("device {} has no SNMP access in the inventory", device.id),
            ..SnmpResult::default()
        };
    }
    let start = tokio::time::Instant::now();
    let (first, _) = poller.poll(device, links).await;
    tokio::time::sleep_until(start + window).await;
    let (second, events) = poller.poll(device, links).await;
    for e in events {
        debug!(device = %device.id, kind = %e.kind, detail = %e.detail, "event during a measurement");
    }
    let ok = |r: &SnmpResult| r.status == SnmpStatus::Ok as i32;
    // The second poll has the rates; if only the first answered, its
    // status and speed are still worth having.
    let mut r = if ok(&second) || !ok(&first) {
        second
    } else {
        first
    };
    r.interfaces
        .retain(|i| wanted.iter().any(|l| l.name == i.link_name));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use siaga_proto::v1::SnmpTarget;
    use test_case::test_case;

    fn inventory() -> Inventory {
        Inventory {
            opd: "dinkes".into(),
            devices: vec![
                Device {
                    id: "sw1".into(),
                    address: "127.0.0.1".into(),
                    snmp: Some(SnmpTarget {
                        version: "2c".into(),
                        community: "public".into(),
                        ..SnmpTarget::default()
                    }),
                    ..Device::default()
                },
                Device {
                    id: "ap1".into(),
                    address: "127.0.0.2".into(),
                    ..Device::default()
                },
            ],
            links: vec![
                Link {
                    device: "sw1".into(),
                    interface: "port2".into(),
                    name: "ke-puskesmas".into(),
                    ..Link::default()
                },
                Link {
                    device: "sw1".into(),
                    interface: "port3".into(),
                    name: "ke-gudang".into(),
                    ..Link::default()
                },
                Link {
                    device: "ap1".into(),
                    interface: "wlan0".into(),
                    name: "wifi".into(),
                    ..Link::default()
                },
            ],
            ..Inventory::default()
        }
    }

    fn cmd(devices: &[&str], links: &[&str], count: u32, window_ms: u64) -> MeasureCommand {
        MeasureCommand {
            id: "M-000001".into(),
            ticket: String::new(),
            devices: devices.iter().map(|s| s.to_string()).collect(),
            links: links.iter().map(|s| s.to_string()).collect(),
            icmp_count: count,
            window_ms,
        }
    }

    #[test]
    fn defaults_and_grouping_by_device() {
        let inv = inventory();
        let p = plan(
            Some(&inv),
            &cmd(
                &["sw1", "sw1"],
                &["ke-puskesmas", "ke-gudang", "wifi"],
                0,
                0,
            ),
        )
        .expect("plan");
        assert_eq!(p.count, DEFAULT_COUNT);
        assert_eq!(p.window, DEFAULT_WINDOW);
        assert_eq!(
            p.devices.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["sw1"]
        );
        let snmp: Vec<(&str, Vec<&str>)> = p
            .snmp
            .iter()
            .map(|(d, l)| (d.id.as_str(), l.iter().map(|l| l.name.as_str()).collect()))
            .collect();
        assert_eq!(
            snmp,
            [
                ("sw1", vec!["ke-puskesmas", "ke-gudang"]),
                ("ap1", vec!["wifi"])
            ]
        );
        // A device with SNMP access and no link asked: polled for its health.
        let p = plan(Some(&inv), &cmd(&["sw1"], &[], 0, 0)).expect("plan");
        assert_eq!(p.snmp.len(), 1);
        assert_eq!((p.snmp[0].0.id.as_str(), p.snmp[0].1.len()), ("sw1", 0));
        let p = plan(Some(&inv), &cmd(&["ap1"], &[], 1_000_000, 3_600_000)).expect("plan");
        assert!(p.snmp.is_empty(), "no SNMP access: not polled");
        assert_eq!((p.count, p.window), (MAX_COUNT, MAX_WINDOW));
    }

    #[test_case(&["sw9"], &[], "device \"sw9\" is not in this agent's inventory (OPD dinkes)" ; "unknown device")]
    #[test_case(&["sw1"], &["ke-pasar"], "link \"ke-pasar\" is not in this agent's inventory" ; "unknown link")]
    #[test_case(&[], &[], "names no device and no link" ; "nothing")]
    fn refusals_name_what_is_wrong(devices: &[&str], links: &[&str], words: &str) {
        let e = plan(Some(&inventory()), &cmd(devices, links, 0, 0)).expect_err("refused");
        assert!(e.contains(words), "{e}");
    }

    #[test]
    fn no_inventory_is_an_error() {
        let e = plan(None, &cmd(&["sw1"], &[], 0, 0)).expect_err("refused");
        assert!(e.contains("no inventory"), "{e}");
    }

    #[test_case(100, 10_000, 100 ; "a hundred over ten seconds")]
    #[test_case(1000, 2_000, 10 ; "spacing never below 10 ms")]
    #[test_case(5, 60_000, 1000 ; "spacing never above 1 s")]
    #[test_case(0, 1_000, 1000 ; "zero count is one")]
    fn bursts_spread_over_the_window(count: u32, window_ms: u64, spacing_ms: u64) {
        let o = burst_options(count, Duration::from_millis(window_ms));
        assert_eq!(o.interval, Duration::from_millis(spacing_ms));
        assert!(o.keep_rtts && o.count >= 1);
    }

    /// Real ICMP to loopback: the answer a user would see, every round trip
    /// kept; a device without SNMP access gets an SNMP error, not a panic.
    #[tokio::test]
    async fn measures_loopback_and_keeps_every_round_trip() {
        let Ok(prober) = IcmpProber::new() else {
            return; // no ICMP rights here; the lab tests cover it
        };
        let (_tx, rx) = tokio::sync::watch::channel(Some(Arc::new(inventory())));
        let m = Measurer::new(Arc::new(prober), rx);
        let r = m.measure(&cmd(&["sw1"], &["wifi"], 5, 100)).await;
        assert!(r.error.is_empty(), "{r:?}");
        assert_eq!(r.id, "M-000001");
        let icmp = r
            .samples
            .iter()
            .find_map(|s| match &s.kind {
                Some(sample::Kind::Icmp(i)) if s.device == "sw1" => Some(i.clone()),
                _ => None,
            })
            .expect("icmp of sw1");
        assert_eq!((icmp.sent, icmp.received), (5, 5));
        assert_eq!(icmp.rtts_us.len(), 5);
        assert!(icmp.rtt_p95_us.is_some() && icmp.jitter_us.is_some());
        let snmp = r
            .samples
            .iter()
            .find_map(|s| match &s.kind {
                Some(sample::Kind::Snmp(n)) if s.device == "ap1" => Some(n.clone()),
                _ => None,
            })
            .expect("snmp of ap1");
        assert_eq!(snmp.status, SnmpStatus::Error as i32);
        assert!(snmp.error.contains("no SNMP access"), "{snmp:?}");
        assert!(r.samples.iter().all(|s| s.seq == 0 && s.ts_us > 0));

        let r = m.measure(&cmd(&["nope"], &[], 5, 100)).await;
        assert!(r.samples.is_empty());
        assert!(r.error.contains("\"nope\""), "{r:?}");
    }
}
