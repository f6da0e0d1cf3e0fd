//! Several collectors on one PostgreSQL (issue 16): three collectors, two
//! OPDs with a real agent each probing real devices of the lab, everything
//! in one database the test starts. `kill -9` of the collector that holds
//! an agent's stream and its OPD's lease, while samples flow: the agent goes
//! on to another collector, the lease follows it, nothing acknowledged is
//! lost or stored twice, a fault made after the kill opens one ticket, and
//! the SOP chain goes on, from another collector, on a ticket opened before.
//!
//! Real `siaga-collector`, `siaga-agent` and `siaga` processes, real mTLS,
//! a real PostgreSQL cluster, ICMP to the lab's namespaces. Build the
//! binaries first: `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::*;
use siaga_tests::lab::Lab;
use siaga_tests::postgres::Cluster;

/// Who holds the lease of `opd`: the `holder` column (host/listen/nonce).
fn holder(pg: &Cluster, opd: &str) -> Result<String> {
    Ok(pg
        .sql(&format!("SELECT holder FROM leases WHERE opd = '{opd}'"))?
        .trim()
        .to_string())
}

/// Whether collector `c` holds `opd`'s lease.
fn holds(pg: &Cluster, c: &Collector, opd: &str) -> Result<bool> {
    Ok(holder(pg, opd)?.contains(&format!("/{}/", c.listen)))
}

fn on(agent: &Agent, c: &Collector) -> Result<bool> {
    let m = agent
        .metrics()
        .with_context(|| format!("agent log:\n{}", agent.log_tail(20)))?;
    Ok(agent_on_collector(&m).as_deref() == Some(c.url().as_str()))
}

fn tickets_of(who: &Siaga, device: &str) -> Result<Vec<Value>> {
    let v = who.json(&["tickets", "--json"])?;
    Ok(v.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["device"] == device)
        .collect())
}

