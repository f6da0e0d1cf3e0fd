//! Discovery on command: the collector cannot reach an OPD's subnets, so
//! the OPD's agent sweeps one (ICMP echo at a bounded rate), then asks every
//! host that answered over SNMP for its system group (sysName, sysDescr,
//! sysObjectID) and its LLDP-MIB tables (local ports, remote systems and
//! their management addresses). Hosts go back to the collector as they are
//! read; a last message says the run is done.
//!
//! Bounds: at most a /20 (4096 addresses) per run, at most
//! [`MAX_RATE`] echo requests a second, [`MAX_ROWS`] rows per LLDP table,
//! strings cut to a DisplayString, [`HOST_BUDGET`] per host. What a device
//! sends that does not fit the MIB is a note on the host, never a panic.
//! The credentials serve this run only and are never logged.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_snmp::{ClientBuilder, Oid, Value, VarBind};
use futures::StreamExt;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use siaga_proto::v1::{
    DiscoverCommand, DiscoverResult, DiscoveredHost, LldpNeighbour, LldpPort, SnmpStatus,
    SnmpTarget,
};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::probe::icmp::{BurstOptions, IcmpProber};
use crate::probe::snmp::{
    DeviceClient, auth_of, classify, cut_display_string, retry_of, timeout_of,
};
use crate::probe::snmp_socket::DeviceSocket;

/// The longest prefix a run may sweep: a /20 (4096 addresses) for IPv4,
/// the same count of addresses for IPv6.
pub const MAX_HOST_BITS: u8 = 12;
/// Echo requests per second when the command names no rate.
pub const DEFAULT_RATE: u32 = 100;
/// Most echo requests per second.
pub const MAX_RATE: u32 = 1000;
/// Rows read per LLDP table and host; the rest are left out with a note.
pub const MAX_ROWS: usize = 512;
/// Encoded size one host's answer may take; rows beyond it are left out
/// (with a note), so one part always fits the stream.
pub const MAX_HOST_BYTES: usize = 256 * 1024;
/// How long one host's SNMP reading may take in all.
pub const HOST_BUDGET: Duration = Duration::from_secs(30);
/// Hosts read over SNMP at once.
const SNMP_CONCURRENT: usize = 8;
/// How long an echo reply is waited for.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

const SYS_DESCR_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
const SYS_OBJECT_ID_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 2, 0];
const SYS_NAME_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
/// LLDP-MIB (IEEE 802.1AB-2005), lldpObjects.
const LLDP: &[u32] = &[1, 0, 8802, 1, 1, 2, 1];
/// lldpLocalSystemData: lldpLocChassisIdSubtype (2.0 under .3.1), …
const LOC_CHASSIS_SUBTYPE_0: &[u32] = &[3, 1, 0];
const LOC_CHASSIS_ID_0: &[u32] = &[3, 2, 0];
const LOC_CAP_ENABLED_0: &[u32] = &[3, 6, 0];
/// lldpLocPortEntry: 2 subtype, 3 id, 4 description.
const LOC_PORT_ENTRY: &[u32] = &[3, 7, 1];
/// lldpRemEntry: 4 chassis subtype, 5 chassis id, 6 port subtype, 7 port
/// id, 8 port description, 9 system name.
const REM_ENTRY: &[u32] = &[4, 1, 1];
/// lldpRemManAddrEntry: 3 lldpRemManAddrIfSubtype (the first readable
/// column; the address itself is in the index).
const REM_MAN_ADDR_ENTRY: &[u32] = &[4, 2, 1];

fn lldp(tail: &[u32]) -> Oid {
    let mut arcs = LLDP.to_vec();
    arcs.extend_from_slice(tail);
    Oid::from_slice(&arcs)
}

fn column(entry: &[u32], col: u32) -> Oid {
    let mut arcs = LLDP.to_vec();
    arcs.extend_from_slice(entry);
    arcs.push(col);
    Oid::from_slice(&arcs)
}

