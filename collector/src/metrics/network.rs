//! The network as Prometheus sees it: per-device and per-link series and
//! each OPD's open tickets, read at scrape time from what the collector
//! already holds (the store's newest readings, the health engine's states,
//! the SOP store's tickets) by a custom [`Collector`], not kept in gauges
//! updated on every sample.
//!
//! A reading older than [`crate::state::SILENT_INTERVALS`] probe intervals
//! is not exported as a value: its series (RTT, loss, rates, ...) are left
//! out of the scrape, so Prometheus marks them stale and Grafana draws a gap
//! instead of a flat line of an old value. The state series says `stale` and
//! `*_last_reading_timestamp_seconds` says since when.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
    MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use siaga_proto::v1::{self, device_info::State, sample::Kind};

use crate::devices::api::{clock_offsets, link_interface, newest_reading_us};
use crate::health::{Health, Subject};
use crate::hub::Hub;
use crate::state::{shown_state, stale_age};

/// Every state a device or link is shown in, in the order exported.
pub const STATES: [State; 6] = [
    State::Up,
    State::Degraded,
    State::Down,
    State::Unreachable,
    State::Unknown,
    State::Stale,
];

/// Newest ICMP reading of a device, fresh enough to export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IcmpReading {
    /// Mean round trip, seconds (none when nothing answered).
    pub rtt_s: Option<f64>,
    /// Share of probes unanswered, 0–1 (none when none was sent).
    pub loss_ratio: Option<f64>,
    /// Jitter, seconds.
    pub jitter_s: Option<f64>,
}

/// A device's own health from its newest SNMP poll, fresh enough to export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceReading {
    /// CPU busy, 0–1.
    pub cpu_ratio: Option<f64>,
    /// Memory used, 0–1.
    pub memory_ratio: Option<f64>,
    /// Temperature, °C.
    pub temperature_c: Option<f64>,
    /// The device's own temperature threshold, °C.
    pub temperature_threshold_c: Option<f64>,
}

impl ResourceReading {
    fn of(h: &v1::DeviceHealth) -> Self {
        Self {
            cpu_ratio: h.cpu_pct.map(|p| p / 100.0),
            memory_ratio: h.mem_pct.map(|p| p / 100.0),
            temperature_c: h.temp_c,
            temperature_threshold_c: h.temp_threshold_c,
        }
    }
}

/// One device as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// Device id.
    pub id: String,
    /// Its OPD.
    pub opd: String,
    /// Human name from the inventory (free text).
    pub name: String,
    /// Kind (switch, router, ...).
    pub kind: String,
    /// Address probed.
    pub address: String,
    /// Parent device, or empty.
    pub parent: String,
    /// The state `siaga devices` shows.
    pub state: State,
    /// The newest ICMP reading, when it is fresh.
    pub icmp: Option<IcmpReading>,
    /// CPU, memory and temperature of the newest SNMP poll, when it is fresh.
    pub resources: Option<ResourceReading>,
    /// Newest ICMP or SNMP reading, seconds since the epoch by the
    /// collector's clock (the agent's time corrected by its clock offset).
    pub last_reading_s: Option<f64>,
}

/// Newest SNMP reading of a link's interface, fresh enough to export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IfReading {
    /// ifOperStatus is up.
    pub oper_up: bool,
    /// ifHighSpeed/ifSpeed, bits per second (0: unknown).
    pub speed_bps: u64,
    /// Rates from the previous poll (absent after the first poll or a reset).
    pub in_bps: Option<f64>,
    /// Outbound bits per second.
    pub out_bps: Option<f64>,
    /// Inbound utilisation, 0–1.
    pub in_util: Option<f64>,
    /// Outbound utilisation, 0–1.
    pub out_util: Option<f64>,
    /// In and out errors per second.
    pub errors_per_s: Option<f64>,
    /// In and out discards per second.
    pub discards_per_s: Option<f64>,
    /// The device's own counters (ifHCInOctets or ifInOctets, ...).
    pub in_octets: Option<u64>,
    /// ifHCOutOctets or ifOutOctets.
    pub out_octets: Option<u64>,
    /// ifInErrors.
    pub in_errors: Option<u64>,
    /// ifOutErrors.
    pub out_errors: Option<u64>,
}

