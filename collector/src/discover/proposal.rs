//! A discovery's result as a proposal against the inventory in force: new
//! devices (id from sysName, vendor and model from sysObjectID, kind from
//! the LLDP capabilities), changed names and addresses of known devices,
//! links from LLDP neighbour pairs and parents (the neighbour nearer the
//! agent). Pure: the inventory and the hosts in, the proposal out.
//!
//! Nearer the agent: every group of devices joined by LLDP has a root, the
//! device nearest the agent — a device of the inventory without a parent
//! (the OPD's uplink) when the group has one, else the one with the
//! shortest round trip to the agent — and each other device's parent is its
//! neighbour one hop closer to that root.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use siaga_proto::v1::{
    DiscoveredHost, InventoryProposal, ProposedChange, ProposedDevice, ProposedLink, ProposedSnmp,
    SnmpStatus, SnmpTarget,
};

use super::vendor;
use crate::inventory::{Inventory, check_id};

/// A discovered device: known (its inventory id) or new.
#[derive(Debug, Clone)]
struct Node {
    id: String,
    known: bool,
    /// An inventory device outside the sweep, known only as the LLDP
    /// neighbour of a swept one: nothing is proposed about it.
    outside: bool,
    host: DiscoveredHost,
}

/// One LLDP adjacency: (node, its port) ↔ (node, its port).
type Edge = ((usize, String), (usize, String));

/// `s` made an inventory id: lowercase, other characters as '-', at most 64.
pub fn id_of(s: &str) -> String {
    let mut id = String::new();
    for c in s.trim().chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.' {
            c
        } else {
            '-'
        };
        if c == '-' && (id.is_empty() || id.ends_with('-')) {
            continue;
        }
        id.push(c);
    }
    let id = id.trim_start_matches('.').trim_end_matches('-');
    id.chars().take(64).collect::<String>()
}

fn kind_of(host: &DiscoveredHost, vendor: &str) -> String {
    let caps = &host.capabilities;
    let has = |c: &str| caps.iter().any(|x| x == c);
    if has("router") {
        "router"
    } else if has("bridge") {
        "switch"
    } else if has("wlan_ap") {
        "access_point"
    } else if has("station") {
        "server"
    } else {
        vendor::kind_of_vendor(vendor)
    }
    .to_string()
}