/// The addresses of `subnet` to sweep (without the network and broadcast
/// addresses of an IPv4 subnet larger than a /31), or why it is refused.
pub fn addresses(subnet: &str) -> Result<Vec<IpAddr>, String> {
    let net: IpNet = subnet.trim().parse().map_err(|_| {
        format!("{subnet:?} is not a subnet in CIDR notation (e.g. 198.18.40.0/24)")
    })?;
    let host_bits = net.max_prefix_len() - net.prefix_len();
    if host_bits > MAX_HOST_BITS {
        let smallest = net.max_prefix_len() - MAX_HOST_BITS;
        // ::/0 has 2^128 addresses, one more than a u128 holds.
        let count = 1u128
            .checked_shl(host_bits.into())
            .map_or_else(|| format!("2^{host_bits}"), |n| n.to_string());
        return Err(format!(
            "subnet {net} has {count} addresses; discovery sweeps at most a /{smallest} ({} addresses) per run: split it",
            1u32 << MAX_HOST_BITS
        ));
    }
    let net = net.trunc();
    Ok(match net {
        IpNet::V4(n) if n.prefix_len() < 31 => n.hosts().map(IpAddr::V4).collect(),
        IpNet::V4(n) => {
            let first = u32::from(n.network());
            (0..(1u32 << (32 - n.prefix_len())))
                .map(|i| IpAddr::V4(Ipv4Addr::from(first + i)))
                .collect()
        }
        IpNet::V6(n) => {
            let first = u128::from(n.network());
            (0..(1u128 << host_bits))
                .map(|i| IpAddr::V6(Ipv6Addr::from(first + i)))
                .collect()
        }
    })
}

/// Echo requests per second for the command's rate (0: the default).
pub fn rate_of(rate_pps: u32) -> u32 {
    match rate_pps {
        0 => DEFAULT_RATE,
        r => r.min(MAX_RATE),
    }
}

/// Runs one discovery: sends each host read as its own [`DiscoverResult`]
/// down `out`, then the last one (`done`). Stops early when `out` closes.
pub async fn discover(
    prober: &IcmpProber,
    cmd: &DiscoverCommand,
    out: mpsc::Sender<DiscoverResult>,
) {
    let last = |error: String, swept: usize, answered: usize| DiscoverResult {
        id: cmd.id.clone(),
        hosts: Vec::new(),
        done: true,
        error,
        swept: u32::try_from(swept).unwrap_or(u32::MAX),
        answered: u32::try_from(answered).unwrap_or(u32::MAX),
    };
    let addrs = match addresses(&cmd.subnet) {
        Ok(a) => a,
        Err(e) => {
            info!(id = %cmd.id, subnet = %cmd.subnet, error = %e, "discovery refused");
            let _ = out.send(last(e, 0, 0)).await;
            return;
        }
    };
    let rate = rate_of(cmd.rate_pps);
    info!(id = %cmd.id, subnet = %cmd.subnet, addresses = addrs.len(), rate_pps = rate, "discovery started");
    let answered = sweep(prober, &addrs, rate).await;
    info!(id = %cmd.id, answered = answered.len(), "discovery sweep done; reading the hosts over SNMP");
    let n = answered.len();
    let target = cmd.snmp.clone();
    let mut hosts = futures::stream::iter(answered)
        .map(|(addr, rtt_us)| {
            let target = target.clone();
            async move { read_host(addr, rtt_us, target.as_ref()).await }
        })
        .buffer_unordered(SNMP_CONCURRENT);
    while let Some(host) = hosts.next().await {
        let part = DiscoverResult {
            id: cmd.id.clone(),
            hosts: vec![host],
            ..DiscoverResult::default()
        };
        if out.send(part).await.is_err() {
            return;
        }
    }
    let _ = out.send(last(String::new(), addrs.len(), n)).await;
    info!(id = %cmd.id, answered = n, "discovery done");
}