/// One inventory link as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    /// Its device's OPD.
    pub opd: String,
    /// Device id.
    pub device: String,
    /// Link name (the inventory's name, else its interface).
    pub link: String,
    /// The health engine's state of the link, `stale` when the newest SNMP
    /// reading is old.
    pub state: State,
    /// The newest reading of its interface, when it is fresh.
    pub interface: Option<IfReading>,
    /// Newest SNMP reading of its device, seconds since the epoch
    /// (collector's clock).
    pub last_reading_s: Option<f64>,
}

/// What the scrape exports: read once, then encoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Every device of the inventory, by id.
    pub devices: Vec<DeviceRow>,
    /// Every link of the inventory.
    pub links: Vec<LinkRow>,
    /// Open tickets by (OPD, SOP step, overdue): every OPD and every step
    /// of the SOP but the last is present, with 0 when none waits there.
    pub open_tickets: BTreeMap<(String, u32, bool), u64>,
}

/// µs to seconds.
fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

fn icmp_reading(i: &v1::IcmpResult) -> IcmpReading {
    IcmpReading {
        rtt_s: i.rtt_avg_us.map(|v| v as f64 / 1e6),
        loss_ratio: (i.sent > 0).then(|| i.loss_pct / 100.0),
        jitter_s: i.jitter_us.map(|v| v as f64 / 1e6),
    }
}

fn if_reading(i: &v1::Interface) -> IfReading {
    IfReading {
        oper_up: i.oper_status == 1,
        speed_bps: i.speed_bps,
        in_bps: i.in_bps,
        out_bps: i.out_bps,
        in_util: i.util_in_pct.map(|p| p / 100.0),
        out_util: i.util_out_pct.map(|p| p / 100.0),
        errors_per_s: i.errors_per_s,
        discards_per_s: i.discards_per_s,
        in_octets: i.in_octets,
        out_octets: i.out_octets,
        in_errors: i.in_errors,
        out_errors: i.out_errors,
    }
}

/// One device from its newest readings `latest` and the health engine's
/// `health`, at `now_us`, with its OPD's clock `offset` and probe interval;
/// and the time and (when fresh) the content of its newest SNMP reading.
pub fn device_row(
    d: &crate::inventory::Device,
    latest: crate::store::Latest,
    health: Health,
    offset: Option<i64>,
    interval_us: i64,
    now_us: i64,
) -> (DeviceRow, (Option<i64>, Option<v1::SnmpResult>)) {
    let newest = newest_reading_us(&latest);
    let state = shown_state(health, stale_age(newest, offset, interval_us, now_us));
    let fresh = |ts: i64| stale_age(Some(ts), offset, interval_us, now_us).is_none();
    let icmp = match latest.icmp.as_ref() {
        Some(v1::Sample {
            ts_us,
            kind: Some(Kind::Icmp(i)),
            ..
        }) if fresh(*ts_us) => Some(icmp_reading(i)),
        _ => None,
    };
    let snmp = match latest.snmp {
        Some(v1::Sample {
            ts_us,
            kind: Some(Kind::Snmp(s)),
            ..
        }) => (Some(ts_us), fresh(ts_us).then_some(s)),
        _ => (None, None),
    };
    let row = DeviceRow {
        id: d.id.clone(),
        opd: d.opd.clone(),
        name: d.name.clone(),
        kind: d.kind.clone(),
        address: d.address.to_string(),
        parent: d.parent.clone().unwrap_or_default(),
        state,
        icmp,
        resources: snmp
            .1
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .map(ResourceReading::of),
        last_reading_s: newest.map(|t| secs(t.saturating_add(offset.unwrap_or(0)))),
    };
    (row, snmp)
}

