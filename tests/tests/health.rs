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
