//! `siaga discover`: the OPD's agent sweeps a subnet and reads what answers
//! over SNMP and LLDP; the collector answers with what it found and a
//! proposal against the inventory (new devices, changes, links, parents).
//! Nothing changes until someone writes the proposal with
//! `siaga-collector inventory apply` on the collector host.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use siaga_proto::v1::{self, discovery_client::DiscoveryClient};

use crate::client::{CliError, SiagaConfig, status_error};

/// `siaga discover`.
#[derive(Debug, Clone, Args)]
pub struct DiscoverCmd {
    /// OPD whose agent sweeps the subnet.
    #[arg(long)]
    pub opd: String,
    /// Subnet in CIDR notation, at most a /20, e.g. 198.18.40.0/24.
    #[arg(long)]
    pub subnet: String,
    /// SNMP v2c community for the hosts, or from SIAGA_SNMP_COMMUNITY (out
    /// of sight of `ps`). Without it or --v3: the ping sweep only.
    #[arg(long, conflicts_with = "v3")]
    pub community: Option<String>,
    /// SNMPv1 instead of v2c for the community.
    #[arg(long)]
    pub v1: bool,
    /// SNMPv3 as USER[:AUTH:AUTHPASS[:PRIV:PRIVPASS]], e.g.
    /// noc:sha256:secret1:aes:secret2, or from SIAGA_SNMP_V3. Given on the
    /// command line, either flag wins over both variables.
    #[arg(long)]
    pub v3: Option<String>,
    /// Echo requests per second (default 100, at most 1000).
    #[arg(long)]
    pub rate: Option<u32>,
    /// How long to wait for the agent, e.g. 5m (default 5m, at most 30m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Save the proposal (JSON) for `siaga-collector inventory apply`.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Print the answer (hosts and proposal) in proto3 JSON.
    #[arg(long)]
    pub json: bool,
}

/// SNMPv3 credentials from `USER[:AUTH:AUTHPASS[:PRIV:PRIVPASS]]`.
pub fn v3_target(s: &str) -> Result<v1::SnmpTarget, String> {
    let parts: Vec<&str> = s.splitn(5, ':').collect();
    let mut t = v1::SnmpTarget {
        version: "3".into(),
        ..Default::default()
    };
    match parts.as_slice() {
        [user] => t.user = user.to_string(),
        [user, auth, pass] => {
            t.user = user.to_string();
            t.auth_protocol = auth.to_string();
            t.auth_password = pass.to_string();
        }
        [user, auth, pass, privacy, ppass] => {
            t.user = user.to_string();
            t.auth_protocol = auth.to_string();
            t.auth_password = pass.to_string();
            t.priv_protocol = privacy.to_string();
            t.priv_password = ppass.to_string();
        }
        _ => {
            return Err(
                "--v3: give USER, USER:AUTH:AUTHPASS or USER:AUTH:AUTHPASS:PRIV:PRIVPASS".into(),
            );
        }
    }
    if t.user.is_empty() {
        return Err("--v3: the user is empty".into());
    }
    Ok(t)
}

/// Where the SNMP credentials of a discovery come from.
const COMMUNITY_ENV: &str = "SIAGA_SNMP_COMMUNITY";
/// Where SNMPv3 credentials come from when not on the command line.
const V3_ENV: &str = "SIAGA_SNMP_V3";

impl DiscoverCmd {
    /// The credentials: the command line's (clap refuses both flags), else
    /// the environment's (`env` reads a variable); a variable left set in the
    /// shell never conflicts with a flag typed now.
    fn credentials(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Option<String>, Option<String>), String> {
        if self.community.is_some() || self.v3.is_some() {
            return Ok((self.community.clone(), self.v3.clone()));
        }
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        match (var(COMMUNITY_ENV), var(V3_ENV)) {
            (Some(_), Some(_)) => Err(format!(
                "{COMMUNITY_ENV} and {V3_ENV} are both set: unset one, or give --community or --v3"
            )),
            found => Ok(found),
        }
    }

    /// The `Discover` request, with the credentials from the command line or
    /// the process's environment.
    pub fn request(&self) -> Result<v1::DiscoverRequest, String> {
        self.request_with(|k| std::env::var(k).ok())
    }

    /// The `Discover` request, the environment read through `env`.
    pub fn request_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<v1::DiscoverRequest, String> {
        let snmp = match self.credentials(env)? {
            (Some(c), _) => Some(v1::SnmpTarget {
                version: if self.v1 { "1" } else { "2c" }.into(),
                community: c,
                ..Default::default()
            }),
            (None, Some(_)) if self.v1 => {
                return Err("--v1 is for a community, not SNMPv3".into());
            }
            (None, Some(v3)) => Some(v3_target(&v3)?),
            (None, None) if self.v1 => {
                return Err(format!(
                    "--v1 needs a community: give --community or set {COMMUNITY_ENV}"
                ));
            }
            (None, None) => None,
        };
        Ok(v1::DiscoverRequest {
            opd: self.opd.clone(),
            subnet: self.subnet.clone(),
            snmp,
            rate_pps: self.rate.unwrap_or(0),
            timeout_s: self.timeout.map_or(0, |d| d.as_secs().max(1)),
        })
    }