/// One echo request per address, at most `rate` a second; the addresses
/// that answered and their round trips, in address order.
async fn sweep(prober: &IcmpProber, addrs: &[IpAddr], rate: u32) -> Vec<(IpAddr, u64)> {
    let rate = rate.max(1);
    // Ten slices a second (fewer at low rates): each slice sends together.
    let per_slice = rate.div_ceil(10).max(1) as usize;
    let period = Duration::from_secs(1) * u32::try_from(per_slice).unwrap_or(u32::MAX) / rate;
    let opts = BurstOptions {
        count: 1,
        interval: Duration::from_millis(100),
        timeout: REPLY_TIMEOUT,
        keep_rtts: false,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Vec::new();
    for slice in addrs.chunks(per_slice) {
        tick.tick().await;
        let bursts = prober.bursts(slice.iter().map(|a| (*a, opts.clone())));
        let slice = slice.to_vec();
        pending.push(async move { slice.into_iter().zip(bursts.all().await) });
    }
    let mut found: Vec<(IpAddr, u64)> = futures::future::join_all(pending)
        .await
        .into_iter()
        .flatten()
        .filter(|(_, r)| r.received > 0)
        .map(|(a, r)| (a, r.rtt_min_us.unwrap_or(0)))
        .collect();
    found.sort();
    found
}

/// Reads one host over SNMP within [`HOST_BUDGET`].
async fn read_host(addr: IpAddr, rtt_us: u64, target: Option<&SnmpTarget>) -> DiscoveredHost {
    let mut host = DiscoveredHost {
        address: addr.to_string(),
        rtt_us,
        ..DiscoveredHost::default()
    };
    let Some(target) = target else {
        host.snmp_error = "no SNMP credentials given".into();
        return host;
    };
    match tokio::time::timeout(HOST_BUDGET, read_snmp(addr, target, &mut host)).await {
        Ok(Ok(())) => host.snmp_status = SnmpStatus::Ok as i32,
        Ok(Err((status, error))) => {
            debug!(address = %addr, error = %error, "discovery: SNMP reading failed");
            host.snmp_status = status as i32;
            host.snmp_error = error;
        }
        Err(_) => {
            host.snmp_status = SnmpStatus::Timeout as i32;
            host.snmp_error = format!(
                "reading the host took longer than {}; what was read is kept",
                humantime::format_duration(HOST_BUDGET)
            );
        }
    }
    host
}

type Fail = (SnmpStatus, String);

async fn client(addr: IpAddr, target: &SnmpTarget) -> Result<(DeviceClient, DeviceSocket), Fail> {
    let port = u16::try_from(target.port)
        .ok()
        .filter(|p| *p != 0)
        .unwrap_or(161);
    let auth = auth_of(target).map_err(|m| (SnmpStatus::Error, m))?;
    let socket = DeviceSocket::bind(SocketAddr::new(addr, port), Counter::default())
        .await
        .map_err(|e| (SnmpStatus::Error, format!("opening the SNMP socket: {e}")))?;
    let client = ClientBuilder::new(auth)
        .request_timeout(timeout_of(target))
        .retry(retry_of(target))
        .build_with_transport(socket.clone())
        .map_err(|e| fail(&e))?;
    Ok((client, socket))
}

fn fail(e: &async_snmp::Error) -> Fail {
    let f = classify(e);
    (f.status, f.message)
}

async fn read_snmp(
    addr: IpAddr,
    target: &SnmpTarget,
    host: &mut DiscoveredHost,
) -> Result<(), Fail> {
    let (client, socket) = client(addr, target).await?;
    let sys = client
        .get_many(&[
            Oid::from_slice(SYS_DESCR_0),
            Oid::from_slice(SYS_OBJECT_ID_0),
            Oid::from_slice(SYS_NAME_0),
        ])
        .await
        .map_err(|e| match socket.take_diagnosis() {
            // What came back was not SNMP: say so, not "no answer".
            Some(d) => (SnmpStatus::Malformed, d.to_string()),
            None => fail(&e),
        })?;
    system_group(&sys.varbinds, host);
    // LLDP: a host without the MIB answers noSuchObject and an empty walk.
    if let Ok(loc) = client
        .get_many(&[
            lldp(LOC_CHASSIS_SUBTYPE_0),
            lldp(LOC_CHASSIS_ID_0),
            lldp(LOC_CAP_ENABLED_0),
        ])
        .await
    {
        local_system(&loc.varbinds, host);
    }
    let mut tables = Tables::default();
    for col in [2, 3, 4] {
        tables
            .loc_ports
            .extend(walk(&client, column(LOC_PORT_ENTRY, col), host).await?);
    }
    for col in [4, 5, 6, 7, 8, 9] {
        tables
            .rem
            .extend(walk(&client, column(REM_ENTRY, col), host).await?);
    }
    tables.man_addr = walk(&client, column(REM_MAN_ADDR_ENTRY, 3), host).await?;
    let (ports, neighbours, notes) = tables.parse();
    host.ports = ports;
    host.neighbours = neighbours;
    host.notes.extend(notes);
    fit(host, MAX_HOST_BYTES);
    Ok(())
}

/// Cuts `host` to at most `max` encoded bytes: neighbours first, then
/// ports, from the end; a note says how many were left out.
pub fn fit(host: &mut DiscoveredHost, max: usize) {
    use prost::Message as _;
    let (n, p) = (host.neighbours.len(), host.ports.len());
    while host.encoded_len() > max {
        if host.neighbours.pop().is_none() && host.ports.pop().is_none() {
            host.sys_descr.clear();
            host.notes.truncate(1);
            break;
        }
    }
    let (cut_n, cut_p) = (n - host.neighbours.len(), p - host.ports.len());
    if cut_n + cut_p > 0 {
        host.notes.push(format!(
            "answer over {} KiB: {cut_n} neighbour(s) and {cut_p} port(s) left out",
            max / 1024
        ));
    }
}

/// One column, at most [`MAX_ROWS`] rows (a note when cut). An error after
/// some rows keeps them, with a note; an error at once fails the host only
/// when it is not a plain absence of the table.
async fn walk(
    client: &DeviceClient,
    base: Oid,
    host: &mut DiscoveredHost,
) -> Result<Vec<VarBind>, Fail> {
    let mut rows = Vec::new();
    let mut stream = client.walk(base.clone()).map_err(|e| fail(&e))?;
    while let Some(item) = stream.next().await {
        match item {
            Ok(vb) => {
                if rows.len() == MAX_ROWS {
                    host.notes.push(format!(
                        "{base}: more than {MAX_ROWS} rows; the rest are left out"
                    ));
                    break;
                }
                rows.push(vb);
            }
            Err(e) => {
                let (status, message) = fail(&e);
                if rows.is_empty() && status == SnmpStatus::Timeout {
                    return Err((status, message));
                }
                host.notes.push(format!("{base}: walk stopped: {message}"));
                break;
            }
        }
    }
    Ok(rows)
}

fn text(v: &Value) -> Option<String> {
    v.as_bytes().map(|b| cut_display_string(b).0)
}

fn system_group(vbs: &[VarBind], host: &mut DiscoveredHost) {
    for vb in vbs {
        let arcs = vb.oid.arcs();
        if arcs == SYS_DESCR_0 {
            host.sys_descr = text(&vb.value).unwrap_or_default();
        } else if arcs == SYS_NAME_0 {
            host.sys_name = text(&vb.value).unwrap_or_default();
        } else if arcs == SYS_OBJECT_ID_0 {
            match &vb.value {
                Value::ObjectIdentifier(o) => host.sys_object_id = o.to_string(),
                Value::NoSuchObject | Value::NoSuchInstance => {}
                other => host.notes.push(format!(
                    "sysObjectID is not an OBJECT IDENTIFIER: {other:?}"
                )),
            }
        }
    }
}

fn local_system(vbs: &[VarBind], host: &mut DiscoveredHost) {
    let mut subtype = 0;
    let mut id: Option<&[u8]> = None;
    for vb in vbs {
        let tail = vb.oid.arcs().get(LLDP.len()..).unwrap_or_default();
        if tail == LOC_CHASSIS_SUBTYPE_0 {
            subtype = integer(&vb.value).unwrap_or(0);
        } else if tail == LOC_CHASSIS_ID_0 {
            id = vb.value.as_bytes();
        } else if tail == LOC_CAP_ENABLED_0
            && let Some(bits) = vb.value.as_bytes()
        {
            host.capabilities = capabilities(bits);
        }
    }
    if let Some(id) = id {
        host.chassis_id = chassis_id(subtype, id);
    }
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(i64::from(*i)),
        Value::Gauge32(u) | Value::UInteger32(u) | Value::Counter32(u) => Some(i64::from(*u)),
        _ => None,
    }
}

