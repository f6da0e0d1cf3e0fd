//! `siaga-agent check`: one probe cycle without a collector, printed as
//! tables, for the installer at the OPD.

use std::net::IpAddr;
use std::path::Path;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Deserialize;
use siaga_proto::v1::{Device, IcmpResult, Inventory, Link, SnmpResult, SnmpStatus, SnmpTarget};

use crate::probe::cycle::polled;
use crate::probe::icmp::{BurstOptions, IcmpProber};
use crate::probe::snmp::SnmpPoller;

#[derive(Debug, Deserialize)]
struct FileInventory {
    #[serde(default, rename = "device")]
    devices: Vec<FileDevice>,
    #[serde(default, rename = "link")]
    links: Vec<FileLink>,
}

#[derive(Debug, Deserialize)]
struct FileDevice {
    id: String,
    address: String,
    #[serde(default)]
    opd: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    parent: String,
    #[serde(default)]
    icmp_count: u32,
    snmp: Option<FileSnmp>,
}

#[derive(Debug, Deserialize, Default)]
struct FileSnmp {
    #[serde(default)]
    version: String,
    #[serde(default)]
    community: String,
    #[serde(default)]
    port: u32,
    #[serde(default)]
    user: String,
    #[serde(default)]
    auth_protocol: String,
    #[serde(default)]
    auth_password: String,
    #[serde(default)]
    priv_protocol: String,
    #[serde(default)]
    priv_password: String,
    #[serde(default)]
    timeout_ms: u64,
    #[serde(default)]
    retries: u32,
}

#[derive(Debug, Deserialize)]
struct FileLink {
    device: String,
    #[serde(default)]
    interface: String,
    #[serde(default)]
    if_index: u32,
    name: String,
}

/// Reads the devices and links of an inventory file in the collector's
/// format (`[[device]]`, `[device.snmp]`, `[[link]]`; other keys ignored),
/// optionally only those of one OPD.
pub fn load_inventory(path: &Path, opd: Option<&str>) -> Result<Inventory, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let file: FileInventory = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(0);
        format!("{}:{line}: {}", path.display(), e.message())
    })?;
    let devices: Vec<Device> = file
        .devices
        .into_iter()
        .filter(|d| opd.is_none_or(|o| d.opd.is_empty() || d.opd == o))
        .map(|d| Device {
            id: d.id,
            opd: d.opd,
            kind: d.kind,
            address: d.address,
            parent: d.parent,
            icmp_count: d.icmp_count,
            name: d.name,
            snmp: d.snmp.map(|s| SnmpTarget {
                version: s.version,
                community: s.community,
                port: s.port,
                user: s.user,
                auth_protocol: s.auth_protocol,
                auth_password: s.auth_password,
                priv_protocol: s.priv_protocol,
                priv_password: s.priv_password,
                timeout_ms: s.timeout_ms,
                retries: s.retries,
            }),
        })
        .collect();
    let links = file
        .links
        .into_iter()
        .filter(|l| devices.iter().any(|d| d.id == l.device))
        .map(|l| Link {
            device: l.device,
            interface: l.interface,
            if_index: l.if_index,
            name: l.name,
        })
        .collect();
    Ok(Inventory {
        devices,
        links,
        ..Inventory::default()
    })
}

fn us(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn status_name(r: &SnmpResult) -> &'static str {
    match SnmpStatus::try_from(r.status).unwrap_or(SnmpStatus::Unspecified) {
        SnmpStatus::Ok => "ok",
        SnmpStatus::Timeout => "timeout",
        SnmpStatus::AuthFailure => "auth failure",
        SnmpStatus::Malformed => "malformed",
        SnmpStatus::Error => "error",
        SnmpStatus::Unspecified => "-",
    }
}

