//! `siaga-agent check`: one probe cycle without a collector, printed as
//! tables, for the installer at the OPD.

use std::net::IpAddr;
use std::path::Path;

use std::fmt::Write as _;

use serde::Deserialize;
use siaga_proto::v1::{Device, IcmpResult, Inventory, Link, SnmpResult, SnmpStatus, SnmpTarget};
use unicode_width::UnicodeWidthStr as _;

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
    // Boxed: most devices have none, and 10,000 of them are read at once.
    snmp: Option<Box<FileSnmp>>,
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

/// Microseconds as milliseconds, the unit people read RTTs in ("0.42").
fn ms(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2}", v as f64 / 1000.0))
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
///
/// The bursts go to the prober as one submission (one schedule for all
/// devices); the SNMP polls run beside them.
pub async fn check(inv: &Inventory, prober: Option<&IcmpProber>) -> (String, bool) {
    let poller = SnmpPoller::new();
    let poller = &poller;
    let icmp = async {
        let mut results = Vec::with_capacity(inv.devices.len());
        let mut targets = Vec::new();
        for (i, d) in inv.devices.iter().enumerate() {
            results.push(match (prober, d.address.trim().parse::<IpAddr>()) {
                (Some(_), Ok(ip)) => {
                    let opts = BurstOptions {
                        count: if d.icmp_count > 0 {
                            d.icmp_count
                        } else {
                            crate::scheduler::DEFAULT_ICMP_COUNT
                        },
                        ..BurstOptions::default()
                    };
                    targets.push((i, ip, opts));
                    IcmpResult::default()
                }
                (None, _) => IcmpResult {
                    error: "no ICMP rights".into(),
                    ..IcmpResult::default()
                },
                (_, Err(_)) => IcmpResult {
                    error: format!("address {:?} is not an IP address", d.address),
                    ..IcmpResult::default()
                },
            });
        }
        if let Some(p) = prober {
            let device: Vec<usize> = targets.iter().map(|(i, _, _)| *i).collect();
            let mut bursts = p.bursts(targets.into_iter().map(|(_, ip, o)| (ip, o)));
            while let Some((k, r)) = bursts.next().await {
                results[device[k]] = r;
            }
        }
        results
    };
    let snmp = futures::future::join_all(
        inv.devices
            .iter()
            .enumerate()
            .filter(|(_, d)| polled(d))
            .map(|(i, d)| async move { (i, poller.poll(d, &inv.links).await.0) }),
    );
    let (icmp, polls) = tokio::join!(icmp, snmp);
    let mut snmp: Vec<Option<SnmpResult>> = vec![None; inv.devices.len()];
    for (i, r) in polls {
        snmp[i] = Some(r);
    }
    let all_ok = icmp.iter().zip(&snmp).all(|(i, s)| {
        i.received > 0 && s.as_ref().is_none_or(|s| s.status == SnmpStatus::Ok as i32)
    });
    let devices = render(
        &[
            "device",
            "address",
            "sent",
            "recv",
            "loss %",
            "rtt min/med/max ms",
            "jitter ms",
            "snmp",
            "sysName",
            "detail",
        ],
        inv.devices.len(),
        |row, col, out| {
            let (d, icmp, snmp) = (&inv.devices[row], &icmp[row], snmp[row].as_ref());
            let _ = match col {
                0 => out.write_str(&d.id),
                1 => out.write_str(&d.address),
                2 => write!(out, "{}", icmp.sent),
                3 => write!(out, "{}", icmp.received),
                4 => write!(out, "{:.0}", icmp.loss_pct),
                5 => write!(
                    out,
                    "{}/{}/{}",
                    ms(icmp.rtt_min_us),
                    ms(icmp.rtt_median_us),
                    ms(icmp.rtt_max_us)
                ),
                6 => out.write_str(&ms(icmp.jitter_us)),
                7 => out.write_str(snmp.map_or("-", status_name)),
                8 => out.write_str(snmp.map_or("", |s| s.sys_name.as_str())),
                _ => {
                    let snmp_error = snmp.map_or("", |s| s.error.as_str());
                    let sep = if icmp.error.is_empty() || snmp_error.is_empty() {
                        ""
                    } else {
                        "; "
                    };
                    write!(out, "{}{sep}{snmp_error}", icmp.error)
                }
            };
        },
    );
    let mut out = format!("Devices\n{devices}\n");
    if !inv.links.is_empty() {
        // (device index, link) in the device table's order.
        let rows: Vec<(usize, &Link)> = inv
            .devices
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                inv.links
                    .iter()
                    .filter(move |l| l.device == d.id)
                    .map(move |l| (i, l))
            })
            .collect();
        let links = render(
            &[
                "link",
                "device",
                "interface",
                "oper",
                "admin",
                "speed Mbit/s",
                "in octets",
                "out octets",
                "errors",
                "discards",
            ],
            rows.len(),
            |row, col, out| {
                let (d, l) = rows[row];
                let i = snmp[d]
                    .as_ref()
                    .and_then(|s| s.interfaces.iter().find(|i| i.link_name == l.name));
                let state = |v: u32| match v {
                    1 => "up".to_string(),
                    2 => "down".to_string(),
                    0 => "-".to_string(),
                    o => o.to_string(),
                };
                let _ = match (col, i) {
                    (0, _) => out.write_str(&l.name),
                    (1, _) => out.write_str(&l.device),
                    (2, None) => out.write_str(&l.interface),
                    (2, Some(i)) => write!(out, "{} ({})", i.if_name, i.if_index),
                    (3, None) => out.write_str("not found"),
                    (_, None) => out.write_str("-"),
                    (3, Some(i)) => out.write_str(&state(i.oper_status)),
                    (4, Some(i)) => out.write_str(&state(i.admin_status)),
                    (5, Some(i)) => write!(out, "{}", i.speed_bps / 1_000_000),
                    (6, Some(i)) => out.write_str(&us(i.in_octets)),
                    (7, Some(i)) => out.write_str(&us(i.out_octets)),
                    (8, Some(i)) => out.write_str(&us(sum(i.in_errors, i.out_errors))),
                    (_, Some(i)) => out.write_str(&us(sum(i.in_discards, i.out_discards))),
                };
            },
        );
        out.push_str(&format!(
            "Links (rates need two polls: see the collector for bps and utilisation)\n{links}\n"
        ));
    }
    (out, all_ok)
}

