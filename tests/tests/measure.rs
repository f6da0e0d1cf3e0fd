//! Measurements on command, end to end: a real collector and agent, a
//! device in a network namespace running snmpd, real loss, and the Tim
//! Teknis measuring a ticket before and after the work with the `siaga` CLI.
//! Needs root (network namespaces, raw sockets).

use std::process::Output;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use siaga_tests::harness::{
    Agent, Collector, Siaga, agent_connected, json_f64, json_u64, secs, wait_until,
};
use siaga_tests::lab::Lab;
use siaga_tests::office::{
    Office, office_users_but, opened_ticket, wait_device_up, wait_for_ticket,
};

const OPD: &str = "[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n";

/// The inventory of one switch at `addr`; with SNMP and its link
/// `ke-puskesmas` on port2 when `snmp`.
fn inventory(addr: &str, snmp: bool) -> String {
    let mut inv = format!(
        "interval = \"1s\"\n\n{OPD}\n[[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\n\
         kind = \"switch\"\naddress = \"{addr}\"\nicmp_count = 20\n"
    );
    if snmp {
        // Retries: under 50 % loss a poll needs a few tries to get through.
        inv.push_str(
            "\n[device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\ntimeout = \"500ms\"\n\
             retries = 5\n\n[[link]]\ndevice = \"dinkes-sw1\"\ninterface = \"port2\"\n\
             name = \"ke-puskesmas\"\n",
        );
    }
    inv
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// `siaga ARGS` that must succeed; its standard output.
fn ok(siaga: &Siaga, args: &[&str]) -> Result<String> {
    let out = siaga.run(args)?;
    if !out.status.success() {
        bail!("siaga {args:?} failed: {}", stderr(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The figures of `device` in a measurement record.
fn device<'a>(m: &'a Value, device: &str) -> Result<&'a Value> {
    m["device_figures"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["device"] == device)
        .ok_or_else(|| anyhow!("no figures of {device} in {m:#}"))
}

fn link<'a>(m: &'a Value, name: &str) -> Result<&'a Value> {
    m["link_figures"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == name)
        .ok_or_else(|| anyhow!("no figures of link {name} in {m:#}"))
}

#[test]
fn fifty_percent_loss_is_measured_before_and_its_repair_after() -> Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .spare_link("port2")
        .start()?;
    let addr = lab.addr("sw1")?.to_string();
    let mut c = Collector::init()?;
    c.write_inventory_text(&inventory(&addr, true))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let teknisi = c.enroll_user("teknisi", "tim_teknis")?;
    let hd = c.enroll_user("hd", "helpdesk")?;
    c.serve()?;
    let agent = Agent::start(agent_cfg)?;
    let logs = |e: anyhow::Error| {
        e.context(format!(
            "agent log:\n{}\ncollector log:\n{}",
            agent.log_tail(30),
            c.log_tail(30)
        ))
    };
    wait_device_up(&hd, "dinkes-sw1").map_err(logs)?;

    lab.set_loss("sw1", 50)?;
    let ticket = wait_for_ticket(&hd, "a ticket for the loss", |_| true).map_err(logs)?;
    let id = ticket["id"].as_str().context("ticket id")?.to_string();
    ensure!(ticket["device"] == "dinkes-sw1", "{ticket:#}");

    // Before the work: 100 echo requests (the default) see the loss.
    let before = teknisi
        .json(&[
            "ticket", "measure", &id, "--phase", "before", "--window", "2s", "--json",
        ])
        .map_err(logs)?;
    ensure!(before["state"] == "done", "{before:#}");
    ensure!(
        before["phase"] == "before" && before["ticket"] == id.as_str(),
        "{before:#}"
    );
    ensure!(
        before["requested_by"] == "teknisi" && before["icmp_count"] == 100,
        "{before:#}"
    );
    ensure!(
        before["links"] == serde_json::json!(["ke-puskesmas"]),
        "{before:#}"
    );
    let d = device(&before, "dinkes-sw1")?;
    let loss = json_f64(&d["loss_pct"]).context("loss_pct")?;
    eprintln!(
        "before: loss {loss:.1} %, RTT median {} µs, p95 {} µs (50 % loss set)",
        d["rtt_median_us"], d["rtt_p95_us"]
    );
    ensure!(d["sent"] == 100, "{d:#}");
    ensure!((30.0..=70.0).contains(&loss), "about 50 % loss: {d:#}");
    let received = d["received"].as_u64().context("received")?;
    ensure!(
        d["rtts_us"].as_array().map(Vec::len) == Some(received as usize),
        "every round trip kept: {d:#}"
    );
    ensure!(
        json_u64(&d["rtt_p95_us"]) >= json_u64(&d["rtt_median_us"]),
        "{d:#}"
    );

    // The technician repairs it.
    lab.set_loss("sw1", 0)?;
    let after = teknisi
        .json(&[
            "ticket", "measure", &id, "--phase", "after", "--window", "2s", "--json",
        ])
        .map_err(logs)?;
    ensure!(after["state"] == "done", "{after:#}");
    let d = device(&after, "dinkes-sw1")?;
    let loss = json_f64(&d["loss_pct"]).context("loss_pct")?;
    eprintln!(
        "after: loss {loss:.1} %, RTT median {} µs, p95 {} µs, jitter {} µs",
        d["rtt_median_us"], d["rtt_p95_us"], d["jitter_us"]
    );
    ensure!(loss <= 5.0, "about no loss after the repair: {d:#}");
    let l = link(&after, "ke-puskesmas")?;
    ensure!(
        l["oper_status"] == "up" && l["admin_status"] == "up",
        "{l:#}"
    );
    ensure!(
        l["speed_mbps"].as_f64().is_some_and(|s| s > 0.0),
        "a speed: {l:#}"
    );
    ensure!(l["interface"] == "port2", "{l:#}");
    for k in ["in_bps", "out_bps", "errors_per_s", "discards_per_s"] {
        ensure!(l[k].is_number(), "rates over the window ({k}): {l:#}");
    }

    // Both are on the ticket, for the report and for people.
    let list = hd.json(&["ticket", "measurements", &id, "--json"])?;
    let phases: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["phase"].as_str())
        .collect();
    ensure!(phases == ["before", "after"], "{list:#}");
    let shown = ok(&hd, &["ticket", "show", &id])?;
    ensure!(shown.contains("measurements (2)"), "{shown}");
    let table = ok(&hd, &["measurement", before["id"].as_str().unwrap_or("")])?;
    ensure!(
        table.contains("dinkes-sw1") && table.contains("ke-puskesmas") && table.contains("done"),
        "{table}"
    );
    Ok(())
}