/// The proposal for `hosts` found in `subnet` of `opd`.
pub fn propose(
    inv: &Inventory,
    opd: &str,
    subnet: &str,
    hosts: &[DiscoveredHost],
) -> InventoryProposal {
    let mut p = InventoryProposal {
        opd: opd.to_string(),
        subnet: subnet.to_string(),
        inventory_revision: inv.revision,
        ..Default::default()
    };
    let own: Vec<_> = inv.devices.values().filter(|d| d.opd == opd).collect();
    let mut taken: BTreeSet<String> = inv.devices.keys().cloned().collect();
    let mut nodes: Vec<Node> = Vec::new();
    let mut chassis: HashMap<String, String> = HashMap::new();
    for h in hosts {
        if h.snmp_status != SnmpStatus::Ok as i32 {
            let why = if h.snmp_error.is_empty() {
                "no SNMP answer".to_string()
            } else {
                h.snmp_error.clone()
            };
            p.notes.push(format!(
                "{} answers ping but not SNMP ({why}); not proposed",
                h.address
            ));
            continue;
        }
        // A router answers at each of its addresses: one device.
        if !h.chassis_id.is_empty() {
            if let Some(first) = chassis.get(&h.chassis_id) {
                p.notes.push(format!(
                    "{} is {first} again (the same LLDP chassis id); not proposed twice",
                    h.address
                ));
                continue;
            }
            chassis.insert(h.chassis_id.clone(), h.address.clone());
        }
        let addr: Option<IpAddr> = h.address.parse().ok();
        let name = h.sys_name.trim();
        let by_addr = own.iter().find(|d| Some(d.address) == addr);
        let by_name = || {
            own.iter().find(|d| {
                !name.is_empty()
                    && (d.name.eq_ignore_ascii_case(name) || d.id.eq_ignore_ascii_case(name))
            })
        };
        if let Some(d) = by_addr {
            if !name.is_empty() && d.name != name {
                p.changes.push(ProposedChange {
                    device: d.id.clone(),
                    field: "name".into(),
                    from: d.name.clone(),
                    to: name.to_string(),
                });
            }
            nodes.push(Node {
                id: d.id.clone(),
                known: true,
                outside: false,
                host: h.clone(),
            });
        } else if let Some(d) = by_name() {
            p.changes.push(ProposedChange {
                device: d.id.clone(),
                field: "address".into(),
                from: d.address.to_string(),
                to: h.address.clone(),
            });
            nodes.push(Node {
                id: d.id.clone(),
                known: true,
                outside: false,
                host: h.clone(),
            });
        } else {
            let mut base = id_of(name);
            if check_id(&base).is_err() {
                base = id_of(&format!("{opd}-{}", h.address));
            }
            let mut id = base.clone();
            let mut n = 2;
            while taken.contains(&id) {
                let suffix = format!("-{n}");
                id = format!(
                    "{}{suffix}",
                    base.chars().take(64 - suffix.len()).collect::<String>()
                );
                n += 1;
            }
            taken.insert(id.clone());
            nodes.push(Node {
                id,
                known: false,
                outside: false,
                host: h.clone(),
            });
        }
    }

    outside_neighbours(&own, &mut nodes);
    let edges = adjacencies(&nodes, &mut p.notes);
    let depth_parent = parents(inv, &nodes, &edges);

    for (i, n) in nodes.iter().enumerate() {
        let parent = depth_parent[i].1.map(|j| nodes[j].id.clone());
        if n.outside {
            continue;
        }
        if n.known {
            if let (Some(parent), Some(d)) = (&parent, inv.devices.get(&n.id))
                && d.parent.as_deref() != Some(parent.as_str())
            {
                p.changes.push(ProposedChange {
                    device: n.id.clone(),
                    field: "parent".into(),
                    from: d.parent.clone().unwrap_or_default(),
                    to: parent.clone(),
                });
            }
            continue;
        }
        let (vendor, model) = vendor::identify(&n.host.sys_object_id);
        p.new_devices.push(ProposedDevice {
            id: n.id.clone(),
            address: n.host.address.clone(),
            name: n.host.sys_name.trim().to_string(),
            kind: kind_of(&n.host, &vendor),
            vendor,
            model,
            parent: parent.unwrap_or_default(),
            sys_object_id: n.host.sys_object_id.clone(),
            sys_descr: n.host.sys_descr.clone(),
            snmp: None,
        });
    }

    // A link on the end nearer the agent (its downlink), named for the peer.
    let mut names: HashMap<String, BTreeSet<String>> = HashMap::new();
    for l in &inv.links {
        names
            .entry(l.device.clone())
            .or_default()
            .insert(l.name.clone());
    }
    for ((a, pa), (b, pb)) in edges {
        let a_first = (depth_parent[a].0, &nodes[a].id) <= (depth_parent[b].0, &nodes[b].id);
        let ((d, port), (peer, peer_port)) = if a_first {
            ((a, pa), (b, pb))
        } else {
            ((b, pb), (a, pa))
        };
        let (device, peer) = (&nodes[d].id, &nodes[peer].id);
        if port.is_empty() {
            p.notes.push(format!(
                "{device} ↔ {peer}: {device} does not name its port; no link proposed"
            ));
            continue;
        }
        let known = inv
            .links
            .iter()
            .any(|l| l.device == *device && l.interface == port);
        if known {
            continue;
        }
        let used = names.entry(device.clone()).or_default();
        let mut name = format!("{device}-{peer}");
        let mut n = 2;
        while used.contains(&name) {
            name = format!("{device}-{peer}-{n}");
            n += 1;
        }
        used.insert(name.clone());
        p.links.push(ProposedLink {
            device: device.clone(),
            interface: port,
            name,
            peer_device: peer.clone(),
            peer_interface: peer_port,
        });
    }
    p
}

