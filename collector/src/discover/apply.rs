//! Writes a reviewed proposal into `inventory.toml`: new `[[device]]` and
//! `[[link]]` tables at the end, changed keys in place; comments and the
//! rest of the file as they were. The result is validated as a whole before
//! it replaces the file; a proposal that no longer fits the file (a device
//! added meanwhile, one gone) is refused, naming what.

use std::path::Path;

use siaga_proto::v1::{InventoryProposal, ProposedSnmp};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use crate::inventory::Inventory;

/// What applying a proposal did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Devices added.
    pub devices: usize,
    /// Keys of known devices changed.
    pub changes: usize,
    /// Links added.
    pub links: usize,
}

/// Reads a proposal as `siaga discover --save` writes it (or the whole
/// `siaga discover --json` answer, whose `proposal` it takes).
pub fn read_proposal(text: &str) -> Result<InventoryProposal, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON proposal: {e}"))?;
    let v = match v.get("proposal") {
        Some(p) => p.clone(),
        None => v,
    };
    serde_json::from_value(v).map_err(|e| format!("not a proposal: {e}"))
}

fn devices(doc: &mut DocumentMut) -> Result<&mut ArrayOfTables, String> {
    if !doc.contains_key("device") {
        doc.insert("device", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    doc.get_mut("device")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| "`device` is not an array of [[device]] tables".to_string())
}

/// The `[device.snmp]` of `snmp.same_as` in the file, for the new device
/// `id`: a copy (credentials included, as the file already holds them) on
/// the port the new device answered on.
fn snmp_like(
    devs: &ArrayOfTables,
    snmp: &ProposedSnmp,
    id: &str,
    file: &Path,
) -> Result<Table, String> {
    let stale = || {
        format!(
            "device {id} is to be polled like {}, which has no SNMP {} in {} any more; discover again",
            snmp.same_as,
            snmp.version,
            file.display()
        )
    };
    let like = devs
        .iter()
        .find(|t| t.get("id").and_then(Item::as_str) == Some(snmp.same_as.as_str()))
        .and_then(|t| t.get("snmp"))
        .and_then(Item::as_table_like)
        .filter(|s| s.get("version").and_then(Item::as_str) == Some(snmp.version.as_str()))
        .ok_or_else(stale)?;
    let mut t = Table::new();
    for (k, v) in like.iter() {
        if k != "port" {
            let mut v = v.clone();
            if let Some(v) = v.as_value_mut() {
                v.decor_mut().clear();
            }
            t.insert(k, v);
        }
    }
    if snmp.port != 0 && snmp.port != 161 {
        t.insert("port", value(i64::from(snmp.port)));
    }
    Ok(t)
}

/// `text` (inventory.toml, `file` in messages) with `p` applied and
/// validated.
pub fn apply(file: &Path, text: &str, p: &InventoryProposal) -> Result<(String, Applied), String> {
    let before = Inventory::parse(file, text).map_err(|e| e.to_string())?;
    if !before.opds.contains_key(&p.opd) {
        return Err(format!("OPD {:?} is not in {}", p.opd, file.display()));
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut done = Applied::default();
    {
        let devs = devices(&mut doc)?;
        for c in &p.changes {
            let key = match c.field.as_str() {
                "name" | "address" | "parent" => c.field.as_str(),
                other => {
                    return Err(format!(
                        "unknown field {other:?} in a change of {}",
                        c.device
                    ));
                }
            };
            let Some(t) = devs
                .iter_mut()
                .find(|t| t.get("id").and_then(Item::as_str) == Some(c.device.as_str()))
            else {
                return Err(format!(
                    "device {} is not in {} any more; discover again",
                    c.device,
                    file.display()
                ));
            };
            if c.to.is_empty() {
                t.remove(key);
            } else {
                t.insert(key, value(c.to.clone()));
            }
            done.changes += 1;
        }
        for d in &p.new_devices {
            if before.devices.contains_key(&d.id) {
                return Err(format!(
                    "device {} is already in {}; discover again",
                    d.id,
                    file.display()
                ));
            }
            let mut t = Table::new();
            t.insert("id", value(d.id.clone()));
            t.insert("opd", value(p.opd.clone()));
            t.insert("kind", value(d.kind.clone()));
            t.insert("address", value(d.address.clone()));
            if !d.name.is_empty() {
                t.insert("name", value(d.name.clone()));
            }
            if !d.parent.is_empty() {
                t.insert("parent", value(d.parent.clone()));
            }
            let what: Vec<&str> = [
                d.vendor.as_str(),
                d.model.as_str(),
                d.sys_object_id.as_str(),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
            let comment = if what.is_empty() {
                format!("\n# Discovered in {}.\n", p.subnet)
            } else {
                format!("\n# Discovered in {}: {}.\n", p.subnet, what.join(", "))
            };
            t.decor_mut().set_prefix(comment.replace(['\r'], ""));
            if let Some(snmp) = &d.snmp {
                let section = snmp_like(devs, snmp, &d.id, file)?;
                t.insert("snmp", Item::Table(section));
            }
            devs.push(t);
            done.devices += 1;
        }
    }
    if !p.links.is_empty() {
        if !doc.contains_key("link") {
            doc.insert("link", Item::ArrayOfTables(ArrayOfTables::new()));
        }
        let links = doc
            .get_mut("link")
            .and_then(Item::as_array_of_tables_mut)
            .ok_or_else(|| "`link` is not an array of [[link]] tables".to_string())?;
        for l in &p.links {
            let mut t = Table::new();
            t.insert("device", value(l.device.clone()));
            t.insert("interface", value(l.interface.clone()));
            t.insert("name", value(l.name.clone()));
            t.decor_mut().set_prefix(format!(
                "\n# LLDP: {} {} ↔ {} {}.\n",
                l.device, l.interface, l.peer_device, l.peer_interface
            ));
            links.push(t);
            done.links += 1;
        }
    }
    let out = doc.to_string();
    Inventory::parse(file, &out).map_err(|e| format!("the result would not be valid: {e}"))?;
    Ok((out, done))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use siaga_proto::v1::{ProposedChange, ProposedDevice, ProposedLink};

    use super::*;

    const INVENTORY: &str = r#"# Dinas Kesehatan
[[opd]]
id = "dinkes"

[[device]]
id = "dinkes-core"   # the OPD's uplink
opd = "dinkes"
kind = "router"
address = "198.18.40.1"
name = "core"
"#;

    fn proposal() -> InventoryProposal {
        InventoryProposal {
            opd: "dinkes".into(),
            subnet: "198.18.40.0/24".into(),
            new_devices: vec![ProposedDevice {
                id: "sw-a".into(),
                address: "198.18.40.2".into(),
                name: "SW-A".into(),
                kind: "switch".into(),
                vendor: "Cisco".into(),
                parent: "dinkes-core".into(),
                ..Default::default()
            }],
            changes: vec![ProposedChange {
                device: "dinkes-core".into(),
                field: "name".into(),
                from: "core".into(),
                to: "core-1".into(),
            }],
            links: vec![ProposedLink {
                device: "dinkes-core".into(),
                interface: "eth1".into(),
                name: "dinkes-core-sw-a".into(),
                peer_device: "sw-a".into(),
                peer_interface: "eth0".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_proposal_is_written_keeping_the_file_and_validates() {
        let file = Path::new("inventory.toml");
        let (out, done) = apply(file, INVENTORY, &proposal()).unwrap();
        assert_eq!(
            done,
            Applied {
                devices: 1,
                changes: 1,
                links: 1
            }
        );
        assert!(out.starts_with("# Dinas Kesehatan\n"), "{out}");
        assert!(out.contains("# the OPD's uplink"), "{out}");
        let inv = Inventory::parse(file, &out).unwrap();
        assert_eq!(inv.devices["dinkes-core"].name, "core-1");
        let sw = &inv.devices["sw-a"];
        assert_eq!(
            (
                sw.parent.as_deref(),
                sw.kind.as_str(),
                sw.address.to_string()
            ),
            (Some("dinkes-core"), "switch", "198.18.40.2".to_string())
        );
        assert_eq!(inv.links.len(), 1);
        assert_eq!(
            (
                inv.links[0].device.as_str(),
                inv.links[0].interface.as_str()
            ),
            ("dinkes-core", "eth1")
        );
        // Applying it again is refused: the device is there now.
        assert_eq!(
            apply(file, &out, &proposal()).unwrap_err(),
            "device sw-a is already in inventory.toml; discover again"
        );
    }

    #[test]
    fn a_stale_or_invalid_proposal_is_refused() {
        let file = Path::new("inventory.toml");
        let mut p = proposal();
        p.changes[0].device = "gone".into();
        assert_eq!(
            apply(file, INVENTORY, &p).unwrap_err(),
            "device gone is not in inventory.toml any more; discover again"
        );
        let mut p = proposal();
        p.new_devices[0].parent = "nowhere".into();
        let e = apply(file, INVENTORY, &p).unwrap_err();
        assert!(e.starts_with("the result would not be valid: "), "{e}");
        assert!(e.contains("nowhere"), "{e}");
    }

    #[test]
    fn the_json_answer_or_the_saved_proposal_reads() {
        let saved = serde_json::to_string(&proposal()).unwrap();
        assert_eq!(read_proposal(&saved).unwrap(), proposal());
        let answer = format!("{{\"opd\": \"dinkes\", \"proposal\": {saved}}}");
        assert_eq!(read_proposal(&answer).unwrap(), proposal());
        assert!(read_proposal("[1, 2").is_err());
    }

    #[test]
    fn a_new_device_gets_the_snmp_section_of_the_device_named() {
        let file = Path::new("inventory.toml");
        let text = format!(
            "{INVENTORY}[device.snmp]   # the OPD's read-only community\nversion = \"2c\"\ncommunity = \"kominfo\"\nport = 1161\n"
        );
        let mut p = proposal();
        p.new_devices[0].snmp = Some(ProposedSnmp {
            version: "2c".into(),
            same_as: "dinkes-core".into(),
            port: 161,
        });
        let (out, _) = apply(file, &text, &p).unwrap();
        let inv = Inventory::parse(file, &out).unwrap();
        let snmp = inv.devices["sw-a"].snmp.clone().unwrap();
        assert_eq!(
            (snmp.version.as_str(), snmp.community.as_str(), snmp.port),
            ("2c", "kominfo", 161)
        );
        // The device named has no such section (any more): refused.
        p.new_devices[0].snmp = Some(ProposedSnmp {
            version: "3".into(),
            same_as: "dinkes-core".into(),
            port: 161,
        });
        assert_eq!(
            apply(file, &text, &p).unwrap_err(),
            "device sw-a is to be polled like dinkes-core, which has no SNMP 3 in inventory.toml any more; discover again"
        );
    }
}
