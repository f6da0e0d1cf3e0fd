//! `inventory.toml`: the OPDs, their devices and the links that matter.
//!
//! The collector owns the file; each agent receives the part for its OPD
//! ([`Inventory::for_opd`]). A file is checked as a whole before it replaces
//! the one in force: ids unique, references resolve, no parent cycles,
//! addresses and SNMP settings valid. Every error names file, line and key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use siaga_proto::v1;
use siaga_proto::words::SnmpVersion;
use toml::Spanned;

use crate::config::{line_of, parse_toml};
use crate::error::ConfigError;

/// Default probe cycle when the file names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    interval: Option<Spanned<String>>,
    snmp_interval: Option<Spanned<String>>,
    #[serde(default)]
    opd: Vec<RawOpd>,
    #[serde(default)]
    device: Vec<RawDevice>,
    #[serde(default)]
    link: Vec<RawLink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpd {
    id: Spanned<String>,
    #[serde(default)]
    name: String,
    interval: Option<Spanned<String>>,
    snmp_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: Spanned<String>,
    opd: Spanned<String>,
    kind: Spanned<String>,
    address: Spanned<String>,
    parent: Option<Spanned<String>>,
    #[serde(default)]
    name: String,
    icmp_count: Option<Spanned<u32>>,
    snmp: Option<RawSnmp>,
    /// Why this device shares its address and SNMP port with another device
    /// of its OPD (e.g. two names for one stacked switch); without it that
    /// is refused as a copy-and-paste mistake.
    shares_address: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnmp {
    version: Spanned<String>,
    community: Option<String>,
    port: Option<u16>,
    user: Option<Spanned<String>>,
    auth_protocol: Option<Spanned<String>>,
    auth_password: Option<Spanned<String>>,
    priv_protocol: Option<Spanned<String>>,
    priv_password: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    device: Spanned<String>,
    interface: Option<Spanned<String>>,
    if_index: Option<u32>,
    #[serde(default)]
    name: String,
}

/// Kind of a device.
pub const KINDS: &[&str] = &["router", "switch", "access_point", "server", "other"];
const AUTH_PROTOCOLS: &[&str] = &["none", "md5", "sha", "sha224", "sha256", "sha384", "sha512"];
const PRIV_PROTOCOLS: &[&str] = &["none", "des", "aes", "aes192", "aes256"];

/// An OPD (regional government office).
#[derive(Debug, Clone, PartialEq)]
pub struct Opd {
    /// Id, as in agent certificates.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Probe cycle of this OPD's agent (ICMP).
    pub interval: Duration,
    /// SNMP poll cycle of this OPD's agent.
    pub snmp_interval: Duration,
}

/// A device as the collector knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Unique id.
    pub id: String,
    /// Owning OPD.
    pub opd: String,
    /// router | switch | access_point | server | other.
    pub kind: String,
    /// Address to probe.
    pub address: IpAddr,
    /// The device it hangs behind, if any.
    pub parent: Option<String>,
    /// Human name (may be empty).
    pub name: String,
    /// ICMP echo requests per cycle (0 = agent default).
    pub icmp_count: u32,
    /// SNMP access, if the device is polled.
    pub snmp: Option<v1::SnmpTarget>,
}

/// A link (an interface of a device) that matters.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Device carrying the interface.
    pub device: String,
    /// ifName or ifDescr (empty when `if_index` is used).
    pub interface: String,
    /// ifIndex (0 when `interface` is used).
    pub if_index: u32,
    /// Human name.
    pub name: String,
}

/// A validated inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// Revision: derived from the file's content, so equal files give equal revisions.
    pub revision: u64,
    /// Default probe cycle.
    pub interval: Duration,
    /// OPDs by id.
    pub opds: BTreeMap<String, Opd>,
    /// Devices by id.
    pub devices: BTreeMap<String, Device>,
    /// Links in file order.
    pub links: Vec<Link>,
}

impl Default for Inventory {
    fn default() -> Self {
        Self {
            revision: 0,
            interval: DEFAULT_INTERVAL,
            opds: BTreeMap::new(),
            devices: BTreeMap::new(),
            links: Vec::new(),
        }
    }
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: line_of(self.text, span.start),
            key: key.to_string(),
            message: message.into(),
        })
    }

    fn duration(&self, s: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
        match humantime::parse_duration(s.get_ref()) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(d),
            Ok(_) => self.err(s.span(), key, "must be at least 1s"),
            Err(e) => self.err(
                s.span(),
                key,
                format!("invalid duration {:?}: {e}", s.get_ref()),
            ),
        }
    }

    fn id(&self, s: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        match check_id(s.get_ref()) {
            Ok(()) => Ok(s.get_ref().clone()),
            Err(m) => self.err(s.span(), key, m),
        }
    }
}