    /// Runs it.
    pub async fn run(&self, cfg: &SiagaConfig) -> Result<(), CliError> {
        let req = self.request().map_err(CliError::Usage)?;
        let wait = Duration::from_secs(if req.timeout_s == 0 {
            300
        } else {
            req.timeout_s
        });
        let mut c = DiscoveryClient::new(crate::client::channel(cfg).await?);
        let mut r = tonic::Request::new(req);
        r.set_timeout(wait + Duration::from_secs(30));
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !self.json {
            eprintln!(
                "the agent of {} is sweeping {}; this takes a minute or so…",
                self.opd, self.subnet
            );
        }
        let answer = c
            .discover(r)
            .await
            .map_err(|s| status_error(cfg, s))?
            .into_inner();
        if let Some(path) = &self.save {
            let p = answer.proposal.clone().unwrap_or_default();
            let text =
                serde_json::to_string_pretty(&p).map_err(|e| CliError::Message(e.to_string()))?;
            std::fs::write(path, text + "\n")
                .map_err(|e| CliError::Message(format!("{}: {e}", path.display())))?;
        }
        if self.json {
            let s = serde_json::to_string_pretty(&answer)
                .map_err(|e| CliError::Message(e.to_string()))?;
            println!("{s}");
            return Ok(());
        }
        print!("{}", render(&answer));
        if let Some(path) = &self.save {
            println!(
                "\nSaved to {}. Review it, then on the collector host:\n  siaga-collector inventory apply --config collector.toml {}",
                path.display(),
                path.display()
            );
        }
        Ok(())
    }
}

