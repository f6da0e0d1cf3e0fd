//! Health engine and automatic tickets, end to end: real collector and agent
//! processes, a device in a network namespace, real ICMP and real loss.
//! Needs root (network namespaces, raw sockets).

use std::time::Instant;

use anyhow::{Result, ensure};
use serde_json::Value;
use siaga_tests::harness::{Agent, Collector, Siaga, secs, wait_until};
use siaga_tests::lab::Lab;

fn tickets(siaga: &Siaga) -> Result<Vec<Value>> {
    let v = siaga.json(&["tickets", "--json"])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn events(siaga: &Siaga) -> Result<Vec<Value>> {
    let v = siaga.json(&["events", "--since", "1h", "--json"])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// The state `siaga devices --json` shows for one device.
fn state(siaga: &Siaga, device: &str) -> Result<String> {
    Ok(siaga
        .devices()?
        .iter()
        .find(|d| d["id"] == device)
        .and_then(|d| d["state"].as_str())
        .unwrap_or_default()
        .to_string())
}

fn all_up(siaga: &Siaga, devices: &[&str]) -> Result<bool> {
    for d in devices {
        if state(siaga, d)? != "up" {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The device ids in a ticket's `affected`.
fn affected(t: &Value) -> Vec<String> {
    t["affected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect()
}

/// Waits until `n` more samples of `device` are stored than now: the
/// health engine has seen that many further cycles.
fn wait_cycles(siaga: &Siaga, device: &str, n: usize) -> Result<()> {
    let before = siaga.history(device)?.len();
    wait_until(secs(60), &format!("{n} more samples of {device}"), || {
        Ok(siaga.history(device)?.len() >= before + n)
    })
}

const OPD: &str = "[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n";

#[test]
fn forty_percent_loss_opens_one_ticket_and_its_recovery_is_recorded() -> Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let addr = lab.addr("sw1")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n\n\
         [[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\nkind = \"switch\"\n\
         address = \"{addr}\"\nicmp_count = 20\n"
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "dinkes-sw1 up", || {
        Ok(siaga
            .devices()?
            .iter()
            .any(|d| d["id"] == "dinkes-sw1" && d["state"] == "up"))
    })?;
    ensure!(tickets(&siaga)?.is_empty(), "no ticket while healthy");

    lab.set_loss("sw1", 40)?;
    let fault = Instant::now();
    wait_until(secs(60), "a ticket for the loss", || {
        Ok(!tickets(&siaga)?.is_empty())
    })?;
    // Reported, not asserted: timings belong to the benchmark.
    eprintln!(
        "loss → ticket: {:.1} s (probe interval 1 s)",
        fault.elapsed().as_secs_f64()
    );
    let t = tickets(&siaga)?;
    ensure!(t.len() == 1, "exactly one ticket: {t:#?}");
    let t = &t[0];
    ensure!(
        t["device"] == "dinkes-sw1" && t["opd"] == "dinkes",
        "{t:#?}"
    );
    ensure!(t["link"].is_null(), "{t:#?}");
    ensure!(t["origin"] == "detected", "{t:#?}");
    ensure!(t["step"] == 1 && t["role"] == "pemohon", "{t:#?}");
    let problem = t["problem"].as_str().unwrap_or_default();
    ensure!(
        problem.starts_with("Packet loss"),
        "problem names loss: {problem}"
    );
    ensure!(t["recovered_at"].is_null(), "{t:#?}");
    let id = t["id"].as_str().unwrap_or_default().to_string();

    lab.set_loss("sw1", 0)?;
    wait_until(secs(60), "the recovery on the ticket", || {
        Ok(tickets(&siaga)?
            .iter()
            .any(|t| !t["recovered_at"].is_null()))
    })?;
    let t = tickets(&siaga)?;
    ensure!(t.len() == 1, "still one ticket after recovery: {t:#?}");
    ensure!(
        t[0]["closed"] == false,
        "recovery does not close the ticket"
    );

    let show = siaga.json(&["ticket", "show", &id, "--json"])?;
    let notes: Vec<&str> = show["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["text"].as_str())
        .collect();
    ensure!(
        notes.iter().any(|n| n.starts_with("pulih pada")),
        "recovery note: {notes:?}"
    );
    ensure!(
        !show["evidence"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .is_empty(),
        "evidence attached"
    );
    let events = siaga.json(&["events", "--since", "1h", "--json"])?;
    let kinds: Vec<&str> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    ensure!(
        kinds.contains(&"opened") && kinds.contains(&"recovered"),
        "{kinds:?}"
    );
    Ok(())
}

#[test]
fn a_router_down_is_one_ticket_listing_the_switches_behind_it_as_unreachable() -> Result<()> {
    let lab = Lab::new()?
        .router("r1")
        .device("sw1")
        .behind("r1")
        .device("sw2")
        .behind("r1")
        .start()?;
    let mut c = Collector::init()?;
    let mut inv = format!("interval = \"1s\"\n\n{OPD}");
    inv.push_str(&format!(
        "\n[[device]]\nid = \"dinkes-r1\"\nopd = \"dinkes\"\nkind = \"router\"\naddress = \"{}\"\n",
        lab.addr("r1")?
    ));
    for sw in ["sw1", "sw2"] {
        inv.push_str(&format!(
            "\n[[device]]\nid = \"dinkes-{sw}\"\nopd = \"dinkes\"\nkind = \"switch\"\n\
             address = \"{}\"\nparent = \"dinkes-r1\"\n",
            lab.addr(sw)?
        ));
    }
    c.write_inventory_text(&inv)?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    let all = ["dinkes-r1", "dinkes-sw1", "dinkes-sw2"];
    wait_until(secs(60), "router and switches up", || all_up(&siaga, &all))?;
    ensure!(tickets(&siaga)?.is_empty(), "no ticket while healthy");

    // The router's uplink goes dead: nothing behind it answers either.
    lab.set_link_down("r1", "eth0")?;
    wait_until(
        secs(60),
        "the router's ticket listing both switches",
        || {
            Ok(tickets(&siaga)?.iter().any(|t| {
                let a = affected(t);
                t["device"] == "dinkes-r1"
                    && a.contains(&"dinkes-sw1".to_string())
                    && a.contains(&"dinkes-sw2".to_string())
            }))
        },
    )?;
    wait_until(secs(60), "both switches unreachable", || {
        Ok(state(&siaga, "dinkes-sw1")? == "unreachable"
            && state(&siaga, "dinkes-sw2")? == "unreachable")
    })?;
    ensure!(state(&siaga, "dinkes-r1")? == "down", "the router is down");
    // Let the engine see more cycles of the dead switches: still no ticket of theirs.
    wait_cycles(&siaga, "dinkes-sw1", 5)?;
    let t = tickets(&siaga)?;
    ensure!(t.len() == 1, "one ticket, the router's: {t:#?}");
    ensure!(
        t[0]["device"] == "dinkes-r1" && t[0]["opd"] == "dinkes" && t[0]["origin"] == "detected",
        "{t:#?}"
    );
    ensure!(
        affected(&t[0]) == ["dinkes-sw1", "dinkes-sw2"],
        "exactly the switches are affected: {t:#?}"
    );
    for sw in ["dinkes-sw1", "dinkes-sw2"] {
        ensure!(state(&siaga, sw)? == "unreachable", "{sw} unreachable");
    }
    Ok(())
}

#[test]
fn loss_inside_a_maintenance_window_opens_no_ticket_and_the_events_say_why() -> Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let addr = lab.addr("sw1")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n{OPD}\n[[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"{addr}\"\nicmp_count = 20\n"
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    let admin = c.enroll_user("adi", "admin")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "dinkes-sw1 up", || {
        all_up(&siaga, &["dinkes-sw1"])
    })?;

    let out = admin.run(&[
        "maintenance",
        "add",
        "--device",
        "dinkes-sw1",
        "--for",
        "2h",
        "--reason",
        "ganti switch",
    ])?;
    ensure!(
        out.status.success(),
        "maintenance add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let windows = admin.json(&["maintenance", "list", "--json"])?;
    ensure!(
        windows.as_array().map(Vec::len) == Some(1),
        "one window: {windows:#}"
    );

    lab.set_loss("sw1", 40)?;
    wait_until(secs(60), "an event saying why no ticket opened", || {
        Ok(events(&siaga)?.iter().any(|e| {
            e["kind"] == "suppressed"
                && e["device"] == "dinkes-sw1"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("maintenance window") && r.contains("ganti switch"))
        }))
    })?;
    ensure!(
        state(&siaga, "dinkes-sw1")? == "degraded",
        "the loss is seen: the device is degraded"
    );
    wait_cycles(&siaga, "dinkes-sw1", 5)?;
    let t = tickets(&siaga)?;
    ensure!(t.is_empty(), "no ticket inside the window: {t:#?}");
    Ok(())
}

#[test]
fn a_killed_agent_is_one_agent_unreachable_ticket_for_its_opd() -> Result<()> {
    let lab = Lab::new()?.device("sw1").device("sw2").start()?;
    let mut c = Collector::init()?;
    let mut inv = format!("interval = \"1s\"\n\n{OPD}");
    for sw in ["sw1", "sw2"] {
        inv.push_str(&format!(
            "\n[[device]]\nid = \"dinkes-{sw}\"\nopd = \"dinkes\"\nkind = \"switch\"\n\
             address = \"{}\"\n",
            lab.addr(sw)?
        ));
    }
    c.write_inventory_text(&inv)?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let mut agent = Agent::start(agent_cfg)?;
    let all = ["dinkes-sw1", "dinkes-sw2"];
    wait_until(secs(60), "both switches up", || all_up(&siaga, &all))?;

    agent.kill9();
    wait_until(secs(60), "an agent-unreachable ticket", || {
        Ok(!tickets(&siaga)?.is_empty())
    })?;
    wait_until(secs(60), "both switches unknown", || {
        Ok(state(&siaga, "dinkes-sw1")? == "unknown" && state(&siaga, "dinkes-sw2")? == "unknown")
    })?;
    let t = tickets(&siaga)?;
    ensure!(
        t.len() == 1,
        "one ticket for the OPD, not one per device: {t:#?}"
    );
    let t = &t[0];
    ensure!(t["opd"] == "dinkes" && t["origin"] == "detected", "{t:#?}");
    ensure!(t["device"].is_null() && t["link"].is_null(), "{t:#?}");
    let problem = t["problem"].as_str().unwrap_or_default();
    ensure!(
        problem.contains("agent") && problem.contains("unreachable"),
        "problem names the agent: {problem}"
    );
    ensure!(
        affected(t) == ["dinkes-sw1", "dinkes-sw2"],
        "the OPD's devices are affected: {t:#?}"
    );
    Ok(())
}

/// The one ticket there is, once the CLI answers again.
fn only_ticket(siaga: &Siaga) -> Result<Value> {
    let t = tickets(siaga)?;
    ensure!(t.len() == 1, "exactly one ticket: {t:#?}");
    Ok(t[0].clone())
}

#[test]
fn a_restarted_collector_keeps_its_open_ticket_and_the_incident_key() -> Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let addr = lab.addr("sw1")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n{OPD}\n[[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"{addr}\"\nicmp_count = 20\n"
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "dinkes-sw1 up", || {
        all_up(&siaga, &["dinkes-sw1"])
    })?;
    lab.set_loss("sw1", 40)?;
    // The SOP ticket is written a moment before its health record (incident
    // key, occurrences): wait for both.
    wait_until(secs(60), "a ticket for the loss with its incident", || {
        Ok(tickets(&siaga)?.iter().any(|t| !t["incident"].is_null()))
    })?;
    let first = only_ticket(&siaga)?;
    let id = first["id"].as_str().unwrap_or_default().to_string();
    ensure!(first["occurrences"] == 1, "{first:#?}");

    for (occurrences, how) in (1..).zip(["SIGTERM", "kill -9"]) {
        if how == "SIGTERM" {
            ensure!(c.stop(), "the collector stops cleanly on SIGTERM");
        } else {
            c.kill9();
        }
        c.restart()?;
        wait_until(secs(60), "the ticket back after the restart", || {
            Ok(!tickets(&siaga)?.is_empty())
        })?;
        let t = only_ticket(&siaga)?;
        ensure!(t["id"] == id.as_str(), "{how}: same ticket: {t:#?}");
        ensure!(
            t["occurrences"] == occurrences,
            "{how}: nothing lost: {t:#?}"
        );
        // The loss goes on and reaches the new process: it stays on the
        // same ticket, no second one opens.
        wait_until(secs(60), "the loss seen again", || {
            Ok(state(&siaga, "dinkes-sw1")? == "degraded")
        })?;
        wait_cycles(&siaga, "dinkes-sw1", 5)?;
        let t = only_ticket(&siaga)?;
        ensure!(
            t["id"] == id.as_str() && t["recovered_at"].is_null(),
            "{how}: the continuing loss stays on the ticket: {t:#?}"
        );
        // The incident key holds: a new bout of the same fault attaches.
        lab.set_loss("sw1", 0)?;
        wait_until(secs(60), "the recovery", || {
            Ok(tickets(&siaga)?
                .iter()
                .any(|t| t["id"] == id.as_str() && !t["recovered_at"].is_null()))
        })?;
        lab.set_loss("sw1", 40)?;
        wait_until(secs(60), "the loss again attached to the ticket", || {
            Ok(tickets(&siaga)?
                .iter()
                .any(|t| t["id"] == id.as_str() && t["occurrences"] == occurrences + 1))
        })?;
        let t = only_ticket(&siaga)?;
        ensure!(
            t["id"] == id.as_str() && t["recovered_at"].is_null(),
            "{how}: the fault is on the same ticket again: {t:#?}"
        );
    }
    Ok(())
}

#[test]
fn a_cut_lab_link_opens_one_ticket_for_that_link() -> Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .spare_link("port2")
        .start()?;
    let addr = lab.addr("sw1")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n{OPD}\n[[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"{addr}\"\n\n[device.snmp]\nversion = \"2c\"\n\
         community = \"public\"\n\n[[link]]\ndevice = \"dinkes-sw1\"\ninterface = \"port2\"\n\
         name = \"ke-puskesmas\"\n"
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "dinkes-sw1 up", || {
        all_up(&siaga, &["dinkes-sw1"])
    })?;
    wait_until(secs(60), "the link seen up", || {
        Ok(events(&siaga)?
            .iter()
            .any(|e| e["link"] == "ke-puskesmas" && e["to"] == "up"))
    })?;
    ensure!(tickets(&siaga)?.is_empty(), "no ticket while healthy");

    lab.cut_link("sw1", "port2")?;
    wait_until(secs(60), "a ticket for the link", || {
        Ok(!tickets(&siaga)?.is_empty())
    })?;
    wait_cycles(&siaga, "dinkes-sw1", 5)?;
    let t = only_ticket(&siaga)?;
    ensure!(
        t["device"] == "dinkes-sw1" && t["link"] == "ke-puskesmas" && t["opd"] == "dinkes",
        "the ticket is the link's: {t:#?}"
    );
    ensure!(t["origin"] == "detected", "{t:#?}");
    ensure!(
        state(&siaga, "dinkes-sw1")? == "up",
        "the device itself is fine"
    );
    Ok(())
}
