//! Discovery end to end with real LLDP: a router and two switches in
//! network namespaces joined by veth, each running lldpd whose LLDP-MIB its
//! snmpd serves over AgentX; a real collector and agent; the Tim Teknis
//! runs `siaga discover`, the proposal is written with `siaga-collector
//! inventory apply` and the result validates. Needs root and lldpd.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use siaga_tests::harness::{Agent, Collector, secs, wait_until};
use siaga_tests::lab::{Lab, router_port};

/// The inventory as the OPD has it before discovery: only its router,
/// polled with the OPD's community.
fn inventory(router: &str) -> String {
    format!(
        "interval = \"2s\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n\n\
         [[device]]\nid = \"dinkes-r1\"\nopd = \"dinkes\"\nkind = \"router\"\n\
         address = \"{router}\"\nname = \"r1\"\n[device.snmp]\nversion = \"2c\"\n\
         community = \"public\"\n"
    )
}

/// (id, address, parent, kind) of each proposed device, sorted.
fn devices(p: &Value) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = p["new_devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("address"), s("parent"), s("kind"))
        })
        .collect();
    v.sort();
    v
}

/// (device, port, peer, peer port) of each proposed link, sorted.
fn links(p: &Value) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = p["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (
                s("device"),
                s("interface"),
                s("peer_device"),
                s("peer_interface"),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn lldp_neighbours_become_proposed_devices_links_and_parents() -> Result<()> {
    let lab = Lab::new()?
        .router("r1")
        .snmpd_v2c("public")
        .snmpd_v3("noc", "authpass1", "privpass1")
        .lldpd()
        .device("sw2")
        .behind("r1")
        .snmpd_v2c("public")
        .snmpd_v3("noc", "authpass1", "privpass1")
        .lldpd()
        .device("sw3")
        .behind("r1")
        .snmpd_v2c("public")
        .snmpd_v3("noc", "authpass1", "privpass1")
        .lldpd()
        .start()?;
    let (r1, sw2, sw3) = (lab.addr("r1")?, lab.addr("sw2")?, lab.addr("sw3")?);
    // The switches sit in the first /29 of the router's block (its two
    // /30s): the sweep stays on the lab's own addresses.
    let base = Ipv4Addr::from(u32::from(sw2) & !7);
    let subnet = format!("{base}/29");
    ensure!(
        u32::from(sw3) & !7 == u32::from(base),
        "sw3 {sw3} outside {subnet}"
    );

    let mut c = Collector::init()?;
    c.write_inventory_text(&inventory(&r1.to_string()))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let teknisi = c.enroll_user("teknisi", "tim_teknis")?;
    let helpdesk = c.enroll_user("hd", "helpdesk")?;
    c.serve()?;
    let agent = Agent::start(agent_cfg)?;
    let logs = |e: anyhow::Error| {
        e.context(format!(
            "agent log:\n{}\ncollector log:\n{}",
            agent.log_tail(40),
            c.log_tail(40)
        ))
    };
    wait_until(secs(60), "the agent connected", || {
        Ok(teknisi.agents()?.iter().any(|a| a["connected"] == true))
    })
    .map_err(logs)?;

    // LLDP has run once both ways on each veth.
    wait_until(secs(30), "the lab's LLDP neighbours", || {
        Ok(lab.lldp_neighbours("r1")? == ["sw2", "sw3"]
            && lab.lldp_neighbours("sw2")? == ["r1"]
            && lab.lldp_neighbours("sw3")? == ["r1"])
    })?;

    // Only the technical team and admin may discover.
    let refused = helpdesk.run(&["discover", "--opd", "dinkes", "--subnet", &subnet])?;
    ensure!(!refused.status.success(), "helpdesk may not discover");
    ensure!(
        String::from_utf8_lossy(&refused.stderr).contains("is for tim_teknis or admin"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let dir = tempfile::tempdir()?;
    let saved = dir.path().join("proposal.json");
    let saved_s = saved.to_str().context("path")?;
    let answer = teknisi
        .json(&[
            "discover",
            "--opd",
            "dinkes",
            "--subnet",
            &subnet,
            "--community",
            "public",
            "--save",
            saved_s,
            "--json",
        ])
        .map_err(logs)?;
    let p = &answer["proposal"];
    // Present in the lab: r1 (already in the inventory), sw2 and sw3 behind
    // it, each joined to r1 by one veth.
    let sw = |name: &str, addr: Ipv4Addr| {
        (
            name.to_string(),
            addr.to_string(),
            "dinkes-r1".to_string(),
            "switch".to_string(),
        )
    };
    ensure!(
        devices(p) == vec![sw("sw2", sw2), sw("sw3", sw3)],
        "devices {:?} in {answer:#}",
        devices(p)
    );
    let link = |name: &str| {
        (
            "dinkes-r1".to_string(),
            router_port(name),
            name.to_string(),
            "eth0".to_string(),
        )
    };
    ensure!(
        links(p) == vec![link("sw2"), link("sw3")],
        "links {:?} in {answer:#}",
        links(p)
    );
    ensure!(
        p["new_devices"][0]["vendor"] == "Net-SNMP",
        "vendor from sysObjectID: {p:#}"
    );
    // They answered with the community dinkes-r1 is polled with: they are
    // to be polled the same way, and the proposal holds no community.
    for d in p["new_devices"].as_array().into_iter().flatten() {
        ensure!(
            d["snmp"]["same_as"] == "dinkes-r1" && d["snmp"]["version"] == "2c",
            "{d:#}"
        );
    }
    ensure!(
        !std::fs::read_to_string(&saved)?.contains("public"),
        "a community in the saved proposal"
    );
    // r1's own addresses in the subnet answer ping, not SNMP: noted.
    let notes = p["notes"].to_string();
    ensure!(notes.contains("answers ping but not SNMP"), "{p:#}");
    ensure!(
        answer["hosts"].as_array().map(Vec::len) == Some(4),
        "r1 twice and the two switches: {answer:#}"
    );

    // Both kinds of credentials left in the environment: which is meant is
    // not guessed.
    let both = teknisi.run_env(
        &["discover", "--opd", "dinkes", "--subnet", &subnet],
        &[
            ("SIAGA_SNMP_V3", "noc:sha256:authpass1:aes:privpass1"),
            ("SIAGA_SNMP_COMMUNITY", "public"),
        ],
    )?;
    ensure!(
        both.status.code() == Some(64)
            && String::from_utf8_lossy(&both.stderr).contains(
                "SIAGA_SNMP_COMMUNITY and SIAGA_SNMP_V3 are both set: unset one, or give --community or --v3"
            ),
        "{both:?}"
    );

    // The same with SNMPv3 typed while a (wrong) community is still
    // exported in the shell: the flag typed is used. As a person reads it:
    // 80 columns.
    let out = teknisi.run_env(
        &[
            "discover",
            "--opd",
            "dinkes",
            "--subnet",
            &subnet,
            "--v3",
            "noc:sha256:authpass1:aes:privpass1",
        ],
        &[("SIAGA_SNMP_COMMUNITY", "not-the-community")],
    )?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.lines().all(|l| l.chars().count() <= 80),
        "wider than 80 columns:\n{text}"
    );
    for want in [
        format!("  sw2  {sw2}  switch  parent dinkes-r1"),
        format!("  sw3  {sw3}  switch  parent dinkes-r1"),
        format!("  dinkes-r1 {}", router_port("sw2")),
        "      <-> sw2 eth0".to_string(),
        // No device of the OPD is polled over SNMPv3: said, not truncated.
        "  new devices unpolled: no device of dinkes has this SNMP v3 access\n".to_string(),
    ] {
        ensure!(
            text.contains(&want),
            "{want:?} not in:\n{text}\nagent log:\n{}",
            agent.log_tail(40)
        );
    }

    // Written with one command; the result validates and has them all.
    let config = c.dir().join("collector.toml");
    let applied = c.cmd(&[
        "inventory",
        "apply",
        "--config",
        config.to_str().context("path")?,
        saved_s,
    ])?;
    if !applied.status.success() {
        bail!(
            "inventory apply failed: {}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }
    let validated = c.validate()?;
    ensure!(
        validated.status.success(),
        "validate after apply: {}",
        String::from_utf8_lossy(&validated.stderr)
    );
    let text = std::fs::read_to_string(c.inventory_path()?)?;
    let inv: toml::Value = toml::from_str(&text)?;
    let ids: Vec<_> = inv["device"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["id"].as_str().unwrap_or_default().to_string(),
                d.get("parent")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    ensure!(
        ids == [
            ("dinkes-r1".to_string(), String::new()),
            ("sw2".to_string(), "dinkes-r1".to_string()),
            ("sw3".to_string(), "dinkes-r1".to_string())
        ],
        "{text}"
    );
    let link_ports: Vec<_> = inv["link"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["interface"].as_str().unwrap_or_default().to_string())
        .collect();
    ensure!(
        link_ports == [router_port("sw2"), router_port("sw3")],
        "{text}"
    );
    // A second apply of the same proposal is refused, the file unchanged.
    let again = c.cmd(&[
        "inventory",
        "apply",
        "--config",
        config.to_str().context("path")?,
        saved_s,
    ])?;
    ensure!(!again.status.success(), "applied twice");
    ensure!(std::fs::read_to_string(c.inventory_path()?)? == text);

    // Reloaded, the new devices are polled over SNMP: their interfaces
    // show in `siaga device`.
    let reloaded = c.reload()?;
    ensure!(
        reloaded.status.success(),
        "reload: {}",
        String::from_utf8_lossy(&reloaded.stderr)
    );
    for sw in ["sw2", "sw3"] {
        wait_until(secs(60), &format!("{sw}'s interfaces polled"), || {
            let d = teknisi.json(&["device", sw, "--json"])?;
            Ok(d["interfaces"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["if_name"] == "eth0"))
        })
        .map_err(logs)?;
    }
    drop(agent);
    Ok(())
}