/// LldpSystemCapabilitiesMap: bit 0 is the first octet's high bit.
pub fn capabilities(bits: &[u8]) -> Vec<String> {
    const NAMES: [&str; 8] = [
        "other",
        "repeater",
        "bridge",
        "wlan_ap",
        "router",
        "telephone",
        "docsis",
        "station",
    ];
    let first = bits.first().copied().unwrap_or(0);
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| first & (0x80 >> i) != 0)
        .map(|(_, n)| (*n).to_string())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Printable text, else hex.
fn text_or_hex(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => cut_display_string(bytes).0,
        _ => hex(bytes),
    }
}

/// An address family (IANA) and its octets.
fn network_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes {
        [1, a, b, c, d] => Some(IpAddr::from([*a, *b, *c, *d])),
        [2, rest @ ..] => <[u8; 16]>::try_from(rest).ok().map(IpAddr::from),
        _ => None,
    }
}

/// LldpChassisIdSubtype: 4 macAddress, 5 networkAddress, others text.
pub fn chassis_id(subtype: i64, bytes: &[u8]) -> String {
    match subtype {
        4 => hex(bytes),
        5 => network_address(bytes).map_or_else(|| hex(bytes), |a| a.to_string()),
        _ => text_or_hex(bytes),
    }
}