/// Whether the inventory's `have` is the access `used` (what the discovery
/// was run with): the same version and the same credentials.
fn same_access(have: &SnmpTarget, used: &SnmpTarget) -> bool {
    let proto = |s: &str| {
        if s.is_empty() {
            "none".to_string()
        } else {
            s.to_ascii_lowercase()
        }
    };
    have.version == used.version
        && if used.version == "3" {
            have.user == used.user
                && proto(&have.auth_protocol) == proto(&used.auth_protocol)
                && have.auth_password == used.auth_password
                && proto(&have.priv_protocol) == proto(&used.priv_protocol)
                && have.priv_password == used.priv_password
        } else {
            have.community == used.community
        }
}

/// Gives each new device of `p` (all answered SNMP with `used`) the
/// `[device.snmp]` of a device of the OPD that has the same credentials, so
/// that it is polled once applied. inventory.toml holds credentials inline
/// only: the section is copied from that device at apply, the proposal
/// carries no secret; without such a device the new ones stay unpolled and
/// a note says what to add.
pub fn snmp_sections(inv: &Inventory, used: Option<&SnmpTarget>, p: &mut InventoryProposal) {
    let Some(used) = used else { return };
    if p.new_devices.is_empty() {
        return;
    }
    let same = inv
        .devices
        .values()
        .filter(|d| d.opd == p.opd)
        .find(|d| d.snmp.as_ref().is_some_and(|s| same_access(s, used)));
    let Some(same) = same else {
        p.notes.push(format!(
            "new devices unpolled: no device of {} has this SNMP v{} access",
            p.opd, used.version
        ));
        return;
    };
    let port = if used.port == 0 { 161 } else { used.port };
    for d in &mut p.new_devices {
        d.snmp = Some(ProposedSnmp {
            version: used.version.clone(),
            same_as: same.id.clone(),
            port,
        });
    }
    p.notes.push(format!(
        "new devices polled with the [device.snmp] of {} (same access)",
        same.id
    ));
}

/// Adds the inventory devices of the OPD that swept devices name as LLDP
/// neighbours but the sweep did not reach (the OPD's router in another
/// subnet): by management address, else by name.
fn outside_neighbours(own: &[&crate::inventory::Device], nodes: &mut Vec<Node>) {
    let mut extra: Vec<Node> = Vec::new();
    for n in nodes.iter() {
        for nb in &n.host.neighbours {
            let man: Option<IpAddr> = nb.management_address.parse().ok();
            let name = nb.sys_name.trim();
            let swept = nodes.iter().any(|x| {
                Some(&x.host.address) == Some(&nb.management_address)
                    || (!name.is_empty() && x.host.sys_name.trim().eq_ignore_ascii_case(name))
                    || (!nb.chassis_id.is_empty() && x.host.chassis_id == nb.chassis_id)
            });
            if swept {
                continue;
            }
            let known = own.iter().find(|d| {
                man == Some(d.address)
                    || (!name.is_empty()
                        && (d.name.eq_ignore_ascii_case(name) || d.id.eq_ignore_ascii_case(name)))
            });
            let Some(d) = known else { continue };
            if nodes.iter().chain(extra.iter()).any(|x| x.id == d.id) {
                continue;
            }
            extra.push(Node {
                id: d.id.clone(),
                known: true,
                outside: true,
                host: DiscoveredHost {
                    address: d.address.to_string(),
                    sys_name: name.to_string(),
                    chassis_id: nb.chassis_id.clone(),
                    ..Default::default()
                },
            });
        }
    }
    nodes.extend(extra);
}

