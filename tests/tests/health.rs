//! Health engine and automatic tickets, end to end: real collector and agent
//! processes, a device in a network namespace, real ICMP and real loss.
//! Needs root (network namespaces, raw sockets).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::{
    Agent, Collector, Siaga, device_state, json_bool, metric_value, now_us, secs, set_toml, ts_us,
    wait_until,
};
use siaga_tests::lab::Lab;
use siaga_tests::sinks::{SmtpSink, WebhookReceiver};

fn tickets(siaga: &Siaga) -> Result<Vec<Value>> {
    let v = siaga.json(&["tickets", "--json"])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn events(siaga: &Siaga) -> Result<Vec<Value>> {
    let v = siaga.json(&["events", "--since", "1h", "--json"])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn all_up(siaga: &Siaga, devices: &[&str]) -> Result<bool> {
    for d in devices {
        if device_state(siaga, d)? != "up" {
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
    // The detection is the request: step 1 is done, the Kepala Dinas disposes.
    ensure!(t["step"] == 2 && t["role"] == "kepala_dinas", "{t:#?}");
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
        json_bool(&t[0]["closed"]) == Some(false),
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

/// The find: a device that answers ping but not SNMP. The CLI says
/// it in English; the register, the control card and the report say it in
/// Bahasa Indonesia, and the agent's raw error is kept in the ticket's JSON
/// and the report's appendix, never in the register's columns.
#[test]
fn a_device_silent_on_snmp_reads_in_bahasa_in_the_register_and_keeps_the_raw_error_aside()
-> Result<()> {
    // No snmpd in the lab device: it answers ping only.
    let lab = Lab::new()?.device("ap").start()?;
    let addr = lab.addr("ap")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n[[opd]]\nid = \"demo\"\nname = \"OPD Demo\"\n\n\
         [[device]]\nid = \"demo-ap\"\nopd = \"demo\"\nkind = \"switch\"\naddress = \"{addr}\"\n\
         [device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\ntimeout = \"1s\"\n"
    ))?;
    let agent_cfg = c.enroll_agent("demo")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "a ticket for demo-ap", || {
        Ok(tickets(&siaga)?.iter().any(|t| t["device"] == "demo-ap"))
    })?;
    let t = tickets(&siaga)?
        .into_iter()
        .find(|t| t["device"] == "demo-ap")
        .unwrap_or_default();
    let id = t["id"].as_str().unwrap_or_default().to_string();
    let problem = t["problem"].as_str().unwrap_or_default();
    ensure!(
        problem.starts_with("demo-ap does not answer SNMP")
            || problem.starts_with("demo-ap cannot be read over SNMP"),
        "the CLI's problem, in English: {problem}"
    );
    // The facts and the raw error in the ticket's JSON.
    let show = siaga.json(&["ticket", "show", &id, "--json"])?;
    let reason = &show["reason"];
    let raw = reason["diagnostic"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        reason["reason"] == "snmp_silent" && reason["device"] == "demo-ap" && !raw.is_empty(),
        "the reason with its raw diagnostic: {show:#}"
    );
    // The register's row: Bahasa prose, no raw error, no English.
    let day = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).context("offset")?)
        .format("%Y-%m-%d")
        .to_string();
    let csv = siaga.run(&["register", "--from", &day, "--to", &day])?;
    ensure!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let csv = String::from_utf8_lossy(&csv.stdout).into_owned();
    let row = csv
        .lines()
        .find(|l| l.starts_with(&id))
        .ok_or_else(|| anyhow::anyhow!("{id} not in the register:\n{csv}"))?;
    eprintln!("register row: {row}\nraw diagnostic (ticket JSON): {raw}");
    ensure!(
        row.contains(",Perangkat demo-ap tidak menjawab SNMP (ditunggu ")
            || row.contains(",Perangkat demo-ap tidak dapat dibaca melalui SNMP,"),
        "Uraian gangguan in Bahasa: {row}"
    );
    for english_or_raw in [
        "does not answer",
        "cannot be read",
        "timeout",
        "no answer",
        raw.as_str(),
    ] {
        ensure!(
            !row.contains(english_or_raw),
            "{english_or_raw:?} in the register row: {row}"
        );
    }
    // The control card says it in Bahasa too; the report keeps the raw
    // error in its appendix.
    let card = String::from_utf8_lossy(&siaga.run(&["ticket", "card", &id])?.stdout).into_owned();
    ensure!(
        card.contains("deteksi otomatis: Perangkat demo-ap") && !card.contains(&raw),
        "{card}"
    );
    let file = c.root().join("ap-report.html");
    let out = siaga.run(&[
        "ticket",
        "report",
        &id,
        "--format",
        "html",
        "--out",
        &file.to_string_lossy(),
    ])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&file)?;
    ensure!(
        html.contains("<p>Perangkat demo-ap ") && html.contains("Lampiran: diagnostik mentah"),
        "{html}"
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
        Ok(device_state(&siaga, "dinkes-sw1")? == "unreachable"
            && device_state(&siaga, "dinkes-sw2")? == "unreachable")
    })?;
    ensure!(
        device_state(&siaga, "dinkes-r1")? == "down",
        "the router is down"
    );
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
        ensure!(
            device_state(&siaga, sw)? == "unreachable",
            "{sw} unreachable"
        );
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
        device_state(&siaga, "dinkes-sw1")? == "degraded",
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
        Ok(device_state(&siaga, "dinkes-sw1")? == "unknown"
            && device_state(&siaga, "dinkes-sw2")? == "unknown")
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
    // The ticket with its health record (incident key, occurrences).
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
            Ok(device_state(&siaga, "dinkes-sw1")? == "degraded")
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
        device_state(&siaga, "dinkes-sw1")? == "up",
        "the device itself is fine"
    );
    Ok(())
}