/// LldpPortIdSubtype: 3 macAddress, 4 networkAddress, others text.
pub fn port_id(subtype: i64, bytes: &[u8]) -> String {
    match subtype {
        3 => hex(bytes),
        4 => network_address(bytes).map_or_else(|| hex(bytes), |a| a.to_string()),
        _ => text_or_hex(bytes),
    }
}

/// The name of a port: the interface name when its id is one
/// (interfaceName 5, local 7 as lldpd and many switches use it), else the
/// description, else the id.
fn port_name(subtype: i64, id: &str, desc: &str) -> String {
    if matches!(subtype, 5 | 7) && !id.is_empty() || desc.is_empty() {
        id.to_string()
    } else {
        desc.to_string()
    }
}

/// The rows of the LLDP tables as walked.
#[derive(Debug, Default)]
pub struct Tables {
    /// lldpLocPortTable columns 2–4.
    pub loc_ports: Vec<VarBind>,
    /// lldpRemTable columns 4–9.
    pub rem: Vec<VarBind>,
    /// lldpRemManAddrTable column 3.
    pub man_addr: Vec<VarBind>,
}

#[derive(Debug, Default)]
struct Rem {
    chassis_subtype: i64,
    chassis: Vec<u8>,
    port_subtype: i64,
    port: Vec<u8>,
    port_desc: String,
    sys_name: String,
    man: Option<IpAddr>,
}

impl Tables {
    /// Ports, neighbours (each with its management address and local port
    /// name) and notes on rows that do not fit the MIB.
    pub fn parse(&self) -> (Vec<LldpPort>, Vec<LldpNeighbour>, Vec<String>) {
        let mut notes = Vec::new();
        let mut bad = |what: &str, vb: &VarBind| {
            if notes.len() < 16 {
                notes.push(format!("{what}: unexpected {} = {:?}", vb.oid, vb.value));
            }
        };
        let port_base = LLDP.len() + LOC_PORT_ENTRY.len();
        let mut ports: BTreeMap<u32, (i64, Vec<u8>, String)> = BTreeMap::new();
        for vb in &self.loc_ports {
            let arcs = vb.oid.arcs();
            let (Some(&col), Some(&num), true) = (
                arcs.get(port_base),
                arcs.get(port_base + 1),
                arcs.len() == port_base + 2,
            ) else {
                bad("lldpLocPortTable", vb);
                continue;
            };
            let p = ports.entry(num).or_default();
            match (col, &vb.value) {
                (2, v) if integer(v).is_some() => p.0 = integer(v).unwrap_or(0),
                (3, Value::OctetString(b)) => p.1 = b.to_vec(),
                (4, Value::OctetString(b)) => p.2 = cut_display_string(b).0,
                _ => bad("lldpLocPortTable", vb),
            }
        }
        let ports: Vec<LldpPort> = ports
            .into_iter()
            .map(|(num, (subtype, id, desc))| {
                let id = port_id(subtype, &id);
                LldpPort {
                    port_num: num,
                    name: port_name(subtype, &id, &desc),
                    port_id: id,
                    port_desc: desc,
                }
            })
            .collect();

        let rem_base = LLDP.len() + REM_ENTRY.len();
        let mut rems: BTreeMap<(u32, u32), Rem> = BTreeMap::new();
        for vb in &self.rem {
            let arcs = vb.oid.arcs();
            // column, lldpRemTimeMark, lldpRemLocalPortNum, lldpRemIndex
            let (Some(&col), Some(&local), Some(&index), true) = (
                arcs.get(rem_base),
                arcs.get(rem_base + 2),
                arcs.get(rem_base + 3),
                arcs.len() == rem_base + 4,
            ) else {
                bad("lldpRemTable", vb);
                continue;
            };
            let r = rems.entry((local, index)).or_default();
            match (col, &vb.value) {
                (4, v) if integer(v).is_some() => r.chassis_subtype = integer(v).unwrap_or(0),
                (5, Value::OctetString(b)) => r.chassis = b.to_vec(),
                (6, v) if integer(v).is_some() => r.port_subtype = integer(v).unwrap_or(0),
                (7, Value::OctetString(b)) => r.port = b.to_vec(),
                (8, Value::OctetString(b)) => r.port_desc = cut_display_string(b).0,
                (9, Value::OctetString(b)) => r.sys_name = cut_display_string(b).0,
                _ => bad("lldpRemTable", vb),
            }
        }
        let man_base = LLDP.len() + REM_MAN_ADDR_ENTRY.len();
        for vb in &self.man_addr {
            let arcs = vb.oid.arcs();
            let key = (arcs.get(man_base + 2), arcs.get(man_base + 3));
            let addr = arcs.get(man_base + 4..).and_then(man_address);
            match (key, addr) {
                ((Some(&local), Some(&index)), Some(addr)) => {
                    // The first address (IPv4 sorts first) is the one used.
                    if let Some(r) = rems.get_mut(&(local, index))
                        && r.man.is_none()
                    {
                        r.man = Some(addr);
                    }
                }
                _ => bad("lldpRemManAddrTable", vb),
            }
        }
        let neighbours = rems
            .into_iter()
            .filter(|(_, r)| !r.chassis.is_empty() || !r.port.is_empty() || !r.sys_name.is_empty())
            .map(|((local, _), r)| {
                let port = port_id(r.port_subtype, &r.port);
                LldpNeighbour {
                    local_port_num: local,
                    local_port: ports
                        .iter()
                        .find(|p| p.port_num == local)
                        .map(|p| p.name.clone())
                        .unwrap_or_default(),
                    chassis_id: chassis_id(r.chassis_subtype, &r.chassis),
                    port: port_name(r.port_subtype, &port, &r.port_desc),
                    port_id: port,
                    port_desc: r.port_desc,
                    sys_name: r.sys_name,
                    management_address: r.man.map(|a| a.to_string()).unwrap_or_default(),
                }
            })
            .collect();
        (ports, neighbours, notes)
    }
}