fn id(t: &Value) -> String {
    t["id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn kill_9_of_the_collector_holding_an_opd_moves_its_agent_and_lease_and_loses_nothing() -> Result<()>
{
    let lab = Lab::new()?
        .device("sw1")
        .device("sw2")
        .device("sw3")
        .start()?;
    let pg = Cluster::start()?;
    let mut a = Collector::init()?;
    let mut inv = "interval = \"1s\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n\n\
                   [[opd]]\nid = \"bappeda\"\nname = \"Bappeda\"\n"
        .to_string();
    for (sw, opd) in [("sw1", "dinkes"), ("sw2", "dinkes"), ("sw3", "bappeda")] {
        inv.push_str(&format!(
            "\n[[device]]\nid = \"{opd}-{sw}\"\nopd = \"{opd}\"\nkind = \"switch\"\naddress = \"{}\"\n",
            lab.addr(sw)?
        ));
    }
    a.write_inventory_text(&inv)?;
    set_toml(&a.config, "store.url", pg.url().into())?;
    let root = a.enroll_user("root", "admin")?;
    let kadis = a.enroll_user("kadis", "kepala_dinas")?;
    let dinkes = a.enroll_agent("dinkes")?;
    let bappeda = a.enroll_agent("bappeda")?;
    // The second and third: copies of the first one's directory (same CA,
    // users and store URL) with their own listen.
    let mut b = a.copy_as_another()?;
    let mut c = a.copy_as_another()?;
    for (cfg, order) in [(&dinkes, [&a, &b, &c]), (&bappeda, [&b, &c, &a])] {
        cfg.set(
            "collector",
            toml::Value::Array(order.iter().map(|x| x.url().into()).collect()),
        )?;
        cfg.set("interval", "1s")?;
        cfg.set("metrics_listen", "127.0.0.1:0")?;
    }
    a.serve()?;
    b.serve()?;
    c.serve()?;
    let started = Instant::now();
    let agent = Agent::start(dinkes)?;
    let _other = Agent::start(bappeda)?;
    let root_b = root.on(&b)?;
    let root_c = root.on(&c)?;

    // Each OPD judged where its agent streams.
    wait_until(secs(60), "the dinkes agent on the first collector", || {
        on(&agent, &a)
    })?;
    wait_until(secs(30), "the leases where the streams are", || {
        Ok(holds(&pg, &a, "dinkes")? && holds(&pg, &b, "bappeda")?)
    })?;

    // A fault before the kill: sw2's cable cut. One ticket, judged by the
    // first collector, seen on all three.
    lab.set_link_down("sw2", "eth0")?;
    wait_until(secs(60), "a ticket for sw2", || {
        Ok(tickets_of(&root, "dinkes-sw2")?.len() == 1)
    })?;
    let before = id(&tickets_of(&root, "dinkes-sw2")?[0]);
    ensure!(
        tickets_of(&root_c, "dinkes-sw2")?.len() == 1,
        "the third collector does not show {before}"
    );

    // kill -9 the collector with dinkes' stream and lease, samples flowing.
    a.kill9();
    let killed = Instant::now();
    let killed_us = now_us();
    wait_until(secs(10), "the dinkes agent on another collector", || {
        Ok(on(&agent, &b)? || on(&agent, &c)?)
    })
    .with_context(|| format!("agent log:\n{}", agent.log_tail(20)))?;
    let moved_s = killed.elapsed().as_secs_f64();
    let now_on = if on(&agent, &b)? { &b } else { &c };
    wait_until(secs(15), "dinkes' lease where its agent is now", || {
        holds(&pg, now_on, "dinkes")
    })?;
    let leased_s = killed.elapsed().as_secs_f64();
    eprintln!(
        "after kill -9: agent on {} in {moved_s:.1} s, lease there in {leased_s:.1} s",
        now_on.url()
    );
    ensure!(holds(&pg, &b, "bappeda")?, "bappeda's lease moved too");

    // A fault after the kill opens exactly one ticket; the one from
    // before is not opened again by the new holder.
    lab.set_link_down("sw1", "eth0")?;
    wait_until(secs(60), "a ticket for sw1", || {
        Ok(tickets_of(&root_b, "dinkes-sw1")?.len() == 1)
    })?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    ensure!(
        tickets_of(&root_b, "dinkes-sw1")?.len() == 1,
        "sw1 opened twice"
    );
    let sw2 = tickets_of(&root_b, "dinkes-sw2")?;
    ensure!(
        sw2.len() == 1 && id(&sw2[0]) == before,
        "sw2's ticket after the kill: {sw2:?}"
    );

    // Nothing else: no collector took an agent streaming elsewhere for a
    // silent one (each OPD is judged by one collector only). Past the
    // time a collector would have declared it: the reconnect grace (15 s)
    // and three intervals.
    std::thread::sleep(std::time::Duration::from_secs(25).saturating_sub(started.elapsed()));
    let all = root_c.json(&["tickets", "--json"])?;
    ensure!(
        all.as_array().map(Vec::len) == Some(2),
        "two tickets, sw1 and sw2: {all:#}"
    );

    // The SOP chain goes on from another collector: the Kepala Dinas
    // disposes the ticket opened before the kill.
    let o = kadis
        .on(&c)?
        .run(&["ticket", "dispose", &before, "--note", "segera ditangani"])?;
    ensure!(
        o.status.success(),
        "dispose: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let shown = root_b.json(&["ticket", "show", &before, "--json"])?;
    let step = json_u64(&shown["ticket"]["step"]).unwrap_or(0);
    ensure!(step == 3, "step {step} after the disposal: {shown:#}");

    // Nothing acknowledged lost, nothing twice: every sequence number the
    // agent produced is stored once, the kill's window included.
    lab.set_link_up("sw1", "eth0")?;
    let produced = metric_value(&agent.metrics()?, "siaga_agent_samples_spooled_total")
        .context("samples_spooled")? as u64;
    wait_until(secs(60), "the spool emptied", || {
        Ok(metric_value(&agent.metrics()?, "siaga_agent_spool_depth") == Some(0.0))
    })?;
    let mut seqs: BTreeMap<u64, usize> = BTreeMap::new();
    for d in ["dinkes-sw1", "dinkes-sw2"] {
        for s in root_b.history(d)? {
            if s["agent"] == agent.id.as_str() {
                *seqs
                    .entry(json_u64(&s["seq"]).with_context(|| format!("{s}"))?)
                    .or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = seqs.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(twice.is_empty(), "stored twice: {twice:?}");
    let lost: Vec<u64> = (1..=produced).filter(|q| !seqs.contains_key(q)).collect();
    ensure!(
        lost.is_empty(),
        "{} of {produced} samples lost: {lost:?}",
        lost.len()
    );
    let after_kill = root_b
        .history_ts("dinkes-sw1")?
        .into_iter()
        .filter(|t| *t > killed_us)
        .count();
    ensure!(after_kill > 0, "nothing stored after the kill");
    Ok(())
}

/// A measurement asked on one collector for an agent whose stream is on
/// another completes: the first stores it queued in the shared database,
/// the second takes it (claimed in a transaction, so once), sends it to the
/// agent and stores the figures, which the first one's caller reads.
#[test]
fn a_measurement_asked_on_one_collector_runs_on_the_agent_of_another() -> Result<()> {
    let pg = Cluster::start()?;
    let mut a = Collector::init()?;
    a.write_inventory(&Inventory::new("1s").opd("dinkes").device(
        "dinkes-sw1",
        "dinkes",
        "127.0.0.1",
    ))?;
    set_toml(&a.config, "store.url", pg.url().into())?;
    let teknisi = a.enroll_user("teknisi", "tim_teknis")?;
    let cfg = a.enroll_agent("dinkes")?;
    let mut b = a.copy_as_another()?;
    cfg.set("collector", b.url())?;
    cfg.set("metrics_listen", "127.0.0.1:0")?;
    a.serve()?;
    b.serve()?;
    let agent = Agent::start(cfg)?;
    wait_until(secs(60), "the agent on the second collector", || {
        on(&agent, &b)
    })?;
    wait_until(secs(30), "its lease there", || holds(&pg, &b, "dinkes"))?;

    let asked = Instant::now();
    let done = teknisi.json(&[
        "measure",
        "dinkes-sw1",
        "--count",
        "10",
        "--window",
        "1s",
        "--json",
    ])?;
    eprintln!(
        "measured through the other collector in {:.1} s",
        asked.elapsed().as_secs_f64()
    );
    ensure!(done["state"] == "done", "{done:#}");
    ensure!(done["agent"] == agent.id.as_str(), "{done:#}");
    let figures = done["device_figures"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["device"] == "dinkes-sw1"))
        .with_context(|| format!("no figures of dinkes-sw1: {done:#}"))?;
    ensure!(
        json_u64(&figures["sent"]) == Some(10) && json_u64(&figures["received"]) == Some(10),
        "{figures:#}"
    );
    // Read back on the collector that ran it: the same record.
    let id = done["id"].as_str().context("id")?;
    let there = teknisi.on(&b)?.json(&["measurement", id, "--json"])?;
    ensure!(there["state"] == "done", "{there:#}");
    Ok(())
}