/// The inventory of one switch at `addr` with one link, `ke-puskesmas` on
/// its interface port2, polled every `interval`.
fn one_link_inventory(addr: std::net::Ipv4Addr, interval: &str) -> String {
    format!(
        "interval = \"{interval}\"\n\n{OPD}\n[[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"{addr}\"\n\n[device.snmp]\nversion = \"2c\"\n\
         community = \"public\"\n\n[[link]]\ndevice = \"dinkes-sw1\"\ninterface = \"port2\"\n\
         name = \"ke-puskesmas\"\n"
    )
}

/// The entry of `siaga links --json` for one link.
fn link(siaga: &Siaga, name: &str) -> Result<Value> {
    let v = siaga.json(&["links", "--json"])?;
    v.as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no link {name:?} in {v:#}"))
}

/// The `text` of a ticket's notes of one `kind`.
fn notes_of(show: &Value, kind: &str) -> Vec<String> {
    show["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["kind"] == kind)
        .filter_map(|n| n["text"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_link_toggled_twenty_times_in_two_minutes_is_one_flapping_ticket_that_records_its_recovery()
-> Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .spare_link("port2")
        .start()?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&one_link_inventory(lab.addr("sw1")?, "1s"))?;
    // Flap thresholds for a 1 s poll. The link changes every 3 s, so the 1 s
    // polls see a change every third reading or so (more with the hysteresis
    // of entering and leaving down): about a third of Icinga's 21 checks
    // change, which hovers around its 30 % start threshold. A 20 % start
    // still keeps a single cut (two changes, about 10 %) from counting as
    // flapping; below 10 % it has settled, which takes some 15 stable polls
    // once the link stays up.
    let mut flap = toml::Table::new();
    flap.insert("window".into(), toml::Value::Integer(21));
    flap.insert("high_pct".into(), toml::Value::Float(20.0));
    flap.insert("low_pct".into(), toml::Value::Float(10.0));
    set_toml(&c.config, "health.flap", toml::Value::Table(flap))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "the link seen up", || {
        Ok(events(&siaga)?
            .iter()
            .any(|e| e["link"] == "ke-puskesmas" && e["to"] == "up"))
    })?;
    ensure!(tickets(&siaga)?.is_empty(), "no ticket while healthy");

    // 20 times down and up again in two minutes: 3 s cut, 3 s mended.
    let start = Instant::now();
    let mut mended_at = 0;
    for i in 0..20u64 {
        lab.cut_link("sw1", "port2")?;
        sleep_until(start + Duration::from_secs(6 * i + 3));
        lab.mend_link("sw1", "port2")?;
        mended_at = now_us();
        sleep_until(start + Duration::from_secs(6 * i + 6));
    }
    let t = only_ticket(&siaga)?;
    let id = t["id"].as_str().unwrap_or_default().to_string();
    ensure!(
        t["device"] == "dinkes-sw1" && t["link"] == "ke-puskesmas" && t["origin"] == "detected",
        "the link's ticket: {t:#?}"
    );
    ensure!(t["flapping"] == true, "flagged flapping: {t:#?}");
    ensure!(
        events(&siaga)?.iter().any(|e| e["kind"] == "flapping"
            && e["flapping"] == true
            && e["ticket"] == id.as_str()),
        "an event says it started flapping"
    );

    // Left up, it settles: the recovery is recorded on the same ticket.
    wait_until(secs(90), "the recovery after it settled", || {
        Ok(tickets(&siaga)?.iter().any(|t| {
            t["id"] == id.as_str() && ts_us(&t["recovered_at"]).is_some_and(|r| r > mended_at)
        }))
    })?;
    let t = only_ticket(&siaga)?;
    ensure!(t["id"] == id.as_str(), "still the one ticket: {t:#?}");
    ensure!(
        json_bool(&t["closed"]) == Some(false),
        "recovery does not close the ticket: {t:#?}"
    );
    let show = siaga.json(&["ticket", "show", &id, "--json"])?;
    ensure!(
        !notes_of(&show, "flapping").is_empty() && !notes_of(&show, "settled").is_empty(),
        "the ticket's notes say it flapped and settled: {:#}",
        show["notes"]
    );
    let recovered = notes_of(&show, "recovered");
    ensure!(
        recovered
            .last()
            .is_some_and(|n| n.starts_with("pulih pada")),
        "recovery note: {:#}",
        show["notes"]
    );
    let ev = events(&siaga)?;
    ensure!(
        ev.iter().any(|e| e["kind"] == "flapping"
            // proto3 JSON leaves a false bool out.
            && e["flapping"].as_bool() != Some(true)
            && e["ticket"] == id.as_str()),
        "an event says the flapping stopped"
    );
    ensure!(
        ev.iter().any(|e| e["kind"] == "recovered"
            && e["ticket"] == id.as_str()
            && ts_us(&e["ts"]).is_some_and(|r| r > mended_at)),
        "an event records the recovery"
    );
    Ok(())
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

#[test]
fn a_link_down_trap_opens_the_link_ticket_before_the_next_poll() -> Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .link_traps()
        .spare_link("port2")
        .start()?;
    // Polls every 30 s: a poll needs two of them (hysteresis) to call the
    // link down, so a ticket within one interval can only come from the trap.
    let interval_us = 30_000_000;
    let mut c = Collector::init()?;
    c.write_inventory_text(&one_link_inventory(lab.addr("sw1")?, "30s"))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    // The device's snmpd sends its linkDown traps here.
    agent_cfg.set("trap_listen", lab.trap_sink("sw1")?.to_string())?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let agent = Agent::start(agent_cfg)?;
    let fail = |e: anyhow::Error| {
        e.context(format!(
            "agent log:\n{}\ncollector log:\n{}",
            agent.log_tail(30),
            c.log_tail(30)
        ))
    };
    // The first poll (at the agent's start) shows the link up.
    wait_until(secs(60), "the first poll of the link", || {
        Ok(link(&siaga, "ke-puskesmas")?["oper_status"] == "up")
    })
    .map_err(fail)?;
    let polled = ts_us(&link(&siaga, "ke-puskesmas")?["last_sample_at"])
        .ok_or_else(|| anyhow::anyhow!("the link's poll has no time"))?;

    lab.cut_link("sw1", "port2")?;
    let cut = now_us();
    wait_until(secs(30), "a ticket for the link", || {
        Ok(!tickets(&siaga)?.is_empty())
    })
    .map_err(fail)?;
    let seen = now_us();
    // Nothing polled the link since the cut: the newest poll still has it up.
    let l = link(&siaga, "ke-puskesmas")?;
    ensure!(
        l["oper_status"] == "up" && ts_us(&l["last_sample_at"]) == Some(polled),
        "no poll has seen the cut yet: {l:#}"
    );
    let t = only_ticket(&siaga)?;
    ensure!(
        t["device"] == "dinkes-sw1" && t["link"] == "ke-puskesmas" && t["origin"] == "detected",
        "the link's ticket: {t:#?}"
    );
    let problem = t["problem"].as_str().unwrap_or_default();
    ensure!(
        problem.contains("linkDown trap"),
        "the problem names the trap: {problem}"
    );
    let opened = ts_us(&t["opened_at"]).unwrap_or(i64::MAX);
    ensure!(
        opened < polled + interval_us,
        "opened before the next poll was due: polled {polled}, opened {opened}"
    );
    let id = t["id"].as_str().unwrap_or_default().to_string();
    let show = siaga.json(&["ticket", "show", &id, "--json"])?;
    let evidence = show["evidence"].as_array().cloned().unwrap_or_default();
    ensure!(
        evidence
            .iter()
            .any(|r| r["sample"]["event"]["source"] == "trap"
                && r["sample"]["event"]["kind"] == "link_down"),
        "the evidence is the trap: {evidence:#?}"
    );
    // Reported, not asserted: timings belong to the benchmark.
    eprintln!(
        "cut → trap ticket visible after {:.1} s (poll interval 30 s, next poll due {:.1} s after the cut)",
        (seen - cut) as f64 / 1e6,
        (polled + interval_us - cut) as f64 / 1e6
    );
    Ok(())
}

#[test]
fn a_webhook_that_failed_once_gets_one_opened_event_and_the_smtp_sink_gets_the_mail() -> Result<()>
{
    // 500 to the first POST, 200 to every later one.
    let hook = WebhookReceiver::start(&[500])?;
    let smtp = SmtpSink::start()?;
    let lab = Lab::new()?.device("sw1").start()?;
    let addr = lab.addr("sw1")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n{OPD}\n[[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"{addr}\"\n"
    ))?;
    let mut webhook = toml::Table::new();
    webhook.insert("url".into(), hook.url().into());
    set_toml(
        &c.config,
        "notify.webhook",
        toml::Value::Array(vec![toml::Value::Table(webhook)]),
    )?;
    let mut email = toml::Table::new();
    email.insert("host".into(), "127.0.0.1".into());
    email.insert("port".into(), i64::from(smtp.addr().port()).into());
    email.insert("security".into(), "none".into());
    email.insert("from".into(), "Siaga <siaga@diskominfo.test>".into());
    email.insert(
        "to".into(),
        toml::Value::Array(vec!["helpdesk@diskominfo.test".into()]),
    );
    set_toml(&c.config, "notify.email", toml::Value::Table(email))?;
    set_toml(&c.config, "notify.retry_initial", "300ms".into())?;
    set_toml(&c.config, "metrics_listen", "127.0.0.1:0".into())?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "dinkes-sw1 up", || {
        all_up(&siaga, &["dinkes-sw1"])
    })?;

    lab.set_loss("sw1", 100)?;
    wait_until(secs(60), "a ticket for the dead switch", || {
        Ok(!tickets(&siaga)?.is_empty())
    })?;
    let t = only_ticket(&siaga)?;
    let id = t["id"].as_str().unwrap_or_default().to_string();
    let opened = |hook: &WebhookReceiver| -> Vec<siaga_tests::sinks::Delivery> {
        hook.deliveries()
            .into_iter()
            .filter(|d| d.body["event"] == "opened" && d.body["ticket"] == id.as_str())
            .collect()
    };
    wait_until(
        secs(60),
        "the opened event accepted by the receiver",
        || Ok(opened(&hook).iter().any(|d| d.status == 200)),
    )
    .map_err(|e| e.context(c.log_tail(30)))?;
    // More probe cycles with the switch still dead: nothing new is opened.
    wait_cycles(&siaga, "dinkes-sw1", 5)?;
    let got = opened(&hook);
    ensure!(
        got.len() >= 2 && got[0].status == 500,
        "refused once, then tried again: {got:#?}"
    );
    let keys: std::collections::BTreeSet<&str> = got.iter().map(|d| d.key.as_str()).collect();
    ensure!(
        keys.len() == 1 && keys.contains(format!("{id}:opened:1").as_str()),
        "every attempt carries the one idempotency key: {keys:?}"
    );
    ensure!(
        got.iter().filter(|d| d.status == 200).count() == 1,
        "exactly one opened event accepted: {got:#?}"
    );
    ensure!(
        got.iter()
            .all(|d| d.body["idempotency_key"] == d.key.as_str() && d.body["opd"] == "dinkes"),
        "the key is in the body too: {got:#?}"
    );
    ensure!(
        tickets(&siaga)?.len() == 1,
        "still one ticket after the retries"
    );

    // The e-mail, in Bahasa Indonesia by default.
    wait_until(secs(60), "the e-mail of the opened ticket", || {
        Ok(smtp.mails().iter().any(|m| {
            m.header("subject")
                .is_some_and(|s| s.contains(&id) && s.contains("dibuka"))
        }))
    })
    .map_err(|e| e.context(c.log_tail(30)))?;
    let mails = smtp.mails();
    let mail = mails
        .iter()
        .find(|m| m.header("subject").is_some_and(|s| s.contains(&id)))
        .ok_or_else(|| anyhow::anyhow!("no mail for {id}"))?;
    ensure!(
        mail.to == ["helpdesk@diskominfo.test"] && mail.from == "siaga@diskominfo.test",
        "envelope: {mail:#?}"
    );
    let body = mail.body();
    for want in [
        format!("Tiket pemeliharaan jaringan {id} dibuka."),
        "Perangkat : dinkes-sw1".to_string(),
        "Masalah   : Perangkat dinkes-sw1 tidak membalas ping".to_string(),
        "Asal      : terdeteksi otomatis oleh Siaga".to_string(),
    ] {
        ensure!(body.contains(&want), "the mail says {want:?}: {body}");
    }

    // The failed attempt is counted in the collector's metrics.
    let metrics_addr = std::fs::read_to_string(c.data_dir.join("metrics.addr"))?;
    let text = siaga_tests::harness::http_get(metrics_addr.trim(), "/metrics")?;
    ensure!(
        metric_value(&text, "siaga_collector_notify_retries_total").is_some_and(|v| v >= 1.0),
        "the retry is counted: {text}"
    );
    ensure!(
        metric_value(&text, "siaga_collector_notify_delivered_total").is_some_and(|v| v >= 2.0),
        "webhook and e-mail delivered: {text}"
    );
    ensure!(
        metric_value(&text, "siaga_collector_health_skipped_batches_total") == Some(0.0),
        "the health engine kept up and says so: {text}"
    );
    Ok(())
}

#[test]
fn telegram_is_told_of_a_dead_switch_once_with_the_console_link_even_across_a_restart() -> Result<()>
{
    const TOKEN: &str = "123456789:AAH-lab-token_not-real";
    // 500 to the first sendMessage, then the API's ok.
    let bot = WebhookReceiver::bot_api(&[500])?;
    let lab = Lab::new()?.device("sw1").start()?;
    let addr = lab.addr("sw1")?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n{OPD}\n[[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"{addr}\"\n"
    ))?;
    let mut chat = toml::Table::new();
    chat.insert("token".into(), TOKEN.into());
    chat.insert("chat_id".into(), (-1_001_234_567_890i64).into());
    chat.insert("api_url".into(), bot.url().into());
    set_toml(
        &c.config,
        "notify.telegram",
        toml::Value::Array(vec![toml::Value::Table(chat)]),
    )?;
    set_toml(&c.config, "notify.retry_initial", "300ms".into())?;
    set_toml(&c.config, "web.listen", "127.0.0.1:0".into())?;
    set_toml(
        &c.config,
        "web.public_url",
        "https://siaga.diskominfo.test:8443".into(),
    )?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "dinkes-sw1 up", || {
        all_up(&siaga, &["dinkes-sw1"])
    })?;

    lab.set_loss("sw1", 100)?;
    wait_until(secs(60), "a ticket for the dead switch", || {
        Ok(!tickets(&siaga)?.is_empty())
    })?;
    let id = only_ticket(&siaga)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let opened = |bot: &WebhookReceiver| -> Vec<siaga_tests::sinks::Delivery> {
        bot.deliveries()
            .into_iter()
            .filter(|d| {
                d.body["text"].as_str().is_some_and(|t| {
                    t.starts_with(&format!("Tiket pemeliharaan jaringan {id} dibuka."))
                })
            })
            .collect()
    };
    wait_until(
        secs(60),
        "the opened message accepted by the Bot API",
        || Ok(opened(&bot).iter().any(|d| d.status == 200)),
    )
    .map_err(|e| e.context(c.log_tail(30)))?;
    let got = opened(&bot);
    ensure!(
        got.len() == 2 && got[0].status == 500,
        "refused once, then sent again: {got:#?}"
    );
    let sent = &got[1];
    ensure!(
        sent.path == format!("/bot{TOKEN}/sendMessage")
            && sent.body["chat_id"] == -1_001_234_567_890i64,
        "to the bot's sendMessage for the chat: {sent:#?}"
    );
    let text = sent.body["text"].as_str().unwrap_or_default();
    for want in [
        "Perangkat : dinkes-sw1".to_string(),
        "Masalah   : Perangkat dinkes-sw1 tidak membalas ping".to_string(),
        format!("Buka di konsol web: https://siaga.diskominfo.test:8443/tiket/{id}"),
    ] {
        ensure!(text.contains(&want), "the message says {want:?}: {text}");
    }

    // A restart with the switch still dead: the chat is not told again.
    ensure!(c.stop(), "the collector stops cleanly on SIGTERM");
    c.restart()?;
    wait_until(secs(60), "the ticket back after the restart", || {
        Ok(!tickets(&siaga)?.is_empty())
    })?;
    wait_until(secs(60), "the switch seen down again", || {
        Ok(device_state(&siaga, "dinkes-sw1")? == "down")
    })?;
    wait_cycles(&siaga, "dinkes-sw1", 5)?;
    ensure!(tickets(&siaga)?.len() == 1, "still one ticket");
    let got = opened(&bot);
    ensure!(
        got.iter().filter(|d| d.status == 200).count() == 1,
        "one opened message accepted, before and after the restart: {got:#?}"
    );
    // The token is in no log line.
    let log = c.log_tail(100_000);
    ensure!(
        !log.contains("AAH-lab-token"),
        "the bot token is in the collector's log"
    );
    ensure!(
        log.contains("telegram chat -1001234567890"),
        "deliveries are logged by chat: {}",
        c.log_tail(30)
    );
    Ok(())
}