/// lldpRemManAddrSubtype and lldpRemManAddr from an index: the subtype,
/// then the address as a length-prefixed octet string (or, from agents that
/// implied the length, the bare octets).
fn man_address(arcs: &[u32]) -> Option<IpAddr> {
    let (&subtype, rest) = arcs.split_first()?;
    let octets: Vec<u8> = match rest.split_first() {
        Some((&len, bytes)) if bytes.len() == len as usize => bytes
            .iter()
            .map(|b| u8::try_from(*b).ok())
            .collect::<Option<_>>()?,
        _ => rest
            .iter()
            .map(|b| u8::try_from(*b).ok())
            .collect::<Option<_>>()?,
    };
    match (subtype, octets.len()) {
        (1, 4) => <[u8; 4]>::try_from(octets.as_slice())
            .ok()
            .map(IpAddr::from),
        (2, 16) => <[u8; 16]>::try_from(octets.as_slice())
            .ok()
            .map(IpAddr::from),
        _ => None,
    }
}

/// Runs discoveries for the uplink: the prober is shared with the regular
/// cycle (each burst has its own sequence numbers). One discovery at a
/// time: another waits its turn, so the sweep rate holds for the agent as a
/// whole.
#[derive(Debug, Clone)]
pub struct Discoverer {
    prober: Arc<IcmpProber>,
    turn: Arc<tokio::sync::Semaphore>,
}