impl Snapshot {
    /// Reads what `hub` holds at `now_us`. Blocking (one store read per
    /// device, one pass over the tickets): call it off the async workers.
    /// A device whose readings cannot be read is exported with its state
    /// and without values (and logged), rather than failing the scrape.
    pub fn read(hub: &Hub, now_us: i64) -> Snapshot {
        let inv = hub.inventory();
        let offsets = clock_offsets(hub);
        // Copied out at once: the health task waits on this lock to write.
        let states: HashMap<Subject, Health> = hub
            .health
            .handle
            .shared()
            .states
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.health)).collect())
            .unwrap_or_default();
        let health_of = |s: &Subject| states.get(s).copied().unwrap_or(Health::Unknown);
        let mut snap = Snapshot::default();
        let mut snmp_of: HashMap<&str, (Option<i64>, Option<v1::SnmpResult>)> = HashMap::new();
        for d in inv.devices.values() {
            let interval = inv.opds.get(&d.opd).map_or(inv.interval, |o| o.interval);
            let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
            let offset = offsets.get(&d.opd).copied();
            let latest = match hub.store.latest(&d.id) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(device = %d.id, error = %e, "metrics: reading the newest readings");
                    Default::default()
                }
            };
            let health = health_of(&Subject::device(&d.id));
            let (row, snmp) = device_row(d, latest, health, offset, interval_us, now_us);
            snap.devices.push(row);
            snmp_of.insert(d.id.as_str(), snmp);
        }
        for l in &inv.links {
            let Some(d) = inv.devices.get(&l.device) else {
                continue;
            };
            let name = if l.name.is_empty() {
                l.interface.clone()
            } else {
                l.name.clone()
            };
            let offset = offsets.get(&d.opd).copied();
            let (ts, snmp) = snmp_of
                .get(l.device.as_str())
                .map_or((None, None), |(t, s)| (*t, s.as_ref()));
            let health = health_of(&Subject::link(&l.device, &name));
            // A link's state stands only while its device's SNMP reading is
            // fresh; unknown (agent silent) stays unknown, as for devices.
            let state = match (health, ts, snmp) {
                (Health::Unknown, _, _) => State::Unknown,
                (_, Some(_), None) => State::Stale,
                (h, _, _) => h.into(),
            };
            snap.links.push(LinkRow {
                opd: d.opd.clone(),
                device: l.device.clone(),
                link: name,
                state,
                interface: snmp.and_then(|s| link_interface(l, s)).map(if_reading),
                last_reading_s: ts.map(|t| secs(t.saturating_add(offset.unwrap_or(0)))),
            });
        }
        snap.open_tickets = open_tickets(hub, &inv, now_us);
        snap
    }
}

/// Open tickets by (OPD, step, overdue), with a 0 for every OPD and every
/// step of the current SOP but the last (which closes the ticket).
fn open_tickets(
    hub: &Hub,
    inv: &crate::inventory::Inventory,
    now_us: i64,
) -> BTreeMap<(String, u32, bool), u64> {
    let sop_store = &hub.health.sop_store;
    let mut out = BTreeMap::new();
    let steps = &sop_store.sop().steps;
    let open_steps = &steps[..steps.len().saturating_sub(1)];
    for opd in inv.opds.keys() {
        for s in open_steps {
            for overdue in [false, true] {
                out.insert((opd.clone(), s.number, overdue), 0);
            }
        }
    }
    let now = chrono::DateTime::from_timestamp_micros(now_us).unwrap_or_default();
    let read = sop_store.tickets_after(None, |rows| {
        for row in rows {
            let (number, t) = row?;
            if t.state.is_closed() {
                continue;
            }
            let sop = sop_store.sop_by_hash(&number, &t.state.sop.hash)?;
            let overdue = crate::sop::workflow::Workflow::new(&sop, sop_store.calendar())
                .is_overdue(&t.state, now);
            *out.entry((t.info.opd.clone(), t.state.position.step, overdue))
                .or_insert(0) += 1;
        }
        Ok::<(), crate::sop::store::StoreError>(())
    });
    if let Err(e) = read.and_then(|r| r) {
        tracing::warn!(error = %e, "metrics: counting the open tickets");
    }
    out
}