/// The LLDP adjacencies between discovered nodes, each once. A neighbour is
/// found by its management address, else its sysName, else its chassis id.
fn adjacencies(nodes: &[Node], notes: &mut Vec<String>) -> Vec<Edge> {
    let mut by_addr: HashMap<IpAddr, usize> = HashMap::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut by_chassis: HashMap<String, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Ok(a) = n.host.address.parse() {
            by_addr.insert(a, i);
        }
        if !n.host.sys_name.trim().is_empty() {
            by_name.insert(n.host.sys_name.trim().to_ascii_lowercase(), i);
        }
        if !n.host.chassis_id.is_empty() {
            by_chassis.insert(n.host.chassis_id.to_ascii_lowercase(), i);
        }
    }
    let mut seen: BTreeSet<((usize, String), (usize, String))> = BTreeSet::new();
    let mut edges = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for nb in &n.host.neighbours {
            let found = nb
                .management_address
                .parse::<IpAddr>()
                .ok()
                .and_then(|a| by_addr.get(&a))
                .or_else(|| by_name.get(&nb.sys_name.trim().to_ascii_lowercase()))
                .or_else(|| by_chassis.get(&nb.chassis_id.to_ascii_lowercase()))
                .copied();
            let Some(j) = found.filter(|j| *j != i) else {
                if found.is_none() {
                    let who = if nb.sys_name.is_empty() {
                        nb.chassis_id.clone()
                    } else {
                        nb.sys_name.clone()
                    };
                    let at = if nb.management_address.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", nb.management_address)
                    };
                    notes.push(format!(
                        "{} port {}: neighbour {who}{at} was not discovered (outside the subnet or no SNMP)",
                        n.id, nb.local_port
                    ));
                }
                continue;
            };
            let here = (i, nb.local_port.clone());
            let there = (j, nb.port.clone());
            let key = if here <= there {
                (here.clone(), there.clone())
            } else {
                (there.clone(), here.clone())
            };
            // The other end reports the same adjacency; one end may not name
            // a port the other does: keep the pair once.
            let pair_known = seen.iter().any(|((x, xp), (y, yp))| {
                (*x == i && *y == j || *x == j && *y == i)
                    && (xp == &here.1 || xp == &there.1 || yp == &here.1 || yp == &there.1)
            });
            if seen.insert(key) && !pair_known {
                edges.push((here, there));
            }
        }
    }
    edges
}

/// Per node: its depth from its group's root and its parent (none for a root).
fn parents(inv: &Inventory, nodes: &[Node], edges: &[Edge]) -> Vec<(usize, Option<usize>)> {
    let mut adj: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for ((a, _), (b, _)) in edges {
        adj.entry(*a).or_default().insert(*b);
        adj.entry(*b).or_default().insert(*a);
    }
    let mut out: Vec<Option<(usize, Option<usize>)>> = vec![None; nodes.len()];
    // Roots first: parentless inventory devices, then by round trip.
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| {
        let n = &nodes[i];
        let uplink = n.known && inv.devices.get(&n.id).is_some_and(|d| d.parent.is_none());
        (
            !uplink,
            n.host.rtt_us,
            n.host.address.parse::<IpAddr>().ok(),
        )
    });
    for root in order {
        if out[root].is_some() {
            continue;
        }
        out[root] = Some((0, None));
        let mut queue = VecDeque::from([root]);
        while let Some(x) = queue.pop_front() {
            let depth = out[x].map_or(0, |(d, _)| d);
            for &y in adj.get(&x).into_iter().flatten() {
                if out[y].is_none() {
                    out[y] = Some((depth + 1, Some(x)));
                    queue.push_back(y);
                }
            }
        }
    }
    out.into_iter().map(|o| o.unwrap_or((0, None))).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use siaga_proto::v1::LldpNeighbour;

    use super::*;

    const INVENTORY: &str = r#"
[[opd]]
id = "dinkes"