#[test]
fn an_offline_agent_fails_at_once_and_a_queued_measurement_runs_when_it_returns() -> Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let addr = lab.addr("sw1")?.to_string();
    let mut c = Collector::init()?;
    c.write_inventory_text(&inventory(&addr, false))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let teknisi = c.enroll_user("teknisi", "tim_teknis")?;
    c.serve()?;
    let mut agent = Agent::start(agent_cfg)?;
    wait_device_up(&teknisi, "dinkes-sw1")?;
    ensure!(agent.stop(), "the agent stops cleanly");
    wait_until(secs(30), "the agent shown disconnected", || {
        Ok(!agent_connected(&teknisi, &agent.id)?)
    })?;

    let asked = Instant::now();
    let out = teknisi.run(&["measure", "dinkes-sw1", "--count", "10", "--window", "1s"])?;
    eprintln!(
        "offline refusal after {:.2} s",
        asked.elapsed().as_secs_f64()
    );
    ensure!(!out.status.success(), "refused");
    let err = stderr(&out);
    ensure!(
        err.contains("the agent of OPD dinkes is offline since")
            && err.contains("use --queue to run it when it reconnects"),
        "{err}"
    );
    ensure!(out.stdout.is_empty(), "nothing on stdout");

    let queued = teknisi.json(&[
        "measure",
        "dinkes-sw1",
        "--count",
        "10",
        "--window",
        "1s",
        "--queue",
        "--json",
    ])?;
    ensure!(
        queued["state"] == "queued" && queued["expires_at"].is_string(),
        "{queued:#}"
    );
    let id = queued["id"].as_str().context("id")?.to_string();
    let still = teknisi.json(&["measurement", &id, "--json"])?;
    ensure!(still["state"] == "queued", "waits for the agent: {still:#}");

    agent.restart()?;
    let done = teknisi.json(&["measurement", &id, "--wait", "--json"])?;
    ensure!(done["state"] == "done", "{done:#}");
    ensure!(done["agent"] == agent.id.as_str(), "{done:#}");
    let d = device(&done, "dinkes-sw1")?;
    ensure!(d["sent"] == 10 && d["received"] == 10, "{d:#}");
    Ok(())
}

/// A letter ticket (letter `number`, dated today) about dinkes-sw1, walked
/// to step 6 with its status updated and the OPD's acknowledgement given.
fn ticket_at_step_6(o: &Office, number: &str, subject: &str) -> Result<String> {
    let id = o.new_letter(
        number,
        &siaga_tests::office::letter_date(),
        subject,
        &["--device", "dinkes-sw1"],
    )?;
    let steps: [(&str, &[&str]); 5] = [
        ("opd", &[]),
        ("kadis", &[]),
        ("kabid", &["--to", "prakom"]),
        ("prakom", &[]),
        ("hd", &["--to", "teknisi"]),
    ];
    for (who, extra) in steps {
        let mut args = vec!["ticket", "dispose", id.as_str()];
        args.extend_from_slice(extra);
        o.ok(who, &args)?;
    }
    o.ok(
        "teknisi",
        &["ticket", "update", &id, "--status", "switch diganti"],
    )?;
    o.ok(
        "opd",
        &["ticket", "acknowledge", &id, "--by", "Andi, Kasubag Umum"],
    )?;
    let turn = o.turn(&id)?;
    ensure!(turn["step"] == 6, "{id} at step 6: {turn:#}");
    Ok(id)
}