/// A label value escaped as the text format wants (`\\`, `\"`, `\n`):
/// prometheus-client writes label values as they are, and a device's name
/// is free text.
#[derive(Debug, Clone, Copy)]
struct Esc<'a>(&'a str);

impl EncodeLabelValue for Esc<'_> {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => e.write_str("\\\\")?,
                '"' => e.write_str("\\\"")?,
                '\n' => e.write_str("\\n")?,
                c => e.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A label set of fixed names, values escaped.
#[derive(Debug)]
struct Labels<'a, const N: usize>([(&'static str, &'a str); N]);

impl<const N: usize> EncodeLabelSet for Labels<'_, N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (k, v) in &self.0 {
            let mut label = encoder.encode_label();
            let mut key = label.encode_label_key()?;
            key.write_str(k)?;
            let mut value = key.encode_label_value()?;
            Esc(v).encode(&mut value)?;
            value.finish()?;
        }
        Ok(())
    }
}

/// Writes one family: `rows` gives each series' labels and value; a row
/// without a value is left out.
fn family<L: EncodeLabelSet, V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, Option<V>)>,
) -> Result<(), std::fmt::Error> {
    let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        if let Some(v) = v {
            let mut m: MetricEncoder = fam.encode_family(&labels)?;
            m.encode_gauge(&v)?;
        }
    }
    Ok(())
}

/// Writes one counter family (the device's own counters, `_total` added).
fn counter_family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, Option<u64>)>,
) -> Result<(), std::fmt::Error> {
    let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        if let Some(v) = v {
            let mut m: MetricEncoder = fam.encode_family(&labels)?;
            m.encode_counter::<Labels<0>, u64, f64>(&v, None)?;
        }
    }
    Ok(())
}

fn one_hot(state: State) -> impl Iterator<Item = (&'static str, Option<i64>)> {
    STATES
        .iter()
        .map(move |s| (s.as_str_name(), Some(i64::from(*s == state))))
}

/// 1 while the subject answers (up or degraded), 0 while it is down or
/// unreachable; none when nothing current is known (unknown, stale).
fn up(state: State) -> Option<i64> {
    match state {
        State::Up | State::Degraded => Some(1),
        State::Down | State::Unreachable => Some(0),
        _ => None,
    }
}

fn dev(d: &DeviceRow) -> Labels<'_, 2> {
    Labels([("opd", d.opd.as_str()), ("device", d.id.as_str())])
}

fn link(l: &LinkRow) -> Labels<'_, 3> {
    Labels([
        ("opd", l.opd.as_str()),
        ("device", l.device.as_str()),
        ("link", l.link.as_str()),
    ])
}