impl Discoverer {
    /// A discoverer on the agent's ICMP prober.
    pub fn new(prober: Arc<IcmpProber>) -> Self {
        Self {
            prober,
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// Runs `cmd` when no other discovery runs, its parts sent down `out`.
    pub async fn run(&self, cmd: &DiscoverCommand, out: mpsc::Sender<DiscoverResult>) {
        // The semaphore is never closed; without a permit the run goes ahead.
        let _turn = self.turn.acquire().await.ok();
        discover(&self.prober, cmd, out).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("198.18.40.0/24" => Ok(254); "a /24 without network and broadcast")]
    #[test_case("198.18.40.7/30" => Ok(2); "host bits are cleared")]
    #[test_case("198.18.40.1/32" => Ok(1); "one address")]
    #[test_case("198.18.0.0/20" => Ok(4094); "the largest allowed")]
    #[test_case("198.18.0.0/19" => Err("subnet 198.18.0.0/19 has 8192 addresses; discovery sweeps at most a /20 (4096 addresses) per run: split it".into()); "too large")]
    #[test_case("2001:db8::/116" => Ok(4096); "IPv6 by address count")]
    #[test_case("::/0" => Err("subnet ::/0 has 2^128 addresses; discovery sweeps at most a /116 (4096 addresses) per run: split it".into()); "all of IPv6, found by fuzzing")]
    #[test_case("198.18.40.0" => Err("\"198.18.40.0\" is not a subnet in CIDR notation (e.g. 198.18.40.0/24)".into()); "not CIDR")]
    fn subnets(s: &str) -> Result<usize, String> {
        addresses(s).map(|a| a.len())
    }

    /// A sweep, then the same sweep again: each finds what answers.
    #[tokio::test]
    async fn sweeps_run_again_find_the_same_hosts() {
        let Ok(prober) = IcmpProber::new() else {
            return; // no ICMP rights here; the lab tests cover it
        };
        let cmd = DiscoverCommand {
            id: "D-1".into(),
            subnet: "127.0.0.0/29".into(),
            ..Default::default()
        };
        for round in 0..3 {
            let (tx, mut rx) = mpsc::channel(16);
            discover(&prober, &cmd, tx).await;
            let mut last = None;
            while let Some(part) = rx.recv().await {
                last = Some(part);
            }
            let last = last.unwrap();
            assert_eq!(
                (round, last.swept, last.answered),
                (round, 6, 6),
                "{last:?}"
            );
        }
    }

    /// A "device" that answers every request with bytes that are not SNMP
    /// is diagnosed as such, not taken for a silent one (and nothing panics).
    #[tokio::test]
    async fn a_garbage_answer_is_a_malformed_host() {
        let dev = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = dev.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((_, from)) = dev.recv_from(&mut buf).await {
                let _ = dev
                    .send_to(&[0x30, 0x84, 0xff, 0x00, 0x13, 0x37], from)
                    .await;
            }
        });
        let target = SnmpTarget {
            version: "2c".into(),
            community: "public".into(),
            port: u32::from(at.port()),
            timeout_ms: 300,
            ..Default::default()
        };
        let h = read_host(at.ip(), 10, Some(&target)).await;
        assert_eq!(h.snmp_status, SnmpStatus::Malformed as i32, "{h:?}");
        assert!(
            h.snmp_error.starts_with("malformed answer: 6 bytes"),
            "{h:?}"
        );
    }

