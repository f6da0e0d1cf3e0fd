//! Failover time: seconds from `kill -9` of the collector an agent streams
//! to, to the agent's first acknowledged batch on the other collector.
//!
//! Two real collectors (the second a copy of the first one's directory with
//! its own `listen`, each with its embedded store) and one real agent
//! listing both, probing 10 loopback addresses every second. Each round
//! kills the collector the agent is on, waits for the agent's metrics to
//! show it on the other collector with more samples acknowledged than at
//! the kill (polled every 10 ms), then starts the killed collector again.
//! Needs root (ICMP).
//!
//! ```sh
//! cargo run --release -p siaga-tests --example failover_bench -- --kills 10
//! ```
//!
//! Run through cargo it first builds the binaries of the same profile
//! (`cargo build --workspace --bins`), unless `SIAGA_BIN_DIR` names others.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use siaga_agent::backoff::Backoff;
use siaga_agent::uplink::{ACK_TIMEOUT, CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use siaga_tests::harness::{
    Agent, Collector, Inventory, agent_on_collector, metric_value, secs, wait_until,
};

/// Probe cycle of the agent (also its heartbeat interval).
const INTERVAL: &str = "1s";
/// Loopback addresses probed.
const DEVICES: u8 = 10;
/// Longest a failover may take before the round counts as missed.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

fn usage() -> ! {
    eprintln!("usage: failover_bench [--kills N]   (N: 1..=100, default 10)");
    std::process::exit(64)
}

fn parse_args() -> usize {
    let mut kills = 10;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kills" => {
                kills = match args.next().and_then(|v| v.parse().ok()) {
                    Some(n) if (1..=100).contains(&n) => n,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    kills
}

/// Nearest-rank percentile.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank - 1]
}

fn main() -> Result<()> {
    let kills = parse_args();
    siaga_tests::harness::build_binaries()?;

    let mut inv = Inventory::new(INTERVAL).opd("a");
    for i in 1..=DEVICES {
        inv = inv.device(&format!("a-{i}"), "a", &format!("127.0.0.{i}"));
    }
    let mut first = Collector::init()?;
    first.write_inventory(&inv)?;
    let cfg = first.enroll_agent("a")?;
    let second = first.copy_as_another()?;
    cfg.set(
        "collector",
        toml::Value::Array(vec![first.url().into(), second.url().into()]),
    )?;
    cfg.set("interval", INTERVAL)?;
    cfg.set("metrics_listen", "127.0.0.1:0")?;
    let mut collectors = [first, second];
    for c in &mut collectors {
        c.serve()?;
    }
    let agent = Agent::start(cfg)?;
    let scrape = || -> Result<String> { agent.metrics() };
    let acked = |m: &str| metric_value(m, "siaga_agent_samples_acked_total").unwrap_or(0.0);
    wait_until(secs(60), "the agent streaming with samples acked", || {
        let m = scrape()?;
        Ok(agent_on_collector(&m).is_some() && acked(&m) > 0.0)
    })?;

    let backoff = Backoff::reconnect();
    println!("agent settings that govern a failover:");
    println!(
        "  reconnect backoff     {:?} growing to {:?}, {:?} jitter, back to the base once a collector welcomes the agent",
        backoff.base(),
        backoff.cap(),
        backoff.jitter()
    );
    println!(
        "  HTTP/2 keep-alive     ping every {KEEPALIVE_INTERVAL:?}, lost after {KEEPALIVE_TIMEOUT:?} without answer (a host that vanishes)"
    );
    println!("  connect timeout       {CONNECT_TIMEOUT:?}");
    println!("  acknowledgement       stream dropped after {ACK_TIMEOUT:?} without one");
    println!("  heartbeat             every probe cycle ({INTERVAL}), agent → collector");
    println!(
        "  kill -9 on this host closes the collector's sockets: the agent sees the stream reset at once"
    );
    println!();

    let mut seconds = Vec::new();
    let mut missed = 0;
    for round in 1..=kills {
        let m = scrape()?;
        let on = agent_on_collector(&m).context("agent on no collector")?;
        let Some(victim) = collectors.iter().position(|c| c.url() == on) else {
            bail!("agent on {on}, not one of ours");
        };
        let other = collectors[1 - victim].url();
        let killed = Instant::now();
        collectors[victim].kill9();
        let before = acked(&scrape()?);
        let mut took = None;
        while killed.elapsed() < ROUND_TIMEOUT {
            let m = scrape().unwrap_or_default();
            if agent_on_collector(&m).as_deref() == Some(other.as_str()) && acked(&m) > before {
                took = Some(killed.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match took {
            Some(s) => {
                println!("kill {round:>2}: {s:.3} s to the first acknowledged batch on {other}");
                seconds.push(s);
            }
            None => {
                println!(
                    "kill {round:>2}: no acknowledged batch on {other} within {ROUND_TIMEOUT:?}"
                );
                missed += 1;
            }
        }
        // The killed collector back, so that the next kill has somewhere to
        // go; the agent stays where it is.
        collectors[victim].restart()?;
    }
    let failovers = metric_value(&scrape()?, "siaga_agent_uplink_failovers_total").unwrap_or(0.0);
    println!();
    println!(
        "kill -9 → first acknowledged batch on the other collector, {} kills: p50 {:.3} s, max {:.3} s, missed {missed}; agent counted {failovers} failovers",
        seconds.len() + missed,
        pct(&seconds, 50.0),
        seconds.iter().copied().fold(f64::NAN, f64::max),
    );
    Ok(())
}
