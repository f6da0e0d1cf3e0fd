//! An agent listing two collectors (issue 16): when the collector it streams
//! to dies, it streams to the other, and nothing it measured is lost.
//!
//! Real `siaga-collector`, `siaga-agent` and `siaga` processes, real mTLS,
//! each collector with its own embedded store; the second collector is a
//! copy of the first one's directory with its own `listen`, as an operator
//! makes one. ICMP against loopback targets only. Build the binaries first:
//! `cargo build --workspace --bins`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use siaga_tests::harness::*;

/// The agent's metrics, with the log tail in the error when they cannot be
/// read.
fn metrics(agent: &Agent) -> Result<String> {
    agent
        .metrics()
        .with_context(|| format!("agent metrics; agent log:\n{}", agent.log_tail(20)))
}

/// Whether the agent streams to `c` now.
fn on(agent: &Agent, c: &Collector) -> Result<bool> {
    Ok(agent_on_collector(&metrics(agent)?).as_deref() == Some(c.url().as_str()))
}

/// Sequence number → times stored, of the samples of `agent` in the
/// histories of `devices` on the collector `admin` talks to.
fn stored_seqs(admin: &Siaga, agent: &str, devices: &[&str]) -> Result<BTreeMap<u64, usize>> {
    let mut seqs = BTreeMap::new();
    for d in devices {
        for s in admin.history(d)? {
            if s["agent"] == agent {
                let seq = json_u64(&s["seq"]).with_context(|| format!("no seq in {s}"))?;
                *seqs.entry(seq).or_insert(0) += 1;
            }
        }
    }
    Ok(seqs)
}

/// Timestamps (µs) of `device`'s samples on the collector `admin` talks to.
fn stored_ts(admin: &Siaga, device: &str) -> Result<Vec<i64>> {
    admin.history_ts(device)
}