/// The one ticket of the lab, waited for.
fn one_ticket_when(siaga: &Siaga, what: &str, ok: impl Fn(&Value) -> bool) -> Result<Value> {
    let mut found = None;
    wait_until(secs(420), what, || {
        let t = tickets(siaga)?;
        ensure!(t.len() <= 1, "one ticket at most: {t:#?}");
        found = t.into_iter().next().filter(|t| ok(t));
        Ok(found.is_some())
    })?;
    found.ok_or_else(|| anyhow::anyhow!("{what}: no ticket"))
}

#[test]
fn a_port_switched_off_and_on_every_8_s_polled_every_10_s_is_one_flapping_ticket_closed_once_stable()
-> Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .spare_link("port2")
        .start()?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&one_link_inventory(lab.addr("sw1")?, "10s"))?;
    // Icinga's thresholds as shipped; stable for a minute closes the ticket.
    set_toml(&c.config, "health.flap.close_after", "60s".into())?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let agent = Agent::start(agent_cfg)?;
    let fail = |e: anyhow::Error| {
        e.context(format!(
            "agent log:\n{}\ncollector log:\n{}",
            agent.log_tail(20),
            c.log_tail(40)
        ))
    };
    wait_until(secs(60), "the link seen up", || {
        Ok(link(&siaga, "ke-puskesmas")?["oper_status"] == "up")
    })
    .map_err(fail)?;
    ensure!(tickets(&siaga)?.is_empty(), "no ticket while healthy");

    // What was found: `ip link set port2 down` for 8 s, up for 8 s, eight
    // times. The 10 s polls read it down, down, up, down, up, …; the port
    // is administratively down too, which alone is no fault.
    let start = Instant::now();
    let mut toggled_at = 0;
    for i in 0..8u64 {
        lab.set_link_down("sw1", "port2")?;
        sleep_until(start + Duration::from_secs(16 * i + 8));
        lab.set_link_up("sw1", "port2")?;
        toggled_at = now_us();
        sleep_until(start + Duration::from_secs(16 * i + 16));
    }
    let t =
        one_ticket_when(&siaga, "the flapping ticket", |t| t["flapping"] == true).map_err(fail)?;
    let id = t["id"].as_str().unwrap_or_default().to_string();
    ensure!(
        t["device"] == "dinkes-sw1" && t["link"] == "ke-puskesmas" && t["origin"] == "detected",
        "the link's ticket: {t:#?}"
    );
    ensure!(
        t["problem"]
            .as_str()
            .is_some_and(|p| p.contains("flapping")),
        "the problem says flapping: {t:#?}"
    );
    ensure!(
        events(&siaga)?.iter().any(|e| e["kind"] == "flapping"
            && e["flapping"] == true
            && e["ticket"] == id.as_str()),
        "an event says it started flapping"
    );

    // Left up, it settles, recovers and, a minute stable, is closed: still
    // the one ticket.
    let t = one_ticket_when(&siaga, "the ticket closed once stable", |t| {
        t["closed"] == true
    })
    .map_err(fail)?;
    ensure!(t["id"] == id.as_str(), "the same ticket: {t:#?}");
    ensure!(
        ts_us(&t["recovered_at"]).is_some_and(|r| r > toggled_at),
        "recovered after the last toggle: {t:#?}"
    );
    let show = siaga.json(&["ticket", "show", &id, "--json"])?;
    for kind in ["flapping", "settled", "recovered", "closed"] {
        ensure!(
            !notes_of(&show, kind).is_empty(),
            "a {kind} note: {:#}",
            show["notes"]
        );
    }
    ensure!(
        notes_of(&show, "closed")
            .iter()
            .any(|n| n.contains("stabil selama") && n.contains("setelah flapping")),
        "the closing note gives the reason: {:#}",
        show["notes"]
    );
    let ev = events(&siaga)?;
    ensure!(
        ev.iter().filter(|e| e["kind"] == "opened").count() == 1,
        "one ticket opened: {ev:#?}"
    );
    ensure!(
        ev.iter()
            .any(|e| e["kind"] == "closed" && e["ticket"] == id.as_str()),
        "an event records the closing"
    );
    Ok(())
}