impl Snapshot {
    /// Writes every family, HELP and TYPE included, also when empty.
    pub fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ds = &self.devices;
        family(
            &mut e,
            "siaga_device_info",
            "A device of the inventory (always 1), with its name, kind, address and parent",
            ds.iter().map(|d| {
                (
                    Labels([
                        ("opd", d.opd.as_str()),
                        ("device", d.id.as_str()),
                        ("name", d.name.as_str()),
                        ("kind", d.kind.as_str()),
                        ("address", d.address.as_str()),
                        ("parent", d.parent.as_str()),
                    ]),
                    Some(1i64),
                )
            }),
        )?;
        family(
            &mut e,
            "siaga_device_state",
            "The state siaga devices shows: 1 for the device's state, 0 for the others \
             (up, degraded, down, unreachable, unknown, stale)",
            ds.iter().flat_map(|d| {
                one_hot(d.state).map(move |(s, v)| {
                    (
                        Labels([
                            ("opd", d.opd.as_str()),
                            ("device", d.id.as_str()),
                            ("state", s),
                        ]),
                        v,
                    )
                })
            }),
        )?;
        family(
            &mut e,
            "siaga_device_up",
            "1 while the device answers (up or degraded), 0 while down or unreachable; \
             absent while unknown or stale",
            ds.iter().map(|d| (dev(d), up(d.state))),
        )?;
        let icmp = |f: fn(&IcmpReading) -> Option<f64>| {
            ds.iter()
                .map(move |d| (dev(d), d.icmp.as_ref().and_then(f)))
        };
        family(
            &mut e,
            "siaga_device_rtt_seconds",
            "Mean ICMP round trip of the newest probe; absent when nothing answered or the reading is stale",
            icmp(|i| i.rtt_s),
        )?;
        family(
            &mut e,
            "siaga_device_packet_loss_ratio",
            "Share of the newest probe's ICMP echoes unanswered (0-1); absent when stale",
            icmp(|i| i.loss_ratio),
        )?;
        family(
            &mut e,
            "siaga_device_jitter_seconds",
            "Jitter of the newest ICMP probe; absent when stale",
            icmp(|i| i.jitter_s),
        )?;
        family(
            &mut e,
            "siaga_device_last_reading_timestamp_seconds",
            "When the device's newest ICMP or SNMP reading was taken (collector's clock)",
            ds.iter().map(|d| (dev(d), d.last_reading_s)),
        )?;
        // From the newest SNMP poll's health MIBs; left out when the device
        // tells none or the poll is stale.
        let res = |f: fn(&ResourceReading) -> Option<f64>| {
            ds.iter()
                .map(move |d| (dev(d), d.resources.as_ref().and_then(f)))
        };
        family(
            &mut e,
            "siaga_device_cpu_ratio",
            "CPU busy (0-1) from the device's own MIBs (HOST-RESOURCES, Cisco, Huawei); absent when stale",
            res(|r| r.cpu_ratio),
        )?;
        family(
            &mut e,
            "siaga_device_memory_used_ratio",
            "Memory used (0-1) from the device's own MIBs; absent when stale",
            res(|r| r.memory_ratio),
        )?;
        family(
            &mut e,
            "siaga_device_temperature_celsius",
            "Hottest sensor the device tells (ENTITY-SENSOR, MikroTik, Huawei); absent when stale",
            res(|r| r.temperature_c),
        )?;
        family(
            &mut e,
            "siaga_device_temperature_threshold_celsius",
            "The device's own threshold for that sensor, when it tells one",
            res(|r| r.temperature_threshold_c),
        )?;