fn step(o: &Office, id: &str) -> Result<u64> {
    o.turn(id)?["step"].as_u64().context("step")
}

#[test]
fn step_6_is_not_disposed_without_a_before_and_an_after_measurement_or_a_reason() -> Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let addr = lab.addr("sw1")?.to_string();
    let mut c = Collector::init()?;
    c.write_inventory_text(&inventory(&addr, false))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    let o = Office::serve(c, &office_users_but(&["sekdis", "root"]))?;
    let _agent = Agent::start(agent_cfg)?;
    let teknisi = o.user("teknisi")?;
    wait_device_up(teknisi, "dinkes-sw1")?;

    let measured = ticket_at_step_6(&o, "005/12/DINKES/XII/2026", "Switch lantai 2 mati")?;
    let waived = ticket_at_step_6(&o, "006/12/DINKES/XII/2026", "Switch gudang mati")?;
    let measure = |id: &str, phase: &str| -> Result<Value> {
        teknisi.json(&[
            "ticket", "measure", id, "--phase", phase, "--count", "10", "--window", "1s", "--json",
        ])
    };
    let dispose = |id: &str, extra: &[&str]| -> Result<Output> {
        let mut args = vec!["ticket", "dispose", id];
        args.extend_from_slice(extra);
        teknisi.run(&args)
    };

    let out = dispose(&measured, &[])?;
    ensure!(!out.status.success(), "disposed without measurements");
    ensure!(
        stderr(&out).contains("needs measurements before and after"),
        "{}",
        stderr(&out)
    );

    ensure!(measure(&measured, "before")?["state"] == "done");
    let out = dispose(&measured, &[])?;
    ensure!(!out.status.success(), "disposed with only `before`");
    let err = stderr(&out);
    ensure!(
        err.contains("needs measurements before and after the work (after missing)"),
        "{err}"
    );
    ensure!(step(&o, &measured)? == 6, "still at step 6");

    ensure!(measure(&measured, "after")?["state"] == "done");
    let out = dispose(&measured, &[])?;
    ensure!(out.status.success(), "disposed with both: {}", stderr(&out));
    ensure!(step(&o, &measured)? == 7, "on to step 7");

    // No measurement at all, but a reason: allowed, and recorded (the
    // issue's spelling of the flag; `--no-measurement-reason` is the same).
    let out = dispose(
        &waived,
        &["--no-measure-reason", "switch diganti unit baru"],
    )?;
    ensure!(
        out.status.success(),
        "disposed with a reason: {}",
        stderr(&out)
    );
    ensure!(step(&o, &waived)? == 7, "on to step 7");
    let audit = ok(teknisi, &["ticket", "audit", &waived, "--json"])?;
    ensure!(
        audit.contains("switch diganti unit baru"),
        "the reason is on the trail: {audit}"
    );
    Ok(())
}

#[test]
fn a_helpdesk_user_cannot_take_a_ticket_measurement() -> Result<()> {
    // No lab and no agent: the role is checked before anything is sent.
    let mut c = Collector::init()?;
    c.write_inventory_text(&inventory("198.18.0.2", false))?;
    let hd = c.enroll_user("hd", "helpdesk")?;
    let teknisi = c.enroll_user("teknisi", "tim_teknis")?;
    c.serve()?;
    let out = ok(
        &hd,
        &[
            "ticket",
            "new",
            "--opd",
            "dinkes",
            "--letter-number",
            "005/13/DINKES/XII/2026",
            "--letter-date",
            &siaga_tests::office::letter_date(),
            "--subject",
            "Internet lambat",
            "--device",
            "dinkes-sw1",
        ],
    )?;
    let id = opened_ticket(&out)?;
    let out = hd.run(&["ticket", "measure", &id, "--phase", "before"])?;
    ensure!(!out.status.success(), "a helpdesk user measured a ticket");
    let err = stderr(&out);
    ensure!(
        err.contains("ticket.measure is for tim_teknis (SOP step 6); you are helpdesk"),
        "{err}"
    );
    let out = hd.run(&["measure", "dinkes-sw1"])?;
    ensure!(!out.status.success(), "a helpdesk user measured a device");
    ensure!(
        stderr(&out).contains("you are helpdesk"),
        "{}",
        stderr(&out)
    );
    // The technician gets past the role check: to the offline agent.
    let out = teknisi.run(&["ticket", "measure", &id, "--phase", "before"])?;
    ensure!(
        stderr(&out).contains("has never connected; use --queue"),
        "{}",
        stderr(&out)
    );
    let list = hd.json(&["ticket", "measurements", &id, "--json"])?;
    ensure!(list.as_array().is_some_and(Vec::is_empty), "{list:#}");
    Ok(())
}