#[test]
fn a_link_down_trap_for_a_link_that_is_up_is_not_confirmed_by_the_next_poll_and_its_ticket_closes()
-> Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .link_traps()
        .spare_link("port2")
        .start()?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&one_link_inventory(lab.addr("sw1")?, "5s"))?;
    set_toml(&c.config, "metrics_listen", "127.0.0.1:0".into())?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let sink = lab.trap_sink("sw1")?;
    agent_cfg.set("trap_listen", sink.to_string())?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let agent = Agent::start(agent_cfg)?;
    let fail = |e: anyhow::Error| {
        e.context(format!(
            "agent log:\n{}\ncollector log:\n{}",
            agent.log_tail(20),
            c.log_tail(40)
        ))
    };
    wait_until(secs(60), "the link seen up", || {
        Ok(link(&siaga, "ke-puskesmas")?["oper_status"] == "up")
    })
    .map_err(fail)?;
    ensure!(tickets(&siaga)?.is_empty(), "no ticket while healthy");

    // A replayed or stale linkDown, authenticated, from the switch's own
    // address, for a link that is up.
    let dest = sink.to_string();
    let sent = now_us();
    lab.exec(
        "sw1",
        &[
            "snmptrap",
            "-v",
            "2c",
            "-c",
            "public",
            &dest,
            "",
            "1.3.6.1.6.3.1.1.5.3",
            "1.3.6.1.2.1.2.2.1.1.7",
            "i",
            "7",
            "1.3.6.1.2.1.2.2.1.2.7",
            "s",
            "port2",
        ],
    )?;
    // It still acts at once: the ticket opens on the trap.
    let t = one_ticket_when(&siaga, "a ticket from the trap", |_| true).map_err(fail)?;
    let seen = now_us();
    let id = t["id"].as_str().unwrap_or_default().to_string();
    ensure!(
        t["link"] == "ke-puskesmas"
            && t["problem"]
                .as_str()
                .is_some_and(|p| p.contains("linkDown trap")),
        "the link's ticket, from the trap: {t:#?}"
    );
    // The next poll finds the link up: not confirmed, recovered, closed.
    let t = one_ticket_when(&siaga, "the ticket closed", |t| t["closed"] == true).map_err(fail)?;
    ensure!(t["id"] == id.as_str(), "the same ticket: {t:#?}");
    ensure!(ts_us(&t["recovered_at"]).is_some(), "it recovered: {t:#?}");
    let show = siaga.json(&["ticket", "show", &id, "--json"])?;
    ensure!(
        !notes_of(&show, "not_confirmed").is_empty()
            && notes_of(&show, "closed")
                .iter()
                .any(|n| n.contains("tidak terkonfirmasi oleh polling")),
        "the notes say why: {:#}",
        show["notes"]
    );
    ensure!(
        events(&siaga)?
            .iter()
            .any(|e| e["kind"] == "not_confirmed" && e["ticket"] == id.as_str()),
        "an event says the trap was not confirmed"
    );
    let d = siaga.json(&["device", "dinkes-sw1", "--json"])?;
    ensure!(
        d["traps_not_confirmed"] == 1,
        "counted for the device: {d:#}"
    );
    let metrics_addr = std::fs::read_to_string(c.data_dir.join("metrics.addr"))?;
    let text = siaga_tests::harness::http_get(metrics_addr.trim(), "/metrics")?;
    ensure!(
        metric_value(&text, "siaga_collector_traps_not_confirmed_total") == Some(1.0),
        "counted in /metrics: {text}"
    );
    // Reported, not asserted: timings belong to the benchmark.
    eprintln!(
        "trap sent → ticket visible after {:.2} s",
        (seen - sent) as f64 / 1e6
    );
    Ok(())
}