/// Probes every device once (ICMP burst, SNMP poll where configured) and
/// returns the device and link tables. Returns whether every device
/// answered too.
pub async fn check(inv: &Inventory, prober: Option<&IcmpProber>) -> (String, bool) {
    let poller = SnmpPoller::new();
    let poller = &poller;
    let results = futures::future::join_all(inv.devices.iter().map(|d| async move {
        let icmp = match (prober, d.address.trim().parse::<IpAddr>()) {
            (Some(p), Ok(ip)) => {
                let opts = BurstOptions {
                    count: if d.icmp_count > 0 {
                        d.icmp_count
                    } else {
                        crate::scheduler::DEFAULT_ICMP_COUNT
                    },
                    ..BurstOptions::default()
                };
                p.burst(ip, &opts).await
            }
            (None, _) => IcmpResult {
                error: "no ICMP rights".into(),
                ..IcmpResult::default()
            },
            (_, Err(_)) => IcmpResult {
                error: format!("address {:?} is not an IP address", d.address),
                ..IcmpResult::default()
            },
        };
        let snmp = if polled(d) {
            Some(poller.poll(d, &inv.links).await.0)
        } else {
            None
        };
        (d, icmp, snmp)
    }))
    .await;
    let mut all_ok = true;
    let mut devices = Table::new();
    devices.load_preset(UTF8_FULL_CONDENSED).set_header([
        "device",
        "address",
        "sent",
        "recv",
        "loss %",
        "rtt min/med/max us",
        "jitter us",
        "snmp",
        "sysName",
        "detail",
    ]);
    let mut links = Table::new();
    links.load_preset(UTF8_FULL_CONDENSED).set_header([
        "link",
        "device",
        "interface",
        "oper",
        "admin",
        "speed Mbps",
        "in octets",
        "out octets",
        "errors",
        "discards",
    ]);
    for (d, icmp, snmp) in &results {
        all_ok &= icmp.received > 0
            && snmp
                .as_ref()
                .is_none_or(|s| s.status == SnmpStatus::Ok as i32);
        let detail = [
            icmp.error.as_str(),
            snmp.as_ref().map_or("", |s| s.error.as_str()),
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("; ");
        devices.add_row([
            d.id.clone(),
            d.address.clone(),
            icmp.sent.to_string(),
            icmp.received.to_string(),
            format!("{:.0}", icmp.loss_pct),
            format!(
                "{}/{}/{}",
                us(icmp.rtt_min_us),
                us(icmp.rtt_median_us),
                us(icmp.rtt_max_us)
            ),
            us(icmp.jitter_us),
            snmp.as_ref().map_or("-", status_name).to_string(),
            snmp.as_ref().map_or(String::new(), |s| s.sys_name.clone()),
            detail,
        ]);
        for l in inv.links.iter().filter(|l| l.device == d.id) {
            let i = snmp
                .as_ref()
                .and_then(|s| s.interfaces.iter().find(|i| i.link_name == l.name));
            let state = |v: u32| match v {
                1 => "up".to_string(),
                2 => "down".to_string(),
                0 => "-".to_string(),
                o => o.to_string(),
            };
            links.add_row([
                l.name.clone(),
                l.device.clone(),
                i.map_or(l.interface.clone(), |i| {
                    format!("{} ({})", i.if_name, i.if_index)
                }),
                i.map_or("not found".into(), |i| state(i.oper_status)),
                i.map_or("-".into(), |i| state(i.admin_status)),
                i.map_or("-".into(), |i| (i.speed_bps / 1_000_000).to_string()),
                i.map_or("-".into(), |i| us(i.in_octets)),
                i.map_or("-".into(), |i| us(i.out_octets)),
                i.map_or("-".into(), |i| us(sum(i.in_errors, i.out_errors))),
                i.map_or("-".into(), |i| us(sum(i.in_discards, i.out_discards))),
            ]);
        }
    }
    let mut out = format!("Devices\n{devices}\n");
    if !inv.links.is_empty() {
        out.push_str(&format!(
            "Links (rates need two polls: see the collector for bps and utilisation)\n{links}\n"
        ));
    }
    (out, all_ok)
}

fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.saturating_add(b?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_collector_inventory_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("inventory.toml");
        std::fs::write(
            &path,
            r#"interval = "10s"
[[opd]]
id = "dinkes"
name = "Dinas Kesehatan"

[[device]]
id = "core"
opd = "dinkes"
kind = "router"
address = "198.18.0.2"
[device.snmp]
version = "2c"
community = "public"

[[device]]
id = "other"
opd = "bappeda"
address = "198.18.0.6"

[[link]]
device = "core"
interface = "eth0"
name = "Uplink"
"#,
        )
        .expect("write");
        let inv = load_inventory(&path, Some("dinkes")).expect("inventory");
        assert_eq!(inv.devices.len(), 1);
        assert_eq!(
            inv.devices[0].snmp.as_ref().map(|s| s.community.as_str()),
            Some("public")
        );
        assert_eq!(inv.links.len(), 1);
        std::fs::write(&path, "[[device]]\nid = \"x\"\n").expect("write");
        let e = load_inventory(&path, None).expect_err("no address");
        assert!(e.contains("inventory.toml:1"), "{e}");
    }
}