#[test]
fn the_agent_fails_over_to_the_other_collector_and_nothing_is_lost() -> Result<()> {
    const DEVICES: [&str; 2] = ["a-1", "a-2"];
    let mut a = Collector::init()?;
    a.write_inventory(
        &Inventory::new("1s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1")
            .device("a-2", "a", "127.0.0.2"),
    )?;
    let admin_a = a.enroll_user("budi", "admin")?;
    let cfg = a.enroll_agent("a")?;
    // The second collector: a copy of the first one's directory, made while
    // the first is stopped, with its own listen.
    let mut b = a.copy_as_another()?;
    let admin_b = admin_a.on(&b)?;
    cfg.set(
        "collector",
        toml::Value::Array(vec![a.url().into(), b.url().into()]),
    )?;
    cfg.set("interval", "1s")?;
    cfg.set("metrics_listen", "127.0.0.1:0")?;
    let validated = std::process::Command::new(bin("siaga-agent")?)
        .args(["validate", "--config"])
        .arg(&cfg.path)
        .output()?;
    ensure!(
        validated.status.success(),
        "validate: {}",
        String::from_utf8_lossy(&validated.stderr)
    );
    a.serve()?;
    b.serve()?;
    let mut agent = Agent::start(cfg)?;

    // The first of the list, while samples flow.
    wait_until(secs(60), "the agent on the first collector", || {
        on(&agent, &a)
    })?;
    wait_until(secs(60), "samples of a-1 on the first collector", || {
        Ok(stored_ts(&admin_a, "a-1")?.len() >= 3)
    })?;

    // kill -9 the collector the agent is on: within 10 s it streams to the
    // other one, and what it probes after the kill is stored there.
    a.kill9();
    let killed_at = now_us();
    let failed_over = Instant::now();
    wait_until(secs(10), "the agent on the second collector", || {
        on(&agent, &b)
    })
    .with_context(|| format!("agent log:\n{}", agent.log_tail(20)))?;
    eprintln!(
        "on the second collector {:.1} s after kill -9",
        failed_over.elapsed().as_secs_f64()
    );
    let m = metrics(&agent)?;
    ensure!(
        metric_value(&m, "siaga_agent_uplink_failovers_total") == Some(1.0),
        "one failover counted:\n{m}"
    );
    ensure!(
        agent
            .log_tail(50)
            .lines()
            .any(|l| l.contains("connected to the collector")
                && l.contains(&b.url())
                && l.contains("failover=true")),
        "the log names the collector failed over to:\n{}",
        agent.log_tail(50)
    );
    wait_until(
        secs(30),
        "samples probed after the kill on the second",
        || Ok(stored_ts(&admin_b, "a-1")?.iter().any(|t| *t > killed_at)),
    )?;

    // Neither reachable for a while: the agent spools. Then the first comes
    // back: what was probed meanwhile reaches it.
    b.kill9();
    let both_down = now_us();
    wait_until(secs(30), "samples spooled while no collector is up", || {
        Ok(metric_value(&metrics(&agent)?, "siaga_agent_spool_depth").unwrap_or(0.0) >= 6.0)
    })?;
    let up_again = now_us();
    a.restart()?;
    wait_until(secs(60), "the agent on the first collector again", || {
        on(&agent, &a)
    })?;
    wait_until(
        secs(60),
        "the outage's samples on the first collector",
        || {
            let ts = stored_ts(&admin_a, "a-1")?;
            Ok(ts
                .iter()
                .filter(|t| **t > both_down && **t < up_again)
                .count()
                >= 2)
        },
    )?;
    ensure!(
        metric_value(&metrics(&agent)?, "siaga_agent_uplink_failovers_total") == Some(2.0),
        "the move back to the first collector is the second failover"
    );

    // Nothing lost: every sequence number the agent produced up to now is
    // stored on one collector at least, none twice on one. `produced` is
    // read first; a spool seen empty afterwards holds none of them.
    let produced = metric_value(&metrics(&agent)?, "siaga_agent_samples_spooled_total")
        .context("samples_spooled")? as u64;
    wait_until(secs(60), "the spool emptied", || {
        Ok(metric_value(&metrics(&agent)?, "siaga_agent_spool_depth") == Some(0.0))
    })?;
    // The second collector back, for its history: the agent stays where it is.
    b.restart()?;
    let on_a = stored_seqs(&admin_a, &agent.id, &DEVICES)?;
    let on_b = stored_seqs(&admin_b, &agent.id, &DEVICES)?;
    ensure!(
        on(&agent, &a)?,
        "no fail-back to a collector that came back"
    );
    for (name, seqs) in [("first", &on_a), ("second", &on_b)] {
        let twice: Vec<_> = seqs.iter().filter(|(_, n)| **n > 1).collect();
        ensure!(twice.is_empty(), "stored twice on the {name}: {twice:?}");
    }
    let stored: BTreeSet<u64> = on_a.keys().chain(on_b.keys()).copied().collect();
    let lost: Vec<u64> = (1..=produced).filter(|q| !stored.contains(q)).collect();
    ensure!(
        lost.is_empty(),
        "{} of {produced} samples on neither collector: {lost:?}",
        lost.len()
    );
    ensure!(
        on_b.keys().any(|q| !on_a.contains_key(q)),
        "the second collector holds samples the first never got"
    );
    ensure!(agent.stop(), "the agent stops cleanly");
    Ok(())
}

/// A collector that freezes (SIGSTOP: its host hangs, the connection stays
/// open and nothing answers) is noticed by the HTTP/2 keep-alive, and the
/// agent goes on to the next collector of its list.
#[test]
fn a_frozen_collector_is_left_for_the_next_one() -> Result<()> {
    let mut a = Collector::init()?;
    a.write_inventory(
        &Inventory::new("1s")
            .opd("a")
            .device("a-1", "a", "127.0.0.1"),
    )?;
    let admin = a.enroll_user("budi", "admin")?;
    let cfg = a.enroll_agent("a")?;
    let mut b = a.copy_as_another()?;
    let admin_b = admin.on(&b)?;
    cfg.set(
        "collector",
        toml::Value::Array(vec![a.url().into(), b.url().into()]),
    )?;
    cfg.set("metrics_listen", "127.0.0.1:0")?;
    a.serve()?;
    b.serve()?;
    let agent = Agent::start(cfg)?;
    wait_until(secs(60), "the agent on the first collector", || {
        on(&agent, &a)
    })?;
    a.pause();
    let frozen_at = now_us();
    // Keep-alive: a ping every 20 s, 10 s for its answer.
    wait_until(secs(60), "the agent on the second collector", || {
        on(&agent, &b)
    })
    .with_context(|| format!("agent log:\n{}", agent.log_tail(20)))?;
    wait_until(
        secs(30),
        "samples probed after the freeze on the second",
        || Ok(stored_ts(&admin_b, "a-1")?.iter().any(|t| *t > frozen_at)),
    )?;
    a.resume();
    Ok(())
}