/// A table drawn as comfy-table's `UTF8_FULL_CONDENSED` preset draws it,
/// from a function that writes cell (row, column): the cells are formatted
/// twice (once for the widths, once for the lines) and never kept, so a
/// check of 10,000 devices holds the text of its table and nothing more
/// (comfy-table kept about 1 KB per row in cells).
fn render(header: &[&str], rows: usize, cell: impl Fn(usize, usize, &mut String)) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
    let mut buf = String::new();
    for r in 0..rows {
        for (c, w) in widths.iter_mut().enumerate() {
            buf.clear();
            cell(r, c, &mut buf);
            *w = (*w).max(one_line(&buf).width());
        }
    }
    let line_len: usize = widths.iter().map(|w| w + 3).sum::<usize>() * 3 + 4;
    let mut out = String::with_capacity(line_len * (rows + 4));
    let rule = |out: &mut String, left: char, fill: char, cross: char, right: char| {
        out.push(left);
        for (c, w) in widths.iter().enumerate() {
            if c > 0 {
                out.push(cross);
            }
            out.extend(std::iter::repeat_n(fill, w + 2));
        }
        out.push(right);
        out.push('\n');
    };
    let row = |out: &mut String, text: &mut dyn FnMut(usize, &mut String)| {
        let mut buf = String::new();
        out.push('│');
        for (c, w) in widths.iter().enumerate() {
            if c > 0 {
                out.push('┆');
            }
            buf.clear();
            text(c, &mut buf);
            let t = one_line(&buf);
            out.push(' ');
            out.push_str(&t);
            out.extend(std::iter::repeat_n(' ', w - t.width() + 1));
        }
        out.push('│');
        out.push('\n');
    };
    rule(&mut out, '┌', '─', '┬', '┐');
    row(&mut out, &mut |c, b| b.push_str(header[c]));
    rule(&mut out, '╞', '═', '╪', '╡');
    for r in 0..rows {
        row(&mut out, &mut |c, b| cell(r, c, b));
    }
    rule(&mut out, '└', '─', '┴', '┘');
    debug_assert_eq!(cols, widths.len());
    out.pop();
    out
}

/// A cell's text on one line (an error message may hold a line break).
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        s.replace(['\n', '\r'], " ").into()
    } else {
        s.into()
    }
}

fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.saturating_add(b?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables look as they did when comfy-table drew them (scripts
    /// and people read them), wide characters and line breaks included.
    #[test]
    fn tables_are_drawn_as_comfy_table_draws_them() {
        let header = ["device", "address", "detail"];
        let rows = [
            ["sw1", "198.18.0.2", ""],
            ["gedung-ä", "198.18.0.6", "timeout"],
            ["x", "", "two\nlines"],
        ];
        let ours = render(&header, rows.len(), |r, c, out| out.push_str(rows[r][c]));
        let mut theirs = comfy_table::Table::new();
        theirs
            .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header(header);
        for r in rows {
            theirs.add_row(r.map(|c| c.replace('\n', " ")));
        }
        assert_eq!(ours, theirs.to_string());
        let empty = render(&header, 0, |_, _, _| {});
        let mut theirs = comfy_table::Table::new();
        theirs
            .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header(header);
        assert_eq!(empty, theirs.to_string());
    }

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