/// Ids end up in certificate URIs and file names: keep them plain.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 64 {
        return Err(format!("{id:?} is longer than 64 characters"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.')
        || id.starts_with('.')
    {
        return Err(format!(
            "{id:?} may contain only lowercase letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

impl Inventory {
    /// Reads and validates an inventory file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates inventory text; `file` is used in error messages.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawFile = parse_toml(file, text)?;
        let c = Checker { file, text };
        let interval = match &raw.interval {
            Some(s) => c.duration(s, "interval")?,
            None => DEFAULT_INTERVAL,
        };
        let snmp_interval = match &raw.snmp_interval {
            Some(s) => Some(c.duration(s, "snmp_interval")?),
            None => None,
        };

        let mut opds = BTreeMap::new();
        for o in &raw.opd {
            let id = c.id(&o.id, "opd.id")?;
            let interval = match &o.interval {
                Some(s) => c.duration(s, "opd.interval")?,
                None => interval,
            };
            // An OPD's own `interval` also sets its SNMP cycle unless
            // `snmp_interval` is given (here or at the top).
            let snmp_interval = match &o.snmp_interval {
                Some(s) => c.duration(s, "opd.snmp_interval")?,
                None => snmp_interval.unwrap_or(interval),
            };
            if opds
                .insert(
                    id.clone(),
                    Opd {
                        id: id.clone(),
                        name: o.name.clone(),
                        interval,
                        snmp_interval,
                    },
                )
                .is_some()
            {
                return c.err(o.id.span(), "opd.id", format!("duplicate OPD id {id:?}"));
            }
        }

        let mut devices = BTreeMap::new();
        for d in &raw.device {
            let id = c.id(&d.id, "device.id")?;
            if devices.contains_key(&id) {
                return c.err(
                    d.id.span(),
                    "device.id",
                    format!("duplicate device id {id:?}"),
                );
            }
            let opd = d.opd.get_ref().clone();
            if !opds.contains_key(&opd) {
                return c.err(
                    d.opd.span(),
                    "device.opd",
                    format!("device {id:?}: unknown OPD {opd:?} (no [[opd]] with this id)"),
                );
            }
            if !KINDS.contains(&d.kind.get_ref().as_str()) {
                return c.err(
                    d.kind.span(),
                    "device.kind",
                    format!(
                        "device {id:?}: kind {:?} is not one of {}",
                        d.kind.get_ref(),
                        KINDS.join(", ")
                    ),
                );
            }
            let address: IpAddr = match d.address.get_ref().parse() {
                Ok(a) => a,
                Err(_) => {
                    return c.err(
                        d.address.span(),
                        "device.address",
                        format!(
                            "device {id:?}: {:?} is not an IP address",
                            d.address.get_ref()
                        ),
                    );
                }
            };
            let snmp = match &d.snmp {
                Some(s) => Some(check_snmp(&c, &id, s)?),
                None => None,
            };
            let icmp_count = match &d.icmp_count {
                Some(n) if *n.get_ref() > siaga_proto::MAX_ICMP_COUNT => {
                    return c.err(
                        n.span(),
                        "device.icmp_count",
                        format!(
                            "device {id:?}: {} echo requests per cycle is more than the limit of {} \
                             (leave it out for the default of 5)",
                            n.get_ref(),
                            siaga_proto::MAX_ICMP_COUNT
                        ),
                    );
                }
                Some(n) => *n.get_ref(),
                None => 0,
            };
            devices.insert(
                id.clone(),
                Device {
                    id,
                    opd,
                    kind: d.kind.get_ref().clone(),
                    address,
                    parent: d.parent.as_ref().map(|p| p.get_ref().clone()),
                    name: d.name.clone(),
                    icmp_count,
                    snmp,
                },
            );
        }

        // Two devices of one OPD at the same address and SNMP port are one
        // box probed twice (a copied block), unless the file says why.
        let mut at: HashMap<(&str, IpAddr, u32), (&str, usize)> = HashMap::new();
        for d in &raw.device {
            let Some(dev) = devices.get(d.id.get_ref()) else {
                continue;
            };
            let port = dev.snmp.as_ref().map_or(0, |s| s.port);
            // The offset, not the line: a line is counted only for an error
            // (counting it for every device made loading quadratic).
            let offset = d.address.span().start;
            if let Some((other, other_offset)) = at.get(&(dev.opd.as_str(), dev.address, port)) {
                let other_line = line_of(text, *other_offset);
                match &d.shares_address {
                    Some(why) if !why.get_ref().trim().is_empty() => {}
                    Some(why) => {
                        return c.err(why.span(), "device.shares_address", "must say why");
                    }
                    None => {
                        let what = if port == 0 {
                            format!("address {}", dev.address)
                        } else {
                            format!("address {} and SNMP port {port}", dev.address)
                        };
                        return c.err(
                            d.address.span(),
                            "device.address",
                            format!(
                                "device {:?}: {what} already belong to device {other:?} (line {other_line}); \
                                 if both are meant, say why with shares_address = \"...\"",
                                dev.id
                            ),
                        );
                    }
                }
            } else {
                at.insert((dev.opd.as_str(), dev.address, port), (&dev.id, offset));
            }
        }

        // References and cycles, once every device is known.
        for d in &raw.device {
            let Some(parent) = &d.parent else { continue };
            let id = d.id.get_ref();
            if parent.get_ref() == id {
                return c.err(
                    parent.span(),
                    "device.parent",
                    format!("device {id:?} is its own parent"),
                );
            }
            if !devices.contains_key(parent.get_ref()) {
                return c.err(
                    parent.span(),
                    "device.parent",
                    format!(
                        "device {id:?}: unknown parent device {:?}",
                        parent.get_ref()
                    ),
                );
            }
            if let (Some(me), Some(p)) = (devices.get(id), devices.get(parent.get_ref()))
                && me.opd != p.opd
            {
                return c.err(
                    parent.span(),
                    "device.parent",
                    format!(
                        "device {id:?} of OPD {:?}: parent {:?} belongs to OPD {:?}; \
                         a parent must be probed by the same agent (same OPD)",
                        me.opd,
                        parent.get_ref(),
                        p.opd
                    ),
                );
            }
            let mut seen = HashSet::from([id.as_str()]);
            let mut cur = parent.get_ref().as_str();
            loop {
                if !seen.insert(cur) {
                    return c.err(
                        parent.span(),
                        "device.parent",
                        format!("device {id:?}: parent chain forms a cycle through {cur:?}"),
                    );
                }
                match devices.get(cur).and_then(|p| p.parent.as_deref()) {
                    Some(next) => cur = next,
                    None => break,
                }
            }
        }

        let mut links = Vec::new();
        let mut link_keys = HashSet::new();
        let mut link_names: HashMap<(String, String), usize> = HashMap::new();
        for l in &raw.link {
            let dev = l.device.get_ref();
            if !devices.contains_key(dev) {
                return c.err(
                    l.device.span(),
                    "link.device",
                    format!("unknown device {dev:?}"),
                );
            }
            let (interface, if_index) = match (&l.interface, l.if_index) {
                (Some(i), None) if !i.get_ref().is_empty() => (i.get_ref().clone(), 0),
                (None, Some(n)) if n > 0 => (String::new(), n),
                (Some(i), Some(_)) => {
                    return c.err(
                        i.span(),
                        "link.interface",
                        "give either `interface` or `if_index`, not both",
                    );
                }
                _ => {
                    return c.err(
                        l.device.span(),
                        "link.interface",
                        format!(
                            "link on {dev:?}: give `interface` (ifName/ifDescr) or `if_index` (> 0)"
                        ),
                    );
                }
            };
            let key = (dev.clone(), interface.clone(), if_index);
            if !link_keys.insert(key) {
                return c.err(
                    l.device.span(),
                    "link",
                    format!("link on {dev:?} is listed twice"),
                );
            }
            let name = if l.name.is_empty() {
                if interface.is_empty() {
                    format!("{dev}:{if_index}")
                } else {
                    format!("{dev}:{interface}")
                }
            } else {
                l.name.clone()
            };
            // Health, tickets and `--link` know a link by (device, name): two
            // links of a device with one name would share one state.
            let offset = l.device.span().start;
            if let Some(first) = link_names.insert((dev.clone(), name.clone()), offset) {
                let first = line_of(text, first);
                return c.err(
                    l.device.span(),
                    "link.name",
                    format!(
                        "link name {name:?} on {dev:?} is already used (line {first}); \
                         give each link of a device its own name"
                    ),
                );
            }
            links.push(Link {
                device: dev.clone(),
                interface,
                if_index,
                name,
            });
        }

        let digest = Sha256::digest(text.as_bytes());
        let mut rev = [0u8; 8];
        rev.copy_from_slice(&digest[..8]);
        // Never 0: agents send 0 for "no inventory cached".
        let revision = u64::from_be_bytes(rev).max(1);
        Ok(Inventory {
            revision,
            interval,
            opds,
            devices,
            links,
        })
    }

    /// The part of the inventory an agent of `opd` receives, or `None` for an unknown OPD.
    pub fn for_opd(&self, opd: &str) -> Option<v1::Inventory> {
        let o = self.opds.get(opd)?;
        let devices: Vec<v1::Device> = self
            .devices
            .values()
            .filter(|d| d.opd == opd)
            .map(|d| v1::Device {
                id: d.id.clone(),
                opd: d.opd.clone(),
                kind: d.kind.clone(),
                address: d.address.to_string(),
                parent: d.parent.clone().unwrap_or_default(),
                snmp: d.snmp.clone(),
                icmp_count: d.icmp_count,
                name: d.name.clone(),
            })
            .collect();
        let ids: HashSet<&str> = devices.iter().map(|d| d.id.as_str()).collect();
        let links = self
            .links
            .iter()
            .filter(|l| ids.contains(l.device.as_str()))
            .map(|l| v1::Link {
                device: l.device.clone(),
                interface: l.interface.clone(),
                if_index: l.if_index,
                name: l.name.clone(),
            })
            .collect();
        Some(v1::Inventory {
            revision: self.revision,
            opd: o.id.clone(),
            opd_name: o.name.clone(),
            devices,
            links,
            interval_ms: u64::try_from(o.interval.as_millis()).unwrap_or(u64::MAX),
            snmp_interval_ms: u64::try_from(o.snmp_interval.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// OPDs whose projection differs between `self` and `new` (revisions aside).
    pub fn changed_opds(&self, new: &Inventory) -> Vec<String> {
        let mut ids: HashSet<&String> = self.opds.keys().collect();
        ids.extend(new.opds.keys());
        let mut out: Vec<String> = ids
            .into_iter()
            .filter(|id| {
                let strip = |mut i: v1::Inventory| {
                    i.revision = 0;
                    i
                };
                self.for_opd(id).map(strip) != new.for_opd(id).map(strip)
            })
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// Device ids by OPD.
    pub fn devices_by_opd(&self) -> HashMap<&str, Vec<&Device>> {
        let mut m: HashMap<&str, Vec<&Device>> = HashMap::new();
        for d in self.devices.values() {
            m.entry(d.opd.as_str()).or_default().push(d);
        }
        m
    }
}

fn check_snmp(c: &Checker<'_>, id: &str, s: &RawSnmp) -> Result<v1::SnmpTarget, ConfigError> {
    let Ok(version) = s.version.get_ref().parse::<SnmpVersion>() else {
        return c.err(
            s.version.span(),
            "device.snmp.version",
            format!(
                "device {id:?}: SNMP version {:?} is not one of \"1\", \"2c\", \"3\"",
                s.version.get_ref()
            ),
        );
    };
    let mut t = v1::SnmpTarget {
        version: version.to_string(),
        port: u32::from(s.port.unwrap_or(161)),
        retries: s.retries.unwrap_or(1),
        ..Default::default()
    };
    if let Some(timeout) = &s.timeout {
        let d = match humantime::parse_duration(timeout.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                return c.err(
                    timeout.span(),
                    "device.snmp.timeout",
                    format!("invalid duration: {e}"),
                );
            }
        };
        t.timeout_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    }
    if version == SnmpVersion::V3 {
        let Some(user) = &s.user else {
            return c.err(
                s.version.span(),
                "device.snmp.user",
                format!("device {id:?}: SNMPv3 needs `user`"),
            );
        };
        if user.get_ref().is_empty() {
            return c.err(user.span(), "device.snmp.user", "must not be empty");
        }
        t.user = user.get_ref().clone();
        let auth = s
            .auth_protocol
            .as_ref()
            .map(|a| a.get_ref().as_str())
            .unwrap_or("none");
        if let Some(a) = &s.auth_protocol
            && !AUTH_PROTOCOLS.contains(&auth)
        {
            return c.err(
                a.span(),
                "device.snmp.auth_protocol",
                format!("{auth:?} is not one of {}", AUTH_PROTOCOLS.join(", ")),
            );
        }
        let privp = s
            .priv_protocol
            .as_ref()
            .map(|a| a.get_ref().as_str())
            .unwrap_or("none");
        if let Some(p) = &s.priv_protocol {
            if !PRIV_PROTOCOLS.contains(&privp) {
                return c.err(
                    p.span(),
                    "device.snmp.priv_protocol",
                    format!("{privp:?} is not one of {}", PRIV_PROTOCOLS.join(", ")),
                );
            }
            if privp != "none" && auth == "none" {
                return c.err(
                    p.span(),
                    "device.snmp.priv_protocol",
                    "privacy needs an auth_protocol",
                );
            }
        }
        for (proto, pw, key) in [
            (auth, &s.auth_password, "device.snmp.auth_password"),
            (privp, &s.priv_password, "device.snmp.priv_password"),
        ] {
            if proto == "none" {
                continue;
            }
            match pw {
                Some(p) if p.get_ref().len() >= 8 => {}
                Some(p) => return c.err(p.span(), key, "must be at least 8 characters (USM)"),
                None => {
                    return c.err(
                        s.version.span(),
                        key,
                        format!("device {id:?}: {proto} needs a password"),
                    );
                }
            }
        }
        t.auth_protocol = auth.to_string();
        t.auth_password = s
            .auth_password
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_default();
        t.priv_protocol = privp.to_string();
        t.priv_password = s
            .priv_password
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_default();
    } else {
        t.community = s.community.clone().unwrap_or_else(|| "public".into());
    }
    Ok(t)
}

/// Where an inventory lives (for reloads).
#[derive(Debug, Clone)]
pub struct InventorySource {
    /// The file.
    pub path: PathBuf,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    const GOOD: &str = r#"
interval = "10s"
[[opd]]
id = "a"
name = "OPD A"
[[opd]]
id = "b"
[[device]]
id = "a-core"
opd = "a"
kind = "router"
address = "198.18.1.1"
[[device]]
id = "a-sw"
opd = "a"
kind = "switch"
address = "198.18.1.2"
parent = "a-core"
[device.snmp]
version = "3"
user = "mon"
auth_protocol = "sha256"
auth_password = "secret-pass"
priv_protocol = "aes"
priv_password = "secret-priv"
[[device]]
id = "b-core"
opd = "b"
kind = "router"
address = "198.18.2.1"
[[link]]
device = "a-sw"
interface = "eth0"
name = "uplink"
"#;

    fn parse(t: &str) -> Result<Inventory, ConfigError> {
        Inventory::parse(Path::new("inventory.toml"), t)
    }

    #[test]
    fn snmp_polls_on_their_own_cycle_per_opd_or_the_probe_cycle() {
        let text = GOOD.replacen(
            "[[opd]]\nid = \"b\"",
            "[[opd]]\nid = \"b\"\ninterval = \"2s\"",
            1,
        );
        let inv = parse(&text).unwrap();
        // No snmp_interval anywhere: each OPD polls on its probe cycle.
        assert_eq!(inv.for_opd("a").unwrap().snmp_interval_ms, 10_000);
        assert_eq!(inv.for_opd("b").unwrap().snmp_interval_ms, 2_000);
        // At the top it applies to every OPD that does not set its own.
        let top = format!("snmp_interval = \"30s\"\n{text}").replacen(
            "[[opd]]\nid = \"a\"",
            "[[opd]]\nid = \"a\"\nsnmp_interval = \"1m\"",
            1,
        );
        let inv = parse(&top).unwrap();
        let (a, b) = (inv.for_opd("a").unwrap(), inv.for_opd("b").unwrap());
        assert_eq!((a.interval_ms, a.snmp_interval_ms), (10_000, 60_000));
        assert_eq!((b.interval_ms, b.snmp_interval_ms), (2_000, 30_000));
        let bad = format!("snmp_interval = \"10ms\"\n{text}");
        assert_eq!(
            parse(&bad).unwrap_err().to_string(),
            "inventory.toml:1: snmp_interval: must be at least 1s"
        );
    }

    #[test]
    fn good_file_projects_per_opd() {
        let inv = parse(GOOD).unwrap();
        let a = inv.for_opd("a").unwrap();
        assert_eq!(a.devices.len(), 2);
        assert_eq!(a.links.len(), 1);
        assert_eq!(a.interval_ms, 10_000);
        assert_eq!(a.revision, inv.revision);
        let sw = a.devices.iter().find(|d| d.id == "a-sw").unwrap();
        let snmp = sw.snmp.as_ref().unwrap();
        assert_eq!(
            (
                snmp.version.as_str(),
                snmp.auth_protocol.as_str(),
                snmp.port
            ),
            ("3", "sha256", 161)
        );
        let b = inv.for_opd("b").unwrap();
        assert_eq!(
            b.devices.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["b-core"]
        );
        assert!(inv.for_opd("c").is_none());
    }

    #[test]
    fn shipped_example_is_valid() {
        let inv = parse(include_str!("../assets/inventory.toml")).unwrap();
        assert!(inv.for_opd("demo").is_some_and(|i| !i.devices.is_empty()));
    }

    #[test]
    fn revision_follows_content() {
        let a = parse(GOOD).unwrap();
        let b = parse(&GOOD.replace("198.18.2.1", "198.18.2.9")).unwrap();
        assert_ne!(a.revision, b.revision);
        assert_eq!(a.revision, parse(GOOD).unwrap().revision);
        assert_eq!(a.changed_opds(&b), ["b"]);
    }

    fn line_of_text(t: &str, needle: &str) -> usize {
        t.lines()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|l| l.contains(needle))
            .unwrap()
            + 1
    }

    #[test_case("id = \"b-core\"", "id = \"a-core\"", "id = \"a-core\"", "device.id", "duplicate device id" ; "duplicate device")]
    #[test_case("parent = \"a-core\"", "parent = \"nope\"", "parent = \"nope\"", "device.parent", "unknown parent" ; "unknown parent")]
    #[test_case("address = \"198.18.2.1\"", "address = \"198.18.2.x\"", "198.18.2.x", "device.address", "not an IP" ; "bad address")]
    #[test_case("version = \"3\"", "version = \"4\"", "version = \"4\"", "device.snmp.version", "SNMP version" ; "bad snmp version")]
    #[test_case("device = \"a-sw\"", "device = \"zz\"", "device = \"zz\"", "link.device", "unknown device" ; "link device")]
    #[test_case("opd = \"b\"", "opd = \"c\"", "opd = \"c\"", "device.opd", "unknown OPD" ; "device opd")]
    #[test_case("kind = \"switch\"", "kind = \"toaster\"", "toaster", "device.kind", "kind" ; "kind")]
    #[test_case("address = \"198.18.2.1\"", "address = \"198.18.2.1\"\nicmp_count = 101", "icmp_count = 101", "device.icmp_count", "more than the limit of 100" ; "icmp count over the limit")]
    #[test_case("address = \"198.18.2.1\"", "address = \"198.18.2.1\"\nicmp_count = 4294967295", "icmp_count = 4294967295", "device.icmp_count", "more than the limit of 100" ; "icmp count u32 max")]
    #[test_case("name = \"uplink\"", "name = \"uplink\"\ncolour = 3", "colour", "link.colour", "unknown field" ; "unknown key")]
    fn errors_name_file_line_and_key(from: &str, to: &str, at: &str, key: &str, msg: &str) {
        let text = GOOD.replacen(from, to, 1);
        let err = parse(&text).unwrap_err();
        let line = line_of_text(&text, at);
        let s = err.to_string();
        assert!(
            s.starts_with(&format!("inventory.toml:{line}: {key}: ")),
            "{s}"
        );
        assert!(s.contains(msg), "{s}");
    }

    #[test]
    fn icmp_count_up_to_the_limit_is_taken() {
        let text = GOOD.replacen(
            "address = \"198.18.2.1\"",
            "address = \"198.18.2.1\"\nicmp_count = 100",
            1,
        );
        assert_eq!(parse(&text).unwrap().devices["b-core"].icmp_count, 100);
        assert_eq!(parse(GOOD).unwrap().devices["b-core"].icmp_count, 0);
    }

    #[test]
    fn parent_cycle_is_refused() {
        let text = GOOD.replacen(
            "address = \"198.18.1.1\"",
            "address = \"198.18.1.1\"\nparent = \"a-sw\"",
            1,
        );
        let err = parse(&text).unwrap_err().to_string();
        let line = line_of_text(&text, "parent = \"a-sw\"");
        assert!(
            err.starts_with(&format!("inventory.toml:{line}: device.parent: ")),
            "{err}"
        );
        assert!(err.contains("cycle"), "{err}");
    }

    const EXTRA_LINK: &str =
        "[[link]]\ndevice = \"a-sw\"\ninterface = \"eth1\"\nname = \"uplink\"\n";

    #[test]
    fn a_link_name_used_twice_on_a_device_is_refused() {
        let text = format!("{GOOD}{EXTRA_LINK}");
        let err = parse(&text).unwrap_err().to_string();
        let line = line_of_text(&text, "device = \"a-sw\"");
        let first = line_of_text(GOOD, "device = \"a-sw\"");
        assert_eq!(
            err,
            format!(
                "inventory.toml:{line}: link.name: link name \"uplink\" on \"a-sw\" is already used \
                 (line {first}); give each link of a device its own name"
            )
        );
        // Another name, or the same name on another device, is fine.
        parse(&format!(
            "{GOOD}{}",
            EXTRA_LINK.replace("\"uplink\"", "\"uplink-2\"")
        ))
        .unwrap();
        parse(&format!("{GOOD}{}", EXTRA_LINK.replace("a-sw", "a-core"))).unwrap();
    }

    #[test]
    fn a_parent_in_another_opd_is_refused() {
        let text = GOOD.replacen(
            "address = \"198.18.2.1\"",
            "address = \"198.18.2.1\"\nparent = \"a-core\"",
            1,
        );
        let err = parse(&text).unwrap_err().to_string();
        let line = line_of_text(&text, "parent = \"a-core\"");
        assert!(
            err.starts_with(&format!(
                "inventory.toml:{line}: device.parent: device \"b-core\" of OPD \"b\": parent \"a-core\" belongs to OPD \"a\""
            )),
            "{err}"
        );
    }

    #[test_case("", Some("address 198.18.1.1 already belong to device \"a-core\"") ; "icmp only")]
    #[test_case("shares_address = \"\"\n", Some("device.shares_address: must say why") ; "empty reason")]
    #[test_case("shares_address = \"stack member 2, same management IP\"\n", None ; "said why")]
    fn one_address_twice_in_an_opd_needs_a_reason(extra: &str, refused: Option<&str>) {
        let dev = format!(
            "[[device]]\nid = \"a-twin\"\nopd = \"a\"\nkind = \"switch\"\naddress = \"198.18.1.1\"\n{extra}"
        );
        let text = GOOD.replacen("[[link]]", &format!("{dev}[[link]]"), 1);
        match refused {
            None => {
                parse(&text).unwrap();
            }
            Some(words) => {
                let err = parse(&text).unwrap_err().to_string();
                let first = line_of_text(GOOD, "address = \"198.18.1.1\"");
                let line = if extra.is_empty() {
                    line_of_text(&text, "address = \"198.18.1.1\"")
                } else {
                    line_of_text(&text, "shares_address")
                };
                assert!(
                    err.starts_with(&format!("inventory.toml:{line}: ")),
                    "{err}"
                );
                assert!(err.contains(words), "{err}");
                if extra.is_empty() {
                    assert!(err.contains(&format!("(line {first})")), "{err}");
                    assert!(err.contains("shares_address"), "{err}");
                }
            }
        }
    }

    #[test]
    fn one_address_in_two_opds_or_on_two_snmp_ports_is_fine() {
        // OPDs sit behind their own NAT: 198.18.1.1 may exist in each.
        parse(&GOOD.replacen("198.18.2.1", "198.18.1.1", 1)).unwrap();
        // One host, two SNMP agents on different ports.
        let text = GOOD.replacen(
            "[[link]]",
            "[[device]]\nid = \"a-sw-2\"\nopd = \"a\"\nkind = \"switch\"\naddress = \"198.18.1.2\"\n[device.snmp]\nversion = \"2c\"\nport = 1161\n[[link]]",
            1,
        );
        parse(&text).unwrap();
        let same_port = text.replacen("port = 1161", "port = 161", 1);
        let err = parse(&same_port).unwrap_err().to_string();
        assert!(
            err.contains("address 198.18.1.2 and SNMP port 161"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let err = parse("[[opd]]\nid = \"a\"\nname = \n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("inventory.toml:3"), "{err}");
    }
}