[[device]]
id = "dinkes-core"
opd = "dinkes"
kind = "router"
address = "198.18.40.1"
name = "core"
"#;

    fn host(
        addr: &str,
        name: &str,
        rtt_us: u64,
        nbs: &[(&str, &str, &str, &str)],
    ) -> DiscoveredHost {
        DiscoveredHost {
            address: addr.into(),
            rtt_us,
            snmp_status: SnmpStatus::Ok as i32,
            sys_name: name.into(),
            sys_object_id: "1.3.6.1.4.1.9.1.1208".into(),
            capabilities: vec!["bridge".into()],
            neighbours: nbs
                .iter()
                .map(|(local, name, port, man)| LldpNeighbour {
                    local_port: local.to_string(),
                    sys_name: name.to_string(),
                    port: port.to_string(),
                    management_address: man.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// core — sw-a — sw-b in a chain; a printer answers ping only.
    fn chain() -> Vec<DiscoveredHost> {
        vec![
            host(
                "198.18.40.1",
                "core-1",
                300,
                &[("eth1", "SW-A", "eth0", "198.18.40.2")],
            ),
            host(
                "198.18.40.2",
                "SW-A",
                200,
                &[
                    ("eth0", "core-1", "eth1", "198.18.40.1"),
                    ("eth1", "sw-b", "eth0", ""),
                ],
            ),
            host(
                "198.18.40.3",
                "sw-b",
                100,
                &[("eth0", "SW-A", "eth1", "198.18.40.2")],
            ),
            DiscoveredHost {
                address: "198.18.40.50".into(),
                snmp_status: SnmpStatus::Timeout as i32,
                snmp_error: "no answer".into(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn a_chain_gives_new_devices_links_and_parents_toward_the_uplink() {
        let inv = Inventory::parse(Path::new("inventory.toml"), INVENTORY).unwrap();
        let p = propose(&inv, "dinkes", "198.18.40.0/24", &chain());
        let devices: Vec<_> = p
            .new_devices
            .iter()
            .map(|d| {
                (
                    d.id.as_str(),
                    d.address.as_str(),
                    d.parent.as_str(),
                    d.kind.as_str(),
                    d.vendor.as_str(),
                )
            })
            .collect();
        // The shortest round trip is sw-b's, but the inventory's parentless
        // core is nearer the agent: parents point toward it.
        assert_eq!(
            devices,
            [
                ("sw-a", "198.18.40.2", "dinkes-core", "switch", "Cisco"),
                ("sw-b", "198.18.40.3", "sw-a", "switch", "Cisco"),
            ]
        );
        let changes: Vec<_> = p
            .changes
            .iter()
            .map(|c| {
                (
                    c.device.as_str(),
                    c.field.as_str(),
                    c.from.as_str(),
                    c.to.as_str(),
                )
            })
            .collect();
        assert_eq!(changes, [("dinkes-core", "name", "core", "core-1")]);
        let links: Vec<_> = p
            .links
            .iter()
            .map(|l| {
                (
                    l.device.as_str(),
                    l.interface.as_str(),
                    l.peer_device.as_str(),
                    l.peer_interface.as_str(),
                )
            })
            .collect();
        assert_eq!(
            links,
            [
                ("dinkes-core", "eth1", "sw-a", "eth0"),
                ("sw-a", "eth1", "sw-b", "eth0")
            ]
        );
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(p.notes[0].starts_with("198.18.40.50 answers ping but not SNMP"));
    }

    #[test]
    fn without_a_known_uplink_the_nearest_host_is_the_root_and_known_ones_move() {
        let inv = Inventory::parse(
            Path::new("inventory.toml"),
            &INVENTORY.replace("198.18.40.1\"\nname = \"core\"", "198.18.40.9\"\nname = \"SW-A\"\nparent = \"x\"")
                .replace("[[device]]", "[[device]]\nid = \"x\"\nopd = \"dinkes\"\nkind = \"router\"\naddress = \"198.18.41.1\"\n\n[[device]]"),
        )
        .unwrap();
        let p = propose(&inv, "dinkes", "198.18.40.0/24", &chain());
        let changes: Vec<_> = p
            .changes
            .iter()
            .map(|c| (c.device.as_str(), c.field.as_str(), c.to.as_str()))
            .collect();
        // SW-A is known by name at a new address; sw-b (100 µs) is the root.
        assert_eq!(
            changes,
            [
                ("dinkes-core", "address", "198.18.40.2"),
                ("dinkes-core", "parent", "sw-b")
            ]
        );
        let parents: Vec<_> = p
            .new_devices
            .iter()
            .map(|d| (d.id.as_str(), d.parent.as_str()))
            .collect();
        assert_eq!(parents, [("core-1", "dinkes-core"), ("sw-b", "")]);
    }

    #[test]
    fn an_inventory_router_outside_the_subnet_is_the_parent_it_is_by_lldp() {
        let inv = Inventory::parse(
            Path::new("inventory.toml"),
            &INVENTORY.replace("198.18.40.1", "198.18.41.1"),
        )
        .unwrap();
        let mut a = host(
            "198.18.40.2",
            "sw-a",
            100,
            &[("eth0", "r1", "to-sw-a", "198.18.41.1")],
        );
        a.chassis_id = "aa:aa".into();
        let mut again = a.clone();
        again.address = "198.18.40.9".into();
        let b = host(
            "198.18.40.6",
            "sw-b",
            100,
            &[("eth0", "r1", "to-sw-b", "198.18.41.1")],
        );
        let p = propose(&inv, "dinkes", "198.18.40.0/24", &[a, b, again]);
        let devices: Vec<_> = p
            .new_devices
            .iter()
            .map(|d| (d.id.as_str(), d.parent.as_str()))
            .collect();
        assert_eq!(devices, [("sw-a", "dinkes-core"), ("sw-b", "dinkes-core")]);
        let links: Vec<_> = p
            .links
            .iter()
            .map(|l| {
                (
                    l.device.as_str(),
                    l.interface.as_str(),
                    l.peer_device.as_str(),
                )
            })
            .collect();
        assert_eq!(
            links,
            [
                ("dinkes-core", "to-sw-a", "sw-a"),
                ("dinkes-core", "to-sw-b", "sw-b")
            ]
        );
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(
            p.notes,
            ["198.18.40.9 is 198.18.40.2 again (the same LLDP chassis id); not proposed twice"]
        );
    }

    #[test]
    fn ids_are_plain_and_unique() {
        assert_eq!(id_of("  Core SW.01 (Lt 2) "), "core-sw.01-lt-2");
        assert_eq!(id_of("..x"), "x");
        let inv = Inventory::parse(Path::new("inventory.toml"), INVENTORY).unwrap();
        let hosts = vec![
            host("198.18.40.7", "dinkes-core", 1, &[]),
            host("198.18.40.8", "", 1, &[]),
        ];
        let p = propose(&inv, "dinkes", "198.18.40.0/24", &hosts);
        let ids: Vec<_> = p.new_devices.iter().map(|d| d.id.as_str()).collect();
        // "dinkes-core" matches the device by id: its address changes.
        assert_eq!(ids, ["dinkes-198.18.40.8"]);
        assert_eq!(p.changes[0].field, "address");
    }

    #[test]
    fn new_devices_are_polled_like_a_device_with_the_same_access() {
        let text = format!("{INVENTORY}[device.snmp]\nversion = \"2c\"\ncommunity = \"kominfo\"\n");
        let inv = Inventory::parse(Path::new("inventory.toml"), &text).unwrap();
        let hosts = vec![host("198.18.40.7", "sw-x", 1, &[])];
        let v2c = |c: &str| SnmpTarget {
            version: "2c".into(),
            community: c.into(),
            ..Default::default()
        };
        let mut p = propose(&inv, "dinkes", "198.18.40.0/24", &hosts);
        snmp_sections(&inv, Some(&v2c("kominfo")), &mut p);
        assert_eq!(
            p.new_devices[0].snmp,
            Some(ProposedSnmp {
                version: "2c".into(),
                same_as: "dinkes-core".into(),
                port: 161
            })
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("[device.snmp] of dinkes-core")),
            "{:?}",
            p.notes
        );
        // Another community, or v1 with it: no device has that access.
        for used in [
            v2c("other"),
            SnmpTarget {
                version: "1".into(),
                ..v2c("kominfo")
            },
        ] {
            let mut p = propose(&inv, "dinkes", "198.18.40.0/24", &hosts);
            snmp_sections(&inv, Some(&used), &mut p);
            assert_eq!(p.new_devices[0].snmp, None);
            assert!(
                p.notes
                    .iter()
                    .any(|n| n.starts_with("new devices unpolled")),
                "{:?}",
                p.notes
            );
            assert!(!format!("{p:?}").contains("kominfo"), "{p:?}");
        }
    }
}