    #[test]
    fn a_host_too_large_is_cut_to_its_budget_with_a_note() {
        use prost::Message as _;
        let mut h = DiscoveredHost {
            address: "198.18.40.2".into(),
            neighbours: (0..100)
                .map(|i| LldpNeighbour {
                    local_port_num: i,
                    sys_name: "x".repeat(200),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        fit(&mut h, 4096);
        assert!(h.encoded_len() <= 4096 + 100, "{}", h.encoded_len());
        assert!(h.neighbours.len() < 100 && !h.neighbours.is_empty());
        assert_eq!(h.neighbours[0].local_port_num, 0, "the first rows are kept");
        let note = h.notes.last().unwrap();
        assert!(note.starts_with("answer over 4 KiB: "), "{note}");
        let mut small = DiscoveredHost::default();
        fit(&mut small, 4096);
        assert!(small.notes.is_empty());
    }

    #[test]
    fn rates_are_bounded() {
        assert_eq!(rate_of(0), DEFAULT_RATE);
        assert_eq!(rate_of(5), 5);
        assert_eq!(rate_of(1_000_000), MAX_RATE);
    }

    fn vb(arcs: &[u32], value: Value) -> VarBind {
        VarBind {
            oid: Oid::from_slice(arcs),
            value,
        }
    }

    fn at(entry: &[u32], tail: &[u32]) -> Vec<u32> {
        let mut a = LLDP.to_vec();
        a.extend_from_slice(entry);
        a.extend_from_slice(tail);
        a
    }

    fn s(x: &str) -> Value {
        Value::OctetString(x.as_bytes().to_vec().into())
    }

    #[test]
    fn lldp_tables_give_ports_and_neighbours_with_their_addresses() {
        let t = Tables {
            loc_ports: vec![
                vb(&at(LOC_PORT_ENTRY, &[2, 3]), Value::Integer(5)),
                vb(&at(LOC_PORT_ENTRY, &[3, 3]), s("eth1")),
                vb(&at(LOC_PORT_ENTRY, &[4, 3]), s("uplink to core")),
                vb(&at(LOC_PORT_ENTRY, &[2, 4]), Value::Integer(3)),
                vb(
                    &at(LOC_PORT_ENTRY, &[3, 4]),
                    Value::OctetString(vec![0, 0x1b, 0x21, 1, 2, 3].into()),
                ),
                vb(&at(LOC_PORT_ENTRY, &[4, 4]), s("Gi0/4")),
            ],
            rem: vec![
                vb(&at(REM_ENTRY, &[4, 0, 3, 1]), Value::Integer(4)),
                vb(
                    &at(REM_ENTRY, &[5, 0, 3, 1]),
                    Value::OctetString(vec![0xaa, 0xbb, 0xcc, 0, 0, 1].into()),
                ),
                vb(&at(REM_ENTRY, &[6, 0, 3, 1]), Value::Integer(5)),
                vb(&at(REM_ENTRY, &[7, 0, 3, 1]), s("ge-0/0/1")),
                vb(&at(REM_ENTRY, &[9, 0, 3, 1]), s("core-1")),
                // The second neighbour has no management address.
                vb(&at(REM_ENTRY, &[9, 100, 4, 7]), s("ap-lobby")),
            ],
            man_addr: vec![
                vb(
                    &at(REM_MAN_ADDR_ENTRY, &[3, 0, 3, 1, 1, 4, 198, 18, 40, 1]),
                    Value::Integer(2),
                ),
                // A second (IPv6) address of the same neighbour is ignored.
                vb(
                    &at(
                        REM_MAN_ADDR_ENTRY,
                        &[
                            3, 0, 3, 1, 2, 16, 32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                        ],
                    ),
                    Value::Integer(2),
                ),
            ],
        };
        let (ports, neighbours, notes) = t.parse();
        assert!(notes.is_empty(), "{notes:?}");
        let names: Vec<_> = ports
            .iter()
            .map(|p| (p.port_num, p.name.as_str()))
            .collect();
        assert_eq!(names, [(3, "eth1"), (4, "Gi0/4")]);
        assert_eq!(ports[1].port_id, "00:1b:21:01:02:03");
        assert_eq!(neighbours.len(), 2);
        let n = &neighbours[0];
        assert_eq!(
            (
                n.local_port.as_str(),
                n.sys_name.as_str(),
                n.port.as_str(),
                n.chassis_id.as_str(),
                n.management_address.as_str()
            ),
            (
                "eth1",
                "core-1",
                "ge-0/0/1",
                "aa:bb:cc:00:00:01",
                "198.18.40.1"
            )
        );
        assert_eq!(
            (
                neighbours[1].local_port.as_str(),
                neighbours[1].sys_name.as_str(),
                neighbours[1].management_address.as_str()
            ),
            ("Gi0/4", "ap-lobby", "")
        );
    }

    #[test]
    fn garbage_rows_are_notes_not_panics() {
        let t = Tables {
            loc_ports: vec![
                vb(&at(LOC_PORT_ENTRY, &[3]), s("short index")),
                vb(&at(LOC_PORT_ENTRY, &[3, 1]), Value::Integer(7)),
            ],
            rem: vec![
                vb(&at(REM_ENTRY, &[9, 0, 1]), s("short")),
                vb(&at(REM_ENTRY, &[5, 0, 1, 1]), Value::Null),
                vb(
                    &at(REM_ENTRY, &[9, 0, 1, 1]),
                    Value::OctetString(vec![0xff; 600].into()),
                ),
            ],
            man_addr: vec![
                vb(
                    &at(REM_MAN_ADDR_ENTRY, &[3, 0, 1, 1, 1, 9, 1, 2]),
                    Value::Integer(2),
                ),
                vb(
                    &at(REM_MAN_ADDR_ENTRY, &[3, 0, 1, 1, 1, 4, 300, 1, 1, 1]),
                    Value::Integer(2),
                ),
            ],
        };
        let (ports, neighbours, notes) = t.parse();
        assert_eq!(ports.len(), 1);
        assert_eq!(notes.len(), 6, "{notes:?}");
        assert_eq!(neighbours.len(), 1);
        assert!(neighbours[0].sys_name.len() <= 255 + 3);
        assert_eq!(neighbours[0].management_address, "");
    }

    #[test_case(&[0x28] => vec!["bridge", "router"]; "bridge and router")]
    #[test_case(&[0x01, 0xff] => vec!["station"]; "station only")]
    #[test_case(&[] => Vec::<String>::new(); "empty")]
    fn capability_bits(bits: &[u8]) -> Vec<String> {
        capabilities(bits)
    }
}