        let ls = &self.links;
        family(
            &mut e,
            "siaga_link_state",
            "The link's state: 1 for its state, 0 for the others \
             (up, degraded, down, unreachable, unknown, stale)",
            ls.iter().flat_map(|l| {
                one_hot(l.state).map(move |(s, v)| {
                    (
                        Labels([
                            ("opd", l.opd.as_str()),
                            ("device", l.device.as_str()),
                            ("link", l.link.as_str()),
                            ("state", s),
                        ]),
                        v,
                    )
                })
            }),
        )?;
        let iface = |f: fn(&IfReading) -> Option<f64>| {
            ls.iter()
                .map(move |l| (link(l), l.interface.as_ref().and_then(f)))
        };
        family(
            &mut e,
            "siaga_link_oper_up",
            "1 while the link's interface is operationally up (IF-MIB ifOperStatus), else 0; absent when stale",
            iface(|i| Some(if i.oper_up { 1.0 } else { 0.0 })),
        )?;
        family(
            &mut e,
            "siaga_link_speed_bytes_per_second",
            "The interface's speed (ifHighSpeed or ifSpeed, in bytes as Prometheus's base unit: \
             times 8 for bits); absent when unknown or stale",
            iface(|i| (i.speed_bps > 0).then_some(i.speed_bps as f64 / 8.0)),
        )?;
        family(
            &mut e,
            "siaga_link_in_bytes_per_second",
            "Inbound traffic between the newest two polls (times 8 for bits); absent when stale",
            iface(|i| i.in_bps.map(|b| b / 8.0)),
        )?;
        family(
            &mut e,
            "siaga_link_out_bytes_per_second",
            "Outbound traffic between the newest two polls (times 8 for bits); absent when stale",
            iface(|i| i.out_bps.map(|b| b / 8.0)),
        )?;
        family(
            &mut e,
            "siaga_link_in_utilisation_ratio",
            "Inbound traffic over the interface's speed (0-1); absent when stale",
            iface(|i| i.in_util),
        )?;
        family(
            &mut e,
            "siaga_link_out_utilisation_ratio",
            "Outbound traffic over the interface's speed (0-1); absent when stale",
            iface(|i| i.out_util),
        )?;
        family(
            &mut e,
            "siaga_link_errors_per_second",
            "Inbound and outbound errors per second between the newest two polls; absent when stale",
            iface(|i| i.errors_per_s),
        )?;
        family(
            &mut e,
            "siaga_link_discards_per_second",
            "Inbound and outbound discards per second between the newest two polls; absent when stale",
            iface(|i| i.discards_per_s),
        )?;
        let counter = |f: fn(&IfReading) -> Option<u64>| {
            ls.iter()
                .map(move |l| (link(l), l.interface.as_ref().and_then(f)))
        };
        counter_family(
            &mut e,
            "siaga_link_in_bytes",
            "The device's inbound octet counter (ifHCInOctets, else ifInOctets); absent when stale",
            counter(|i| i.in_octets),
        )?;
        counter_family(
            &mut e,
            "siaga_link_out_bytes",
            "The device's outbound octet counter (ifHCOutOctets, else ifOutOctets); absent when stale",
            counter(|i| i.out_octets),
        )?;
        counter_family(
            &mut e,
            "siaga_link_in_errors",
            "The device's ifInErrors counter; absent when stale",
            counter(|i| i.in_errors),
        )?;
        counter_family(
            &mut e,
            "siaga_link_out_errors",
            "The device's ifOutErrors counter; absent when stale",
            counter(|i| i.out_errors),
        )?;
        family(
            &mut e,
            "siaga_link_last_reading_timestamp_seconds",
            "When the newest SNMP reading of the link's device was taken (collector's clock)",
            ls.iter().map(|l| (link(l), l.last_reading_s)),
        )?;

        family(
            &mut e,
            "siaga_opd_open_tickets",
            "Open tickets of the OPD by the SOP step they wait in, and whether that step is past its time standard",
            self.open_tickets.iter().map(|((opd, step, overdue), n)| {
                let step = step.to_string();
                (
                    OwnedTicketLabels {
                        opd: opd.clone(),
                        step,
                        overdue: if *overdue { "true" } else { "false" },
                    },
                    Some(*n as i64),
                )
            }),
        )?;
        Ok(())
    }
}

/// Labels of `siaga_opd_open_tickets` (the step is a number made here).
#[derive(Debug)]
struct OwnedTicketLabels {
    opd: String,
    step: String,
    overdue: &'static str,
}

impl EncodeLabelSet for OwnedTicketLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        Labels([
            ("opd", self.opd.as_str()),
            ("step", self.step.as_str()),
            ("overdue", self.overdue),
        ])
        .encode(encoder)
    }
}

/// The [`Collector`] registered with the metrics: reads a [`Snapshot`] of
/// the hub on each scrape, once the hub exists (the metrics are made
/// before it; a weak reference, since the hub holds the metrics).
#[derive(Debug, Clone, Default)]
pub struct NetworkCollector {
    hub: Arc<OnceLock<Weak<Hub>>>,
}

impl NetworkCollector {
    /// Exports `hub`'s network from now on.
    pub fn watch(&self, hub: &Arc<Hub>) {
        let _ = self.hub.set(Arc::downgrade(hub));
    }
}

impl Collector for NetworkCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(hub) = self.hub.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        Snapshot::read(&hub, crate::ingest::now_us()).encode(encoder)
    }
}

#[cfg(test)]
mod tests;