/// `s` cut to `width` characters (an ellipsis marks the cut).
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The answer as a person reads it, in 80 columns.
pub fn render(a: &v1::DiscoverResponse) -> String {
    let mut lines = vec![format!(
        "{} of OPD {} by {}: {} swept, {} answered.",
        a.subnet, a.opd, a.agent, a.swept, a.answered
    )];
    let p = a.proposal.clone().unwrap_or_default();
    if p.new_devices.is_empty() && p.changes.is_empty() && p.links.is_empty() {
        lines.push(String::new());
        lines.push("The inventory has everything found: nothing to propose.".into());
    }
    if !p.new_devices.is_empty() {
        lines.push(String::new());
        lines.push(format!("New devices ({}):", p.new_devices.len()));
        for d in &p.new_devices {
            let parent = if d.parent.is_empty() {
                "no parent".to_string()
            } else {
                format!("parent {}", d.parent)
            };
            lines.push(format!("  {}  {}  {}  {parent}", d.id, d.address, d.kind));
            let what: Vec<&str> = [d.vendor.as_str(), d.model.as_str()]
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect();
            let what = if what.is_empty() {
                "vendor unknown".to_string()
            } else {
                what.join(" ")
            };
            let oid = if d.sys_object_id.is_empty() {
                String::new()
            } else {
                format!(" ({})", d.sys_object_id)
            };
            lines.push(format!("      {what}{oid}, sysName {:?}", d.name));
        }
    }
    if !p.changes.is_empty() {
        lines.push(String::new());
        lines.push(format!("Changes ({}):", p.changes.len()));
        for c in &p.changes {
            let from = if c.from.is_empty() {
                "(none)"
            } else {
                c.from.as_str()
            };
            lines.push(format!("  {} {}: {} -> {}", c.device, c.field, from, c.to));
        }
    }
    if !p.links.is_empty() {
        lines.push(String::new());
        lines.push(format!("Links from LLDP ({}):", p.links.len()));
        for l in &p.links {
            lines.push(format!("  {} {}", l.device, l.interface));
            lines.push(format!(
                "      <-> {} {}  (link {:?})",
                l.peer_device, l.peer_interface, l.name
            ));
        }
    }
    if !p.notes.is_empty() {
        lines.push(String::new());
        lines.push("Notes:".into());
        lines.extend(p.notes.iter().map(|n| format!("  {n}")));
    }
    let mut out: Vec<String> = lines.iter().map(|l| fit(l, 80)).collect();
    out.push(String::new());
    out.join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn v3_credentials_parse() {
        let t = v3_target("noc:sha256:s1:aes:s2").unwrap();
        assert_eq!(
            (
                t.user.as_str(),
                t.auth_protocol.as_str(),
                t.priv_password.as_str()
            ),
            ("noc", "sha256", "s2")
        );
        assert_eq!(v3_target("noc").unwrap().auth_protocol, "");
        assert!(v3_target("noc:sha").is_err());
        assert!(v3_target(":sha:x").is_err());
    }

    #[test]
    fn the_answer_fits_80_columns() {
        let a = v1::DiscoverResponse {
            opd: "dinkes".into(),
            subnet: "198.18.40.0/24".into(),
            agent: "dinkes-agent".into(),
            swept: 254,
            answered: 3,
            hosts: vec![],
            proposal: Some(v1::InventoryProposal {
                new_devices: vec![v1::ProposedDevice {
                    id: "sw-lantai-2-ruang-server".into(),
                    address: "198.18.40.2".into(),
                    kind: "switch".into(),
                    vendor: "Cisco".into(),
                    model: "Catalyst 2960 stack".into(),
                    parent: "dinkes-core".into(),
                    name: "SW-LANTAI-2-RUANG-SERVER".into(),
                    sys_object_id: "1.3.6.1.4.1.9.1.1208".into(),
                    ..Default::default()
                }],
                changes: vec![v1::ProposedChange {
                    device: "dinkes-core".into(),
                    field: "name".into(),
                    from: "core".into(),
                    to: "core-1".into(),
                }],
                links: vec![v1::ProposedLink {
                    device: "dinkes-core".into(),
                    interface: "GigabitEthernet1/0/24".into(),
                    name: "dinkes-core-sw-lantai-2-ruang-server".into(),
                    peer_device: "sw-lantai-2-ruang-server".into(),
                    peer_interface: "GigabitEthernet0/1".into(),
                }],
                notes: vec![
                    "198.18.40.50 answers ping but not SNMP (no answer); not proposed".into(),
                ],
                ..Default::default()
            }),
        };
        let s = render(&a);
        for line in s.lines() {
            assert!(line.chars().count() <= 80, "wider than 80: {line:?}\n{s}");
        }
        assert!(s.contains("sw-lantai-2-ruang-server"), "{s}");
        assert!(s.contains("dinkes-core name: core -> core-1"), "{s}");
        assert!(s.contains("GigabitEthernet1/0/24"), "{s}");
    }

    fn cmd(args: &[&str]) -> DiscoverCmd {
        let mut argv = vec!["siaga", "--opd", "dinkes", "--subnet", "198.18.40.0/24"];
        argv.extend(args);
        <DiscoverCmdCli as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .d
    }

    #[test]
    fn a_flag_typed_wins_over_credentials_left_in_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        const COMMUNITY: &[(&str, &str)] = &[("SIAGA_SNMP_COMMUNITY", "public")];
        const BOTH: &[(&str, &str)] = &[
            ("SIAGA_SNMP_COMMUNITY", "public"),
            ("SIAGA_SNMP_V3", "noc:sha256:authpass1"),
        ];
        let snmp = |r: Result<v1::DiscoverRequest, String>| {
            let t = r.unwrap().snmp.unwrap_or_default();
            (t.version, t.community, t.user)
        };
        // --v3 with a community exported in the shell: SNMPv3.
        assert_eq!(
            snmp(cmd(&["--v3", "noc:sha256:authpass1"]).request_with(env(COMMUNITY))),
            ("3".into(), String::new(), "noc".into())
        );
        // --community with SNMPv3 exported: the community.
        assert_eq!(
            snmp(
                cmd(&["--community", "kominfo"])
                    .request_with(env(&[("SIAGA_SNMP_V3", "noc:sha256:authpass1")]))
            ),
            ("2c".into(), "kominfo".into(), String::new())
        );
        // The environment alone.
        assert_eq!(
            snmp(cmd(&["--v1"]).request_with(env(COMMUNITY))),
            ("1".into(), "public".into(), String::new())
        );
        // Both variables and no flag: which one is meant is not known.
        assert_eq!(
            cmd(&[]).request_with(env(BOTH)).unwrap_err(),
            "SIAGA_SNMP_COMMUNITY and SIAGA_SNMP_V3 are both set: unset one, or give --community or --v3"
        );
        assert_eq!(
            cmd(&["--v3", "noc"])
                .request_with(env(BOTH))
                .map(|r| r.snmp.map(|t| t.version)),
            Ok(Some("3".to_string()))
        );
        // Both flags typed: refused by the parser; --v1 without a community.
        assert!(
            <DiscoverCmdCli as clap::Parser>::try_parse_from([
                "siaga",
                "--opd",
                "d",
                "--subnet",
                "198.18.40.0/24",
                "--community",
                "c",
                "--v3",
                "noc"
            ])
            .is_err()
        );
        assert_eq!(
            cmd(&["--v1", "--v3", "noc"])
                .request_with(env(&[]))
                .unwrap_err(),
            "--v1 is for a community, not SNMPv3"
        );
        assert!(cmd(&["--v1"]).request_with(env(&[])).is_err());
    }

    #[derive(clap::Parser)]
    struct DiscoverCmdCli {
        #[command(flatten)]
        d: DiscoverCmd,
    }
}