/// A recorded walk in `tests/data`.
fn recorded(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// Inventory of one SNMP device polled every second.
fn snmp_inventory(id: &str, addr: std::net::Ipv4Addr) -> String {
    format!(
        "interval = \"1s\"\n\n{OPD}\n\
         [[device]]\nid = \"{id}\"\nopd = \"dinkes\"\nkind = \"switch\"\naddress = \"{addr}\"\n\
         [device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\n"
    )
}

#[test]
fn a_huawei_switch_and_a_cisco_router_show_their_own_cpu_memory_and_temperature() -> Result<()> {
    let lab = Lab::new()?
        .device("core")
        .snmpd_v2c("public")
        .recorded_walk(".1.3.6.1.4.1.2011.5.25.31", &recorded("huawei-s5700.walk"))
        .device("rtr")
        .snmpd_v2c("public")
        .recorded_walk(".1.3.6.1.4.1.9.9", &recorded("cisco-ios.walk"))
        .device("bad")
        .snmpd_v2c("public")
        .recorded_walk(
            ".1.3.6.1.4.1.2011.5.25.31",
            &recorded("huawei-garbage.walk"),
        )
        .start()?;
    let mut c = Collector::init()?;
    let rtr = snmp_inventory("dinkes-rtr", lab.addr("rtr")?);
    let rtr = rtr.split_once("[[device]]").map_or("", |(_, d)| d);
    let bad = snmp_inventory("dinkes-bad", lab.addr("bad")?);
    let bad = bad.split_once("[[device]]").map_or("", |(_, d)| d);
    c.write_inventory_text(&format!(
        "{}\n[[device]]{rtr}\n[[device]]{bad}",
        snmp_inventory("dinkes-core", lab.addr("core")?)
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "health readings of dinkes-core", || {
        let d = siaga.json(&["device", "dinkes-core", "--json"])?;
        Ok(d["health"]["cpu_pct"].is_number())
    })?;
    let d = siaga.json(&["device", "dinkes-core", "--json"])?;
    let h = &d["health"];
    // The vendor's own figures (the main board's row of the recorded walk)
    // win over net-snmp's HOST-RESOURCES and UCD tables the lab device
    // also answers.
    ensure!(
        h["cpu_pct"] == 23.0 && h["cpu_source"] == "huawei",
        "cpu: {h:#}"
    );
    ensure!(
        h["mem_pct"] == 61.0 && h["mem_source"] == "huawei",
        "memory: {h:#}"
    );
    ensure!(
        h["temp_c"] == 47.0 && h["temp_threshold_c"] == 68.0 && h["temp_source"] == "huawei",
        "temperature and the device's own threshold: {h:#}"
    );
    let sources: Vec<&str> = h["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        sources.contains(&"huawei")
            && sources.contains(&"ucd")
            && sources.contains(&"host-resources")
            && !sources.contains(&"cisco"),
        "detected MIBs: {sources:?}"
    );
    let out = siaga.run(&["device", "dinkes-core"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success()
            && text.contains("cpu 23.0 % (huawei)")
            && text.contains("memory 61.0 % (huawei)")
            && text.contains("temperature 47.0 °C (limit 68 °C, huawei)"),
        "the table: {text}"
    );
    // The Cisco router: CISCO-PROCESS-MIB and CISCO-MEMORY-POOL-MIB.
    wait_until(secs(60), "health readings of dinkes-rtr", || {
        let d = siaga.json(&["device", "dinkes-rtr", "--json"])?;
        Ok(d["health"]["cpu_pct"].is_number())
    })?;
    let d = siaga.json(&["device", "dinkes-rtr", "--json"])?;
    let h = &d["health"];
    ensure!(
        h["cpu_pct"] == 12.0
            && h["cpu_source"] == "cisco"
            && h["mem_pct"] == 40.0
            && h["mem_source"] == "cisco"
            && h["temp_c"].is_null(),
        "the Cisco figures: {h:#}"
    );
    // Garbage from the vendor MIB: those readings are unavailable and say
    // why; memory still comes from the row that made sense; the poll is good.
    wait_until(secs(60), "health problems of dinkes-bad", || {
        let d = siaga.json(&["device", "dinkes-bad", "--json"])?;
        Ok(d["health"]["problems"].is_array())
    })?;
    let d = siaga.json(&["device", "dinkes-bad", "--json"])?;
    let h = &d["health"];
    let problems: Vec<&str> = h["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        d["snmp_status"] == "ok"
            && problems.contains(&"huawei: hwEntityCpuUsage.16842753 = 250 is not a percentage")
            && problems
                .iter()
                .any(|p| p.starts_with("huawei: hwEntityTemperature.16842753 = "))
            && h["cpu_source"] != "huawei"
            && h["temp_c"].is_null()
            && h["mem_pct"] == 35.0,
        "garbage marked unavailable with its reason: {d:#}"
    );
    Ok(())
}

/// snmpd.conf lines that make the lab's snmpd answer `pct` as the
/// hrProcessorLoad of every processor of hrProcessorTable (one row per CPU
/// of this machine, read from hrProcessorFrwID: net-snmp has no load to
/// tell during its first minute).
fn cpu_override(addr: std::net::Ipv4Addr, pct: u32) -> Result<Vec<String>> {
    let out = std::process::Command::new("snmpwalk")
        .args(["-v2c", "-c", "public", "-On", "-m", "", "-Oq"])
        .arg(addr.to_string())
        .arg(".1.3.6.1.2.1.25.3.3.1.1")
        .output()
        .context("running snmpwalk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|oid| oid.strip_prefix(".1.3.6.1.2.1.25.3.3.1.1."))
        .map(|index| format!("override .1.3.6.1.2.1.25.3.3.1.2.{index} integer {pct}"))
        .collect();
    ensure!(!rows.is_empty(), "hrProcessorLoad rows: {text}");
    Ok(rows)
}

#[test]
fn a_cpu_at_97_percent_past_the_window_opens_one_cpu_ticket_and_recovers_at_10() -> Result<()> {
    let mut lab = Lab::new()?.device("sw1").snmpd_v2c("public").start()?;
    let addr = lab.addr("sw1")?;
    let busy = cpu_override(addr, 97)?;
    let idle = cpu_override(addr, 10)?;
    let as_str = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join("\n");
    let busy_lines: Vec<&str> = busy.iter().map(String::as_str).collect();
    lab.set_snmpd_conf("sw1", &busy_lines)?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&snmp_inventory("dinkes-sw1", addr))?;
    // The window shortened from 5 minutes to 4 s: every 1-s poll in it is busy.
    let mut cpu = toml::Table::new();
    cpu.insert("above".into(), toml::Value::Float(90.0));
    cpu.insert("for".into(), "4s".into());
    set_toml(&c.config, "health.cpu", toml::Value::Table(cpu))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let _agent = Agent::start(agent_cfg)?;
    wait_until(secs(60), "a CPU ticket for dinkes-sw1", || {
        Ok(!tickets(&siaga)?.is_empty())
    })?;
    // A few more busy polls: still the one ticket.
    wait_cycles(&siaga, "dinkes-sw1", 6)?;
    let t = tickets(&siaga)?;
    ensure!(t.len() == 1, "exactly one ticket: {t:#?}");
    let t = &t[0];
    ensure!(t["device"] == "dinkes-sw1", "{t:#?}");
    let problem = t["problem"].as_str().unwrap_or_default();
    ensure!(
        problem == "CPU of dinkes-sw1 at 97 % (threshold 90 %)",
        "the CPU problem, not reachability: {problem}"
    );
    let id = t["id"].as_str().unwrap_or_default().to_string();
    let show = siaga.json(&["ticket", "show", &id, "--json"])?;
    let evidence = show["evidence"].as_array().cloned().unwrap_or_default();
    ensure!(
        !evidence.is_empty()
            && evidence.iter().all(|r| r["findings"][0]["problem"] == "cpu"
                && r["findings"][0]["value"] == 97.0
                && r["findings"][0]["threshold"] == 90.0
                && r["sample"]["snmp"]["cpu_pct"] == 97.0),
        "the readings are the evidence: {evidence:#?}"
    );
    ensure!(
        device_state(&siaga, "dinkes-sw1")? == "up",
        "the device itself stays up"
    );
    let out = siaga.run(&["device", "dinkes-sw1"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.contains("cpu 97.0 % (host-resources)"),
        "siaga device: {text}"
    );

    let idle_lines: Vec<&str> = idle.iter().map(String::as_str).collect();
    lab.set_snmpd_conf("sw1", &idle_lines)?;
    wait_until(secs(60), "the CPU ticket's recovery", || {
        Ok(tickets(&siaga)?
            .iter()
            .any(|t| !t["recovered_at"].is_null()))
    })?;
    let t = tickets(&siaga)?;
    ensure!(
        t.len() == 1 && t[0]["id"] == id.as_str(),
        "recovered on the same ticket, none new: {t:#?} ({})",
        as_str(&idle)
    );
    Ok(())
}
